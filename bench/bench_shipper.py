"""The shipper at LogTide's full speed: LogTide's own capacity, the shipper into it, and the
shipper into a fast local sink, in one run (``make bench-shipper``).

1. **LogTide's capacity**: ready-made bodies of 1,000 entries posted straight to the real
   LogTide (``$LOGTIDE_API_URL``, ``$LOGTIDE_API_KEY``) by 1, 2, 4 and 8 concurrent clients;
   the best rate is LogTide's capacity on this machine.
2. **Shipper -> LogTide**: a :class:`~logtide_kafka.pipeline.shipper.Shipper` (its own process, so
   its CPU time and peak RSS are its own) ships a fresh topic of ``--events`` events into
   that same LogTide.  Loss and duplicates are counted in LogTide's database by the Kafka
   coordinates each entry carries (``psql``, as ``../shared/logtide/README.md`` shows).
3. **Shipper -> fast sink**: the same topic into ``tests/logtide_server.py`` (validation and
   200 answers, entries counted), running in a third process.  The sink's own rate and CPU
   per entry (ready-made bodies from 4 clients) are printed first: on 2 CPUs the sink and
   the shipper share the machine, so the sink bounds what the shipper can show.

The topic holds events as this library's producer writes them: LogTide-native JSON and the
producer's record headers (``event-id``...).  For each shipper run the steady-state CPU is
split by thread: the consumer thread (reading, normalising, batching), the posting
threads (HTTP), librdkafka's own threads, and this benchmark's polling of the metrics.

Rates are "steady": from the first accepted batch to the last (consumer-group join left
out; it is Kafka's, not the shipper's).  Targets, printed MET or MISSED: the shipper reaches
0.90x LogTide's capacity; into the fast sink, 70,000 events/s (the Fluent Bit in_kafka ->
out_http figure measured for issue 11 on this machine; Fluent Bit is not installable here,
so it is not re-measured); no loss and no duplicates.  Exit code 1 when a run is invalid.

Usage::

    python bench/bench_shipper.py [--events N] [--concurrency 4[,8...]] [--bootstrap H:P]
        [--capacity-requests N] [--no-logtide]

The real LogTide is rate-limited to 1,000 requests/minute per IP: one full run sends about
``4 * capacity-requests + events / 1000`` requests (~300).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import multiprocessing
import os
import platform
import resource
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

import httpx
import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from logtide_kafka._headers import event_headers, new_event_id
from logtide_kafka.pipeline._ingest import encode_body
from logtide_kafka.pipeline.shipper import (
    DEFAULT_CONCURRENCY,
    Shipper,
    ShipperConfig,
    _freeze_start_up_heap,
)
from logtide_kafka.testing import create_topics, kafka_or_local

# The test server is a test helper, not part of the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from logtide_server import LogTideServer

SINK_KEY: Final = "bench-key"
RUN_TIMEOUT: Final = 600.0
CAPACITY_LEVELS: Final = (1, 2, 4, 8)
BATCH: Final = 1000
#: Targets (issue 11).
SHARE_OF_CAPACITY: Final = 0.90
FAST_SINK_TARGET: Final = 70_000.0
#: The benchmark's polling of the shipper's metrics: its shortest and longest pause (s).
POLL_MIN: Final = 0.01
POLL_MAX: Final = 0.2
PSQL: Final = ["psql", "-h", "/tmp/logtide-run/pg", "-p", "54329", "-U", "postgres", "logtide"]


@dataclass(frozen=True)
class ShipRun:
    shipped: int
    steady_s: float
    total_s: float
    cpu_s: float
    peak_rss_mb: float
    retries: int
    requests: int
    valid: bool
    #: CPU us per event by thread group, from the first accepted batch to the last.
    by_thread: dict[str, float]

    def rate(self, events: int) -> float:
        return events / self.steady_s if self.steady_s > 0 else 0.0


def entry(service: str, i: int) -> dict[str, Any]:
    return {
        "time": "2025-11-25T08:30:03.214Z",
        "service": service,
        "level": "info",
        "message": f"order {i} checked out",
        "metadata": {
            "hostname": "bench-host",
            "logger": "bench.app",
            "function": "handle",
            "line": 42,
            "thread": "MainThread",
            "process": 4242,
            "order_id": f"A-{i}",
        },
    }


# -- the fast sink, in its own process ------------------------------------------------------


def serve(conn: Connection) -> None:
    """Child process: run the ingest server until the parent sends anything."""
    with LogTideServer(api_key=SINK_KEY, record=False) as server:
        conn.send(server.url)
        while conn.recv() == "pid":
            conn.send(os.getpid())
        conn.send(server.accepted_count)


@contextlib.contextmanager
def fast_sink() -> Iterator[tuple[str, Connection]]:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=serve, args=(child,), daemon=True)
    process.start()
    try:
        yield str(parent.recv()), parent
    finally:
        process.join(10)
        if process.is_alive():
            process.kill()


def sink_capacity(url: str, conn: Connection, requests: int) -> tuple[float, float]:
    """The fast sink's own rate and CPU per entry, for bodies like the shipper's (with
    ``metadata.kafka``) posted by 4 clients."""
    entries = []
    for i in range(BATCH):
        event = entry("bench-sink", i)
        event["metadata"]["kafka"] = {"topic": "logs.bench", "partition": i % 3, "offset": i}
        entries.append(orjson.dumps(event))
    body = encode_body(entries)
    headers = {"Content-Type": "application/json", "X-API-Key": SINK_KEY}
    ingest = url.rstrip("/") + "/api/v1/ingest"
    conn.send("pid")
    pid = int(conn.recv())
    with (
        httpx.Client(timeout=60, limits=httpx.Limits(max_connections=4)) as client,
        concurrent.futures.ThreadPoolExecutor(4) as pool,
    ):
        client.post(ingest, content=body, headers=headers)
        cpu_before = process_cpu(pid)
        started = time.perf_counter()
        list(
            pool.map(lambda _: client.post(ingest, content=body, headers=headers), range(requests))
        )
        elapsed = time.perf_counter() - started
        cpu = process_cpu(pid) - cpu_before
    return requests * BATCH / elapsed, cpu / (requests * BATCH) * 1e6


def process_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        text = stat.read()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the shipper, in its own process ------------------------------------------------------


def ship(conn: Connection, settings: dict[str, Any], events: int) -> None:
    """Child process: run a Shipper until it shipped ``events``; report time, CPU, RSS."""
    settings["topics"] = tuple(settings["topics"])
    shipper = Shipper(ShipperConfig(**settings))
    _freeze_start_up_heap()  # as `logtide-kafka ship` does
    consumer_tid: list[int] = []

    def run() -> None:
        consumer_tid.append(threading.get_native_id())
        shipper.run()

    thread = threading.Thread(target=run, daemon=True)
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    thread.start()
    first: float | None = None
    threads_at_first: dict[int, tuple[str, float]] = {}
    deadline = time.monotonic() + RUN_TIMEOUT
    shipped = first_count = 0
    while time.monotonic() < deadline:
        shipped = shipper.metrics()["events_shipped"]
        now = time.perf_counter()
        if shipped and first is None:
            first = now
            first_count = shipped
            threads_at_first = thread_cpu()
        if shipped >= events:
            break
        # The poll runs in the shipper's process (its CPU counts, and each wake-up takes
        # the GIL from the consumer thread): every 10 ms near the steady window's two ends,
        # seldom in between (a quarter of the time the rest should take, at most 0.2 s).
        pause = POLL_MIN
        if first is not None and shipped > first_count:
            rate = (shipped - first_count) / (now - first)
            pause = min(POLL_MAX, max(POLL_MIN, (events - shipped) / rate / 4))
        time.sleep(pause)
    finished = time.perf_counter()
    threads_at_end = thread_cpu()
    by_thread: dict[str, float] = {}
    for tid, (name, cpu) in threads_at_end.items():
        if tid == consumer_tid[0]:
            group = "consumer thread"
        elif tid == threading.get_native_id():
            group = "benchmark's poll"
        elif name.startswith("rdk:"):
            group = "librdkafka"
        else:
            group = "posting threads"
        spent = cpu - threads_at_first.get(tid, (name, 0.0))[1]
        by_thread[group] = by_thread.get(group, 0.0) + spent
    shipper.stop()
    thread.join(60)
    after = resource.getrusage(resource.RUSAGE_SELF)
    metrics = shipper.metrics()
    conn.send(
        {
            "shipped": shipped,
            "steady_s": finished - first if first is not None else 0.0,
            "total_s": finished - started,
            "cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
            "peak_rss_mb": after.ru_maxrss / 1024,
            "retries": metrics["retries"],
            "requests": metrics["requests"],
            "by_thread": {
                group: spent / max(1, events - first_count) for group, spent in by_thread.items()
            },
        }
    )


def thread_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds of each thread of this process, by thread id, with its name."""
    found = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as stat:
                text = stat.read()
        except OSError:  # the thread ended
            continue
        fields = text[text.rindex(")") + 2 :].split()
        found[int(tid)] = (
            text[text.index("(") + 1 : text.rindex(")")],
            (int(fields[11]) + int(fields[12])) / tick,
        )
    return found


