"""The quick start (``make demo``): log to a real Kafka and read the events back.

Without ``KAFKA_BROKERS`` it starts a local single-node Apache Kafka (a JVM subprocess,
fetched with Maven on first use and cached) and stops it at the end.  With
``KAFKA_BROKERS=host:9092`` it uses that cluster instead, creating ``logs.application`` if
it is missing.

It publishes four events, three through :class:`logtide_kafka.KafkaHandler` (info with
``extra=`` fields, a warning, an exception) and one through :func:`logtide_kafka.send_log`
(with a trace id), reads them back, prints them and the producer's counters, and exits
non-zero unless all four came back and match the LogTide event schema.  Every run tags its
events with a fresh ``run_id``, so reruns against a persistent cluster never count the
events of an earlier run.

    python examples/quickstart.py
    KAFKA_BROKERS=kafka-1:9092 python examples/quickstart.py
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import sys
import uuid
from typing import Any

import orjson

import logtide_kafka
from logtide_kafka import KafkaHandler
from logtide_kafka.testing import event_problems, kafka_or_local, read_events

TOPIC = "logs.application"
SERVICE = "quickstart"
EXPECTED = 4


def pretty(value: dict[str, Any]) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def charge_card(order_id: int) -> None:
    raise ConnectionError(f"payment gateway unreachable for order {order_id}")


def run(servers: str) -> int:
    run_id = uuid.uuid4().hex[:12]
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    print(f"run_id={run_id}")

    # 1. The logging handler: records from this logger become events on logs.application.
    logger = logging.getLogger("quickstart.orders")
    logger.setLevel(logging.INFO)
    handler = KafkaHandler(service=SERVICE, bootstrap_servers=servers)
    logger.addHandler(handler)

    tag = {"run_id": run_id}
    logger.info(
        "order %s placed",
        42,
        extra={**tag, "order_id": 42, "amount_eur": 19.99, "items": ["book", "pen"]},
    )
    logger.warning("payment slow, retry %d of %d", 1, 3, extra=tag)
    try:
        charge_card(42)
    except ConnectionError:
        logger.exception("charging order %s failed", 42, extra=tag)

    # 2. send_log: no logging module; same configuration, so the same shared producer.
    logtide_kafka.configure(servers)
    logtide_kafka.send_log(
        "info",
        "order 42 shipped",
        SERVICE,
        order_id=42,
        run_id=run_id,
        trace_id=trace_id,
        span_id=span_id,
    )

    # 3. Wait for delivery, then read this run's events back from the topic.
    left = logtide_kafka.flush(10)
    if left:
        print(f"{left} event(s) still undelivered after 10 s", file=sys.stderr)

    def this_run(event: dict[str, Any]) -> bool:
        metadata = event.get("metadata")
        return (
            event.get("service") == SERVICE
            and isinstance(metadata, dict)
            and metadata.get("run_id") == run_id
        )

    status = 0
    try:
        events = read_events(servers, TOPIC, count=EXPECTED, where=this_run, timeout=30)
    except TimeoutError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        events, status = [], 1
    for event in events:
        where = f"{event.topic} partition {event.partition} offset {event.offset}"
        print(f"\n--- {where}, key {event.key!r}")
        print(pretty(event.value))
        for problem in event_problems(event.value):
            print(f"FAILED: schema: {problem}", file=sys.stderr)
            status = 1

    print("\nstats():", pretty(dataclasses.asdict(logtide_kafka.stats())))
    print(f"\n{len(events)} of {EXPECTED} events read back: {'OK' if status == 0 else 'FAILED'}")

    # Close the producer while the broker is still up (otherwise the exit hook does it).
    logger.removeHandler(handler)
    handler.close()
    logtide_kafka.close_all()
    return status


def main() -> int:
    if not os.environ.get("KAFKA_BROKERS"):
        print("KAFKA_BROKERS is not set: starting a local Kafka broker...", flush=True)
    with kafka_or_local([TOPIC]) as servers:
        print(f"Kafka ready at {servers}", flush=True)
        return run(servers)


if __name__ == "__main__":
    sys.exit(main())
