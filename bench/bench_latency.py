"""App-thread latency of one ``KafkaHandler`` log call, per backpressure policy, with the
broker up and with every broker down; and the RSS after 1,000,000 events logged during an
outage.

Each cell is one policy (``drop``, ``block``, ``spool``) in one broker state:

* ``up``: a real broker (``KAFKA_BROKERS``, else a local one started for the run), the
  library's default producer settings.  Warm-up, flush, then the timed calls.
* ``down``: bootstrap servers where nothing listens, and a local queue of
  ``queue.buffering.max.messages=10000`` (``DOWN_QUEUE``).  The warm-up fills that queue,
  so every timed call takes the full-queue path: ``drop`` counts the event, ``spool``
  writes it to disk, ``block`` waits ``--block-timeout`` (1 ms) and then drops it.
  ``block`` gets fewer timed calls (``--block-events``): each one is expected to take
  the whole timeout.

Every cell gets a fresh handler with its own producer (a unique ``client.id``) and times
each call ``logger.info("order %s placed", i, extra={...})`` alone with
``time.perf_counter_ns()``.  The floor is the same call on a logger whose handler's emit
does nothing (stdlib ``logging.Handler``), measured in every round.  Each round runs
every cell once, in a rotated order; the table shows the median over rounds of each
percentile (p50, p99, p99.9, max, in microseconds) and ratios to the floor's.

RSS: per policy (``drop``, ``spool``), a fresh subprocess with the library's default
producer settings (spool bound: ``SPOOL_MAX_BYTES``) logs ``--rss-events`` events to the
dead address and reports VmRSS from ``/proc/self/status`` before and after (and VmHWM,
the peak).  The app thread's context switches per call (``getrusage``) and the load
average are printed too: on a busy machine they explain most of the p99.

Usage::

    python bench/bench_latency.py [--events N] [--rounds R] [--quick]

Target (issue #4): p99 <= 50 us with the broker down under ``drop`` and ``spool``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import math
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version as metadata_version
from pathlib import Path
from typing import Any, Final, Literal

import confluent_kafka
from _common import NoopHandler, bench_logger
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from logtide_kafka import KafkaHandler, PublishOptions
from logtide_kafka.producer._policy import OnFull
from logtide_kafka.testing import kafka_or_local

State = Literal["up", "down"]

SERVICE: Final = "bench-svc"
POLICIES: Final[tuple[OnFull, ...]] = ("drop", "block", "spool")
#: librdkafka's queue bound in the ``down`` cells: small, so the warm-up fills it quickly.
DOWN_QUEUE: Final = 10_000
#: Large enough that no cell (nor the RSS run) reaches the spool's bound.
SPOOL_MAX_BYTES: Final = 2 * 2**30
TARGET_P99_US: Final = 50.0
#: Seconds a ``down`` cell's producer gets at close (nothing can be delivered anyway).
DOWN_CLOSE: Final = 0.5
UP_CLOSE: Final = 60.0
_QUIET = logging.getLogger("bench.client")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


@dataclass(frozen=True)
class Cell:
    """One measured configuration; ``policy`` None is the no-op floor."""

    policy: OnFull | None
    state: State
    events: int
    warmup: int

    @property
    def name(self) -> str:
        return "floor" if self.policy is None else f"{self.policy}/{self.state}"


@dataclass(frozen=True)
class Sample:
    """One round of one cell: percentiles (us) and the producer's counters over the calls."""

    p50: float
    p99: float
    p999: float
    max: float
    mean: float
    #: Share of the calls slower than the target (``TARGET_P99_US``).
    over_target: float
    #: The app thread's voluntary / involuntary context switches per timed call.
    waits: float
    preempted: float
    dropped: int = 0
    spooled: int = 0
    #: Timed calls that took the full-queue path (dropped or spooled).
    full_path: int = 0
    #: After the final flush (``up`` cells): events failed or still undelivered.
    failed: int = 0
    undelivered: int = 0


def percentile(ordered: Sequence[int], q: float) -> int:
    """Nearest-rank percentile of an ascending sequence (q in [0, 1])."""
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


def timed_calls(logger: logging.Logger, n: int) -> tuple[list[int], int, int]:
    """Call ``logger.info`` ``n`` times; return each call's duration in ns, and how often
    this thread waited (voluntary context switches: the GIL, a sleep, I/O) and was
    preempted (involuntary ones: the machine's other work) meanwhile."""
    durations = [0] * n
    info, clock = logger.info, time.perf_counter_ns
    gc.collect()  # start each series from the same heap state; gc stays enabled
    before = resource.getrusage(resource.RUSAGE_THREAD)
    for i in range(n):
        t0 = clock()
        info("order %s placed", i, extra={"order_id": i, "user": "u1"})
        durations[i] = clock() - t0
    after = resource.getrusage(resource.RUSAGE_THREAD)
    return durations, after.ru_nvcsw - before.ru_nvcsw, after.ru_nivcsw - before.ru_nivcsw


