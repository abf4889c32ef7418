"""The Kafka -> LogTide shipper against a real broker and a LogTide-compatible test server.

Every delivery claim is checked by the Kafka coordinates the shipper adds to each entry
(``metadata.kafka``): a message accepted twice is a duplicate, one never accepted is lost.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from logtide_server import (
    LogTideServer,
    Scripted,
    entry_problem,
    quota_exceeded,
    rate_limited,
    server_error,
)

from logtide_kafka import KafkaHandler
from logtide_kafka.pipeline._logtide_client import retry_after as _retry_after
from logtide_kafka.pipeline._metrics import MetricsServer, ShipperMetrics
from logtide_kafka.pipeline.shipper import (
    EXIT_FATAL,
    EXIT_OK,
    Shipper,
    ShipperConfig,
)
from logtide_kafka.testing import create_topics, read_events

Coordinates = tuple[str, int, int]
# Short session timeouts: a killed shipper's partitions move on within seconds.
FAST_GROUP = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}


# -- helpers ------------------------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def native(service: str, message: str) -> bytes:
    return orjson.dumps(
        {
            "time": "2025-11-25T08:30:03.214Z",
            "service": service,
            "level": "info",
            "message": message,
            "metadata": {"hostname": "test-host"},
        }
    )


def produce(
    bootstrap: str,
    topic: str,
    values: Sequence[bytes | None],
    *,
    key: bytes | None = b"svc",
    partition: int | None = None,
) -> list[Coordinates]:
    """Produce and wait; the coordinates of every message, in order."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    found: dict[int, Coordinates] = {}
    failed: list[str] = []

    def report(index: int) -> Any:
        def done(error: Any, message: Any) -> None:
            if error is not None:
                failed.append(error.str())
            else:
                found[index] = (message.topic(), message.partition(), message.offset())

        return done

    for index, value in enumerate(values):
        if partition is None:
            producer.produce(topic, value=value, key=key, on_delivery=report(index))
        else:
            producer.produce(topic, value, key, partition, on_delivery=report(index))
        producer.poll(0)
    assert producer.flush(30) == 0
    assert not failed, failed
    return [found[index] for index in range(len(values))]


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("probe")})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1] for p in partitions
        }
    finally:
        consumer.close()


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets on ``topic`` (partitions without one are left out)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        offsets = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return {tp.partition: tp.offset for tp in offsets if tp.offset >= 0}
    finally:
        consumer.close()


def non_empty(offsets: dict[int, int]) -> dict[int, int]:
    return {partition: offset for partition, offset in offsets.items() if offset > 0}


def read_dlq(bootstrap: str, topic: str) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """Every dead-letter record: its headers and its JSON envelope."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique("dlq-read"),
            "enable.partition.eof": True,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        records: list[tuple[dict[str, str], dict[str, Any]]] = []
        at_end: set[int] = set()
        deadline = time.monotonic() + 20
        while at_end != set(partitions) and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error() is not None:
                at_end.add(message.partition() or 0)
                continue
            raw_headers = message.headers() or []
            pairs = raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
            headers = {k: v.decode() if isinstance(v, bytes) else v or "" for k, v in pairs}
            records.append((headers, orjson.loads(message.value() or b"null")))
        assert at_end == set(partitions), "the dead-letter topic was not read to its end"
        return records
    finally:
        consumer.close()


def config(
    bootstrap: str, server: LogTideServer, topics: list[str], **changes: Any
) -> ShipperConfig:
    settings: dict[str, Any] = {
        "brokers": bootstrap,
        "api_url": server.url,
        "api_key": server.api_key,
        "group": unique("ship"),
        "topics": tuple(topics),
        "dlq_topic": unique("logs.dlq"),
        "batch_max_wait": 0.2,
        "request_timeout": 5.0,
        "max_backoff": 0.5,
        "consumer_config": FAST_GROUP,
    }
    settings.update(changes)
    return ShipperConfig(**settings)


class Running:
    """A Shipper running in a thread for the ``with`` block."""

    def __init__(self, config: ShipperConfig) -> None:
        self.shipper = Shipper(config)
        self.code: int | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.code = self.shipper.run()

    def __enter__(self) -> Running:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30) -> int | None:
        self.shipper.stop()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the shipper did not stop"
        return self.code

    def wait(self, timeout: float) -> int | None:
        self._thread.join(timeout)
        return self.code

    def metrics_when(self, name: str, at_least: int, timeout: float = 20) -> dict[str, Any]:
        """The shipper's metrics once ``name`` reaches ``at_least`` (or at ``timeout``)."""
        deadline = time.monotonic() + timeout
        while self.shipper.metrics()[name] < at_least and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.shipper.metrics()

    def __exit__(self, *exc: object) -> None:
        if self._thread.is_alive():
            self.stop()


