"""Posting one batch to LogTide until each entry is accepted or has a reason to be
dead-lettered: retries, bisection, poison entries, and the retry-streak log lines.

Nothing here touches Kafka; ``Shipper`` hands each batch to :meth:`Poster.deliver` (from
several threads at once) and commits what comes back done.  The rule for poison entries
(``docs/shipper.md``, "Poison entries"):

- 400/413: the batch is bisected at once; an entry refused alone is dead-lettered.
- 5xx or a transport error ("suspect" failures): a chunk is split in two once it failed
  :data:`SPLIT_AFTER` times, or at once when LogTide accepted another request sent after the
  chunk's first failure (LogTide works: the content is the likely cause).
- An entry alone is dead-lettered once it failed :data:`POISON_ATTEMPTS` times and its last
  failure came after LogTide accepted another request sent since the entry's previous
  failure.  A LogTide that fails everything gives no such evidence: its entries wait,
  however long.
- A worker with nothing else to send, whose lone entry failed ``POISON_ATTEMPTS - 1`` times,
  probes with one entry LogTide already accepted (a duplicate in LogTide when it passes: at
  most one per poison entry) to learn whether LogTide works at all.
- 429/408 say nothing about the entries: they hold back every worker until ``Retry-After``.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from logtide_kafka._contract import MAX_BATCH
from logtide_kafka.pipeline._ingest import Source, encode_body
from logtide_kafka.pipeline._logtide_client import Kind, LogTideClient, Outcome, retry_delay
from logtide_kafka.pipeline._metrics import ShipperMetrics
from logtide_kafka.pipeline._shipper_log import SHIPPER_LOG as _log

__all__ = ["POISON_ATTEMPTS", "SPLIT_AFTER", "Fatal", "Health", "Item", "Poster"]

#: Suspect failures (5xx, transport errors) of a chunk before it is split without evidence.
SPLIT_AFTER: Final = 3
#: Suspect failures of an entry posted alone, the last one after evidence that LogTide
#: works, before it is dead-lettered as poison.
POISON_ATTEMPTS: Final = 4
#: A retry streak is reported again each time its failed attempts double, and at least this
#: often (seconds).
STREAK_REPORT_EVERY: Final = 300.0


class Fatal(Exception):
    """LogTide gave an answer that retrying cannot fix: stop without committing."""


@dataclass(slots=True, eq=False)
class Item:
    """One consumed message on its way to LogTide or the dead-letter topic."""

    source: Source
    raw: bytes | None
    #: The encoded LogTide entry; None when the message cannot be shipped.
    payload: bytes | None
    #: Why it goes to the dead-letter topic (set before sending, or by LogTide's answer).
    reason: str | None = None
    #: Shipped or dead-lettered: its offset may be committed.
    done: bool = False
    #: Its partition was revoked before it was done: the new owner reads it again.
    abandoned: bool = False

    @property
    def partition(self) -> tuple[str, int]:
        return (self.source.topic, self.source.partition)


class Health:
    """What every worker knows about LogTide, under one lock: when it last accepted a
    request, the shared hold after a rate limit, a known-good entry for probes, and the
    current retry streak (its log lines and metrics)."""

    def __init__(self, metrics: ShipperMetrics, clock: Callable[[], float] = time.monotonic):
        self._lock = threading.Lock()
        self._metrics = metrics
        self._clock = clock
        self._accepted_sent = -math.inf  # when the latest accepted request was sent
        self._hold_until = 0.0
        self.known_good: bytes | None = None
        self._retrying: dict[int, int] = {}  # delivery id -> events it holds
        self._streak_start: float | None = None
        self._attempts = 0
        self._reported = 0
        self._reported_at = 0.0
        self._delivered = 0
        self._poisoned = 0
        self._cause = ""
        metrics.set_state(retry_streak_active=0, retry_streak_attempts=0)

    def now(self) -> float:
        return self._clock()

    def accepted_since(self, moment: float) -> bool:
        """Did LogTide accept a request sent after ``moment``?"""
        with self._lock:
            return self._accepted_sent > moment

    def hold_remaining(self) -> float:
        with self._lock:
            return max(0.0, self._hold_until - self._clock())

    def hold(self, seconds: float) -> None:
        """No worker sends before ``seconds`` from now (a rate limit is for every worker)."""
        with self._lock:
            self._hold_until = max(self._hold_until, self._clock() + seconds)

    def accepted(self, sent_at: float, events: int, sample: bytes | None) -> None:
        with self._lock:
            self._accepted_sent = max(self._accepted_sent, sent_at)
            if sample is not None:
                self.known_good = sample
            if self._streak_start is not None:
                self._delivered += events

    def failed(self, delivery: int, outcome: Outcome, waiting: int) -> None:
        """A request of ``delivery`` (holding ``waiting`` events) came to a retry."""
        with self._lock:
            now = self._clock()
            self._retrying[delivery] = waiting
            self._attempts += 1
            self._cause = outcome.detail
            if self._streak_start is None:
                self._streak_start = now
                self._reported, self._reported_at = 1, now
                self._delivered = self._poisoned = 0
                _log.warning(
                    "LogTide retry streak started: %s; %d event(s) wait for a retry",
                    outcome.detail,
                    waiting,
                )
            elif self._attempts >= 2 * self._reported or now - self._reported_at >= (
                STREAK_REPORT_EVERY
            ):
                self._reported, self._reported_at = self._attempts, now
                _log.warning(
                    "LogTide retry streak goes on: %d failed attempt(s) in %.0f s, "
                    "%d event(s) waiting, %d delivered meanwhile; last: %s",
                    self._attempts,
                    now - self._streak_start,
                    sum(self._retrying.values()),
                    self._delivered,
                    outcome.detail,
                )
            self._metrics.set_state(
                retry_streak_active=1,
                retry_streak_attempts=self._attempts,
                last_retry_cause=outcome.detail,
            )

    def poisoned(self) -> None:
        with self._lock:
            self._poisoned += 1

    def settled(self, delivery: int) -> None:
        """``delivery`` has nothing left to retry (done, abandoned or stopped)."""
        with self._lock:
            if self._retrying.pop(delivery, None) is None or self._retrying:
                return
            if self._streak_start is not None:
                _log.info(
                    "LogTide retry streak ended after %.1f s: %d failed attempt(s), "
                    "%d event(s) delivered, %d dead-lettered as poison",
                    self._clock() - self._streak_start,
                    self._attempts,
                    self._delivered,
                    self._poisoned,
                )
            self._streak_start = None
            self._attempts = 0
            self._metrics.set_state(retry_streak_active=0, retry_streak_attempts=0)


@dataclass(slots=True, eq=False)
class _Chunk:
    """Entries posted together, and what their failures have shown so far."""

    items: list[Item]
    #: When this chunk, as it is, first failed (None: it has not failed).
    first_failure: float | None = None
    #: When it last failed.
    last_failure: float = -math.inf
    #: Suspect failures (5xx, transport errors).
    suspect: int = 0


class Poster:
    """Delivers batches with one :class:`LogTideClient`; thread-safe.

    ``stopping()``: give up waiting (what is not accepted stays uncommitted).
    ``wait(seconds)``: sleep, or keep the consumer alive meanwhile when on its thread.
    ``between()``: called between requests (the consumer's keepalive when on its thread).
    """

    def __init__(
        self,
        client: LogTideClient,
        health: Health,
        metrics: ShipperMetrics,
        *,
        max_backoff: float,
        stopping: Callable[[], bool],
        wait: Callable[[float], None],
        between: Callable[[], None] = lambda: None,
    ) -> None:
        self._client = client
        self._health = health
        self._metrics = metrics
        self._max_backoff = max_backoff
        self._stopping = stopping
        self._wait = wait
        self._between = between
        self._random = random.Random()
        self._lock = threading.Lock()
        self._next_id = 0

    def backoff_delay(self, outcome: Outcome, attempt: int) -> float:
        with self._lock:  # random.Random is not meant to be shared between threads
            return retry_delay(outcome, attempt, self._max_backoff, self._random)

    def deliver(self, items: list[Item]) -> None:
        """Post ``items``: each ends done (accepted) or with a ``reason`` (to dead-letter),
        unless its partition was revoked or the shipper stops first.  Raises :class:`Fatal`."""
        with self._lock:
            delivery = self._next_id
            self._next_id += 1
        try:
            self._deliver(delivery, items)
        finally:
            self._health.settled(delivery)

    def _deliver(self, delivery: int, items: list[Item]) -> None:
        health = self._health
        stack = [_Chunk(items[i : i + MAX_BATCH]) for i in range(0, len(items), MAX_BATCH)][::-1]
        attempt = 0  # failures in a row: the backoff step
        while stack:
            chunk = stack.pop()
            chunk.items = [item for item in chunk.items if not item.abandoned]
            if not chunk.items:
                continue
            held = health.hold_remaining()
            if held > 0:
                self._wait(held)
            if self._stopping():
                return
            sent_at = health.now()
            evidence = chunk.first_failure is not None and health.accepted_since(chunk.last_failure)
            outcome = self._post(chunk.items)
            self._between()
            if outcome.kind is Kind.ACCEPTED:
                for item in chunk.items:
                    item.done = True
                self._metrics.add("events_shipped", len(chunk.items))
                health.accepted(sent_at, len(chunk.items), chunk.items[0].payload)
                attempt = 0
            elif outcome.kind is Kind.FATAL:
                raise Fatal(outcome.detail)
            elif outcome.kind is not Kind.RETRY:  # 400 / 413: this content never passes
                if len(chunk.items) == 1:
                    chunk.items[0].reason = outcome.detail
                else:
                    stack += self._split(chunk)
            else:
                waiting = sum(len(c.items) for c in stack) + len(chunk.items)
                health.failed(delivery, outcome, waiting)
                self._metrics.add("retries")
                self._metrics.error(outcome.detail)
                if self._stopping():
                    _log.warning("%s; stopping, the batch is left for the next run", outcome.detail)
                    return
                if not self._retry(chunk, outcome, stack, sent_at, evidence):
                    continue
                delay = self.backoff_delay(outcome, attempt)
                attempt += 1
                if not outcome.suspect:
                    health.hold(delay)
                _log.debug("%s; retry %d in %.1f s", outcome.detail, attempt, delay)
                self._wait(delay)
                if self._wants_probe(stack, chunk):
                    self._probe()

    def _retry(
        self, chunk: _Chunk, outcome: Outcome, stack: list[_Chunk], sent_at: float, evidence: bool
    ) -> bool:
        """Put ``chunk`` (or its halves) back on ``stack`` after a retryable failure, or
        condemn its lone entry as poison; whether to wait before the next request."""
        if chunk.first_failure is None:
            chunk.first_failure = sent_at
        chunk.last_failure = sent_at
        if not outcome.suspect:
            stack.append(chunk)  # a rate limit: the same request, after the hold
            return True
        chunk.suspect += 1
        if len(chunk.items) > 1 and (evidence or chunk.suspect >= SPLIT_AFTER):
            stack += self._split(chunk)
            return not evidence  # LogTide works: no reason to wait before the halves
        if len(chunk.items) == 1 and evidence and chunk.suspect >= POISON_ATTEMPTS:
            item = chunk.items[0]
            item.reason = (
                f"{outcome.detail} (failed {chunk.suspect} times alone while LogTide "
                "accepted other requests)"
            )
            self._metrics.add("poison_dead_lettered")
            self._health.poisoned()
            _log.warning("dead-lettering %s as poison: %s", _where(item.source), item.reason)
            return False
        # Others first: a sibling that passes is the evidence this one needs.
        stack.insert(0, chunk)
        return True

    def _split(self, chunk: _Chunk) -> list[_Chunk]:
        """The two halves, the first one on top (posted first)."""
        half = len(chunk.items) // 2
        self._metrics.add("splits")
        return [_Chunk(chunk.items[half:]), _Chunk(chunk.items[:half])]

    def _wants_probe(self, stack: list[_Chunk], chunk: _Chunk) -> bool:
        """A lone suspect entry with nothing else of this batch to try (everything else on
        the stack is ``chunk`` itself), no evidence since its last failure: ask LogTide
        whether it works at all, with an entry it already accepted."""
        return (
            not self._stopping()
            and len(chunk.items) == 1
            and chunk.suspect >= POISON_ATTEMPTS - 1
            and all(c is chunk for c in stack)
            and self._health.known_good is not None
            and not self._health.accepted_since(chunk.last_failure)
        )

    def _probe(self) -> None:
        sample = self._health.known_good
        if sample is None:
            return
        sent_at = self._health.now()
        self._metrics.add("probes")
        outcome = self._post([sample])
        if outcome.kind is Kind.ACCEPTED:
            self._health.accepted(sent_at, 0, None)

    def _post(self, entries: list[Item] | list[bytes]) -> Outcome:
        payloads = [e.payload if isinstance(e, Item) else e for e in entries]
        body = encode_body([p for p in payloads if p is not None])
        self._metrics.add("requests")
        outcome = self._client.post(body)
        if outcome.kind is not Kind.ACCEPTED:
            self._metrics.add("request_errors")
        return outcome


def _where(source: Source) -> str:
    return f"{source.topic}[{source.partition}]@{source.offset}"
