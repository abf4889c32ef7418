"""Our background threads block asynchronous signals, so the kernel hands SIGTERM and
SIGINT to a thread that can act on them (Python runs handlers on the main thread only)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

from logtide_kafka import get_producer
from logtide_kafka.pipeline._metrics import MetricsServer, ShipperMetrics

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/task").is_dir(), reason="reads thread signal masks from /proc"
)


def _blocked(name: str) -> set[int]:
    """The signals blocked by the live thread called ``name`` (from /proc)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for thread in threading.enumerate():
            if thread.name == name and thread.native_id is not None:
                status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
                mask = int(status.split("SigBlk:")[1].split()[0], 16)
                return {sig for sig in range(1, 65) if mask >> (sig - 1) & 1}
        time.sleep(0.01)
    raise AssertionError(f"no thread {name!r}")


def _check(blocked: set[int]) -> None:
    assert {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1} <= blocked
    # Faults stay deliverable, so faulthandler can still report one.
    assert not {signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT} & blocked


def test_the_poller_blocks_asynchronous_signals(dead_bootstrap: str) -> None:
    producer = get_producer(dead_bootstrap)
    try:
        _check(_blocked("logtide-kafka-poller"))
        assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    finally:
        producer.close(1)


def test_the_metrics_server_blocks_asynchronous_signals() -> None:
    server = MetricsServer(ShipperMetrics(), 0, host="127.0.0.1")
    try:
        _check(_blocked("logtide-shipper-metrics"))
    finally:
        server.close()
