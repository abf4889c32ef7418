"""``send_logs``: publish a batch of events (here, access-log rows) in one call.

Without ``KAFKA_BROKERS`` it starts a local single-node Apache Kafka (as the quick start
does); with ``KAFKA_BROKERS=host:9092`` it uses that cluster, creating ``logs.application``
if it is missing.  It sends four rows and one bad item, reads the four events back, checks
them against the LogTide event schema and prints the counters: exit status 0 when all four
arrived and the bad item was counted as failed.

    python examples/send_logs_app.py
    KAFKA_BROKERS=kafka-1:9092 python examples/send_logs_app.py
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import logtide_kafka
from logtide_kafka.testing import event_problems, kafka_or_local, read_events

TOPIC = "logs.application"
SERVICE = "edge"
ROWS = [
    ("GET /", 200, 0.012),
    ("GET /cart", 200, 0.031),
    ("POST /pay", 502, 1.4),
    ("GET /", 304, 0.002),
]


def items(run_id: str) -> Iterator[Mapping[str, Any]]:
    """One event per access-log row, then an item that is not a mapping (counted, skipped)."""
    for path, status, seconds in ROWS:
        yield {
            "level": "error" if status >= 500 else "info",
            "message": f"{path} {status}",
            "service": SERVICE,
            "metadata": {"status": status, "seconds": seconds, "run_id": run_id},
            "time": time.time(),
        }
    yield "not an event"  # type: ignore[misc]


def run(servers: str) -> int:
    run_id = uuid.uuid4().hex[:12]
    logtide_kafka.configure(servers)
    sent = logtide_kafka.send_logs(items(run_id))
    print(f"run_id={run_id}: send_logs enqueued {sent} of {len(ROWS) + 1} items")
    logtide_kafka.flush(10)

    def this_run(event: dict[str, Any]) -> bool:
        metadata = event.get("metadata")
        return isinstance(metadata, dict) and metadata.get("run_id") == run_id

    try:
        events = read_events(servers, TOPIC, count=len(ROWS), where=this_run, timeout=30)
    except TimeoutError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    status = 0
    for event in events:
        value = event.value
        print(f"{value['time']} {value['level']:<5} {value['message']}")
        for problem in event_problems(value):
            print(f"FAILED: schema: {problem}", file=sys.stderr)
            status = 1
    stats = logtide_kafka.stats()
    print(f"enqueued={stats.enqueued} delivered={stats.delivered} failed={stats.failed}")
    if (sent, stats.failed) != (len(ROWS), 1):
        print("FAILED: expected every row sent and the bad item counted", file=sys.stderr)
        status = 1
    logtide_kafka.close_all()
    return status


def main() -> int:
    if not os.environ.get("KAFKA_BROKERS"):
        print("KAFKA_BROKERS is not set: starting a local Kafka broker...", flush=True)
    with kafka_or_local([TOPIC]) as servers:
        return run(servers)


if __name__ == "__main__":
    sys.exit(main())
