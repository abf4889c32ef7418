"""Forked processes against a real broker: each child gets its own client, nothing hangs,
and nothing the parent had queued at the fork is delivered twice."""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import logging
import multiprocessing
import multiprocessing.pool
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from logtide_kafka import KafkaHandler
from logtide_kafka.testing import ConsumedEvent, event_problems, read_events

TESTS_DIR = Path(__file__).resolve().parent
POOL_WORKERS = 3
PER_TASK = 400
PARENT_BEFORE = 50
PARENT_AFTER = 30
#: How long terminate() may take before the workers still alive are dumped and killed.
TERMINATE_SECONDS = 60


def _all_events(servers: str, topic: str, service: str, expected: int) -> list[ConsumedEvent]:
    """Wait for ``expected`` events of ``service``, then read the topic to its end: every
    event of the service there is, duplicates included."""
    read_events(servers, topic, count=expected, timeout=60, where=lambda e: e["service"] == service)
    events = read_events(servers, topic, timeout=60, where=lambda e: e["service"] == service)
    for event in events:
        assert event_problems(event.value) == [], event.value
    return events


class TaskResult(NamedTuple):
    pid: int
    enqueued: int
    remaining: int
    poller_alive: bool


def _log_in_pool_worker(args: tuple[str, int]) -> TaskResult:
    """Runs in a pool worker: log through the handler inherited from the parent."""
    logger_name, first = args
    log = logging.getLogger(logger_name)
    for seq in range(first, first + PER_TASK):
        log.info("from a pool worker", extra={"seq": seq})
    (handler,) = (h for h in log.handlers if isinstance(h, KafkaHandler))
    # multiprocessing ends its workers without running exit hooks: flush here.
    remaining = handler.producer.flush(30)
    poller = any(t.name == "logtide-kafka-poller" and t.is_alive() for t in threading.enumerate())
    return TaskResult(os.getpid(), handler.stats().enqueued, remaining, poller)


def _dumps_stacks() -> None:
    """Pool initializer: SIGUSR1 writes the worker's Python stacks to stderr."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)


def _status(pid: int) -> str:
    """A process's state and signal masks, from /proc (empty where there is none)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return ""
    keep = ("State", "Threads", "SigPnd", "ShdPnd", "SigBlk", "SigCgt")
    return " ".join(line.replace("\t", "") for line in lines if line.split(":")[0] in keep)


def _terminate(pool: multiprocessing.pool.Pool) -> None:
    """``pool.terminate()``, which waits for every worker without a bound: a worker that
    survives its SIGTERM hung the whole suite once.  After TERMINATE_SECONDS, dump the
    stacks of the workers still alive (to the captured stderr), kill them and fail."""
    terminating = threading.Thread(target=pool.terminate, daemon=True)
    terminating.start()
    terminating.join(TERMINATE_SECONDS)
    if not terminating.is_alive():
        return
    alive = [p.pid for p in multiprocessing.active_children() if p.pid is not None]
    survivors = {pid: _status(pid) for pid in alive}
    for pid in alive:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGUSR1)
    time.sleep(1)  # for the dumps
    for pid in alive:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    terminating.join(30)
    raise AssertionError(
        f"Pool.terminate() still waiting after {TERMINATE_SECONDS}s; workers alive (their "
        f"stacks are in the captured stderr), now killed: {survivors}"
    )


