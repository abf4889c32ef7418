"""What the record headers cost per event, against a real Kafka broker.

Times, on the application thread, ``confluent_kafka.Producer.produce`` of one encoded
event: bare, and as ``LogProducer.send`` does it (a new ``event-id``, the header list,
``content-type``, ``schema-version`` and, for a traced event, ``traceparent``; under the
``spool`` policy also the per-event report callback that carries the id).  The
difference is the per-call cost of the headers.

Usage::

    python bench/bench_headers.py [--bootstrap HOST:PORT] [--records N] [--repeats R]

Without ``--bootstrap`` (or ``LOGTIDE_KAFKA_BOOTSTRAP``) a local Kafka broker is started.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import orjson

from logtide_kafka._headers import event_headers, new_event_id
from logtide_kafka.producer import LogProducer, resolve_config
from logtide_kafka.testing import create_topics, kafka_or_local

PLAIN: dict[str, Any] = {
    "time": "2025-01-01T00:00:00.000Z",
    "service": "checkout",
    "level": "info",
    "message": "order placed",
    "metadata": {"hostname": "web-1", "order": 1234},
}
TRACED = dict(PLAIN, trace_id="4bf92f3577b34da6a3ce929d0e0e4736", span_id="00f067aa0ba902b7")


def _cases(producer: LogProducer, topic: str, records: int) -> dict[str, Callable[[], None]]:
    produce = producer._producer.produce
    report = producer._on_report
    payload = orjson.dumps(PLAIN)

    def bare() -> None:
        for _ in range(records):
            produce(topic, payload, b"checkout")

    def with_headers(event: dict[str, Any], *, spool: bool = False) -> Callable[[], None]:
        def run() -> None:
            for _ in range(records):
                event_id = new_event_id()
                headers = event_headers(event, event_id)
                done = partial(report, event_id) if spool else None
                produce(topic, payload, b"checkout", on_delivery=done, headers=headers)

        return run

    return {
        "produce, no headers": bare,
        "produce + headers": with_headers(PLAIN),
        "produce + headers + traceparent": with_headers(TRACED),
        "+ traceparent, spool policy": with_headers(TRACED, spool=True),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=os.environ.get("LOGTIDE_KAFKA_BOOTSTRAP"))
    parser.add_argument("--records", type=int, default=30_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    topic = f"logs.bench-headers-{uuid.uuid4().hex[:8]}"
    if args.bootstrap:
        os.environ["KAFKA_BROKERS"] = args.bootstrap
    with kafka_or_local() as servers:
        create_topics(servers, [topic], partitions=3)
        producer = LogProducer(resolve_config(servers))
        cases = _cases(producer, topic, args.records)
        results: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.repeats):  # interleaved, so a busy moment hits every case
            for name, run in cases.items():
                gc.disable()
                started = time.perf_counter()
                run()
                elapsed = time.perf_counter() - started
                gc.enable()
                results[name].append(elapsed / args.records * 1e6)
                if producer.flush(60):
                    raise SystemExit("the broker did not take every event")
        producer.close(10)
    base = statistics.median(results["produce, no headers"])
    print(f"{args.records} calls x {args.repeats} repetitions, median µs per call:")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"  {name:34s} {median:6.2f}  (+{median - base:.2f})  min {min(values):.2f}")


if __name__ == "__main__":
    main()
