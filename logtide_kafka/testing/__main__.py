"""``python -m logtide_kafka.testing``: run a local Kafka until Ctrl-C (or SIGTERM)."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading

from logtide_kafka._routing import TOPICS
from logtide_kafka.testing._cluster import LocalKafka


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m logtide_kafka.testing", description=__doc__)
    parser.add_argument("--brokers", type=int, choices=(1, 3), default=1)
    parser.add_argument("--workdir", help="keep data and logs here (default: a temp dir)")
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with LocalKafka(args.brokers, workdir=args.workdir) as kafka:
        kafka.create_topics(TOPICS)
        print(f"Kafka {kafka.version} ready: KAFKA_BROKERS={kafka.bootstrap_servers}", flush=True)
        print(f"topics: {', '.join(TOPICS)}; logs under {kafka.workdir}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
