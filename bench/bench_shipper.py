"""Throughput of the Kafka -> LogTide shipper against a real broker and a local ingest server.

Produces ``--events`` LogTide-native events (shaped like ``KafkaHandler``'s) to a fresh
3-partition topic, then runs one :class:`~logtide_kafka.shipper.Shipper` per repetition,
each in a new consumer group so it ships the whole topic from the start, against the
LogTide-compatible test server (``tests/logtide_server.py``: validation and 200 answers,
entries counted, not kept) running in its own process.  Prints events/s per run and the
median of ``--repeats`` runs: end to end (from ``run()`` to the last event accepted, group
join included) and steady state (from the first accepted batch to the last).

A run that ships fewer events than produced, or whose committed offsets do not reach the
end of the topic, is reported as INVALID and the exit code is 1.

Usage::

    python bench/bench_shipper.py [--events N] [--repeats R] [--batch N] [--bootstrap HOST:PORT]

Without ``--bootstrap`` (default: ``$LOGTIDE_KAFKA_BOOTSTRAP``) or ``KAFKA_BROKERS``, a local
Kafka broker is started.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Final

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from logtide_kafka.shipper import Shipper, ShipperConfig
from logtide_kafka.testing import create_topics, kafka_or_local

# The test server is a test helper, not part of the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from logtide_server import LogTideServer

API_KEY: Final = "bench-key"
RUN_TIMEOUT: Final = 600.0


@dataclass(frozen=True)
class Run:
    shipped: int
    total_s: float
    steady_s: float
    valid: bool

    def rate(self, events: int) -> float:
        return events / self.total_s

    def steady_rate(self, events: int, first_batch: int) -> float:
        return (events - first_batch) / self.steady_s if self.steady_s > 0 else float("nan")


def serve(conn: Connection) -> None:
    """Child process: run the ingest server until the parent sends anything."""
    with LogTideServer(api_key=API_KEY, record=False) as server:
        conn.send(server.url)
        conn.recv()
        conn.send(server.accepted_count)


@contextlib.contextmanager
def ingest_server() -> Iterator[tuple[str, Connection]]:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=serve, args=(child,), daemon=True)
    process.start()
    try:
        url = parent.recv()
        yield str(url), parent
    finally:
        process.join(10)
        if process.is_alive():
            process.kill()


def produce(bootstrap: str, topic: str, events: int) -> None:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "queue.buffering.max.messages": 1_000_000}
    )
    failed: list[str] = []

    def report(error: object, _message: object) -> None:
        if error is not None:
            failed.append(str(error))

    template = {
        "time": "2025-11-25T08:30:03.214Z",
        "service": "bench-svc",
        "level": "info",
        "message": "",
        "metadata": {
            "hostname": "bench-host",
            "logger": "bench.app",
            "function": "handle",
            "line": 42,
            "thread": "MainThread",
            "process": 4242,
            "order_id": "",
        },
    }
    for i in range(events):
        template["message"] = f"order {i} checked out"
        template["metadata"]["order_id"] = f"A-{i}"  # type: ignore[index]
        producer.produce(topic, orjson.dumps(template), key=b"bench-svc%d" % (i % 12))
        producer.poll(0)
    if producer.flush(120) or failed:
        raise RuntimeError(f"producing failed: {failed[:3]}")


def committed_to_end(bootstrap: str, group: str, topic: str) -> bool:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        tps = [TopicPartition(topic, p) for p in partitions]
        offsets = {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=10)}
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1] for p in partitions
        }
        return all(offsets[p] == end for p, end in ends.items() if end > 0)
    finally:
        consumer.close()


def one_run(bootstrap: str, url: str, topic: str, events: int, batch: int) -> Run:
    config = ShipperConfig(
        brokers=bootstrap,
        api_url=url,
        api_key=API_KEY,
        group=f"bench-{uuid.uuid4().hex[:10]}",
        topics=(topic,),
        dlq_topic=f"{topic}.dlq",
        batch_max_events=batch,
        batch_max_wait=0.5,
    )
    shipper = Shipper(config)
    thread = threading.Thread(target=shipper.run, daemon=True)
    started = time.perf_counter()
    thread.start()
    first_batch_at: float | None = None
    deadline = time.monotonic() + RUN_TIMEOUT
    shipped = 0
    while time.monotonic() < deadline:
        shipped = shipper.metrics()["events_shipped"]
        if shipped and first_batch_at is None:
            first_batch_at = time.perf_counter()
        if shipped >= events:
            break
        time.sleep(0.005)
    finished = time.perf_counter()
    shipper.stop()
    thread.join(60)
    valid = shipped == events and committed_to_end(bootstrap, config.group, topic)
    steady = finished - first_batch_at if first_batch_at is not None else 0.0
    return Run(shipped, finished - started, steady, valid)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1000, help="batch_max_events (<= 1000)")
    parser.add_argument("--bootstrap", default=os.environ.get("LOGTIDE_KAFKA_BOOTSTRAP"))
    args = parser.parse_args()

    with contextlib.ExitStack() as stack:
        bootstrap = args.bootstrap or stack.enter_context(kafka_or_local())
        topic = f"logs.bench-ship-{uuid.uuid4().hex[:10]}"
        create_topics(bootstrap, [topic], partitions=3)
        began = time.perf_counter()
        produce(bootstrap, topic, args.events)
        print(f"produced {args.events} events to {topic} in {time.perf_counter() - began:.1f} s")
        url, server = stack.enter_context(ingest_server())
        print(
            f"python {platform.python_version()}, {os.cpu_count()} CPUs, "
            f"batch_max_events={args.batch}, server {url}"
        )
        runs = []
        for index in range(args.repeats):
            run = one_run(bootstrap, url, topic, args.events, args.batch)
            runs.append(run)
            status = "ok" if run.valid else "INVALID"
            print(
                f"run {index + 1}: {run.shipped} shipped in {run.total_s:.2f} s = "
                f"{run.rate(args.events):,.0f} events/s end to end, "
                f"{run.steady_rate(args.events, args.batch):,.0f} events/s steady ({status})"
            )
        server.send("stop")
        accepted = server.recv()
    median = statistics.median(run.rate(args.events) for run in runs)
    steady = statistics.median(run.steady_rate(args.events, args.batch) for run in runs)
    print(f"median of {len(runs)}: {median:,.0f} events/s end to end, {steady:,.0f} steady")
    expected = args.events * len(runs)
    print(f"server accepted {accepted} entries (expected {expected})")
    return 0 if all(run.valid for run in runs) and accepted == expected else 1


if __name__ == "__main__":
    sys.exit(main())
