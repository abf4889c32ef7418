"""Reading events back from Kafka, for tests and examples."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from logtide_kafka.testing._cluster import _QUIET

__all__ = ["ConsumedEvent", "read_events"]


@dataclass(frozen=True, slots=True)
class ConsumedEvent:
    """One message read back, with its value decoded from JSON."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: dict[str, Any]
    raw: bytes


def read_events(
    bootstrap_servers: str,
    topic: str,
    *,
    count: int | None = None,
    where: Callable[[dict[str, Any]], bool] | None = None,
    timeout: float = 30.0,
) -> list[ConsumedEvent]:
    """Read a topic from the beginning of every partition, without a consumer group.

    Keeps the events ``where`` accepts (all by default).  With ``count``, returns as soon
    as that many were read, or raises ``TimeoutError`` listing what was found; without,
    returns everything up to the current end of every partition.  Events come back in
    partition order, so one key's events are in the order they were produced.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"logtide-kafka-read-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "logger": _QUIET,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        found: list[ConsumedEvent] = []
        deadline = time.monotonic() + timeout
        if _read(consumer, topic, set(partitions), found, count=count, where=where, until=deadline):
            return found
        raise TimeoutError(
            f"read {len(found)} matching event(s) from {topic!r} in {timeout:g}s, "
            f"wanted {count if count is not None else 'the end of every partition'}"
        )
    finally:
        consumer.close()


def _read(
    consumer: Consumer,
    topic: str,
    partitions: set[int],
    found: list[ConsumedEvent],
    *,
    count: int | None,
    where: Callable[[dict[str, Any]], bool] | None,
    until: float,
) -> bool:
    """Add matching events of ``topic`` to ``found`` until there are ``count`` of them (or,
    without a count, every partition is read to its end); False when ``until`` came first."""
    at_end: set[int] = set()
    while time.monotonic() < until:
        message = consumer.poll(0.2)
        if message is None:
            continue
        error = message.error()
        partition = message.partition() or 0
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                at_end.add(partition)
                if count is None and at_end >= partitions:
                    return True
                continue
            raise RuntimeError(f"consuming {topic!r} failed: {error.str()}")
        at_end.discard(partition)
        raw = message.value() or b""
        value = orjson.loads(raw)
        if where is None or where(value):
            offset = message.offset() or 0
            found.append(ConsumedEvent(topic, partition, offset, message.key(), value, raw))
            if count is not None and len(found) >= count:
                return True
    return False
