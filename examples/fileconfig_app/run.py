"""A script configured by ``logging.config.fileConfig`` from ``logging.ini``.

    cd examples/fileconfig_app
    KAFKA_BROKERS=127.0.0.1:9092 python run.py 300

It logs the given number of events and exits without calling ``flush()``: the exit hook
delivers what is still queued.  See ``docs/fileconfig.md``.
"""

from __future__ import annotations

import logging
import logging.config
import sys
from pathlib import Path

CONFIG = Path(__file__).with_name("logging.ini")


def main(count: int) -> None:
    # disable_existing_loggers=False: loggers created at import time keep working.
    logging.config.fileConfig(CONFIG, disable_existing_loggers=False)
    log = logging.getLogger("shop.orders")
    for seq in range(count):
        log.info("order %d paid", seq, extra={"seq": seq, "card_number": "4242424242424242"})
    log.warning("done: %d orders", count)  # to Kafka and, above WARNING, to stderr


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
