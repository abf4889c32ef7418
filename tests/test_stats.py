"""``stats()`` can be trusted while the application logs and after close (no broker)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from logtide_kafka.producer import DeliveryPolicy, LogProducer, resolve_config

EVENT = {"time": "2025-01-01T00:00:00.000Z", "service": "s", "level": "info", "message": "m"}


class _LateEnqueue:
    """Stands in for the librdkafka client: its length is read, and then, before
    ``stats()`` reads anything else, another thread's event is enqueued."""

    def __init__(self, producer: LogProducer) -> None:
        self._owner = producer
        self._real = producer._producer

    def __len__(self) -> int:
        length = len(self._real)
        assert self._owner.send("logs.application", b"s", EVENT)  # "another thread"
        return length


def test_an_event_enqueued_while_stats_reads_is_never_counted_delivered(
    dead_bootstrap: str,
) -> None:
    producer = LogProducer(resolve_config(dead_bootstrap))
    for _ in range(10):
        assert producer.send("logs.application", b"s", EVENT)
    real = producer._producer
    producer._producer = _LateEnqueue(producer)  # type: ignore[assignment]
    try:
        stats = producer.stats()
    finally:
        producer._producer = real
    # Nothing can be delivered: no broker listens.  Reading the queue length before the
    # enqueued count made this 1.
    assert stats.delivered == 0
    assert stats.enqueued in (10, 11)
    producer.close(0)


def test_delivered_stays_a_lower_bound_while_a_thread_logs(dead_bootstrap: str) -> None:
    # Events fail quickly (timed out in the queue) while more are enqueued: both
    # counters move under stats()'s feet; none was delivered.
    fast_failing = {"message.timeout.ms": 20, "linger.ms": 5}
    producer = LogProducer(resolve_config(dead_bootstrap, fast_failing))
    stop = threading.Event()

    def log() -> None:
        while not stop.is_set():
            for _ in range(200):
                producer.send("logs.application", b"s", EVENT)

    thread = threading.Thread(target=log, daemon=True)
    thread.start()
    samples = []
    try:
        deadline = time.monotonic() + 3.0  # librdkafka scans for timeouts once a second
        while time.monotonic() < deadline:
            samples.append(producer.stats())
    finally:
        stop.set()
        thread.join(10)
    assert samples[-1].enqueued > 1000
    assert max(s.failed for s in samples) > 0  # failures did happen meanwhile
    assert [s for s in samples if s.delivered != 0] == []
    producer.close(0)


def test_spool_pending_counts_what_a_closed_producer_left_on_disk(
    dead_bootstrap: str, tmp_path: Path
) -> None:
    policy = DeliveryPolicy(on_full="spool", spool_dir=str(tmp_path))
    producer = LogProducer(
        resolve_config(dead_bootstrap, {"queue.buffering.max.messages": 10}), policy
    )
    for _ in range(100):
        assert producer.send("logs.application", b"s", EVENT)
    assert producer.stats().spool_pending == 90
    assert producer.close(0.2) == 10  # the queued ten go back to the spool's front
    stats = producer.stats()
    assert (stats.spool_pending, stats.spooled, stats.failed, stats.unconfirmed) == (
        100,
        100,
        0,
        0,
    )
    assert stats.delivered == 0


def test_close_reports_never_sent_apart_from_unconfirmed(
    dead_bootstrap: str, capfd: pytest.CaptureFixture[str]
) -> None:
    producer = LogProducer(resolve_config(dead_bootstrap))
    for _ in range(25):
        assert producer.send("logs.application", b"s", EVENT)
    assert producer.close(0) == 25
    stats = producer.stats()
    # No broker ever had them: never sent, and certainly not in Kafka.
    assert (stats.failed, stats.never_sent, stats.unconfirmed, stats.delivered) == (25, 25, 0, 0)
    err = capfd.readouterr().err
    assert "25 log event(s) not delivered" in err
    assert "(25 never sent, 0 sent but unconfirmed" in err


def _fields(stats: Any) -> set[str]:
    return set(type(stats).__dataclass_fields__)


def test_stats_name_the_new_counters(dead_bootstrap: str) -> None:
    producer = LogProducer(resolve_config(dead_bootstrap))
    assert {"unconfirmed", "never_sent"} <= _fields(producer.stats())
    producer.close(0)