def shipped_all(expected: set[Coordinates]) -> Any:
    return lambda server: expected <= set(server.coordinates())


def duplicates(server: LogTideServer) -> int:
    return sum(count - 1 for count in server.coordinates().values())


@pytest.fixture
def server() -> Iterator[LogTideServer]:
    with LogTideServer(api_key=f"key-{uuid.uuid4().hex}") as running:
        yield running


@pytest.fixture
def topics(kafka_bootstrap: str) -> list[str]:
    names = [unique("logs.ship-a"), unique("logs.ship-b")]
    create_topics(kafka_bootstrap, names, partitions=3)
    return names


# -- unit tests (no broker) -----------------------------------------------------------------


def test_config_hides_the_key_and_rejects_bad_settings() -> None:
    good = ShipperConfig("k:9092", "https://logtide.example", "sk-very-secret")
    assert "sk-very-secret" not in repr(good)
    assert "sk-very-secret" not in repr(Shipper(good))
    secured = ShipperConfig(
        "k:9092", "https://logtide.example", "sk-1", consumer_config={"sasl.password": "pw-42"}
    )
    assert "pw-42" not in repr(secured)
    bad: list[dict[str, Any]] = [
        {"batch_max_events": 0},
        {"batch_max_events": 1001},
        {"batch_max_bytes": 0},
        {"api_url": "logtide.example"},
        {"api_key": ""},
        {"topics": ()},
        {"topics": ("^logs\\.(",)},
        {"dlq_topic": "logs.application"},
        {"request_timeout": 0},
        {"max_backoff": -1},
        {"metrics_port": 70000},
        {"consumer_config": {"enable.auto.commit": True}},
        {"consumer_config": {"group.id": "other"}},
        {"consumer_config": {"max.poll.interval.ms": 20000}, "request_timeout": 30},
    ]
    for change in bad:
        settings: dict[str, Any] = {
            "brokers": "k:9092",
            "api_url": "https://logtide.example",
            "api_key": "sk-very-secret",
            **change,
        }
        with pytest.raises(ValueError, match="invalid shipper configuration") as caught:
            ShipperConfig(**settings)
        assert "sk-very-secret" not in str(caught.value)


def test_concurrency_is_validated() -> None:
    assert ShipperConfig("k:9092", "http://x", "k").concurrency >= 1
    assert ShipperConfig("k:9092", "http://x", "k", concurrency=64).concurrency == 64
    for bad in (0, 65, -1):
        with pytest.raises(ValueError, match="concurrency must be 1-64"):
            ShipperConfig("k:9092", "http://x", "k", concurrency=bad)


def test_retry_after_and_backoff() -> None:
    assert _retry_after("3") == 3.0
    assert _retry_after("0.5") == 0.5
    assert _retry_after(None) is None
    assert _retry_after("soon") is None
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    after = _retry_after(future)
    assert after is not None
    assert 25 <= after <= 31
    shipper = Shipper(ShipperConfig("k:9092", "http://x", "k", max_backoff=4.0))
    delays = [shipper._dead_letters.backoff(attempt) for attempt in range(12) for _ in range(20)]
    assert all(0 < delay <= 4.0 for delay in delays)
    assert min(shipper._dead_letters.backoff(0) for _ in range(50)) >= 0.25
    assert max(shipper._dead_letters.backoff(10) for _ in range(50)) > 2.0  # grew to the cap
    assert len({round(shipper._dead_letters.backoff(10), 6) for _ in range(20)}) > 1  # jittered


def test_metrics_snapshot_prometheus_and_endpoint() -> None:
    metrics = ShipperMetrics(redact=lambda text: text.replace("sk-1", "[REDACTED]"))
    metrics.add("events_shipped", 297)
    metrics.add("dead_lettered", 3)
    metrics.add("requests", 4)
    metrics.error("LogTide answered 500 with key sk-1")
    snapshot = metrics.snapshot()
    for name in (
        "events_shipped",
        "batches",
        "retries",
        "dead_lettered",
        "requests",
        "request_errors",
        "error_rate",
        "last_error",
        "started_at",
        "uptime_s",
    ):
        assert name in snapshot
    assert snapshot["error_rate"] == pytest.approx(3 / 300)
    assert snapshot["last_error"] == "LogTide answered 500 with key [REDACTED]"
    text = metrics.prometheus()
    assert "logtide_shipper_events_shipped_total 297\n" in text
    assert "# TYPE logtide_shipper_events_shipped_total counter" in text
    assert "logtide_shipper_error_rate 0.01\n" in text
    assert "sk-1" not in text
    server = MetricsServer(metrics, 0, host="127.0.0.1")
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert httpx.get(f"{base}/metrics.json").json()["events_shipped"] == 297
        prom = httpx.get(f"{base}/metrics")
        assert prom.headers["content-type"].startswith("text/plain")
        assert "logtide_shipper_dead_lettered_total 3" in prom.text
        assert httpx.get(f"{base}/other").status_code == 404
    finally:
        server.close()


