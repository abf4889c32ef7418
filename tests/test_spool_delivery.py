"""The ``spool`` policy end to end: to disk while Kafka cannot take events, replayed in order
once it can, across a restart and across an outage of every broker."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer

from logtide_kafka import KafkaHandler, LogProducer
from logtide_kafka.producer import DeliveryPolicy, resolve_config
from logtide_kafka.producer._spool import Spool
from logtide_kafka.testing import LocalKafka, create_topics, read_events


def _event(service: str, seq: int) -> dict[str, object]:
    return {
        "time": "t",
        "service": service,
        "level": "info",
        "message": "m",
        "metadata": {"seq": seq},
    }


def _seqs(bootstrap: str, topic: str, service: str, count: int) -> list[int]:
    events = read_events(bootstrap, topic, count=count, timeout=60, where=_by(service))
    return [e.value["metadata"]["seq"] for e in events]


def _by(service: str):  # type: ignore[no-untyped-def]
    return lambda value: value.get("service") == service


def test_the_queue_overflows_to_disk_and_the_next_process_replays_it_first(  # noqa: PLR0917
    dead_bootstrap: str,
    kafka_bootstrap: str,
    topic: str,
    service: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    policy = DeliveryPolicy(on_full="spool", spool_dir=str(tmp_path))
    down = LogProducer(resolve_config(dead_bootstrap, {"queue.buffering.max.messages": 10}), policy)
    assert all(down.send(topic, service.encode(), _event(service, seq)) for seq in range(100))
    stats = down.stats()
    assert (stats.enqueued, stats.spooled, stats.spool_pending, stats.dropped) == (10, 90, 90, 0)
    started = time.monotonic()
    assert down.close(0.5) == 10  # the ten in librdkafka's queue go back to the front
    assert time.monotonic() - started < 3.0  # bounded, with every broker down
    assert "100 event(s) kept in the spool" in capfd.readouterr().err
    assert down.stats().failed == 0

    up = LogProducer(resolve_config(kafka_bootstrap), policy)
    for seq in range(100, 110):  # queued behind what the last process left
        assert up.send(topic, service.encode(), _event(service, seq))
    assert up.flush(30) == 0
    assert _seqs(kafka_bootstrap, topic, service, 110) == list(range(110))
    stats = up.stats()
    assert (stats.replayed, stats.spool_pending, stats.failed, stats.dropped) == (110, 0, 0, 0)
    up.close(5)
    time.sleep(1)  # nothing more arrives: exactly once
    assert _seqs(kafka_bootstrap, topic, service, 110) == list(range(110))


def test_the_spool_bound_drops_the_newest_and_counts_them(
    dead_bootstrap: str, service: str, tmp_path: Path
) -> None:
    policy = DeliveryPolicy(on_full="spool", spool_dir=str(tmp_path), spool_max_bytes=20_000)
    producer = LogProducer(
        resolve_config(dead_bootstrap, {"queue.buffering.max.messages": 5}), policy
    )
    sent = [producer.send("logs.application", b"k", _event(service, seq)) for seq in range(1000)]
    dropped = sent.count(False)
    assert 0 < dropped < 995
    assert producer.stats().dropped_by == {"spool_full": dropped}
    producer.close(0)
    spool = Spool(tmp_path)
    kept = [orjson.loads(value)["metadata"]["seq"] for _, _, value in spool.read(2000)]
    spool.close()
    # The five queued ones went back in front (past the bound: they are the oldest); the
    # bound only ever cut the newest.
    assert kept == list(range(1000 - dropped))


def test_a_broker_that_is_down_at_start_gets_everything_in_order(
    service: str, tmp_path: Path
) -> None:
    kafka = LocalKafka(1)  # constructed, so its address is known, but not started
    topic = f"logs.test-{uuid.uuid4().hex[:8]}"
    handler = KafkaHandler(
        service,
        topic,
        kafka.bootstrap_servers,
        {"queue.buffering.max.messages": 200},
        on_full="spool",
        spool_dir=str(tmp_path),
    )
    log = logging.getLogger(f"spool-start-{service}")
    log.propagate, log.level = False, logging.INFO
    log.addHandler(handler)
    slowest = 0.0
    for seq in range(3000):
        started = time.perf_counter()
        log.info("event", extra={"seq": seq})
        slowest = max(slowest, time.perf_counter() - started)
    # Never waits on the broker (that would be seconds); the bound leaves room for a
    # preempted thread on a busy machine.
    assert slowest < 0.25, f"an emit took {slowest * 1000:.1f} ms"
    assert handler.stats().spooled > 2000
    try:
        kafka.start()
        create_topics(kafka.bootstrap_servers, [topic], partitions=3)
        assert handler.producer.flush(60) == 0
        assert _seqs(kafka.bootstrap_servers, topic, service, 3000) == list(range(3000))
        assert handler.stats().dropped == 0
    finally:
        log.removeHandler(handler)
        handler.close()
        handler.producer.close(5)
        kafka.stop()


@pytest.mark.slow
def test_every_broker_down_for_30s_during_a_burst_loses_nothing(
    kafka3: LocalKafka, tmp_path: Path
) -> None:
    topic = f"logs.outage-{uuid.uuid4().hex[:8]}"
    kafka3.create_topics([topic], partitions=6, replication_factor=3)
    services = [f"svc-{i}-{uuid.uuid4().hex[:6]}" for i in range(4)]
    policy = DeliveryPolicy(on_full="spool", spool_dir=str(tmp_path))
    producer = LogProducer(
        resolve_config(kafka3.bootstrap_servers, {"queue.buffering.max.messages": 20000}), policy
    )
    total, rate = 60_000, 1500  # events over ~40 s, so the outage lands mid-burst
    done = threading.Event()

    def burst() -> None:
        started = time.monotonic()
        for seq in range(total):
            service = services[seq % len(services)]
            producer.send(topic, service.encode(), _event(service, seq))
            ahead = seq / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
        done.set()

    sender = threading.Thread(target=burst)
    sender.start()
    time.sleep(5)
    for node in (1, 2, 3):
        kafka3.stop_broker(node, kill=True)
    outage_started = time.monotonic()
    time.sleep(30)
    for node in (1, 2, 3):
        kafka3.start_broker(node, wait=False)
    kafka3.wait_ready()
    outage = time.monotonic() - outage_started
    sender.join(timeout=120)
    assert done.is_set()
    assert producer.flush(120) == 0
    stats = producer.stats()
    received = _consume_all(kafka3.bootstrap_servers, topic, total)
    seqs = [seq for _, seq in received]
    duplicates = len(seqs) - len(set(seqs))
    print(
        f"\noutage {outage:.0f}s: sent {total}, spooled {stats.spooled}, replayed "
        f"{stats.replayed}, received {len(seqs)}, duplicates {duplicates}, dropped "
        f"{stats.dropped}, failed {stats.failed}"
    )
    assert set(seqs) == set(range(total))
    for service in services:  # per-service order, counting each event's first arrival
        firsts: list[int] = []
        for name, seq in received:
            if name == service and seq not in firsts[-1:]:
                firsts.append(seq)
        assert _dedupe(firsts) == sorted(_dedupe(firsts)), f"{service} out of order"
    assert (stats.dropped, stats.failed) == (0, 0)
    assert stats.spooled > 0
    producer.close(10)


def _dedupe(seqs: list[int]) -> list[int]:
    seen: set[int] = set()
    return [s for s in seqs if not (s in seen or seen.add(s))]  # type: ignore[func-returns-value]


def _consume_all(bootstrap: str, topic: str, total: int) -> list[tuple[str, int]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"verify-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    received: list[tuple[str, int]] = []
    seen: set[int] = set()
    deadline = time.monotonic() + 120
    while len(seen) < total and time.monotonic() < deadline:
        for message in consumer.consume(num_messages=10000, timeout=1.0):
            payload = message.value()
            if message.error() is None and payload is not None:
                value = orjson.loads(payload)
                received.append((value["service"], value["metadata"]["seq"]))
                seen.add(value["metadata"]["seq"])
    consumer.close()
    return received


def test_events_the_spool_cannot_take_back_at_close_count_as_failed_not_dropped(
    dead_bootstrap: str,
    service: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # They were enqueued once: "dropped" means never enqueued nor spooled.
    policy = DeliveryPolicy(on_full="spool", spool_dir=str(tmp_path))
    producer = LogProducer(
        resolve_config(dead_bootstrap, {"queue.buffering.max.messages": 10}), policy
    )
    for seq in range(10):
        assert producer.send("logs.application", b"k", _event(service, seq))
    monkeypatch.setattr(Spool, "prepend", lambda self, records: 0)  # a disk that refuses
    assert producer.close(0.5) == 10
    stats = producer.stats()
    assert (stats.enqueued, stats.failed, stats.dropped, stats.dropped_by) == (10, 10, 0, {})
