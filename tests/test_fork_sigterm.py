"""Forked children of a process whose SIGTERM handler is the library's: a child terminated
as soon as it is started still ends, a pool terminated just after it replaced a worker
ends, a child whose main thread sleeps through its SIGTERM still flushes and ends, and a
child never destroys the parent's clients."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from apps.fork_sigterm import EVENTS

from logtide_kafka.testing import read_events

APP = Path(__file__).resolve().parent / "apps" / "fork_sigterm.py"
CHILDREN = 8
#: Pools replaced-then-terminated.  Before the fix a worker survived within 2 to 121
#: rounds (eight runs), so 200 passing rounds are not luck.
POOLS = 200
#: Children that sleep through their SIGTERM (each waits for the watchdog, under a second).
BLOCKED = 3


def _run(
    scenario: str, bootstrap: str, topic: str = "logs.application", count: int = CHILDREN
) -> list[int | None]:
    result = subprocess.run(
        [sys.executable, str(APP), scenario, bootstrap, str(count), topic],
        capture_output=True,
        text=True,
        timeout=300,  # each child is waited for 10 s at most, then killed
        check=False,
    )
    assert result.returncode == 0, result.stderr
    codes: list[int | None] = json.loads(result.stdout.splitlines()[-1])["exitcodes"]
    return codes


def test_a_child_terminated_right_after_start_ends(dead_bootstrap: str) -> None:
    # Pool.terminate() does this to a worker it forked a moment before, then waits for it
    # without a bound.  The child's inherited handler used to lose the signal: the child
    # lived on (None here).  It now ends: by SIGTERM's default (-15), through the handler
    # (143), or with 1 when the handler's SystemExit comes before multiprocessing's
    # bootstrap.
    codes = _run("early", dead_bootstrap)
    assert None not in codes, codes
    assert set(codes) <= {-15, 143, 1}, codes


def test_a_child_never_destroys_the_parents_closed_clients(
    kafka_bootstrap: str, topic: str
) -> None:
    # The child's garbage collector used to destroy the parent's closed clients, which
    # joins threads the child does not have: it crashed (-11) or hung (None).
    assert _run("garbage", kafka_bootstrap, topic) == [0] * CHILDREN


def test_a_pool_terminated_right_after_replacing_a_worker_ends(dead_bootstrap: str) -> None:
    # ``with Pool()`` hung in terminate(): the new worker had inherited the library's
    # handler, and the C handler took its SIGTERM just before the worker blocked in the
    # pool's lock, so the Python handler never ran.  A child that has sent nothing has
    # SIGTERM's default now: the kernel ends it (-15), or it already left on the pool's
    # sentinel (0).  The run stops at the first survivor (None).
    codes = _run("replaced", dead_bootstrap, count=POOLS)
    assert None not in codes, codes
    assert len(codes) == POOLS
    assert set(codes) <= {-15, 0}, codes


def test_a_child_that_sleeps_through_sigterm_flushes_its_events_and_ends(
    kafka_bootstrap: str, topic: str
) -> None:
    # Each child sends, so it has the library's handler back; its SIGTERM is taken by
    # another thread while the main thread waits in a lock, as when it lands just before
    # the main thread blocks.  Nothing woke the main thread: the child lived on (None)
    # and its queued events were lost.  The poller sends the signal to the main thread
    # again: the handler runs, the exit flush delivers, the child exits with 143.
    codes = _run("blocked", kafka_bootstrap, topic, count=BLOCKED)
    assert codes == [143] * BLOCKED, codes
    expected = BLOCKED * EVENTS
    read_events(kafka_bootstrap, topic, count=expected, timeout=60)
    events = read_events(kafka_bootstrap, topic, timeout=60)  # to the end: none twice
    assert len(events) == expected
    assert sorted(e.value["seq"] for e in events) == sorted(list(range(EVENTS)) * BLOCKED)