def run_shipper(settings: dict[str, Any], events: int) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=ship, args=(child, settings, events))
    process.start()
    try:
        return dict(parent.recv())
    finally:
        process.join(90)
        if process.is_alive():
            process.kill()


def shipper_run(
    bootstrap: str, url: str, key: str, topic: str, events: int, *, concurrency: int
) -> tuple[ShipRun, str]:
    group = f"bench-{uuid.uuid4().hex[:10]}"
    settings = {
        "brokers": bootstrap,
        "api_url": url,
        "api_key": key,
        "group": group,
        "topics": [topic],
        "dlq_topic": f"{topic}.dlq",
        "batch_max_events": BATCH,
        "batch_max_wait": 0.5,
        "concurrency": concurrency,
    }
    report = run_shipper(settings, events)
    valid = report["shipped"] == events and committed_to_end(bootstrap, group, topic)
    run = ShipRun(
        report["shipped"],
        report["steady_s"],
        report["total_s"],
        report["cpu_s"],
        report["peak_rss_mb"],
        report["retries"],
        report["requests"],
        valid,
        report["by_thread"],
    )
    return run, group


# -- Kafka ---------------------------------------------------------------------------------


def produce(bootstrap: str, topic: str, events: int, service: str) -> None:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "queue.buffering.max.messages": 1_000_000}
    )
    failed: list[str] = []

    def report(error: object, _message: object) -> None:
        if error is not None:
            failed.append(str(error))

    for i in range(events):
        event = entry(service, i)
        # The record headers this library's producer writes (event-id: the shipper's
        # duplicate check reads it for every message).
        headers = event_headers(event, new_event_id())
        producer.produce(
            topic,
            orjson.dumps(event),
            key=b"bench-svc%d" % (i % 12),
            headers=headers,
            on_delivery=report,
        )
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