def untimed_calls(logger: logging.Logger, n: int) -> None:
    info = logger.info
    for i in range(n):
        info("order %s placed", i, extra={"order_id": i, "user": "u1"})


def summarize(
    durations: list[int], waits: int, preempted: int
) -> tuple[float, float, float, float, float, float, float, float]:
    """p50, p99, p99.9, max and mean in us; the share of calls over the target; waits and
    preemptions per call."""
    ordered = sorted(durations)
    n = len(durations)
    limit = TARGET_P99_US * 1e3
    return (
        percentile(ordered, 0.50) / 1e3,
        percentile(ordered, 0.99) / 1e3,
        percentile(ordered, 0.999) / 1e3,
        ordered[-1] / 1e3,
        sum(durations) / n / 1e3,
        sum(1 for d in durations if d > limit) / n,
        waits / n,
        preempted / n,
    )


def dead_address() -> str:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def make_handler(
    policy: OnFull,
    bootstrap: str,
    topic: str,
    *,
    producer_config: dict[str, Any],
    spool_dir: str | None,
    block_timeout: float,
) -> KafkaHandler:
    """A handler with its own producer (unique ``client.id``) under ``policy``."""
    config = {"client.id": f"bench-latency-{uuid.uuid4().hex[:12]}", **producer_config}
    options: PublishOptions = {
        "on_full": policy,
        "block_timeout": block_timeout,
        # No periodic stderr line from the poller while calls are timed; close prints one.
        "warn_interval": 3600.0,
    }
    if spool_dir is not None:
        options["spool_dir"] = spool_dir
        options["spool_max_bytes"] = SPOOL_MAX_BYTES
        options["spool_fsync"] = "interval"
    return KafkaHandler(
        SERVICE, topic=topic, bootstrap_servers=bootstrap, producer_config=config, **options
    )


def run_cell(cell: Cell, up: str, dead: str, topic: str, block_timeout: float) -> Sample:
    """Measure one cell with a fresh handler; close it (and remove its spool) after."""
    if cell.policy is None:
        logger = bench_logger("bench.latency.floor", NoopHandler())
        untimed_calls(logger, cell.warmup)
        return Sample(*summarize(*timed_calls(logger, cell.events)))
    down = cell.state == "down"
    config: dict[str, Any] = {"queue.buffering.max.messages": DOWN_QUEUE} if down else {}
    spool_dir = tempfile.mkdtemp(prefix="bench-spool-") if cell.policy == "spool" else None
    handler = make_handler(
        cell.policy,
        dead if down else up,
        topic,
        producer_config=config,
        spool_dir=spool_dir,
        block_timeout=block_timeout,
    )
    logger = bench_logger(f"bench.latency.{cell.policy}.{cell.state}", handler)
    producer = handler.producer
    try:
        untimed_calls(logger, cell.warmup)
        if not down:
            producer.flush(UP_CLOSE)  # start the timed calls from an empty queue
        before = producer.stats()
        latency = summarize(*timed_calls(logger, cell.events))
        after = producer.stats()
        dropped = after.dropped - before.dropped
        spooled = after.spooled - before.spooled
        failed = undelivered = 0
        if not down:
            undelivered = producer.flush(UP_CLOSE)
            failed = producer.stats().failed
        return Sample(*latency, dropped, spooled, dropped + spooled, failed, undelivered)
    finally:
        logger.removeHandler(handler)
        producer.close(DOWN_CLOSE if down else UP_CLOSE)
        handler.close()
        if spool_dir is not None:
            shutil.rmtree(spool_dir, ignore_errors=True)


