"""The consumer's side of the shipper: read messages into items (converted to LogTide
entries, repeats dropped, tracked for commits) and fill batches by count, bytes and time;
keep the consumer in its group, paused, while every posting thread is busy.

Runs on the consumer's thread only.
"""

from __future__ import annotations

import collections
import functools
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from confluent_kafka import KafkaError, KafkaException, Message

from logtide_kafka.pipeline._dedupe import RecentIds
from logtide_kafka.pipeline._delivery import Item
from logtide_kafka.pipeline._ingest import Source, Unshippable, body_size, to_payload
from logtide_kafka.pipeline._metrics import ShipperMetrics
from logtide_kafka.pipeline._offsets import Offsets, PartitionKey
from logtide_kafka.pipeline._shipper_log import SHIPPER_LOG as _log

__all__ = ["KEEPALIVE", "POLL_SLICE", "Reader"]

#: The longest the main loop blocks in librdkafka, so stop() takes effect promptly.
POLL_SLICE: Final = 0.2
#: Every posting thread busy this long: the consumer is polled (paused) to stay in its
#: group; one request can take request_timeout, a retried batch much longer.
KEEPALIVE: Final = 2.0
# Messages asked of one consume call at most.
_CONSUME_MAX: Final = 500
# Source(...) without the named tuple's own __new__ (a Python function): one per message.
_new_source: Final = functools.partial(tuple.__new__, Source)


