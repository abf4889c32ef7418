"""The shipper's commit positions (``_offsets.Offsets``) with a recording consumer: what
is committed, when, and what a rebalance or a fatal error changes.  No Kafka."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from logtide_kafka.pipeline._delivery import Item
from logtide_kafka.pipeline._ingest import Source
from logtide_kafka.pipeline._metrics import ShipperMetrics
from logtide_kafka.pipeline._offsets import Offsets

A, B = ("logs.a", 0), ("logs.a", 1)


class Consumer:
    def __init__(self) -> None:
        self.commits: list[tuple[list[tuple[str, int, int]], bool]] = []
        self.error: KafkaException | None = None

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> Any:
        self.commits.append(([(tp.topic, tp.partition, tp.offset) for tp in offsets], asynchronous))
        if self.error is not None:
            raise self.error


def rig(*owned: tuple[str, int]) -> tuple[Offsets, Consumer, ShipperMetrics]:
    metrics = ShipperMetrics()
    offsets = Offsets(metrics, lambda text: text.replace("secret", "[REDACTED]"))
    offsets.consumer = consumer = Consumer()
    offsets.assigned([TopicPartition(topic, partition) for topic, partition in owned])
    return offsets, consumer, metrics


def items(offsets: Offsets, key: tuple[str, int], count: int, start: int = 0) -> list[Item]:
    made = [Item(Source(key[0], key[1], start + n, None, None), b"", b"{}") for n in range(count)]
    for item in made:
        offsets.add(key, item)
    return made


def test_a_partition_is_committed_up_to_its_first_message_not_done() -> None:
    offsets, consumer, metrics = rig(A, B)
    a = items(offsets, A, 5)
    b = items(offsets, B, 2)
    for item in (a[0], a[1], a[3], b[0], b[1]):
        item.done = True
    offsets.commit(asynchronous=True)
    [(committed, asynchronous)] = consumer.commits
    assert sorted(committed) == [("logs.a", 0, 2), ("logs.a", 1, 2)]  # a[2] holds A back
    assert asynchronous
    assert metrics.snapshot()["commits"] == 0  # counted when on_commit reports it
    offsets.on_commit(None, [])
    assert metrics.snapshot()["commits"] == 1


def test_an_offset_is_asked_once_and_the_next_follows() -> None:
    offsets, consumer, _ = rig(A)
    a = items(offsets, A, 3)
    a[0].done = True
    offsets.commit(asynchronous=True)
    offsets.commit(asynchronous=True)  # nothing new
    a[2].done = True
    offsets.commit(asynchronous=True)  # a[1] still holds it back
    a[1].done = True
    offsets.commit(asynchronous=False)
    assert consumer.commits == [([("logs.a", 0, 1)], True), ([("logs.a", 0, 3)], False)]


def test_revocation_commits_what_was_delivered_and_abandons_the_rest() -> None:
    offsets, consumer, metrics = rig(A, B)
    a = items(offsets, A, 3)
    b = items(offsets, B, 1)
    a[0].done = True
    keys = offsets.revoked([TopicPartition(*A)])
    assert keys == {A}
    assert consumer.commits == [([("logs.a", 0, 1)], False)]
    assert [item.abandoned for item in a] == [False, True, True]
    assert not b[0].abandoned
    assert metrics.snapshot()["rebalances"] == 1
    b[0].done = True
    offsets.commit(asynchronous=True)  # A is no longer ours: only B
    assert consumer.commits[-1] == ([("logs.a", 1, 1)], True)


def test_a_lost_partition_is_released_without_a_commit() -> None:
    offsets, consumer, _ = rig(A)
    a = items(offsets, A, 2)
    a[0].done = True
    offsets.release({A})
    offsets.commit(asynchronous=False)
    assert consumer.commits == []
    assert a[1].abandoned


def test_a_reassigned_partition_commits_again_from_what_the_group_has() -> None:
    offsets, consumer, _ = rig(A)
    first = items(offsets, A, 1)
    first[0].done = True
    offsets.revoked([TopicPartition(*A)])
    offsets.assigned([TopicPartition(*A)])
    again = items(offsets, A, 1)  # the same message, read again by the new owner
    again[0].done = True
    offsets.commit(asynchronous=False)
    assert consumer.commits == [([("logs.a", 0, 1)], False)] * 2


def test_nothing_is_committed_once_frozen() -> None:
    offsets, consumer, _ = rig(A)
    items(offsets, A, 1)[0].done = True
    offsets.freeze()
    offsets.commit(asynchronous=False)
    offsets.revoked([TopicPartition(*A)])
    assert consumer.commits == []


@pytest.mark.parametrize("how", ["raised", "reported"])
def test_a_failed_commit_is_counted_not_fatal(how: str) -> None:
    offsets, consumer, metrics = rig(A)
    items(offsets, A, 1)[0].done = True
    error = KafkaError(KafkaError.REBALANCE_IN_PROGRESS, "secret rebalancing")
    if how == "raised":
        consumer.error = KafkaException(error)
        offsets.commit(asynchronous=False)
    else:
        offsets.on_commit(error, [])
    snapshot = metrics.snapshot()
    assert snapshot["commit_errors"] == 1
    assert snapshot["commits"] == 0
    assert snapshot["last_error"].startswith("committing offsets failed: ")
    assert "secret" not in snapshot["last_error"]


def test_no_offset_to_commit_is_not_an_error() -> None:
    offsets, _, metrics = rig(A)
    offsets.on_commit(KafkaError(KafkaError._NO_OFFSET), [])
    assert metrics.snapshot()["commit_errors"] == 0
