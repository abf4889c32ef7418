"""Topic routing, redaction and static fields: which event lands on which topic.

Without ``KAFKA_BROKERS`` it starts a local single-node Apache Kafka (a JVM subprocess,
fetched with Maven on first use and cached) and stops it at the end.  With
``KAFKA_BROKERS=host:9092`` it uses that cluster instead.  Either way it creates the three
topics of the layout (``logs.application``, ``logs.infrastructure``, ``logs.security``) if
they are missing: the producer itself never creates topics.

One :class:`logtide_kafka.KafkaHandler` on the root logger routes records by an explicit
``extra={"category": ...}``, then by logger-name prefix (``logger_categories``), then by
level (``level_categories``), else to the default topic.  It adds static ``fields`` to
every event and redacts the default keys plus ``card_number``.  The script logs one record
per rule, reads every topic back, prints which event landed where, and exits non-zero
unless each event is on the expected topic, once, with its secrets redacted and the static
fields present.  Every run tags its events with a fresh ``run_id`` (itself a static field).

    python examples/routing_app.py
    KAFKA_BROKERS=kafka-1:9092 python examples/routing_app.py
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import uuid
from typing import Any

import orjson

from logtide_kafka import DEFAULT_REDACT_KEYS, REDACTED, TOPICS, KafkaHandler, close_all
from logtide_kafka.testing import event_problems, kafka_or_local, read_events

SERVICE = "routing-app"
APP, INFRA, SEC = "logs.application", "logs.infrastructure", "logs.security"
SECRETS = (b"hunter2", b"4111111111111111", b"Bearer abc123")

#: message -> the topic it must land on, and why.
EXPECTED: dict[str, tuple[str, str]] = {
    "worker heartbeat": (APP, "no rule matches: the default topic"),
    "order 42 placed": (APP, "logger prefix 'shop'"),
    "slow query (950 ms)": (INFRA, "logger prefix 'sqlalchemy'"),
    "user bob logged in": (SEC, "logger prefix 'shop.auth', longer than 'shop'"),
    "login lockout for bob": (SEC, "prefix 'shop.auth' beats the level"),
    "order service out of memory": (INFRA, "level 'critical', no prefix matches"),
    "card declined for order 42": (SEC, "explicit category beats the prefix 'shop'"),
    "illegal category ignored": (APP, "explicit category cannot name a topic: prefix 'shop'"),
}


def pretty(value: dict[str, Any]) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def compact(value: dict[str, Any]) -> str:
    return orjson.dumps(value).decode()


def log_one_record_per_rule() -> None:
    logging.getLogger("worker").info("worker heartbeat")
    logging.getLogger("shop.orders").info("order %s placed", 42, extra={"order_id": 42})
    logging.getLogger("sqlalchemy.engine.Engine").warning(
        "slow query (%d ms)", 950, extra={"statement": "SELECT * FROM orders"}
    )
    logging.getLogger("shop.auth.login").info(
        "user %s logged in",
        "bob",
        extra={"user": "bob", "password": "hunter2", "headers": {"Authorization": "Bearer abc123"}},
    )
    logging.getLogger("shop.auth.login").critical("login lockout for %s", "bob")
    logging.getLogger("worker").critical("order service out of memory")
    logging.getLogger("shop.payments").warning(
        "card declined for order %s",
        42,
        extra={"category": "security", "card_number": "4111111111111111"},
    )
    logging.getLogger("shop.orders").info(
        "illegal category ignored", extra={"category": "not a topic!"}
    )


def run(servers: str) -> int:
    run_id = uuid.uuid4().hex[:12]
    print(f"run_id={run_id}")
    fields = {"environment": "demo", "version": "1.4.2", "run_id": run_id}

    handler = KafkaHandler(
        service=SERVICE,
        bootstrap_servers=servers,
        logger_categories={
            "sqlalchemy": "infrastructure",
            "shop": "application",
            "shop.auth": "security",
        },
        level_categories={"critical": "infrastructure"},
        fields=fields,
        redact=[*DEFAULT_REDACT_KEYS, "card_number"],
    )
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        log_one_record_per_rule()
    finally:
        root.removeHandler(handler)
    handler.flush()

    # Read every topic back: message -> the topics it was found on.
    found: dict[str, list[str]] = {}
    problems: list[str] = []
    for topic in TOPICS:
        events = read_events(
            servers,
            topic,
            where=lambda e: (
                e.get("service") == SERVICE and e.get("metadata", {}).get("run_id") == run_id
            ),
        )
        print(f"\n=== {topic}: {len(events)} event(s)")
        for event in events:
            value, metadata = event.value, event.value["metadata"]
            print(f"  {value['level']:<8} {metadata['logger']:<26} {value['message']}")
            found.setdefault(value["message"], []).append(topic)
            problems += [f"schema: {p}" for p in event_problems(value)]
            problems += [
                f"{value['message']!r}: secret {s!r} sent" for s in SECRETS if s in event.raw
            ]
            if {key: metadata.get(key) for key in fields} != fields:
                problems.append(f"{value['message']!r}: static fields missing: {metadata}")
            if value["message"] == "user bob logged in":
                print("    sent:", compact({k: metadata[k] for k in ("password", "headers")}))
                if metadata["password"] != REDACTED:
                    problems.append("password not redacted")
            if value["message"] == "card declined for order 42":
                print("    sent:", compact({k: metadata[k] for k in ("category", "card_number")}))
                if metadata["card_number"] != REDACTED:
                    problems.append("card_number not redacted")

    print("\nWhy:")
    for message, (topic, why) in EXPECTED.items():
        print(f"  {message!r} -> {topic}: {why}")
        if found.get(message) != [topic]:
            problems.append(f"{message!r} found on {found.get(message, [])}, expected {topic}")
    problems += [f"unexpected event {message!r}" for message in found if message not in EXPECTED]

    stats = handler.stats()
    print("\nstats():", pretty(dataclasses.asdict(stats)))
    print("missing_topics():", handler.producer.missing_topics())
    if stats.failed or stats.dropped:
        problems.append(f"failed or dropped events: {stats}")
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    print(f"\n{len(found)} of {len(EXPECTED)} events routed: {'FAILED' if problems else 'OK'}")

    # Close the producer while the broker is still up (otherwise the exit hook does it).
    handler.close()
    close_all()
    return 1 if problems else 0


def main() -> int:
    if not os.environ.get("KAFKA_BROKERS"):
        print("KAFKA_BROKERS is not set: starting a local Kafka broker...", flush=True)
    with kafka_or_local(TOPICS) as servers:
        print(f"Kafka ready at {servers}", flush=True)
        return run(servers)


if __name__ == "__main__":
    sys.exit(main())
