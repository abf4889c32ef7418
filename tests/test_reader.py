"""The reader's batches, from ready-made messages (no broker)."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
from confluent_kafka import Message, TopicPartition

from logtide_kafka.pipeline._ingest import body_size, encode_body
from logtide_kafka.pipeline._metrics import ShipperMetrics
from logtide_kafka.pipeline._offsets import Offsets
from logtide_kafka.pipeline._reader import Reader


class _Consumer:
    """Hands out ``messages`` in consume() calls, then nothing."""

    def __init__(self, messages: list[Message]) -> None:
        self._messages = messages

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        taken, self._messages = self._messages[:num_messages], self._messages[num_messages:]
        return taken


def _messages(count: int) -> list[Message]:
    return [
        Message(
            topic="logs.t",
            partition=0,
            offset=offset,
            value=orjson.dumps(
                {
                    "time": "2025-11-25T08:30:03.214Z",
                    "service": "svc",
                    "level": "info",
                    "message": "m" * (offset % 37 + 1),  # sizes vary
                    "metadata": {},
                }
            ),
            timestamp=(1, 1_700_000_000_000),
        )
        for offset in range(count)
    ]


def _batches(max_events: int, max_bytes: int, count: int) -> list[list[Any]]:
    offsets = Offsets(ShipperMetrics(), str)
    reader = Reader(
        offsets,
        ShipperMetrics(),
        dlq_topic="logs.dlq",
        batch_max_events=max_events,
        batch_max_bytes=max_bytes,
        batch_max_wait=0.0,
        stopping=lambda: False,
        redact=str,
    )
    reader.consumer = _Consumer(_messages(count))
    batches = []
    while batch := reader.batch():
        batches.append(batch)
    return batches


def test_a_batch_is_as_large_as_its_byte_limit_allows_and_no_larger() -> None:
    for max_bytes in (*range(200, 400), 4096):  # every limit: some land on the byte
        batches = _batches(1000, max_bytes, 100)
        assert [item.source.offset for batch in batches for item in batch] == list(range(100))
        for batch, following in itertools.pairwise(batches):
            payloads = [item.payload for item in batch]
            assert len(encode_body(payloads)) <= max_bytes
            # Full: the next batch's first entry would not have fitted.
            grown = body_size(sum(map(len, payloads)) + len(following[0].payload), len(batch) + 1)
            assert grown > max_bytes


def test_an_entry_larger_than_the_limit_goes_alone() -> None:
    batches = _batches(1000, 20, 5)
    assert [len(batch) for batch in batches] == [1, 1, 1, 1, 1]


def test_a_batch_holds_at_most_max_events() -> None:
    batches = _batches(7, 5_000_000, 30)
    assert [len(batch) for batch in batches] == [7, 7, 7, 7, 2]


def test_every_item_is_tracked_in_its_own_partition_whatever_the_order() -> None:
    """Runs from one partition, single messages, two topics with the same partition
    number: each partition is committed up to its own first item not done."""
    order = [("logs.t", 0)] * 3 + [("logs.t", 1), ("logs.u", 1), ("logs.t", 1), ("logs.t", 0)]
    order += [("logs.u", 1), ("logs.u", 0), ("logs.t", 0)] * 2
    next_offset: dict[tuple[str, int], int] = {}
    messages = []
    for topic, partition in order:
        offset = next_offset.get((topic, partition), 0)
        next_offset[(topic, partition)] = offset + 1
        messages.append(
            Message(
                topic=topic,
                partition=partition,
                offset=offset,
                value=orjson.dumps(
                    {
                        "time": "2025-11-25T08:30:03.214Z",
                        "service": "svc",
                        "level": "info",
                        "message": f"{topic}/{partition}/{offset}",
                        "metadata": {},
                    }
                ),
                timestamp=(1, 1_700_000_000_000),
            )
        )
    offsets = Offsets(ShipperMetrics(), str)
    offsets.assigned([TopicPartition(topic, partition) for topic, partition in next_offset])
    committed: list[tuple[str, int, int]] = []

    class Recorder(_Consumer):
        def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> None:
            committed.extend((tp.topic, tp.partition, tp.offset) for tp in offsets)

    reader = Reader(
        offsets,
        ShipperMetrics(),
        dlq_topic="logs.dlq",
        batch_max_events=1000,
        batch_max_bytes=5_000_000,
        batch_max_wait=0.0,
        stopping=lambda: False,
        redact=str,
    )
    reader.consumer = offsets.consumer = Recorder(messages)
    items = [item for batch in iter(reader.batch, []) for item in batch]
    assert [(i.source.topic, i.source.partition) for i in items] == order
    for item in items:  # each payload carries its own message's coordinates
        assert item.payload is not None
        assert orjson.loads(item.payload)["metadata"]["kafka"] == item.source.coordinates()
    # All done but the second item of logs.t/0 and the first ones of logs.u/0 and /1.
    held = {("logs.t", 0, 1), ("logs.u", 0, 0), ("logs.u", 1, 0)}
    for item in items:
        item.done = (item.source.topic, item.source.partition, item.source.offset) not in held
    offsets.commit(asynchronous=True)
    assert sorted(committed) == [("logs.t", 0, 1), ("logs.t", 1, 2)]
