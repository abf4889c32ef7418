"""Record headers and event ids (no broker), and the headers as Kafka stores them."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from logtide_kafka import KafkaHandler
from logtide_kafka._headers import (
    CONTENT_TYPE,
    EVENT_ID,
    EVENT_SCHEMA_VERSION,
    SCHEMA_VERSION,
    TRACEPARENT,
    event_headers,
    event_id_of,
    new_event_id,
    unwrap_key,
    wrap_key,
)
from logtide_kafka.producer import DeliveryPolicy, LogProducer, resolve_config
from logtide_kafka.producer._spool import Spool

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def test_every_event_gets_an_id_content_type_and_schema_version() -> None:
    headers = dict(event_headers({"message": "m"}, b"abc.1"))
    assert headers == {
        EVENT_ID: b"abc.1",
        CONTENT_TYPE: b"application/json",
        SCHEMA_VERSION: EVENT_SCHEMA_VERSION,
    }


def test_traceparent_only_with_a_valid_trace_and_span() -> None:
    def parent(event: dict[str, object]) -> object:
        return dict(event_headers(event, b"x")).get(TRACEPARENT)

    assert parent({"trace_id": TRACE, "span_id": SPAN}) == f"00-{TRACE}-{SPAN}-01".encode()
    # W3C needs a non-zero parent id: a trace without a span gets no traceparent.
    assert parent({"trace_id": TRACE}) is None
    assert parent({"trace_id": TRACE, "span_id": "0" * 16}) is None
    assert parent({"trace_id": "0" * 32, "span_id": SPAN}) is None
    assert parent({"trace_id": TRACE.upper(), "span_id": SPAN}) is None
    assert parent({"trace_id": TRACE[:-1], "span_id": SPAN}) is None
    assert parent({"trace_id": 7, "span_id": SPAN}) is None


def test_ids_are_unique_and_a_forked_child_draws_a_new_prefix() -> None:
    ids = {new_event_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    prefix = next(iter(ids)).split(b".")[0]
    assert {i.split(b".")[0] for i in ids} == {prefix}
    # Compact: 16 hex, a dot, the counter in hex (8 digits until 4 billion events).
    assert len(max(ids, key=len)) <= 17 + 8
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its first id and leave at once
        os.write(write, new_event_id())
        os._exit(0)
    os.close(write)
    child = os.read(read, 100)
    os.close(read)
    os.waitpid(pid, 0)
    assert child.split(b".")[0] != prefix
    assert child not in ids


def test_a_spooled_key_carries_the_id_and_gives_back_the_key() -> None:
    for key in (b"svc", b"", None, b"\x00odd", b"\x01"):
        assert unwrap_key(wrap_key(key, b"abc.7f")) == (key, b"abc.7f")
        assert unwrap_key(key) == (key, None)  # an ordinary key stays as it is
    assert wrap_key(b"svc", None) == b"svc"
    assert wrap_key(b"svc", b"x" * 300) == b"svc"  # too long to fold: left out


def test_event_id_of_reads_record_headers() -> None:
    assert event_id_of([("content-type", b"a"), (EVENT_ID, b"p.1")]) == b"p.1"
    assert event_id_of(None) is None
    assert event_id_of([]) is None


def test_kafka_stores_the_headers_of_each_event(
    kafka_bootstrap: str, topic: str, service: str, logger: logging.Logger
) -> None:
    handler = KafkaHandler(service, topic=topic, bootstrap_servers=kafka_bootstrap)
    logger.addHandler(handler)
    logger.info("traced", extra={"trace_id": TRACE, "span_id": SPAN})
    logger.info("plain")
    assert handler.producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"h-{service}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        got: list[dict[str, bytes]] = []
        for _ in range(100):
            for message in consumer.consume(10, timeout=0.5):
                if message.error() is None and message.key() == service.encode():
                    pairs = list(message.headers() or [])
                    got.append({str(p[0]): p[1] for p in pairs if isinstance(p[1], bytes)})
            if len(got) == 2:
                break
    finally:
        consumer.close()
    assert len(got) == 2
    traced, plain = got
    assert traced[TRACEPARENT] == f"00-{TRACE}-{SPAN}-01".encode()
    assert TRACEPARENT not in plain
    for headers in got:
        assert headers[CONTENT_TYPE] == b"application/json"
        assert headers[SCHEMA_VERSION] == EVENT_SCHEMA_VERSION
    assert traced[EVENT_ID] != plain[EVENT_ID]


def test_an_event_handed_back_to_the_spool_keeps_its_id(
    dead_bootstrap: str, tmp_path: Path
) -> None:
    policy = DeliveryPolicy(on_full="spool", spool_dir=str(tmp_path))
    producer = LogProducer(
        resolve_config(dead_bootstrap, {"queue.buffering.max.messages": 10}), policy
    )
    for seq in range(15):  # ten queued (with ids), five spooled (ids drawn at replay)
        assert producer.send("logs.application", b"svc", {"message": "m", "seq": seq})
    assert producer.close(0) == 10
    spool = Spool(tmp_path)
    try:
        records = spool.read(100)
    finally:
        spool.close()
    unwrapped = [unwrap_key(key) for _, key, _ in records]
    assert [orjson.loads(value)["seq"] for _, _, value in records] == list(range(15))
    assert all(key == b"svc" for key, _ in unwrapped)
    ids = [event_id for _, event_id in unwrapped]
    assert all(ids[:10])
    assert len(set(ids[:10])) == 10
    assert ids[10:] == [None] * 5


def test_the_largest_event_with_the_longest_key_and_every_header_fits(
    kafka_bootstrap: str, topic: str, logger: logging.Logger
) -> None:
    service = "\U0001f600" * 100  # the longest service name: a 400-byte key
    handler = KafkaHandler(
        service,
        topic=topic,
        bootstrap_servers=kafka_bootstrap,
        producer_config={"message.max.bytes": 20_000},
    )
    logger.addHandler(handler)
    logger.info("x" * 50_000, extra={"trace_id": TRACE, "span_id": SPAN})
    assert handler.producer.flush(30) == 0
    stats = handler.stats()
    # Cut to fit under message.max.bytes with room for the key and the headers: delivered.
    assert (stats.truncated, stats.delivered, stats.failed) == (1, 1, 0)
