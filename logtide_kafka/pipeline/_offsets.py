"""Which offsets the shipper may commit, and committing them: every consumed message of an
owned partition, in offset order, until it is done; each partition's last commit; what a
rebalance changes.

A partition is committed up to its first message not yet done (accepted by LogTide or
written to the dead-letter topic), never past it: a crash re-sends, never loses
(``docs/shipper.md``).  Used from the consumer's thread only (its callbacks included).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from logtide_kafka.pipeline._delivery import Item
from logtide_kafka.pipeline._metrics import ShipperMetrics
from logtide_kafka.pipeline._shipper_log import SHIPPER_LOG as _log

__all__ = ["Offsets", "PartitionKey"]

#: ``(topic, partition)``.
PartitionKey = tuple[str, int]


class Offsets:
    """Per-partition tracks of consumed items and commit positions for one consumer.

    ``consumer`` is set once the consumer exists (it takes :meth:`on_commit` as its
    ``on_commit`` callback); ``redact`` cleans error texts before they are logged.
    """

    def __init__(self, metrics: ShipperMetrics, redact: Callable[[str], str]) -> None:
        self.consumer: Any = None
        self._metrics = metrics
        self._redact = redact
        # Every consumed item of an owned partition not yet committed, in offset order.
        self._track: dict[PartitionKey, collections.deque[Item]] = {}
        self._owned: set[PartitionKey] = set()
        # The offset last asked to commit, per partition (committed or not: never re-asked).
        self._committed: dict[PartitionKey, int] = {}
        self._frozen = False

    def add(self, key: PartitionKey, item: Item) -> None:
        """Track ``item``, just consumed from partition ``key`` (in offset order)."""
        self.track(key).append(item)

    def track(self, key: PartitionKey) -> collections.deque[Item]:
        """The track of partition ``key``: append its items, just consumed, in offset
        order.  Valid until the next rebalance callback (it may drop the track)."""
        track = self._track.get(key)
        if track is None:
            track = self._track[key] = collections.deque()
        return track

    def freeze(self) -> None:
        """Commit nothing from now on: the run stopped on an error."""
        self._frozen = True

    def commit(self, *, asynchronous: bool, only: Iterable[PartitionKey] | None = None) -> None:
        """Commit each owned partition (or those of ``only``) up to its first message not yet
        done, when that is new: asynchronously while shipping (the result comes to
        :meth:`on_commit`), synchronously at revocation and shutdown."""
        if self._frozen:
            return
        offsets = self._done_offsets(self._owned if only is None else only)
        if not offsets:
            return
        for tp in offsets:  # committed or not, never asked again: a later offset follows
            self._committed[(tp.topic, tp.partition)] = tp.offset
        try:
            self.consumer.commit(offsets=offsets, asynchronous=asynchronous)
        except KafkaException as exc:
            self._commit_failed(exc)
            return
        if not asynchronous:
            self._metrics.add("commits")

    def on_commit(self, error: KafkaError | None, _partitions: list[TopicPartition]) -> None:
        """The result of an asynchronous commit (served by the consumer's poll)."""
        if error is None:
            self._metrics.add("commits")
        elif error.code() != KafkaError._NO_OFFSET:
            self._commit_failed(error.str())

    def assigned(self, partitions: list[TopicPartition]) -> None:
        """``partitions`` are ours now (their committed offset is the group's)."""
        self._owned |= _keys(partitions)
        for tp in partitions:
            self._committed.pop((tp.topic, tp.partition), None)

    def revoked(self, partitions: list[TopicPartition]) -> set[PartitionKey]:
        """Commit what was delivered of ``partitions`` (still ours for the length of the
        revocation callback), then release them; returns their keys."""
        keys = _keys(partitions)
        self.commit(asynchronous=False, only=keys)
        self.release(keys)
        return keys

    def release(self, keys: set[PartitionKey]) -> None:
        """Forget partitions that are no longer ours: their unfinished items are abandoned
        (batches in flight drop them), the next owner reads them again from the committed
        offset."""
        self._metrics.add("rebalances")
        for key in keys:
            for item in self._track.pop(key, ()):
                if not item.done:
                    item.abandoned = True
            self._committed.pop(key, None)
        self._owned -= keys

    def _done_offsets(self, only: Iterable[PartitionKey]) -> list[TopicPartition]:
        """For each partition in ``only``: the offset after its unbroken run of done
        messages (the first one not done stops it there), when that is new."""
        offsets = []
        for key in only:
            track = self._track.get(key)
            last = None
            while track and track[0].done:
                last = track.popleft()
            if last is None:
                continue
            end = last.source.offset + 1
            if end > self._committed.get(key, -1):
                offsets.append(TopicPartition(key[0], key[1], end))
        return offsets

    def _commit_failed(self, error: object) -> None:
        # Not fatal: those messages are shipped again by whoever owns them next.
        self._metrics.add("commit_errors")
        problem = self._redact(f"committing offsets failed: {error}")
        self._metrics.error(problem)
        _log.warning("%s (the messages may be shipped again)", problem)


def _keys(partitions: Iterable[TopicPartition]) -> set[PartitionKey]:
    return {(tp.topic, tp.partition) for tp in partitions}