def test_importing_the_library_does_not_import_httpx() -> None:
    code = "import sys, logtide_kafka; sys.exit('httpx' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# -- delivery ---------------------------------------------------------------------------


def test_happy_path_every_event_exactly_once_and_offsets_committed(
    kafka_bootstrap: str,
    server: LogTideServer,
    topics: list[str],
    service: str,
    logger: logging.Logger,
) -> None:
    handler = KafkaHandler(service=service, bootstrap_servers=kafka_bootstrap, topic=topics[0])
    logger.addHandler(handler)
    for i in range(300):
        logger.warning("handler event %d", i, extra={"n": i})
    handler.flush()
    via_handler = read_events(kafka_bootstrap, topics[0], count=300)
    older = [
        orjson.dumps(
            {
                "timestamp": 1_764_059_403.214,
                "hostname": "legacy-1",
                "service": "legacy",
                "level": "WARNING",
                "message": f"legacy event {i}",
            }
        )
        for i in range(300)
    ]
    legacy = produce(kafka_bootstrap, topics[1], list(older))
    expected = {(e.topic, e.partition, e.offset) for e in via_handler} | set(legacy)

    shipper_config = config(kafka_bootstrap, server, topics, metrics_port=0)
    with Running(shipper_config) as running:
        assert server.wait_for(shipped_all(expected), 60), len(server.coordinates())
        port = running.shipper.metrics_port
        assert port is not None
        over_http = httpx.get(f"http://127.0.0.1:{port}/metrics.json").json()
        prometheus = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert running.stop() == EXIT_OK

    counts = server.coordinates()
    assert set(counts) == expected
    assert max(counts.values()) == 1, "duplicates on the happy path"
    # LogTide-native events arrive as produced, plus their coordinates.
    by_coordinates = {tuple(e["metadata"]["kafka"].values()): e for e in server.entries}
    for event in via_handler:
        entry = by_coordinates[(event.topic, event.partition, event.offset)]
        assert entry["metadata"].pop("kafka") == {
            "topic": event.topic,
            "partition": event.partition,
            "offset": event.offset,
        }
        assert entry == event.value
    legacy_entry = by_coordinates[legacy[0]]
    assert legacy_entry["time"] == "2025-11-25T08:30:03.214Z"
    assert legacy_entry["level"] == "warn"
    assert legacy_entry["metadata"]["hostname"] == "legacy-1"
    assert all(entry_problem(e) is None for e in server.entries)
    for topic in topics:
        assert committed(kafka_bootstrap, shipper_config.group, topic) == non_empty(
            end_offsets(kafka_bootstrap, topic)
        )
    metrics = running.shipper.metrics()
    assert metrics["events_shipped"] == 600
    assert metrics["normalized"] == 300
    assert metrics["dead_lettered"] == 0
    assert metrics["error_rate"] == 0
    assert metrics["requests"] == metrics["batches"] == len(server.requests)
    assert over_http["events_shipped"] == 600
    assert "logtide_shipper_events_shipped_total 600" in prometheus
    assert server.api_key not in json.dumps(metrics) + prometheus


def test_outage_of_500s_then_429s_loses_nothing(
    kafka_bootstrap: str, server: LogTideServer, topics: list[str]
) -> None:
    server.script(server_error(500), times=3)
    server.script(server_error(503), times=1)
    server.script(rate_limited(retry_after=1), times=2)
    expected = set(produce(kafka_bootstrap, topics[0], [native("s", f"e{i}") for i in range(200)]))
    shipper_config = config(kafka_bootstrap, server, topics)
    with Running(shipper_config) as running:
        assert server.wait_for(shipped_all(expected), 60)
        assert running.stop() == EXIT_OK
    statuses = [request.status for request in server.requests]
    assert statuses[:6] == [500, 500, 500, 503, 429, 429]
    assert set(statuses[6:]) == {200}
    # Retry-After: 1 was honoured before each retry that followed a 429.
    gaps = [b.at - a.at for a, b in zip(server.requests[4:6], server.requests[5:7], strict=True)]
    assert min(gaps) >= 0.9, gaps
    assert max(server.coordinates().values()) == 1
    assert set(server.coordinates()) == expected
    metrics = running.shipper.metrics()
    assert metrics["retries"] == 6
    assert metrics["request_errors"] == 6
    assert metrics["last_error"].startswith("LogTide answered 429")
    assert committed(kafka_bootstrap, shipper_config.group, topics[0]) == non_empty(
        end_offsets(kafka_bootstrap, topics[0])
    )


