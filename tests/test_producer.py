"""The producer wrapper: configuration, never blocking, counting, bounded shutdown."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import time

import pytest

import logtide_kafka
from logtide_kafka import LogProducer, get_producer
from logtide_kafka.producer import DEFAULT_CONFIG, resolve_config

EVENT = {"time": "t", "service": "s", "level": "info", "message": "m", "metadata": {}}


def test_defaults_env_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BROKERS", raising=False)
    assert resolve_config()["bootstrap.servers"] == "localhost:9092"
    assert {k: resolve_config()[k] for k in DEFAULT_CONFIG} == dict(DEFAULT_CONFIG)
    assert DEFAULT_CONFIG["linger.ms"] == 50
    assert DEFAULT_CONFIG["compression.type"] == "lz4"
    monkeypatch.setenv("KAFKA_BROKERS", "k1:9092,k2:9092")
    assert resolve_config()["bootstrap.servers"] == "k1:9092,k2:9092"
    merged = resolve_config(None, {"bootstrap.servers": "cfg:1", "linger.ms": 5, "acks": 1})
    assert (merged["bootstrap.servers"], merged["linger.ms"], merged["acks"]) == ("cfg:1", 5, 1)
    assert resolve_config("arg:1", {"bootstrap.servers": "cfg:1"})["bootstrap.servers"] == "arg:1"


def test_one_producer_per_configuration(dead_bootstrap: str) -> None:
    first = get_producer(dead_bootstrap)
    assert get_producer(dead_bootstrap) is first
    other = get_producer(dead_bootstrap, {"linger.ms": 1})
    assert other is not first
    first.close(0)
    assert get_producer(dead_bootstrap) is not first  # a closed one is replaced


def test_a_full_queue_drops_the_newest_and_counts_it(dead_bootstrap: str) -> None:
    producer = LogProducer(resolve_config(dead_bootstrap, {"queue.buffering.max.messages": 10}))
    started = time.perf_counter()
    results = [producer.send("logs.application", b"s", EVENT) for _ in range(50)]
    elapsed = time.perf_counter() - started
    stats = producer.stats()
    assert results.count(True) == 10
    assert (stats.enqueued, stats.dropped) == (10, 40)
    assert stats.queue_length >= 10  # the ten events, and perhaps a pending client log
    assert elapsed < 0.5  # never waits for room in the queue
    assert producer.close(0.5) == 10
    assert producer.stats().failed == 10  # purged at close: counted, not silently lost


def test_close_is_bounded_and_reports_what_it_lost(
    dead_bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    producer = LogProducer(resolve_config(dead_bootstrap))
    for _ in range(5):
        assert producer.send("logs.application", b"s", EVENT)
    started = time.monotonic()
    assert producer.close(1.0) == 5
    assert time.monotonic() - started < 3.0
    assert "5 log event(s) not delivered" in capsys.readouterr().err
    stats = producer.stats()
    assert (stats.failed, stats.delivered, stats.queue_length) == (5, 0, 0)
    assert producer.send("logs.application", b"s", EVENT) is False
    assert producer.stats().dropped == 1
    assert producer.close(1.0) == 0  # idempotent


def test_a_message_over_the_size_limit_is_counted_not_raised(dead_bootstrap: str) -> None:
    """Cut to fit (docs/bad-input.md) and enqueued: librdkafka refuses a message over
    ``message.max.bytes`` in produce() itself, so being enqueued proves it fits."""
    for limit in (None, 20_000):
        config = {} if limit is None else {"message.max.bytes": limit}
        producer = LogProducer(resolve_config(dead_bootstrap, config))
        huge = dict(EVENT, message="x" * 2_000_000, metadata={"blob": b"\xff" * 3_000_000})
        assert producer.send("logs.application", b"s", huge) is True
        stats = producer.stats()
        assert (stats.enqueued, stats.truncated, stats.failed, stats.dropped) == (1, 1, 0, 0)
        producer.close(0)


def test_user_callbacks_are_still_called(dead_bootstrap: str) -> None:
    errors: list[object] = []
    producer = LogProducer(
        resolve_config(dead_bootstrap, {"error_cb": errors.append, "message.timeout.ms": 500})
    )
    producer.send("logs.application", b"s", EVENT)
    deadline = time.monotonic() + 10
    while (not errors or producer.stats().failed == 0) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert errors, "the caller's error_cb was not called"
    assert producer.stats().failed == 1  # timed out in the queue: a failed delivery
    producer.close(0)


def test_after_close_all_events_are_counted_as_dropped(dead_bootstrap: str) -> None:
    logtide_kafka.configure(dead_bootstrap)
    handler = logtide_kafka.KafkaHandler("closed-svc", bootstrap_servers=dead_bootstrap)
    assert logtide_kafka.close_all(0) == 0
    assert logtide_kafka.send_log("info", "too late", "closed-svc") is False
    handler.handle(logging.makeLogRecord({"name": "app", "msg": "too late", "levelno": 20}))
    assert logtide_kafka.stats().dropped == 2  # one shared producer, both counted
    logtide_kafka.configure(dead_bootstrap)  # configure() opens a new one
    assert logtide_kafka.send_log("info", "again", "closed-svc") is True


def test_send_log_never_raises_on_odd_arguments(dead_bootstrap: str) -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    logtide_kafka.configure(dead_bootstrap)
    assert logtide_kafka.send_log("info", "m", "svc\ud800") is True  # service repaired
    assert logtide_kafka.send_log("info", Unprintable(), Unprintable()) is True  # type: ignore[arg-type]
    assert logtide_kafka.send_log(Unprintable(), "m", "svc") is True  # type: ignore[arg-type]
    assert logtide_kafka.stats().enqueued == 3
    assert logtide_kafka.stats().failed == 0


def test_exit_with_an_unreachable_broker_is_bounded(dead_bootstrap: str) -> None:
    script = textwrap.dedent(
        f"""
        import logtide_kafka
        logtide_kafka.configure({dead_bootstrap!r}, exit_timeout=1.0)
        for i in range(20):
            logtide_kafka.send_log("info", "never delivered", "exit-svc", i=i)
        """
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 8.0
    assert "20 log event(s) not delivered" in result.stderr