# -- the real LogTide ----------------------------------------------------------------------


def capacity(url: str, key: str, requests: int) -> dict[int, tuple[float, int]]:
    """Entries/s and non-200 answers at each concurrency, posting ready-made bodies."""
    service = f"bench-cap-{uuid.uuid4().hex[:8]}"
    body = orjson.dumps({"logs": [entry(service, i) for i in range(BATCH)]})
    headers = {"Content-Type": "application/json", "X-API-Key": key}
    ingest = url.rstrip("/") + "/api/v1/ingest"
    results: dict[int, tuple[float, int]] = {}
    for level in CAPACITY_LEVELS:
        limits = httpx.Limits(max_connections=level, max_keepalive_connections=level)
        with (
            httpx.Client(timeout=60, limits=limits) as client,
            concurrent.futures.ThreadPoolExecutor(level) as pool,
        ):
            client.post(ingest, content=body, headers=headers)  # warm the connection
            started = time.perf_counter()
            statuses = list(
                pool.map(
                    lambda _: client.post(ingest, content=body, headers=headers).status_code,
                    range(requests),
                )
            )
            elapsed = time.perf_counter() - started
        failed = sum(1 for status in statuses if status != 200)
        results[level] = ((requests - failed) * BATCH / elapsed, failed)
    return results