def test_batches_in_flight_at_once_commit_only_up_to_the_first_not_yet_accepted(
    kafka_bootstrap: str, topics: list[str]
) -> None:
    release = threading.Event()

    def hold(entries: list[dict[str, Any]]) -> Scripted | None:
        if any(e["message"] == "e120" for e in entries):
            release.wait(30)  # this batch's answer waits; the server takes others meanwhile
        return None

    values = [native("s", f"e{i}") for i in range(400)]
    coordinates = produce(kafka_bootstrap, topics[0], values, partition=0)
    expected = set(coordinates)
    with LogTideServer(fault=hold) as server:
        shipper_config = config(kafka_bootstrap, server, topics, batch_max_events=50, concurrency=4)
        with Running(shipper_config) as running:
            # Later batches are accepted while the one holding e120 is still in flight.
            assert server.wait_for(lambda s: "e200" in s.messages(), 30)
            time.sleep(1.0)  # room for an (asynchronous) commit that must not pass e120
            during = committed(kafka_bootstrap, shipper_config.group, topics[0])
            in_flight = running.shipper.metrics()["in_flight"]
            release.set()
            assert server.wait_for(shipped_all(expected), 30)
            assert running.stop() == EXIT_OK
    assert 0 < during[0] <= coordinates[120][2], during
    assert in_flight >= 1
    assert set(server.coordinates()) == expected
    assert max(server.coordinates().values()) == 1
    assert committed(kafka_bootstrap, shipper_config.group, topics[0]) == {0: 400}


def test_stop_while_retrying_abandons_the_batch_without_committing(
    kafka_bootstrap: str, server: LogTideServer, topics: list[str]
) -> None:
    server.script(server_error(500), times=1000)
    produce(kafka_bootstrap, topics[0], [native("s", f"e{i}") for i in range(20)])
    shipper_config = config(kafka_bootstrap, server, topics)
    with Running(shipper_config) as running:
        assert server.wait_for(lambda s: len(s.requests) >= 3, 30)
        started = time.monotonic()
        assert running.stop() == EXIT_OK
        assert time.monotonic() - started < 3
    assert server.entries == []
    assert committed(kafka_bootstrap, shipper_config.group, topics[0]) == {}


@pytest.mark.slow
def test_long_outage_keeps_the_consumer_in_its_group(
    kafka_bootstrap: str, server: LogTideServer, topics: list[str]
) -> None:
    # ~10 s of 500s, longer than max.poll.interval.ms (7 s): the shipper must keep polling.
    server.script(server_error(500), times=14)
    expected = set(produce(kafka_bootstrap, topics[0], [native("s", f"e{i}") for i in range(50)]))
    consumer_config = {**FAST_GROUP, "max.poll.interval.ms": 7000}
    shipper_config = config(
        kafka_bootstrap, server, topics, max_backoff=1.0, consumer_config=consumer_config
    )
    with Running(shipper_config) as running:
        assert server.wait_for(shipped_all(expected), 60)
        outage = server.requests[14].at - server.requests[0].at
        metrics = running.shipper.metrics()
        assert running.stop() == EXIT_OK
    assert outage > 7.0, outage
    assert metrics["rebalances"] == 0, "the consumer was dropped from its group"
    assert metrics["retries"] == 14
    assert max(server.coordinates().values()) == 1


@pytest.mark.slow
def test_partitions_revoked_while_retrying_are_abandoned_and_shipped_by_the_new_owner(
    kafka_bootstrap: str, server: LogTideServer, topics: list[str]
) -> None:
    server.script(server_error(503), times=24)  # several seconds of outage
    expected: set[Coordinates] = set()
    # Every partition holds events, so whichever partitions the second shipper is given,
    # it has some to ship (with one key they would all sit in one partition per topic).
    for topic in topics:
        for partition in range(3):
            values = [native("s", f"e{partition}-{i}") for i in range(50)]
            expected |= set(produce(kafka_bootstrap, topic, values, partition=partition))
    shipper_config = config(kafka_bootstrap, server, topics)
    with Running(shipper_config) as first:
        assert server.wait_for(lambda s: len(s.requests) >= 2, 30)  # first is retrying
        joined = time.monotonic()
        with Running(shipper_config) as second:
            assert server.wait_for(shipped_all(expected), 60)
            revoked = first.shipper.metrics()["rebalances"]
            assert second.stop() == EXIT_OK
        assert first.stop() == EXIT_OK
    # The second shipper joined mid-outage: the first lost partitions of its pending batch.
    first_success = min(r.at for r in server.requests if r.status == 200)
    assert first_success - joined > 1.5
    assert revoked >= 1
    assert second.shipper.metrics()["events_shipped"] > 0
    assert set(server.coordinates()) == expected
    assert max(server.coordinates().values()) == 1
    for topic in topics:
        assert committed(kafka_bootstrap, shipper_config.group, topic) == non_empty(
            end_offsets(kafka_bootstrap, topic)
        )


