"""Forked children of a process that uses the library: ``python fork_sigterm.py SCENARIO
BOOTSTRAP [COUNT [TOPIC]]`` prints one JSON line ``{"exitcodes": [...], "survivors": N}``.

- ``early``: COUNT children are terminated right after ``start()``, as ``Pool.terminate()``
  does to a worker the pool has just replaced.  The process runs on one CPU, so a child
  has usually not run yet when its SIGTERM arrives.
- ``garbage``: closed producers are garbage (not yet collected) when a child is forked;
  the child starts its own client, then collects that garbage.

A child still alive after its bound is counted as a survivor, then killed.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import signal
import sys
import time

from logtide_kafka import get_producer

JOIN_SECONDS = 10
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


if __name__ == "__main__":
    scenario, servers = sys.argv[1], sys.argv[2]
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    exitcodes = {"early": early, "garbage": garbage}[scenario](servers, count)
    survivors = sum(code is None for code in exitcodes)
    print(json.dumps({"exitcodes": exitcodes, "survivors": survivors}), flush=True)
