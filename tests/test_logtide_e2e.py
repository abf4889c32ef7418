"""End to end against the real LogTide: an application logs through the handler, the structlog
processor and ``send_log``, another producer writes its own JSON, and ``logtide-kafka ship``
carries it all.  Every event is read back through LogTide's query API or found in the
dead-letter topic with a reason, and every partition is committed to its end (no stall).

Runs only when a real LogTide is reachable (the ``logtide`` fixture) and with real Kafka.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import structlog
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from conftest import LogTide

from logtide_kafka import KafkaHandler, configure, flush, send_log
from logtide_kafka._contract import MAX_SERVICE_LEN, cut_utf16, utf16_len
from logtide_kafka.pipeline.shipper import EXIT_OK, Shipper, ShipperConfig
from logtide_kafka.structlog import KafkaProcessor
from logtide_kafka.testing import create_topics, event_problems

pytestmark = [pytest.mark.logtide, pytest.mark.slow]

EMOJI = "\U0001f600"
FFFD = "\ufffd"


def read_back(logtide: LogTide, service: str) -> list[dict[str, Any]]:
    """Every log LogTide stored for ``service`` (its query API, page by page)."""
    found: list[dict[str, Any]] = []
    while True:
        query = urllib.parse.urlencode({"service": service, "limit": 1000, "offset": len(found)})
        request = urllib.request.Request(
            f"{logtide.api_url}/api/v1/logs?{query}", headers={"X-API-Key": logtide.api_key}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            page = orjson.loads(response.read())["logs"]
        found.extend(page)
        if len(page) < 1000:
            return found


def offsets(bootstrap: str, group: str, topic: str) -> tuple[dict[int, int], dict[int, int]]:
    """``(end offsets, the group's committed offsets)`` by partition of ``topic``."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1] for p in partitions
        }
        done = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return ends, {tp.partition: tp.offset for tp in done if tp.offset >= 0}
    finally:
        consumer.close()


def read_dlq(bootstrap: str, topic: str, count: int) -> list[dict[str, Any]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"dlq-{uuid.uuid4().hex}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while len(records) < count and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                records.append(orjson.loads(message.value() or b"null"))
        time.sleep(1)  # and nothing more than expected
        while (message := consumer.poll(0.5)) is not None:
            if message.error() is None:
                records.append(orjson.loads(message.value() or b"null"))
        return records
    finally:
        consumer.close()


Expected = dict[str, tuple[str, str, str]]  # seq -> the stored (service, level, message)


def log_through_the_handler(bootstrap: str, topic: str, base: str, expected: Expected) -> None:
    """Every level number, NUL everywhere, an empty message, a service of 60 emoji (120
    UTF-16 units) and one with a NUL."""
    long_service = f"{base}-h-" + EMOJI * 60
    long_stored = cut_utf16(long_service, MAX_SERVICE_LEN)
    assert utf16_len(long_stored) <= MAX_SERVICE_LEN < utf16_len(long_service)
    handlers = [
        KafkaHandler(f"{base}-handler", topic, bootstrap),
        KafkaHandler(long_service, topic, bootstrap),
        KafkaHandler(f"{base}-h\x00nul", topic, bootstrap),
    ]
    names = [f"{base}-handler", long_stored, f"{base}-h{FFFD}nul"]
    logger = logging.getLogger(f"e2e.{base}")
    logger.setLevel(1)
    logger.propagate = False
    levels = {5: "debug", 10: "debug", 15: "debug", 20: "info", 25: "info", 30: "warn"}
    levels |= {35: "warn", 40: "error", 45: "error", 50: "critical", 60: "critical"}
    for handler, stored in zip(handlers, names, strict=True):
        logger.addHandler(handler)
        for number, level in levels.items():
            seq = f"h-{stored}-{number}"
            logger.log(number, "level %d \x00 here", number, extra={"seq": seq, "k\x00": "v\x00"})
            expected[seq] = (stored, level, f"level {number} {FFFD} here")
        seq = f"h-{stored}-empty"
        logger.info("", extra={"seq": seq, "deep": {"list": ["\x00", {"x\x00": 1}]}})
        expected[seq] = (stored, "info", "(empty message)")
        logger.removeHandler(handler)
        handler.flush()


def log_through_structlog(bootstrap: str, topic: str, base: str, expected: Expected) -> str:
    """Every method, level spellings, local-time timestamps (without an offset, and with
    one); returns the local time with an offset that was logged."""
    processor = KafkaProcessor(f"{base}-structlog\x00", topic, bootstrap)
    log = structlog.wrap_logger(
        structlog.ReturnLogger(),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=False),
            processor,
        ],
    )
    service = f"{base}-structlog{FFFD}"
    for method, level in [
        ("debug", "debug"),
        ("info", "info"),
        ("warning", "warn"),
        ("error", "error"),
        ("critical", "critical"),
    ]:
        getattr(log, method)(f"via {method} \x00", seq=f"s-{method}", **{"k\x00": "\x00"})
        expected[f"s-{method}"] = (service, level, f"via {method} {FFFD}")
    # Without add_log_level (which would overwrite it), an explicit ``level`` is used.
    bare = structlog.wrap_logger(structlog.ReturnLogger(), processors=[processor])
    for spelling, level in [("FATAL", "critical"), ("notice", "info"), ("trace", "debug")]:
        bare.info("", level=spelling, seq=f"s-{spelling}")
        expected[f"s-{spelling}"] = (service, level, "(empty message)")
    local = datetime.now().astimezone().isoformat()
    log.info("local with offset", timestamp=local, seq="s-offset")
    expected["s-offset"] = (service, "info", "local with offset")
    processor.producer.flush(30)
    return local