# -- bad input and LogTide's rejections -----------------------------------------------------


def test_poison_messages_go_to_the_dlq_and_the_partition_keeps_flowing(
    kafka_bootstrap: str, server: LogTideServer
) -> None:
    # A pattern subscription that also matches the dead-letter topic: it must not loop.
    prefix = f"logs.st{uuid.uuid4().hex[:10]}"
    topic, dlq = f"{prefix}.app", f"{prefix}.dlq"
    create_topics(kafka_bootstrap, [topic], partitions=3)
    values: list[bytes | None] = [
        native("s", "good-0"),
        b"not json {",
        native("s", "good-1"),
        b"[1, 2, 3]",
        b'{"message": ""}',
        None,
        *(native("s", f"good-{i}") for i in range(2, 10)),
    ]
    coordinates = produce(kafka_bootstrap, topic, values, partition=1)
    shipper_config = config(
        kafka_bootstrap, server, ["^" + prefix.replace(".", "\\.") + "\\..*"], dlq_topic=dlq
    )
    with Running(shipper_config) as running:
        assert server.wait_for(lambda s: len(s.entries) >= 10, 60)
        time.sleep(1.5)  # a looping DLQ would show up as more entries or DLQ records
        metrics = running.shipper.metrics()
        assert running.stop() == EXIT_OK
    assert sorted(server.messages().items()) == sorted((f"good-{i}", 1) for i in range(10))
    assert {key[0] for key in server.coordinates()} == {topic}
    records = read_dlq(kafka_bootstrap, dlq)
    assert len(records) == 4
    poison = {1: "not JSON", 3: "an array, not a JSON object", 4: "message is empty", 5: "null"}
    by_offset = {envelope["source"]["offset"]: (headers, envelope) for headers, envelope in records}
    assert set(by_offset) == {coordinates[i][2] for i in poison}
    for index, reason in poison.items():
        headers, envelope = by_offset[coordinates[index][2]]
        assert reason in envelope["reason"]
        assert envelope["source"]["topic"] == topic
        assert envelope["source"]["partition"] == 1
        assert envelope["group"] == shipper_config.group
        original = values[index]
        assert envelope["value"] == (None if original is None else original.decode())
        assert headers["logtide.source.topic"] == topic
        assert headers["logtide.source.partition"] == "1"
        assert headers["logtide.source.offset"] == str(coordinates[index][2])
        assert reason in headers["logtide.dlq.reason"]
    assert metrics["dead_lettered"] == 4
    assert metrics["error_rate"] == pytest.approx(4 / 14)
    assert committed(kafka_bootstrap, shipper_config.group, topic) == {1: len(values)}


def test_400_is_bisected_and_the_invalid_entry_is_dead_lettered(
    kafka_bootstrap: str, topics: list[str]
) -> None:
    # LogTide has no partial acceptance (never a ``rejected`` field): one bad entry makes
    # the whole batch a 400, and the shipper bisects down to it.
    def strict(entry: dict[str, Any]) -> str | None:  # a rule the shipper does not know
        return "message: forbidden word" if entry["message"] == "bad-17" else None

    values = [native("s", "bad-17" if i == 17 else f"ok-{i}") for i in range(40)]
    coordinates = produce(kafka_bootstrap, topics[0], values)
    with LogTideServer(strict=strict) as server:
        shipper_config = config(kafka_bootstrap, server, topics, batch_max_wait=1.0)
        with Running(shipper_config) as running:
            assert server.wait_for(lambda s: len(s.entries) >= 39, 60)
            metrics = running.metrics_when("dead_lettered", 1)
            assert running.stop() == EXIT_OK
        statuses = [request.status for request in server.requests]
    counts = server.messages()
    assert set(counts) == {f"ok-{i}" for i in range(40) if i != 17}
    assert max(counts.values()) == 1
    assert 400 in statuses
    assert metrics["splits"] >= 5  # 40 -> ... -> 1 takes at least log2(40) halvings
    records = {
        e["source"]["offset"]: e for _, e in read_dlq(kafka_bootstrap, shipper_config.dlq_topic)
    }
    assert set(records) == {coordinates[17][2]}
    assert "400" in records[coordinates[17][2]]["reason"]
    assert "forbidden word" in records[coordinates[17][2]]["reason"]
    assert records[coordinates[17][2]]["entry"]["message"] == "bad-17"
    assert metrics["dead_lettered"] == 1
    assert committed(kafka_bootstrap, shipper_config.group, topics[0]) == non_empty(
        end_offsets(kafka_bootstrap, topics[0])
    )