# -- RSS during an outage, in a fresh process --------------------------------------------


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def rss_child(policy: OnFull, dead: str, events: int) -> int:
    """Log ``events`` events to ``dead`` with library defaults; print one JSON line."""
    spool_dir = tempfile.mkdtemp(prefix="bench-rss-spool-") if policy == "spool" else None
    handler = make_handler(
        policy,
        dead,
        "bench.latency.rss",
        producer_config={},
        spool_dir=spool_dir,
        block_timeout=0.1,
    )
    logger = bench_logger("bench.latency.rss", handler)
    producer = handler.producer
    try:
        untimed_calls(logger, 1000)  # the client's threads and buffers exist before "before"
        gc.collect()
        before = _status_kb("VmRSS")
        t0 = time.perf_counter()
        untimed_calls(logger, events)
        seconds = time.perf_counter() - t0
        gc.collect()
        after, peak = _status_kb("VmRSS"), _status_kb("VmHWM")
        s = producer.stats()
        print(
            json.dumps(
                {
                    "policy": policy,
                    "events": events,
                    "rss_before_kb": before,
                    "rss_after_kb": after,
                    "hwm_kb": peak,
                    "seconds": seconds,
                    "dropped": s.dropped,
                    "spooled": s.spooled,
                    "queued": s.queue_length,
                }
            ),
            flush=True,
        )
        return 0
    finally:
        logger.removeHandler(handler)
        producer.close(DOWN_CLOSE)
        handler.close()
        if spool_dir is not None:
            shutil.rmtree(spool_dir, ignore_errors=True)