SPELLINGS: list[tuple[str | int, str]] = [
    ("debug", "debug"),
    ("info", "info"),
    ("warn", "warn"),
    ("warning", "warn"),
    ("WARNING", "warn"),
    ("error", "error"),
    ("err", "error"),
    ("critical", "critical"),
    ("fatal", "critical"),
    ("emerg", "critical"),
    ("trace", "debug"),
    ("notice", "info"),
    ("no such level", "info"),
    (10, "debug"),
    (35, "warn"),
    (50, "critical"),
]


def log_through_send_log(bootstrap: str, topic: str, base: str, expected: Expected) -> None:
    configure(bootstrap, topic=topic)
    direct = f"{base}-direct"
    for index, (spelling, level) in enumerate(SPELLINGS):
        send_log(spelling, f"direct {index}\x00", direct, seq=f"d-{index}", v=["\x00"])
        expected[f"d-{index}"] = (direct, level, f"direct {index}{FFFD}")
    send_log("info", "", direct + "\x00" + EMOJI * 60, seq="d-long")
    long_direct = cut_utf16(direct + FFFD + EMOJI * 60, MAX_SERVICE_LEN)
    expected["d-long"] = (long_direct, "info", "(empty message)")
    assert flush(30) == 0


def produce_as_another_producer(
    bootstrap: str, topic: str, base: str, expected: Expected
) -> list[bytes]:
    """JSON the library did not write: the shipper replaces NUL, cuts the service, converts
    the time and level.  Returns the values that cannot be shipped (for the DLQ)."""
    legacy = f"{base}-legacy"
    others: list[dict[str, Any]] = [
        {
            "msg": "legacy \x00",
            "level": "WARNING",
            "app": legacy + "\x00",
            "seq": "o-1",
            "timestamp": "2025-11-25T10:30:03.5+02:00",
            "k\x00": {"v": "\x00"},
        },
        {"message": "long", "service": legacy + EMOJI * 60, "level": 50, "seq": "o-2"},
    ]
    expected["o-1"] = (legacy + FFFD, "warn", f"legacy {FFFD}")
    expected["o-2"] = (cut_utf16(legacy + EMOJI * 60, MAX_SERVICE_LEN), "critical", "long")
    poison = [b"not json \x00", orjson.dumps({"message": "", "service": legacy})]
    producer = Producer({"bootstrap.servers": bootstrap})
    for value in [orjson.dumps(other) for other in others] + poison:
        producer.produce(topic, value, b"legacy")
    assert producer.flush(30) == 0
    return poison


def ship(config: ShipperConfig, timeout: float = 120) -> None:
    """Run the shipper until every partition is committed to its end (or ``timeout``)."""
    shipper = Shipper(config)
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(shipper.run()), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ends, done = offsets(config.brokers, config.group, config.topics[0])
            if all(done.get(p, 0) == end for p, end in ends.items()):
                break
            time.sleep(0.5)
    finally:
        shipper.stop()
        thread.join(30)
    assert codes == [EXIT_OK]