def marked(marker: str) -> Any:
    """A fault: 500 for any batch holding an entry whose message contains ``marker``."""

    def fault(entries: list[dict[str, Any]]) -> Scripted | None:
        return server_error(500) if any(marker in e["message"] for e in entries) else None

    return fault


def test_an_entry_logtide_fails_alone_is_dead_lettered_and_the_partition_flows(
    kafka_bootstrap: str, topics: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="logtide_kafka.shipper")
    values = [native("s", f"ok-{i}") for i in range(60)]
    values[23] = native("s", "POISON-23")
    coordinates = produce(kafka_bootstrap, topics[0], values)
    with LogTideServer(fault=marked("POISON")) as server:
        shipper_config = config(kafka_bootstrap, server, topics, batch_max_wait=1.0)
        started = time.monotonic()
        with Running(shipper_config) as running:
            assert server.wait_for(lambda s: len(s.coordinates()) >= 59, 60)
            metrics = running.metrics_when("dead_lettered", 1)
            took = time.monotonic() - started
            assert running.stop() == EXIT_OK
        statuses = [request.status for request in server.requests]
    assert took < 30, took
    assert set(server.messages()) == {f"ok-{i}" for i in range(60) if i != 23}
    # A probe re-posts one accepted entry when nothing else shows LogTide works: at most one.
    assert duplicates(server) <= metrics["probes"] <= 1
    assert statuses.count(500) >= 4
    records = {
        e["source"]["offset"]: e for _, e in read_dlq(kafka_bootstrap, shipper_config.dlq_topic)
    }
    assert set(records) == {coordinates[23][2]}
    reason = records[coordinates[23][2]]["reason"]
    assert reason.startswith("LogTide answered 500: Internal Server Error")
    assert "failed 4 times alone while LogTide accepted other requests" in reason
    assert records[coordinates[23][2]]["entry"]["message"] == "POISON-23"
    assert metrics["dead_lettered"] == metrics["poison_dead_lettered"] == 1
    assert metrics["retry_streak_active"] == 0
    assert committed(kafka_bootstrap, shipper_config.group, topics[0]) == non_empty(
        end_offsets(kafka_bootstrap, topics[0])
    )
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    started_lines = [m for lvl, m in lines if m.startswith("LogTide retry streak started")]
    assert started_lines, lines
    assert started_lines[0].startswith(
        "LogTide retry streak started: LogTide answered 500: Internal Server Error; "
    )
    assert ("WARNING", started_lines[0]) in lines
    assert any(lvl == "WARNING" and "as poison" in m and reason in m for lvl, m in lines)
    ended = [m for lvl, m in lines if lvl == "INFO" and m.startswith("LogTide retry streak ended")]
    assert ended, lines
    assert "1 dead-lettered as poison" in ended[-1]
    assert server.api_key not in caplog.text


def test_a_logtide_down_for_everything_is_waited_for_never_dead_lettered(
    kafka_bootstrap: str, server: LogTideServer, topics: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="logtide_kafka.shipper")
    first = set(produce(kafka_bootstrap, topics[0], [native("s", f"a{i}") for i in range(20)]))
    shipper_config = config(kafka_bootstrap, server, topics, max_backoff=0.2)
    with Running(shipper_config) as running:
        assert server.wait_for(shipped_all(first), 30)  # a known-good entry to probe with
        server.down = server_error(503)
        values = [native("s", f"b{i}") for i in range(30)]
        second = set(produce(kafka_bootstrap, topics[0], values))
        # Long enough for every entry to be split out and fail alone many times over.
        assert server.wait_for(lambda s: len(s.requests) >= 90, 60)
        during = running.shipper.metrics()
        server.down = None
        assert server.wait_for(shipped_all(first | second), 30)
        deadline = time.monotonic() + 10  # the streak ends when the batch is settled
        while running.shipper.metrics()["retry_streak_active"] and time.monotonic() < deadline:
            time.sleep(0.05)
        after = running.shipper.metrics()
        assert running.stop() == EXIT_OK
    assert during["dead_lettered"] == after["dead_lettered"] == 0
    assert during["retry_streak_active"] == 1
    assert during["retry_streak_attempts"] >= 60
    assert during["last_retry_cause"] == "LogTide answered 503: Internal Server Error"
    assert after["retry_streak_active"] == 0
    assert max(server.coordinates().values()) == 1  # failed probes stored nothing
    assert set(server.coordinates()) == first | second
    assert committed(kafka_bootstrap, shipper_config.group, topics[0]) == non_empty(
        end_offsets(kafka_bootstrap, topics[0])
    )
    messages = [r.getMessage() for r in caplog.records]
    goes_on = [m for m in messages if m.startswith("LogTide retry streak goes on")]
    # Reported on each doubling of the attempts (2, 4, 8, ...): a handful of lines, not 90.
    assert 4 <= len(goes_on) <= 8, goes_on
    assert sum(m.startswith("LogTide retry streak started") for m in messages) == 1
    assert any(m.startswith("LogTide retry streak ended") for m in messages)