def stored(service: str) -> tuple[int, int] | None:
    """Rows LogTide stored for ``service`` and distinct Kafka coordinates among them."""
    query = (
        "SELECT count(*), count(DISTINCT (metadata->'kafka'->>'partition') || '/' || "
        f"(metadata->'kafka'->>'offset')) FROM logs WHERE service = '{service}'"
    )
    try:
        out = subprocess.run(
            [*PSQL, "-At", "-c", query], capture_output=True, text=True, timeout=120, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    rows, distinct = out.strip().split("|")
    return int(rows), int(distinct)


def wait_stored(service: str, events: int) -> tuple[int, int] | None:
    """LogTide writes asynchronously after answering: wait until the count settles."""
    last: tuple[int, int] | None = None
    for _ in range(30):
        found = stored(service)
        if found is None or (found == last and found[0] >= events):
            return found
        last = found
        time.sleep(1.0)
    return last


# -- the run -------------------------------------------------------------------------------


def report_capacity(found: dict[int, tuple[float, int]]) -> None:
    for level, (rate, failed) in found.items():
        extra = f" ({failed} non-200 answers)" if failed else ""
        print(f"  concurrency {level}: {rate:,.0f} entries/s{extra}")
    print(f"  capacity (best): {max(rate for rate, _ in found.values()):,.0f} entries/s")


def describe(name: str, run: ShipRun, events: int) -> str:
    return (
        f"{name}: {run.shipped:,} shipped, {run.rate(events):,.0f} events/s steady "
        f"({events / run.total_s:,.0f} end to end incl. group join), "
        f"CPU {run.cpu_s * 1e6 / events:.1f} us/event, peak RSS {run.peak_rss_mb:.0f} MB, "
        f"{run.requests} requests, {run.retries} retries"
        + ("" if run.valid else " INVALID (not all shipped or not committed to the end)")
        + "\n    steady-state CPU by thread, us/event: "
        + ", ".join(
            f"{group} {spent * 1e6:.1f}"
            for group, spent in sorted(run.by_thread.items(), key=lambda kv: -kv[1])
        )
    )


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def main() -> int:  # noqa: PLR0915 - one linear report
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--concurrency", default=str(DEFAULT_CONCURRENCY), help="e.g. 4 or 2,4,8")
    parser.add_argument("--capacity-requests", type=int, default=24)
    parser.add_argument("--no-logtide", action="store_true", help="only the fast sink")
    parser.add_argument("--bootstrap", default=os.environ.get("LOGTIDE_KAFKA_BOOTSTRAP"))
    args = parser.parse_args()
    levels = [int(value) for value in args.concurrency.split(",")]
    api_url = os.environ.get("LOGTIDE_API_URL")
    api_key = os.environ.get("LOGTIDE_API_KEY")
    real = not args.no_logtide and bool(api_url and api_key)
    events = args.events
    ok = True

    with contextlib.ExitStack() as stack:
        bootstrap = args.bootstrap or stack.enter_context(kafka_or_local())
        print(f"python {platform.python_version()}, {os.cpu_count()} CPUs (shared and noisy)")
        service = f"bench-ship-{uuid.uuid4().hex[:8]}"
        topic = f"logs.bench-ship-{uuid.uuid4().hex[:10]}"
        create_topics(bootstrap, [topic], partitions=3)
        began = time.perf_counter()
        produce(bootstrap, topic, events, service)
        print(f"produced {events:,} events to {topic} in {time.perf_counter() - began:.1f} s")

        if real:
            assert api_url is not None
            assert api_key is not None
            print(
                f"\n(a) LogTide's capacity at {api_url}: {args.capacity_requests} bodies of "
                f"{BATCH} per concurrency"
            )
            found = capacity(api_url, api_key, args.capacity_requests)
            report_capacity(found)
            best = max(rate for rate, _ in found.values())
            shipped: list[ShipRun] = []
            print(f"\n(b) shipper -> LogTide, {events:,} events")
            for concurrency in levels:
                # Each run (a new group) stores the whole topic again: the database check
                # below expects one copy per run, each Kafka message once per run.
                run, _group = shipper_run(
                    bootstrap, api_url, api_key, topic, events, concurrency=concurrency
                )
                print("  " + describe(f"concurrency {concurrency}", run, events))
                share = run.rate(events) / best
                shipped.append(run)
                print(
                    f"  {share:.2f}x LogTide's capacity (target {SHARE_OF_CAPACITY}x): "
                    f"{verdict(share >= SHARE_OF_CAPACITY)}"
                )
                ok &= run.valid and share >= SHARE_OF_CAPACITY
            # LogTide slows down as its tables grow and the machine is shared: measured
            # again after the shipper, and the target is checked against the best of both.
            print("  LogTide's capacity again, after the shipper:")
            after = capacity(api_url, api_key, args.capacity_requests)
            report_capacity(after)
            best_after = max(rate for rate, _ in after.values())
            if best_after > best:
                print(
                    f"  (higher than before: the shipper's {SHARE_OF_CAPACITY}x is now judged "
                    f"against {best_after:,.0f})"
                )
                for run in shipped:
                    ok &= run.valid and run.rate(events) / best_after >= SHARE_OF_CAPACITY
                    print(
                        f"  {run.rate(events) / best_after:.2f}x: "
                        f"{verdict(run.rate(events) / best_after >= SHARE_OF_CAPACITY)}"
                    )
            counted = wait_stored(service, events * len(levels))
            if counted is None:
                print("  LogTide's database not readable (psql): loss/duplicates unchecked")
                ok = False
            else:
                rows, distinct = counted
                expected = events * len(levels)
                exact = rows == expected and distinct == events
                print(
                    f"  LogTide stored {rows:,} rows for {len(levels)} run(s) "
                    f"(expected {expected:,}), {distinct:,} distinct Kafka coordinates "
                    f"(expected {events:,}): zero loss, zero duplicates "
                    f"{verdict(exact)}"
                )
                ok &= exact
        else:
            print(
                "\n(a)/(b) skipped: LOGTIDE_API_URL and LOGTIDE_API_KEY not set (or --no-logtide)"
            )

        print(f"\n(c) shipper -> fast local sink (tests/logtide_server.py), {events:,} events")
        with fast_sink() as (sink_url, sink_conn):
            rate, sink_cpu = sink_capacity(sink_url, sink_conn, args.capacity_requests * 2)
            sink_conn.send("stop")
            sink_conn.recv()
        print(
            f"  the sink alone (ready-made bodies of {BATCH}, 4 clients): {rate:,.0f} entries/s, "
            f"its CPU {sink_cpu:.1f} us/entry (the sink shares the 2 CPUs with the shipper)"
        )
        url, sink = stack.enter_context(fast_sink())
        for concurrency in levels:
            run, _group = shipper_run(
                bootstrap, url, SINK_KEY, topic, events, concurrency=concurrency
            )
            print("  " + describe(f"concurrency {concurrency}", run, events))
            fast = run.rate(events) >= FAST_SINK_TARGET
            print(
                f"  target {FAST_SINK_TARGET:,.0f} events/s (Fluent Bit's figure from issue "
                f"11, not re-measured: Fluent Bit is not installable here): {verdict(fast)}"
            )
            ok &= run.valid and fast
            # No retries means no request was sent twice: accepted == events is exact.
            ok &= run.retries == 0
        sink.send("stop")
        accepted = sink.recv()
        expected = events * len(levels)
        exact = accepted == expected
        print(
            f"  the sink accepted {accepted:,} entries (expected {expected:,}, no retries): "
            f"zero loss, zero duplicates {verdict(exact)}"
        )
        ok &= exact
    print(f"\noverall: {verdict(ok)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
