"""structlog to Kafka: a processor chain with :class:`logtide_kafka.structlog.KafkaProcessor`.

Without ``KAFKA_BROKERS`` it starts a local single-node Apache Kafka (a JVM subprocess,
fetched with Maven on first use and cached) and stops it at the end.  With
``KAFKA_BROKERS=host:9092`` it uses that cluster instead, creating ``logs.application`` if
it is missing.

The chain merges contextvars, adds the level and an ISO timestamp, publishes the event dict
with ``KafkaProcessor``, then renders it for the console as usual.  The script logs four
events (one with a secret in a nested field, one exception, one with trace ids), reads them
back, prints them, and exits non-zero unless each arrived as expected: contextvars in the
metadata, the secret redacted in Kafka but not in the console output, the exception's
type, message and stack, the trace ids at the top level.  Every run tags its events with a
fresh ``run_id``.

    python examples/structlog_app.py
    KAFKA_BROKERS=kafka-1:9092 python examples/structlog_app.py
"""

from __future__ import annotations

import dataclasses
import io
import os
import secrets
import sys
import uuid
from typing import Any

import orjson
import structlog

from logtide_kafka import REDACTED, close_all
from logtide_kafka.structlog import KafkaProcessor
from logtide_kafka.testing import event_problems, kafka_or_local, read_events

TOPIC = "logs.application"
SERVICE = "structlog-app"


def pretty(value: dict[str, Any]) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def charge_card(order_id: int) -> None:
    raise ConnectionError(f"payment gateway unreachable for order {order_id}")


def check(events: list[dict[str, Any]], run_id: str, trace_id: str, span_id: str) -> list[str]:
    """What is wrong with the events read back (an empty list when all is as expected)."""
    problems = [f"schema: {p}" for event in events for p in event_problems(event)]
    messages = [event["message"] for event in events]
    expected = ["order 42 placed", "payment slow", "charging order 42 failed", "order 42 shipped"]
    if messages != expected:
        return [*problems, f"messages {messages}, expected {expected}"]
    placed, slow, failed, shipped = events
    for event in events:
        metadata = event["metadata"]
        if (metadata.get("run_id"), metadata.get("request_id")) != (run_id, "req-7f3a"):
            problems.append(f"{event['message']!r}: contextvars missing from {metadata}")
    if [event["level"] for event in events] != ["info", "warn", "error", "info"]:
        problems.append(f"levels: {[event['level'] for event in events]}")
    if placed["metadata"].get("items") != ["book", "pen"]:
        problems.append(f"keyword arguments missing: {placed['metadata']}")
    if slow["metadata"].get("card") != {"last4": "4242", "token": REDACTED}:
        problems.append(f"card not redacted as expected: {slow['metadata'].get('card')}")
    exception = failed["metadata"].get("exception", {})
    if exception.get("type") != "ConnectionError" or "charge_card" not in exception.get(
        "stack", ""
    ):
        problems.append(f"exception: {exception}")
    if (shipped.get("trace_id"), shipped.get("span_id")) != (trace_id, span_id):
        problems.append(f"trace ids: {shipped}")
    if any("trace_id" in event for event in (placed, slow, failed)):
        problems.append("trace ids on events logged outside the bound block")
    return problems


def run(servers: str) -> int:
    run_id = uuid.uuid4().hex[:12]
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    print(f"run_id={run_id}")

    # 1. The chain: enrich, publish to Kafka, then render for the console as before.
    kafka = KafkaProcessor(service=SERVICE, topic=TOPIC, bootstrap_servers=servers)
    console = io.StringIO()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            kafka,  # after the enrichers, before exceptions are formatted and rendering
            structlog.processors.format_exc_info,
            structlog.processors.KeyValueRenderer(key_order=["timestamp", "level", "event"]),
        ],
        logger_factory=structlog.PrintLoggerFactory(console),
        cache_logger_on_first_use=False,
    )
    log = structlog.get_logger()

    # 2. Log: contextvars reach every event, keyword arguments become metadata.
    structlog.contextvars.bind_contextvars(run_id=run_id, request_id="req-7f3a")
    try:
        log.info("order 42 placed", order_id=42, items=["book", "pen"])
        log.warning("payment slow", attempt=1, card={"last4": "4242", "token": "tok_4f9a"})
        try:
            charge_card(42)
        except ConnectionError:
            log.exception("charging order 42 failed", order_id=42)
        with structlog.contextvars.bound_contextvars(trace_id=trace_id, span_id=span_id):
            log.info("order 42 shipped", order_id=42)
    finally:
        structlog.contextvars.clear_contextvars()

    print("\nConsole output (the renderer got each event dict unchanged):")
    print(console.getvalue(), end="")

    # 3. Wait for delivery, then read this run's events back.
    left = kafka.producer.flush(10)
    if left:
        print(f"{left} event(s) still undelivered after 10 s", file=sys.stderr)

    def this_run(event: dict[str, Any]) -> bool:
        metadata = event.get("metadata")
        return (
            event.get("service") == SERVICE
            and isinstance(metadata, dict)
            and metadata.get("run_id") == run_id
        )

    try:
        consumed = read_events(servers, TOPIC, count=4, where=this_run, timeout=30)
    except TimeoutError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        consumed = []
    events = [event.value for event in consumed]
    for event in consumed:
        print(f"\n--- {event.topic} partition {event.partition} offset {event.offset}")
        print(pretty(event.value))

    problems = check(events, run_id, trace_id, span_id) if events else ["no events read back"]
    if "tok_4f9a" not in console.getvalue():
        problems.append("the renderer did not get the event dict unchanged")
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    print("\nstats():", pretty(dataclasses.asdict(kafka.stats())))
    print(f"\n{len(events)} of 4 events read back: {'FAILED' if problems else 'OK'}")

    # Close the producer while the broker is still up (otherwise the exit hook does it).
    close_all()
    return 1 if problems else 0


def main() -> int:
    if not os.environ.get("KAFKA_BROKERS"):
        print("KAFKA_BROKERS is not set: starting a local Kafka broker...", flush=True)
    with kafka_or_local([TOPIC]) as servers:
        print(f"Kafka ready at {servers}", flush=True)
        return run(servers)


if __name__ == "__main__":
    sys.exit(main())