def run_rss(policy: OnFull, dead: str, events: int) -> dict[str, Any]:
    """Run :func:`rss_child` in a fresh interpreter and return what it printed."""
    command = [sys.executable, __file__, "--rss-child", policy, "--dead", dead]
    command += ["--rss-events", str(events)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise RuntimeError(f"RSS run for {policy!r} failed:\n{done.stdout}\n{done.stderr}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# -- the report ---------------------------------------------------------------------------


def _median(samples: list[Sample], attr: str) -> float:
    return float(statistics.median(float(getattr(s, attr)) for s in samples))


def report(cells: list[Cell], samples: dict[str, list[Sample]], rss: list[dict[str, Any]]) -> bool:
    """Print the markdown tables and the verdict; return whether the run is valid."""
    floor = samples["floor"]
    f50, f99 = _median(floor, "p50"), _median(floor, "p99")
    print(
        "\n| policy | broker | timed calls | p50 µs | p99 µs | p99.9 µs | max µs | mean µs "
        f"| > {TARGET_P99_US:.0f} µs | waits | preempted | p50 x floor | p99 x floor "
        "| dropped | spooled | full-queue path |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    valid = True
    for cell in cells:
        runs = samples[cell.name]
        p50, p99 = _median(runs, "p50"), _median(runs, "p99")
        p999, top = _median(runs, "p999"), _median(runs, "max")
        if cell.policy is None:
            extra = "| 1.00 | 1.00 | - | - | - |"
        else:
            full = _median(runs, "full_path") / cell.events
            extra = (
                f"| {p50 / f50:.2f} | {p99 / f99:.2f} | {_median(runs, 'dropped'):,.0f} "
                f"| {_median(runs, 'spooled'):,.0f} | {full:.0%} |"
            )
        label = "no-op handler (floor)" if cell.policy is None else f"`{cell.policy}`"
        state = "-" if cell.policy is None else cell.state
        print(
            f"| {label} | {state} | {cell.events:,} | {p50:.2f} | {p99:.2f} | {p999:.2f} "
            f"| {top:,.0f} | {_median(runs, 'mean'):.2f} | {_median(runs, 'over_target'):.2%} "
            f"| {_median(runs, 'waits'):.2%} | {_median(runs, 'preempted'):.2%} {extra}"
        )
    print("\n(medians over rounds of each round's value, in µs unless a share)")
    print(f" > {TARGET_P99_US:.0f} µs: share of calls slower than the target")
    print(" waits / preempted: the app thread's voluntary (GIL, sleep, I/O) / involuntary")
    print("   (the machine's other work) context switches, per call")
    print(" dropped, spooled: the producer's counters over the timed calls")
    print(" full-queue path: share of the timed calls that were dropped or spooled")
    print(f" down cells: queue.buffering.max.messages={DOWN_QUEUE:,}, filled by the warm-up")
    problems = []
    for cell in cells:
        for s in samples[cell.name]:
            if cell.state == "up" and cell.policy is not None and (s.failed or s.undelivered):
                problems.append(f"{cell.name}: failed={s.failed} undelivered={s.undelivered}")
            if cell.state == "down" and s.full_path != cell.events:
                problems.append(f"{cell.name}: {s.full_path:,} of {cell.events:,} hit full path")
    if problems:
        valid = False
        print("\nINVALID rounds:\n  " + "\n  ".join(problems))
    else:
        print(
            "\nchecks: every up cell delivered every event; every timed down-cell call took "
            "the full-queue path"
        )
    if rss:
        print(
            "\n| policy | events during outage | RSS before MB | RSS after MB | Δ MB | peak MB "
            "| dropped | spooled | queued | mean µs/event |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in rss:
            b, a, h = r["rss_before_kb"] / 1024, r["rss_after_kb"] / 1024, r["hwm_kb"] / 1024
            print(
                f"| `{r['policy']}` | {r['events']:,} | {b:.1f} | {a:.1f} | {a - b:+.1f} "
                f"| {h:.1f} | {r['dropped']:,} | {r['spooled']:,} | {r['queued']:,} "
                f"| {r['seconds'] / r['events'] * 1e6:.1f} |"
            )
        print("(fresh process each, library default producer settings, dead bootstrap)")
    print()
    for policy in ("drop", "spool"):
        p99 = _median(samples[f"{policy}/down"], "p99")
        verdict = "PASS" if p99 <= TARGET_P99_US else "MISS"
        print(
            f"verdict: p99 with every broker down, {policy:<5} = {p99:6.2f} µs "
            f"(target <= {TARGET_P99_US:.0f} µs): {verdict}"
        )
    return valid


def _load() -> str:
    """The 1, 5 and 15 minute load averages: the noise the percentiles were taken under."""
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=200_000, help="timed calls per cell")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (medians reported)")
    parser.add_argument(
        "--block-events", type=int, default=2_000, help="timed calls of the block/down cell"
    )
    parser.add_argument("--block-timeout", type=float, default=0.001, help="seconds")
    parser.add_argument("--rss-events", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="small numbers: a smoke run")
    parser.add_argument("--rss-child", choices=["drop", "spool"], help=argparse.SUPPRESS)
    parser.add_argument("--dead", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        return rss_child(args.rss_child, args.dead or dead_address(), args.rss_events)
    if args.quick:
        args.events, args.rounds, args.block_events = 5_000, 1, 100
        args.rss_events = 50_000
    n, warmup = args.events, min(args.events, 10_000)
    cells = [Cell(None, "up", n, warmup)]
    cells += [Cell(p, "up", n, warmup) for p in POLICIES]
    # Down: the warm-up fills the queue, then a little more, so every timed call is full.
    cells += [
        Cell(p, "down", args.block_events if p == "block" else n, DOWN_QUEUE + 1_000)
        for p in POLICIES
    ]
    dead = dead_address()
    topic = f"bench.latency.{uuid.uuid4().hex[:8]}"
    external = os.environ.get("KAFKA_BROKERS")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with kafka_or_local([topic]) as bootstrap:
        print(f"Kafka:            {'KAFKA_BROKERS' if external else 'local broker'} {bootstrap}")
        print(f"dead address:     {dead} (nothing listens)")
        print(
            f"confluent-kafka:  {metadata_version('confluent-kafka')}, "
            f"librdkafka {confluent_kafka.libversion()[0]}"
        )
        print(
            f"Python:           {platform.python_implementation()} {platform.python_version()} "
            f"on {platform.machine()}, {cpus} usable CPU(s)"
        )
        print(
            f"cells:            {n:,} timed calls ({args.block_events:,} for block/down, "
            f"block_timeout={args.block_timeout * 1e3:g} ms), {args.rounds} round(s); spool: "
            f"temp dir under {tempfile.gettempdir()}, fsync interval"
        )
        print(f"load average:     {_load()} before the cells")
        samples: dict[str, list[Sample]] = {c.name: [] for c in cells}
        try:
            for r in range(args.rounds):  # rotate the order so no cell always goes first
                for cell in cells[r % len(cells) :] + cells[: r % len(cells)]:
                    s = run_cell(cell, bootstrap, dead, topic, args.block_timeout)
                    samples[cell.name].append(s)
                    print(
                        f"  round {r + 1}/{args.rounds} {cell.name:<11} p50={s.p50:7.2f} "
                        f"p99={s.p99:8.2f} p99.9={s.p999:9.2f} max={s.max:10,.0f} us "
                        f"waits={s.waits:.2%} preempted={s.preempted:.2%} "
                        f"dropped={s.dropped:,} spooled={s.spooled:,}",
                        flush=True,
                    )
            print(f"load average:     {_load()} after the cells")
        finally:
            if external:
                admin_config: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": _QUIET}
                admin = AdminClient(admin_config)  # must outlive the futures
                for future in admin.delete_topics([topic]).values():
                    with contextlib.suppress(KafkaException):
                        future.result(timeout=30)
    rss: list[dict[str, Any]] = []
    for policy in ("drop", "spool"):
        print(f"  RSS: {args.rss_events:,} events, policy {policy}, fresh process", flush=True)
        rss.append(run_rss(policy, dead, args.rss_events))
    return 0 if report(cells, samples, rss) else 1


if __name__ == "__main__":
    sys.exit(main())