def test_413_splits_the_batch_and_dead_letters_an_entry_too_large_alone(
    kafka_bootstrap: str, topics: list[str]
) -> None:
    values = [native("s", f"m{i}-" + "x" * 500) for i in range(60)]
    values[25] = native("s", "huge-" + "y" * 10_000)
    coordinates = produce(kafka_bootstrap, topics[0], values)
    with LogTideServer(body_limit=8_000) as server:
        shipper_config = config(kafka_bootstrap, server, topics, batch_max_wait=1.0)
        with Running(shipper_config) as running:
            assert server.wait_for(lambda s: len(s.entries) >= 59, 60)
            metrics = running.metrics_when("dead_lettered", 1)
            assert running.stop() == EXIT_OK
        requests = server.requests
    assert sum(1 for r in requests if r.status == 413) >= 3
    assert all(r.size <= 8_000 for r in requests if r.status == 200)
    assert max(server.coordinates().values()) == 1
    assert len(server.coordinates()) == 59
    [(headers, envelope)] = read_dlq(kafka_bootstrap, shipper_config.dlq_topic)
    assert envelope["source"]["offset"] == coordinates[25][2]
    assert "413" in envelope["reason"]
    assert headers["logtide.source.offset"] == str(coordinates[25][2])
    assert metrics["splits"] >= 3