def stored_events(
    logtide: LogTide, expected: Expected
) -> tuple[dict[str, dict[str, Any]], set[tuple[int, int]]]:
    """What LogTide stored for the expected services, by ``seq``, and their Kafka
    coordinates ``(partition, offset)``."""
    stored: dict[str, dict[str, Any]] = {}
    coordinates: set[tuple[int, int]] = set()
    for service in {service for service, _, _ in expected.values()}:
        for row in read_back(logtide, service):
            metadata = row["metadata"]
            assert metadata["seq"] not in stored, f"stored twice: {row}"
            stored[metadata["seq"]] = row
            coordinates.add((metadata["kafka"]["partition"], metadata["kafka"]["offset"]))
    return stored, coordinates


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def library_written(bootstrap: str, topic: str, ends: dict[int, int]) -> list[dict[str, Any]]:
    """The events the library wrote to ``topic`` (all but the other producer's, keyed
    ``legacy``), decoded."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"raw-{uuid.uuid4().hex}"})
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        seen, events = 0, []
        deadline = time.monotonic() + 30
        while seen < sum(ends.values()) and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None or message.error() is not None:
                continue
            seen += 1
            if message.key() != b"legacy":
                events.append(orjson.loads(message.value() or b"null"))
        assert seen == sum(ends.values())
        return events
    finally:
        consumer.close()


def test_every_event_is_stored_by_logtide_or_dead_lettered_and_no_partition_stalls(
    logtide: LogTide, kafka_bootstrap: str
) -> None:
    # ``logtide`` first: without a server the test skips before a broker is started.
    run = uuid.uuid4().hex[:8]
    topic, dlq = f"logs.e2e-{run}", f"logs.e2e-dlq-{run}"
    create_topics(kafka_bootstrap, [topic, dlq], partitions=3)
    base = f"e2e-{run}"
    expected: Expected = {}
    log_through_the_handler(kafka_bootstrap, topic, base, expected)
    local = log_through_structlog(kafka_bootstrap, topic, base, expected)
    log_through_send_log(kafka_bootstrap, topic, base, expected)
    poison = produce_as_another_producer(kafka_bootstrap, topic, base, expected)

    group = f"e2e-{run}"
    ship(
        ShipperConfig(
            brokers=kafka_bootstrap,
            api_url=logtide.api_url,
            api_key=logtide.api_key,
            group=group,
            topics=(topic,),
            dlq_topic=dlq,
            batch_max_wait=0.5,
            max_backoff=2.0,
        )
    )
    # No partition stalls: every partition is committed to its end.
    ends, done = offsets(kafka_bootstrap, group, topic)
    assert sum(ends.values()) == len(expected) + len(poison)
    assert {p: done.get(p, 0) for p in ends} == ends

    # Every event is in LogTide as expected, or in the dead-letter topic with a reason.
    stored, coordinates = stored_events(logtide, expected)
    assert set(stored) == set(expected)
    for seq, (service, level, message) in expected.items():
        row = stored[seq]
        assert (row["service"], row["level"], row["message"]) == (service, level, message), seq
        assert "\\u0000" not in orjson.dumps(row).decode(), seq
    # What the producer wrote is valid as it is (no NUL, services within 100 UTF-16
    # units), and LogTide stored exactly that.
    written = library_written(kafka_bootstrap, topic, ends)
    assert len(written) == len(expected) - 2  # the other producer wrote two valid events
    for event in written:
        assert event_problems(event) == [], event
        row = stored[event["metadata"]["seq"]]
        for field in ("time", "service", "level", "message"):
            assert row[field] == event[field], field
        assert {k: v for k, v in row["metadata"].items() if k != "kafka"} == event["metadata"]
    first = f"h-{base}-handler"
    assert stored[f"{first}-5"]["metadata"]["k" + FFFD] == "v" + FFFD
    assert stored[f"{first}-empty"]["metadata"]["deep"] == {"list": [FFFD, {"x" + FFFD: 1}]}
    assert stored["o-1"]["time"] == "2025-11-25T08:30:03.500Z"
    assert stored["o-1"]["metadata"]["k" + FFFD] == {"v": FFFD}
    assert stored["d-12"]["metadata"]["level_name"] == "no such level"
    # A local time with an offset is stored in UTC; one without is not guessed (now).
    offset_time = utc(stored["s-offset"]["time"])
    assert abs((offset_time - datetime.fromisoformat(local)).total_seconds()) < 0.001
    assert abs((datetime.now(UTC) - utc(stored["s-info"]["time"])).total_seconds()) < 300

    records = read_dlq(kafka_bootstrap, dlq, len(poison))
    reasons = {record["value"]: record["reason"] for record in records}
    assert sorted(reasons) == sorted(value.decode() for value in poison)
    assert len(records) == len(poison)
    assert "not JSON" in reasons[poison[0].decode()]
    assert "message is empty" in reasons[poison[1].decode()]
    dead = {(r["source"]["partition"], r["source"]["offset"]) for r in records}
    everything = {(p, o) for p, end in ends.items() for o in range(end)}
    assert coordinates | dead == everything
    assert not coordinates & dead
