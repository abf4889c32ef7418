"""Forked children of a process whose SIGTERM handler is the library's: a child terminated
as soon as it is started still ends, and a child never destroys the parent's clients."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

APP = Path(__file__).resolve().parent / "apps" / "fork_sigterm.py"
CHILDREN = 8


def _run(scenario: str, bootstrap: str, topic: str = "logs.application") -> list[int | None]:
    result = subprocess.run(
        [sys.executable, str(APP), scenario, bootstrap, str(CHILDREN), topic],
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