@pytest.mark.parametrize("fault", ["bad key", "quota"])
def test_bad_key_and_quota_stop_with_a_clear_error_and_commit_nothing(
    kafka_bootstrap: str,
    topics: list[str],
    fault: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = f"sk-live-{uuid.uuid4().hex}"
    produce(kafka_bootstrap, topics[0], [native("s", f"e{i}") for i in range(20)])
    with LogTideServer(api_key=secret if fault == "quota" else "another-key") as server:
        if fault == "quota":
            server.script(quota_exceeded(), times=100)
        shipper_config = config(kafka_bootstrap, server, topics, api_key=secret)
        running = Running(shipper_config)
        with running:
            assert running.wait(30) == EXIT_FATAL
        assert len(server.requests) == 1, "retried a fatal answer"
    error = running.shipper.fatal_error
    assert error is not None
    if fault == "quota":
        assert "quota" in error
        assert "capability.ingestion.max_events_monthly.exceeded" in error
    else:
        assert "API key (401" in error
    assert "nothing was committed" in error
    assert error in caplog.text
    assert committed(kafka_bootstrap, shipper_config.group, topics[0]) == {}
    metrics = running.shipper.metrics()
    assert metrics["last_error"] == error
    output = capsys.readouterr()
    everything = "\n".join(
        [
            caplog.text,
            output.out,
            output.err,
            json.dumps(metrics),
            running.shipper.prometheus(),
            repr(running.shipper),
            repr(shipper_config),
            str(shipper_config),
            error,
        ]
    )
    assert secret not in everything


# -- crashes and rebalances ---------------------------------------------------------------

SHIPPER_MAIN = """
import json, logging, os, sys
from logtide_kafka.pipeline.shipper import ShipperConfig, run_shipper
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
settings = json.loads(sys.argv[1])
settings["topics"] = tuple(settings["topics"])
settings["api_key"] = os.environ["SHIP_TEST_KEY"]
sys.exit(run_shipper(ShipperConfig(**settings)))
"""


def start_process(shipper_config: ShipperConfig, log: Path) -> subprocess.Popen[bytes]:
    settings = {
        "brokers": shipper_config.brokers,
        "api_url": shipper_config.api_url,
        "group": shipper_config.group,
        "topics": list(shipper_config.topics),
        "dlq_topic": shipper_config.dlq_topic,
        "batch_max_events": shipper_config.batch_max_events,
        "batch_max_wait": shipper_config.batch_max_wait,
        "request_timeout": shipper_config.request_timeout,
        "max_backoff": shipper_config.max_backoff,
        "concurrency": shipper_config.concurrency,
        "consumer_config": dict(shipper_config.consumer_config),
    }
    env = {**os.environ, "SHIP_TEST_KEY": shipper_config.api_key}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", SHIPPER_MAIN, json.dumps(settings)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


@pytest.mark.slow
def test_sigkill_mid_batch_then_restart_delivers_everything(
    kafka_bootstrap: str, server: LogTideServer, topics: list[str], tmp_path: Path
) -> None:
    expected = set(produce(kafka_bootstrap, topics[0], [native("s", f"e{i}") for i in range(1000)]))
    # Each accepted batch is recorded, then answered 1 s later: the kill lands in there.
    server.delay = 1.0
    # Two batches of 100 in flight: LogTide may hold up to 200 whose answer the kill loses.
    shipper_config = config(kafka_bootstrap, server, topics, batch_max_events=100, concurrency=2)
    log = tmp_path / "shipper.log"
    first = start_process(shipper_config, log)
    try:
        assert server.wait_for(lambda s: len(s.requests) >= 3, 60), log.read_text()
        first.send_signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
    finally:
        first.kill()
    accepted_before = len(server.entries)
    server.delay = 0.0
    second = start_process(shipper_config, log)
    try:
        assert server.wait_for(shipped_all(expected), 90), log.read_text()
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == EXIT_OK, log.read_text()
    finally:
        second.kill()
    counts = server.coordinates()
    assert set(counts) == expected
    dup = duplicates(server)
    print(f"\nSIGKILL mid-batch: {accepted_before} accepted before the kill, {dup} duplicates")
    # The batch LogTide accepted but whose answer the killed shipper never read is resent:
    # at most the batches in flight, plus one answered whose (asynchronous) commit the
    # kill may have lost.
    batch, in_flight = shipper_config.batch_max_events, shipper_config.concurrency
    assert 1 <= dup <= (in_flight + 1) * batch
    assert committed(kafka_bootstrap, shipper_config.group, topics[0]) == non_empty(
        end_offsets(kafka_bootstrap, topics[0])
    )
    assert server.api_key not in log.read_text()


@pytest.mark.slow
def test_two_shippers_share_partitions_survive_a_rebalance_and_a_second_group_gets_all(
    kafka_bootstrap: str, topics: list[str]
) -> None:
    with LogTideServer() as main, LogTideServer() as fanout:
        group_config = config(kafka_bootstrap, main, topics)
        other_config = config(kafka_bootstrap, fanout, topics, group=unique("fanout"))
        expected: set[Coordinates] = set()
        first = Running(group_config).__enter__()
        second = Running(group_config)
        other = Running(other_config).__enter__()
        stopped_at: int | None = None
        try:
            # Keep producing: partitions only show their owner by the events they carry.
            for chunk in range(40):
                values = [native("s", f"c{chunk}-{i}") for i in range(200)]
                expected |= set(produce(kafka_bootstrap, topics[chunk % 2], values, key=None))
                time.sleep(0.3)
                if chunk == 1:
                    assert main.wait_for(
                        lambda _: first.shipper.metrics()["events_shipped"] > 0, 30
                    )
                    second.__enter__()  # joins while the first one is shipping
                elif stopped_at is None and second.shipper.metrics()["events_shipped"] > 0:
                    assert first.stop() == EXIT_OK  # both own partitions: one leaves
                    stopped_at = chunk
                elif stopped_at is not None and chunk >= stopped_at + 3:
                    break
            assert stopped_at is not None, "the second shipper never got a partition"
            assert main.wait_for(shipped_all(expected), 90), len(main.coordinates())
            assert fanout.wait_for(shipped_all(expected), 90), len(fanout.coordinates())
            assert second.stop() == EXIT_OK
            assert other.stop() == EXIT_OK
        finally:
            for running in (first, second, other):
                running.__exit__()
        first_count = first.shipper.metrics()["events_shipped"]
        second_count = second.shipper.metrics()["events_shipped"]
        print(
            f"\nrebalance: first shipped {first_count}, second {second_count}, "
            f"duplicates {duplicates(main)}; fan-out duplicates {duplicates(fanout)}"
        )
        assert first_count > 0
        assert second_count > 0
        assert set(main.coordinates()) == expected
        assert set(fanout.coordinates()) == expected
        for topic in topics:
            ends = non_empty(end_offsets(kafka_bootstrap, topic))
            assert committed(kafka_bootstrap, group_config.group, topic) == ends
            assert committed(kafka_bootstrap, other_config.group, topic) == ends


def test_a_shipping_process_freezes_its_start_up_heap_and_collects_young_objects_less_often() -> (
    None
):
    """``_freeze_start_up_heap`` changes the collector process-wide: run in a child."""
    code = (
        "import gc, json\n"
        "from logtide_kafka.pipeline.shipper import _GEN0_THRESHOLD, _freeze_start_up_heap\n"
        "before = gc.get_threshold()\n"
        "_freeze_start_up_heap()\n"
        "print(json.dumps([before, gc.get_threshold(), gc.get_freeze_count(), _GEN0_THRESHOLD]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, after, frozen, gen0 = json.loads(out.stdout)
    assert after == [gen0, *before[1:]]
    assert gen0 > before[0]
    assert frozen > 1000  # the modules and classes imported at start-up