class Reader:
    """Turns consumed messages into batches of :class:`~logtide_kafka.pipeline._delivery.Item`.

    ``consumer`` is set once it exists.  Every item read is tracked in ``offsets``;
    ``stopping()`` ends a batch early; ``redact`` cleans warnings before they are logged.
    """

    def __init__(
        self,
        offsets: Offsets,
        metrics: ShipperMetrics,
        *,
        dlq_topic: str,
        batch_max_events: int,
        batch_max_bytes: int,
        batch_max_wait: float,
        stopping: Callable[[], bool],
        redact: Callable[[str], str],
    ) -> None:
        self.consumer: Any = None
        self._offsets = offsets
        self._metrics = metrics
        self._dlq_topic = dlq_topic
        self._max_events = batch_max_events
        # For n >= 1 entries, body_size(sizes, n) is the sum of (size + 1) plus
        # body_size(0, 1) - 1: the body stays within batch_max_bytes while that sum stays
        # within this budget (counted per item, without a call).
        self._budget = batch_max_bytes - body_size(0, 1) + 1
        self._max_wait = batch_max_wait
        self._stopping = stopping
        self._redact = redact
        # Consumed, not yet in a batch (read ahead, or polled while the consumer was paused).
        self._pending: collections.deque[Item] = collections.deque()
        self._recent = RecentIds()  # event ids read lately: a replayed repeat is dropped
        self._paused = False
        self._repause = False
        self._last_poll = time.monotonic()
        self._warned: set[str] = set()

    def batch(self) -> list[Item]:
        """The next batch: enough events or bytes, its time is up, or stop.  Empty when
        nothing came within :data:`POLL_SLICE` (so finished batches are taken in)."""
        if self._paused:
            self._resume()
        batch: list[Item] = []
        used = 0  # the entries' sizes, each plus its separator
        deadline: float | None = None
        pending = self._pending
        take, append = pending.popleft, batch.append
        max_events, budget = self._max_events, self._budget
        while not self._stopping():
            if pending and deadline is None:
                deadline = time.monotonic() + self._max_wait
            while pending and len(batch) < max_events:
                payload = pending[0].payload
                if payload is not None:
                    grown = used + len(payload) + 1
                    if used and grown > budget:
                        return batch  # full by size; the item starts the next batch
                    used = grown
                append(take())
            now = time.monotonic()
            if len(batch) >= max_events or (deadline is not None and now >= deadline):
                return batch
            timeout = POLL_SLICE if deadline is None else min(POLL_SLICE, deadline - now)
            wanted = min(_CONSUME_MAX, max_events - len(batch))
            messages = self.consumer.consume(num_messages=wanted, timeout=timeout)
            self._last_poll = time.monotonic()
            self._accept(messages)
            if not batch and not pending:
                return batch  # nothing to read: let the main loop take in finished batches
        return batch

    def keepalive(self) -> None:
        """Every posting thread is busy: poll the consumer (paused) when it has not been
        polled for :data:`KEEPALIVE` seconds, so it stays in its group."""
        if time.monotonic() - self._last_poll > KEEPALIVE:
            if not self._paused:
                self._pause()
            self._poll(0)

    def assigned(self) -> None:
        """Partitions were assigned: pause them too when the consumer is paused."""
        self._repause = True

    def forget(self, keys: set[PartitionKey]) -> None:
        """Drop what was read ahead of partitions that are no longer ours."""
        # In place: batch() holds on to the deque across the consume call that runs this.
        kept = [item for item in self._pending if item.partition not in keys]
        self._pending.clear()
        self._pending.extend(kept)

    def _accept(self, messages: Sequence[Message]) -> None:
        """Turn consumed messages into pending items (or report consumer errors).

        Runs for every message consumed, so the common case is one loop with its lookups
        hoisted, and the counters reach the metrics (a lock) once per call."""
        pending = self._pending.append
        track_of = self._offsets.track
        dlq_topic = self._dlq_topic
        repeats = self._recent.repeats
        consumed = normalized = dropped = 0
        # A consume() result comes in runs from one partition: its key and track are
        # looked up once per run.  (No rebalance callback runs during this call.)
        # Partition -1 is none: the first message replaces both.
        key: PartitionKey = ("", -1)
        track = self._pending
        try:
            for message in messages:
                error = message.error()
                if error is not None:
                    self._consumer_error(error)
                    continue
                # Never None on a message without an error.
                topic = message.topic() or ""
                partition = message.partition() or 0
                offset = message.offset() or 0
                if partition != key[1] or topic != key[0]:
                    key = (topic, partition)
                    track = track_of(key)
                kind, stamp = message.timestamp()
                source = _new_source(
                    (topic, partition, offset, message.key(), stamp if kind else None)
                )
                raw = message.value()
                if topic == dlq_topic:
                    # A pattern subscription matched the dead-letter topic itself: shipping
                    # its envelopes would dead-letter them again, forever.  Skipped, and
                    # committed.
                    self._warn_once("dlq", f"not shipping the dead-letter topic {topic}")
                    item = Item(source, raw, None, done=True)
                else:
                    consumed += 1
                    if repeats(key, offset, message.headers()):
                        dropped += 1  # its first copy is shipped
                        item = Item(source, raw, None, done=True)
                    else:
                        try:
                            payload, converted = to_payload(raw, source)
                        except Unshippable as exc:
                            item = Item(source, raw, None, exc.reason)
                        else:
                            normalized += converted
                            item = Item(source, raw, payload)
                pending(item)
                track.append(item)
        finally:
            if consumed:
                self._metrics.add("messages_consumed", consumed)
            if normalized:
                self._metrics.add("normalized", normalized)
            if dropped:
                self._metrics.add("duplicates_dropped", dropped)

    def _consumer_error(self, error: KafkaError) -> None:
        if error.fatal():
            raise KafkaException(error)
        if error.code() != KafkaError._PARTITION_EOF:
            self._warn_once(error.str(), f"Kafka consumer: {error.str()}")

    def _poll(self, timeout: float) -> None:
        message = self.consumer.poll(timeout)
        self._last_poll = time.monotonic()
        if message is not None:
            # From a partition assigned since the pause: kept, for the next batch.
            self._accept((message,))
        if self._repause:
            self._pause()

    def _pause(self) -> None:
        self._repause = False
        assignment = self.consumer.assignment()
        if assignment:
            self.consumer.pause(assignment)
        self._paused = True

    def _resume(self) -> None:
        assignment = self.consumer.assignment()
        if assignment:
            self.consumer.resume(assignment)
        self._paused = False

    def _warn_once(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            _log.warning("%s", self._redact(text))
            self._metrics.error(self._redact(text))
