"""An application that sends its logs to Kafka purely through ``logging.config.dictConfig``.

The handler is named by its dotted path, ``logtide_kafka.KafkaHandler``; every other key of
its entry is passed to it as a keyword argument.  The script never calls ``flush()``: the
exit hook the library registers delivers what is still queued (within 5 s by default).

    KAFKA_BROKERS=kafka-1:9092 python examples/dictconfig_app.py    # default localhost:9092

The topic must exist (``python -m logtide_kafka.testing`` starts a broker that has it).
"""

from __future__ import annotations

import logging
import logging.config
import os
import uuid
from typing import Any

#: Tags this run's events, so they are easy to find on a topic that holds earlier runs.
RUN_ID = uuid.uuid4().hex[:12]


class AddRunId(logging.Filter):
    """Any attribute a filter adds to a record ends up in the event's metadata."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__["run_id"] = RUN_ID
        return True


LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"run_id": {"()": AddRunId}},
    "formatters": {"console": {"format": "%(asctime)s %(levelname)-8s %(name)s: %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "console"},
        "kafka": {
            "class": "logtide_kafka.KafkaHandler",
            "level": "INFO",  # handled by dictConfig itself, like "filters"
            "filters": ["run_id"],
            # The keyword arguments of KafkaHandler:
            "service": "dictconfig-app",
            "topic": "logs.application",
            "bootstrap_servers": os.environ.get("KAFKA_BROKERS", "localhost:9092"),
            "producer_config": {"client.id": "dictconfig-app", "linger.ms": 20},
        },
    },
    "root": {"level": "DEBUG", "handlers": ["console", "kafka"]},
}


def main() -> None:
    logging.config.dictConfig(LOGGING)
    log = logging.getLogger("shop.checkout")
    log.info("checkout service started (run_id %s)", RUN_ID)
    log.debug("cache warmed: not sent to Kafka, below the handler's INFO level")
    log.info("cart %s checked out", "c-1001", extra={"cart_id": "c-1001", "total_eur": 54.2})
    log.warning("stock for %s is low", "sku-17", extra={"sku": "sku-17", "left": 2})
    try:
        {"sku-17": 2}["sku-99"]
    except KeyError:
        log.exception("unknown product in cart %s", "c-1001")
    log.info("exiting without flush(): the exit hook delivers the queued events")


if __name__ == "__main__":
    main()