def test_a_fork_pool_delivers_every_event_once(
    kafka_bootstrap: str, topic: str, service: str, logger: logging.Logger
) -> None:
    # A long linger keeps the parent's events queued while the pool forks its workers.
    handler = KafkaHandler(
        service, topic=topic, bootstrap_servers=kafka_bootstrap, producer_config={"linger.ms": 4000}
    )
    logger.addHandler(handler)
    for seq in range(PARENT_BEFORE):
        logger.info("parent before fork", extra={"seq": seq})
    queued_at_fork = handler.stats().queue_length
    tasks = [(logger.name, 10_000 * (n + 1)) for n in range(POOL_WORKERS)]
    # The library keeps the parent's clients from a child's garbage collector, but only
    # those it still tracks: the autouse fixture made it forget earlier tests' producers.
    # Collected in a worker, those would crash or hang it; collect them here, in their process.
    gc.collect()
    started = time.monotonic()
    pool = multiprocessing.get_context("fork").Pool(POOL_WORKERS, initializer=_dumps_stacks)
    try:
        pending = pool.map_async(_log_in_pool_worker, tasks, chunksize=1)
        # The parent keeps logging while its children do.
        for seq in range(PARENT_BEFORE, PARENT_BEFORE + PARENT_AFTER):
            logger.info("parent after fork", extra={"seq": seq})
        results = pending.get(timeout=90)  # raises TimeoutError rather than hanging
    finally:
        _terminate(pool)  # as leaving ``with Pool()`` does, but bounded
    elapsed = time.monotonic() - started
    assert handler.producer.flush(30) == 0

    assert queued_at_fork >= PARENT_BEFORE  # the fork really happened with events queued
    assert all(r.remaining == 0 and r.poller_alive for r in results), results
    assert all(r.pid != os.getpid() for r in results)
    # A child's counters start at zero: it never counts (or sends) the parent's queue.
    for pid in {r.pid for r in results}:
        runs = [r for r in results if r.pid == pid]
        assert max(r.enqueued for r in runs) == PER_TASK * len(runs)
    stats = handler.stats()
    parent_total = PARENT_BEFORE + PARENT_AFTER
    assert (stats.enqueued, stats.delivered, stats.failed, stats.dropped) == (
        parent_total,
        parent_total,
        0,
        0,
    )

    expected = list(range(parent_total)) + [
        seq for _, first in tasks for seq in range(first, first + PER_TASK)
    ]
    events = _all_events(kafka_bootstrap, topic, service, len(expected))
    seqs = [e.value["metadata"]["seq"] for e in events]
    duplicates = sum(n - 1 for n in Counter(seqs).values())
    print(
        f"\nfork pool: {len(expected)} events expected, {len(seqs)} read, "
        f"{duplicates} duplicate(s), {queued_at_fork} queued at fork, "
        f"pool ran {elapsed:.1f}s, worker pids {sorted({r.pid for r in results})}"
    )
    assert sorted(seqs) == sorted(expected)
    by_pid = {e.value["metadata"]["seq"]: e.value["metadata"]["process"] for e in events}
    assert all(by_pid[seq] == os.getpid() for seq in range(parent_total))
    # One service is one key, so one partition: each process's events keep their order.
    assert [s for s in seqs if s < parent_total] == list(range(parent_total))
    for _, first in tasks:
        assert [s for s in seqs if first <= s < first + PER_TASK] == list(
            range(first, first + PER_TASK)
        )


REQUESTS = 200
MASTER_EVENTS = 20


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
        return body.decode()


def _wait_until_serving(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until gunicorn has booted both workers and answers ``url``."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited with {process.returncode}:\n{log.read_text()}")
        if log.read_text().count("Booting worker with pid") >= 2:
            with contextlib.suppress(OSError):
                _get(url)
                return
        time.sleep(0.1)
    raise AssertionError(f"gunicorn not serving after 60s:\n{log.read_text()}")


def test_gunicorn_preload_workers_deliver_every_event_once(
    kafka_bootstrap: str, topic: str, service: str, tmp_path: Path
) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "gunicorn.log"
    env = dict(
        os.environ,
        LOGTIDE_TEST_BOOTSTRAP=kafka_bootstrap,
        LOGTIDE_TEST_TOPIC=topic,
        LOGTIDE_TEST_SERVICE=service,
        LOGTIDE_TEST_MASTER_EVENTS=str(MASTER_EVENTS),
    )
    command = [
        *(sys.executable, "-m", "gunicorn", "--preload", "-w", "2"),
        *("-b", f"127.0.0.1:{port}", "--chdir", str(TESTS_DIR), "--graceful-timeout", "20"),
        "apps.gunicorn_app:app",
    ]
    with open(log_path, "wb") as out:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        _wait_until_serving(f"{base}/health", process, log_path)
        ids = [f"req-{n:04d}" for n in range(REQUESTS)]
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            pids = list(pool.map(lambda i: int(_get(f"{base}/log?id={i}")), ids))
        serving = time.monotonic() - started
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=60)  # a deadlocked worker would fail here
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log_path.read_text()
    assert returncode == 0, output
    assert "not delivered" not in output, output
    answered = dict(zip(ids, pids, strict=True))
    assert len(set(pids)) == 2, pids  # both workers served requests ...
    assert process.pid not in pids  # ... and the master none
    queued = [int(n) for n in re.findall(r"^queued-at-fork (\d+)$", output, re.M)]
    assert len(queued) == 2, output  # one fork per worker, none after (no worker died)
    assert queued[0] >= MASTER_EVENTS, output  # the master's events were queued at the fork

    events = _all_events(kafka_bootstrap, topic, service, REQUESTS + MASTER_EVENTS)
    master = [e.value for e in events if e.value["message"] == "master before fork"]
    requests = [e.value for e in events if e.value["message"] == "request handled"]
    print(
        f"\ngunicorn: {len(requests)} request events for {REQUESTS} requests, "
        f"{len(master)} master events of {MASTER_EVENTS}, {len(events)} in all, "
        f"{queued} queued at each fork, {REQUESTS} requests in {serving:.1f}s"
    )
    assert len(events) == len(master) + len(requests)
    assert sorted(e["metadata"]["master_seq"] for e in master) == list(range(MASTER_EVENTS))
    assert all(e["metadata"]["process"] == process.pid for e in master)
    assert sorted(e["metadata"]["request_id"] for e in requests) == ids
    # Each request's event came from the worker that answered it.
    assert all(e["metadata"]["process"] == answered[e["metadata"]["request_id"]] for e in requests)
