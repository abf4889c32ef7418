"""Forked children of a process that uses the library: ``python fork_sigterm.py SCENARIO
BOOTSTRAP [COUNT [TOPIC]]`` prints one JSON line ``{"exitcodes": [...], "survivors": N}``.

- ``early``: COUNT children are terminated right after ``start()``, as ``Pool.terminate()``
  does to a worker the pool has just replaced.  The process runs on one CPU, so a child
  has usually not run yet when its SIGTERM arrives.
- ``garbage``: closed producers are garbage (not yet collected) when a child is forked;
  the child starts its own client, then collects that garbage.
- ``replaced``: COUNT times, a pool worker dies and ``Pool.terminate()`` is called as soon
  as the pool has forked its replacement (one CPU); the exit codes are the replacements'.
  The first one that survives ends the run.
- ``blocked``: COUNT children each send EVENTS events (still queued: a long linger), then
  take SIGTERM on a thread of their own while the main thread waits in a lock: the
  Python handler is due, but nothing wakes the main thread (as when the signal lands
  just before it blocks).

A child still alive after its bound is counted as a survivor, then killed.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import signal
import sys
import threading
import time

from logtide_kafka import get_producer

JOIN_SECONDS = 10
#: Events each ``blocked`` child sends before its SIGTERM.
EVENTS = 20
#: Where ``garbage``'s parent sends (the test passes a topic of its own, so no other test
#: reads these events).
TOPIC = sys.argv[4] if len(sys.argv) > 4 else "logs.application"


def _sleep() -> None:
    # Short sleeps: a signal that lands just before one starts is taken at the next, so
    # only a signal lost for good keeps this child alive.
    for _ in range(600):
        time.sleep(0.1)


def _collect_in_child(bootstrap: str) -> None:
    producer = get_producer(bootstrap)  # the child's own client, started now
    producer.send(TOPIC, None, {"message": "from the child"})
    gc.collect()  # finds the parent's closed producer and its client


def _wait(process: multiprocessing.process.BaseProcess) -> int | None:
    process.join(JOIN_SECONDS)
    if process.exitcode is None and process.pid is not None:
        os.kill(process.pid, signal.SIGKILL)
        process.join()
        return None
    return process.exitcode


def early(bootstrap: str, count: int) -> list[int | None]:
    get_producer(bootstrap)  # installs the library's SIGTERM handler
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    context = multiprocessing.get_context("fork")
    codes = []
    for _ in range(count):
        child = context.Process(target=_sleep)
        child.start()
        child.terminate()
        codes.append(_wait(child))
    return codes


def garbage(bootstrap: str, count: int) -> list[int | None]:
    context = multiprocessing.get_context("fork")
    codes = []
    for _ in range(count):
        gc.disable()  # the closed producers below stay garbage until the child collects
        for _ in range(3):  # one alone did not crash the child here; three always did
            producer = get_producer(bootstrap)
            producer.send(TOPIC, None, {"message": "from the parent"})
            producer.close(1)
            del producer
        child = context.Process(target=_collect_in_child, args=(bootstrap,))
        child.start()
        codes.append(_wait(child))
        gc.enable()
        gc.collect()
    return codes


def _new_child(before: set[int | None]) -> multiprocessing.process.BaseProcess:
    deadline = time.monotonic() + JOIN_SECONDS
    while time.monotonic() < deadline:
        for child in multiprocessing.active_children():
            if child.pid not in before:
                return child
    raise RuntimeError("the pool did not replace its worker")


def replaced(bootstrap: str, count: int) -> list[int | None]:
    get_producer(bootstrap)  # installs the library's SIGTERM handler
    if hasattr(os, "sched_setaffinity"):  # one CPU: the pool's threads and workers interleave
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    context = multiprocessing.get_context("fork")
    codes: list[int | None] = []
    for _ in range(count):
        pool = context.Pool(2)
        before = {child.pid for child in multiprocessing.active_children()}
        pool.apply_async(os._exit, (1,))  # the worker that runs it dies; the pool forks another
        replacement = _new_child(before)
        terminating = threading.Thread(target=pool.terminate, daemon=True)
        terminating.start()
        terminating.join(JOIN_SECONDS)
        if terminating.is_alive():  # a worker survived its one SIGTERM: terminate() waits
            for child in multiprocessing.active_children():
                if child.pid is not None:
                    os.kill(child.pid, signal.SIGKILL)
            terminating.join()
            codes.append(None)
            break
        codes.append(replacement.exitcode)
    return codes


def _sigterm_here_soon() -> None:
    time.sleep(0.5)  # the main thread is in lock.acquire() by then
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)


def _send_then_block(bootstrap: str) -> None:
    # The child's own client (a linger longer than the test: only the exit flush sends).
    producer = get_producer(bootstrap, {"linger.ms": 60_000})
    for index in range(EVENTS):
        producer.send(TOPIC, None, {"message": "from a blocked child", "seq": index})
    lock = threading.Lock()
    lock.acquire()
    threading.Thread(target=_sigterm_here_soon, daemon=True).start()
    lock.acquire()  # forever, unless a signal interrupts it (and its handler raises)


def blocked(bootstrap: str, count: int) -> list[int | None]:
    get_producer(bootstrap)  # installs the library's SIGTERM handler
    context = multiprocessing.get_context("fork")
    codes = []
    for _ in range(count):
        child = context.Process(target=_send_then_block, args=(bootstrap,))
        child.start()
        codes.append(_wait(child))
    return codes


if __name__ == "__main__":
    scenario, servers = sys.argv[1], sys.argv[2]
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    scenarios = {"early": early, "garbage": garbage, "replaced": replaced, "blocked": blocked}
    exitcodes = scenarios[scenario](servers, count)
    survivors = sum(code is None for code in exitcodes)
    print(json.dumps({"exitcodes": exitcodes, "survivors": survivors}), flush=True)
