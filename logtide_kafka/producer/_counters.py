"""One producer's counters, and the stderr warnings they feed, each rate-limited.

What a :class:`ProducerStats` snapshot shows, the topics events were sent to (and whether
they exist), whether any broker answers; and the lines about dropped events, missing topics,
unreachable brokers and what a close left behind.  Everything here is read and written under
:attr:`Counters.lock`, except the hot path's enqueued count.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

import orjson
from confluent_kafka import KafkaError, KafkaException

from logtide_kafka.producer._policy import DeliveryPolicy
from logtide_kafka.producer._report import report

__all__ = [
    "MAX_TOPICS",
    "METADATA_TIMEOUT",
    "MISSING_TOPIC_WARN_INTERVAL",
    "PURGED",
    "TOPIC_CHECK_INTERVAL",
    "UNCONFIRMED",
    "Counters",
    "ProducerStats",
    "add_up",
    "describe",
]

#: Seconds between two stderr warnings about the same missing topic.
MISSING_TOPIC_WARN_INTERVAL: Final = 60.0
#: Seconds between two metadata looks for topics not yet confirmed to exist.
TOPIC_CHECK_INTERVAL: Final = 5.0
#: Seconds one metadata request may take.
METADATA_TIMEOUT: Final = 0.5
# Topics are followed (and failures counted per topic) for at most this many topics
# (categories can be made up at run time); failures beyond are still counted in ``failed``.
MAX_TOPICS: Final = 256

_UNKNOWN_TOPIC: Final = frozenset({KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC})
#: Delivery errors of events purged from librdkafka's queue (at close).
PURGED: Final = frozenset({KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT})
# The delivery error after which the event may be in Kafka all the same: it was sent and
# its acknowledgement never came (purged in flight at close).  confluent-kafka does not
# expose the message's persistence status (rd_kafka_message_status), so the error code is
# what there is: an event timed out (after message.timeout.ms) counts as failed, although
# it may have been sent, and so does one purged from the queue while it waited to be sent
# again after a connection loss (see docs/reliability.md).
UNCONFIRMED: Final = frozenset({KafkaError._PURGE_INFLIGHT})


@dataclass(frozen=True, slots=True)
class ProducerStats:
    """A point-in-time snapshot of one producer's counters."""

    #: Events accepted into librdkafka's local queue.
    enqueued: int
    #: Events the brokers acknowledged: enqueued - delivery failures (failed, unconfirmed,
    #: returned to the spool) - queue_length.
    #: Exact once the queue is drained (after ``flush``); a lower bound before, because
    #: successes are not reported one by one (``delivery.report.only.error``).
    delivered: int
    #: Events that did not reach Kafka: delivery errors, purged from the queue at close
    #: before they were sent (also in ``never_sent``), refused by ``produce()``, or
    #: that could not be built.  Events that may be in Kafka are in ``unconfirmed``.
    failed: int
    #: Events never enqueued nor spooled: the sum of ``dropped_by``.
    dropped: int
    #: ``dropped`` by reason: ``queue_full`` (policy ``drop``), ``block_timeout`` (policy
    #: ``block``), ``spool_full`` (policy ``spool``, at its bound), ``closed`` (sent after
    #: close).  Only reasons that happened appear.
    dropped_by: Mapping[str, int]
    #: Events orjson refused as given, repaired into plain JSON and sent anyway.
    encode_errors: int
    #: What librdkafka still holds: events not yet acknowledged, plus any client logs
    #: and error reports waiting for the poller (``len(producer)``).
    queue_length: int
    #: The most recent client or delivery error, as text.
    last_error: str | None
    #: Events over ``message.max.bytes``, cut to fit and sent (see docs/bad-input.md).
    truncated: int = 0
    #: Events written to the spool (policy ``spool``), including those returned to it
    #: from librdkafka's queue at close.
    spooled: int = 0
    #: Events moved from the spool into librdkafka's queue.
    replayed: int = 0
    #: Events in the spool now, waiting to be replayed (left by an earlier process too).
    spool_pending: int = 0
    #: Events sent to a broker whose acknowledgement never came (purged in flight at
    #: close): they may be in Kafka.  Under ``spool`` they are also written back to the spool, so
    #: a replay may store them twice (the shipper drops the repeat by ``event-id``).
    unconfirmed: int = 0
    #: Events purged from librdkafka's queue at close before they were sent (in ``failed``;
    #: under ``spool`` they go back to the spool instead).
    never_sent: int = 0
    #: librdkafka's latest statistics (a parsed JSON object), when the configuration sets
    #: ``statistics.interval.ms``; otherwise ``None``.
    librdkafka: Mapping[str, Any] | None = None


def add_up(snapshots: list[ProducerStats]) -> ProducerStats:
    """The counters of several producers, added up (``last_error`` the last one given;
    ``librdkafka`` and the close-time counts only when there is a single snapshot)."""
    if len(snapshots) == 1:
        return snapshots[0]
    dropped_by: dict[str, int] = {}
    for snapshot in snapshots:
        for reason, count in snapshot.dropped_by.items():
            dropped_by[reason] = dropped_by.get(reason, 0) + count
    errors = [s.last_error for s in snapshots if s.last_error is not None]
    return ProducerStats(
        enqueued=sum(s.enqueued for s in snapshots),
        delivered=sum(s.delivered for s in snapshots),
        failed=sum(s.failed for s in snapshots),
        dropped=sum(s.dropped for s in snapshots),
        dropped_by=dropped_by,
        encode_errors=sum(s.encode_errors for s in snapshots),
        queue_length=sum(s.queue_length for s in snapshots),
        last_error=errors[-1] if errors else None,
        truncated=sum(s.truncated for s in snapshots),
        spooled=sum(s.spooled for s in snapshots),
        replayed=sum(s.replayed for s in snapshots),
        spool_pending=sum(s.spool_pending for s in snapshots),
    )


def describe(exc: BaseException) -> str:
    """An exception as the text of ``last_error`` (librdkafka's own text when it has one)."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return str(exc.args[0].str())
    return f"{type(exc).__name__}: {exc}"


def _is_unknown_topic(err: object) -> bool:
    return isinstance(err, KafkaError) and err.code() in _UNKNOWN_TOPIC


class Counters:
    """The counts of one producer, the state of the topics it sends to, and its warnings.

    Plain fields, read and written under :attr:`lock` (by the producer, its spool bridge
    and the delivery reports), except :attr:`enqueued`: ``next()`` on an itertools.count
    is atomic, so the hot path counts without the lock, and :meth:`snapshot` reads it with
    one more ``next()`` and subtracts its own earlier reads.
    """

    def __init__(self, policy: DeliveryPolicy, where: object, services: set[str]) -> None:
        self._policy = policy
        #: The brokers (``bootstrap.servers``), named in the warnings.
        self.where = where
        #: The producer's service names (the same set, shared), named in the warnings.
        self.services = services
        self.lock = threading.Lock()
        self.enqueued = itertools.count()
        self._enqueued_reads = 0
        self.failed = 0
        self.delivery_failures = 0
        self.dropped: dict[str, int] = {}
        self._dropped_warned = 0
        self._dropped_warned_at = time.monotonic()
        self.encode_errors = 0
        self.truncated = 0
        self.spooled = 0
        self.replayed = 0
        #: librdkafka's latest statistics, as it gave them: parsed only by :meth:`snapshot`.
        self.statistics: str | None = None
        #: Delivery reports of purged events since the close's purge (no lock: the
        #: reports run on the thread serving them, one at a time).
        self.purged = 0
        self.unconfirmed = 0
        self.never_sent = 0
        self.last_error: str | None = None
        # topic -> events failed because it does not exist; warned about by the poller.
        self.missing: dict[str, int] = {}
        self._missing_warned: dict[str, tuple[float, int]] = {}
        self.missing_pending = False
        # Topics sent to, checked in the background: those not yet seen in metadata, and
        # those the brokers said do not exist (events for them are not waited for at close).
        self.topics: set[str] = set()
        self.unchecked: set[str] = set()
        self.absent: set[str] = set()
        self.next_topic_check = 0.0
        self.purged_absent: dict[str, int] = {}
        # librdkafka said every broker is down, and no metadata request succeeded since.
        self.unreachable = False
        self.gave_up = False  # the close stopped waiting: no broker was reachable
        self.next_unreachable_warn = 0.0

    # -- counting -------------------------------------------------------------------------

    def drop(self, reason: str) -> bool:
        """Count an event dropped for ``reason``; False (what a send that drops returns)."""
        with self.lock:
            self.dropped[reason] = self.dropped.get(reason, 0) + 1
        return False

    def count_encode_error(self) -> None:
        with self.lock:
            self.encode_errors += 1

    def count_truncated(self) -> None:
        with self.lock:
            self.truncated += 1

    def count_failure(self, exc: BaseException) -> None:
        """An event that could not be built or enqueued, for ``exc``."""
        with self.lock:
            self.failed += 1
            self.last_error = describe(exc)

    def produce_failed(self, topic: str, exc: Exception) -> bool:
        """Count an event ``produce()`` refused; False (what the refused send returns)."""
        with self.lock:
            self.failed += 1
            self.last_error = f"producing to {topic!r} failed: {describe(exc)}"
            if isinstance(exc, KafkaException) and _is_unknown_topic(exc.args[0]):
                self._count_missing(topic)
        return False

    def note_error(self, exc: BaseException) -> None:
        """Keep ``exc`` as the last error (a user callback raised on the poller)."""
        with self.lock:
            self.last_error = describe(exc)

    def client_error(self, err: KafkaError) -> None:
        """An error librdkafka reported for the client as a whole."""
        with self.lock:
            self.last_error = err.str()
            if err.code() == KafkaError._ALL_BROKERS_DOWN:
                self.unreachable = True

    def count_purged(self, topic: str) -> None:
        """The delivery report of an event purged from the queue (at close)."""
        self.purged += 1
        if topic in self.absent:
            self.purged_absent[topic] = self.purged_absent.get(topic, 0) + 1

    def count_delivery_failure(self, topic: str, err: KafkaError) -> None:
        """An event librdkafka reported as not delivered (and not handed to the spool)."""
        code = err.code()
        with self.lock:
            self.delivery_failures += 1
            if code in UNCONFIRMED:
                self.unconfirmed += 1  # may be in Kafka: not counted as failed
            else:
                self.failed += 1
                if code == KafkaError._PURGE_QUEUE:
                    self.never_sent += 1
            self.last_error = f"delivery to {topic!r} failed: {err.str()}"
            if _is_unknown_topic(err):
                self._count_missing(topic)

    def new_topic(self, topic: str) -> None:
        """A topic sent to for the first time: looked up in the background."""
        with self.lock:
            if len(self.topics) < MAX_TOPICS:
                self.topics.add(topic)
                self.unchecked.add(topic)
                self.next_topic_check = 0.0

    def _count_missing(self, topic: str) -> None:
        """Count an event lost to a topic that does not exist (caller holds the lock)."""
        if topic in self.missing or len(self.missing) < MAX_TOPICS:
            self.missing[topic] = self.missing.get(topic, 0) + 1
            self.missing_pending = True

    def missing_topics(self) -> dict[str, int]:
        with self.lock:
            return dict(self.missing)

    def snapshot(
        self, queue_length: Callable[[], int], spool_pending: Callable[[], int]
    ) -> ProducerStats:
        """The counters now, with ``queue_length()`` and ``spool_pending()`` read under
        the lock, in the order that keeps ``delivered`` a lower bound."""
        with self.lock:
            # The order keeps ``delivered`` a lower bound while other threads log: an
            # event counted in ``enqueued`` is then either still in librdkafka's queue when
            # its length is read, or out of it, in which case a failure was counted before
            # it left (the callback runs before librdkafka frees it), so before the
            # failures are read.  Read the other way round, an event enqueued or failed in
            # between would count as delivered.
            enqueued = next(self.enqueued) - self._enqueued_reads
            self._enqueued_reads += 1
            in_flight = queue_length()
            delivered = enqueued - self.delivery_failures - in_flight
            raw_statistics = self.statistics
            snapshot = ProducerStats(
                enqueued=enqueued,
                delivered=max(delivered, 0),
                failed=self.failed,
                unconfirmed=self.unconfirmed,
                never_sent=self.never_sent,
                dropped=sum(self.dropped.values()),
                dropped_by=dict(self.dropped),
                encode_errors=self.encode_errors,
                queue_length=in_flight,
                last_error=self.last_error,
                truncated=self.truncated,
                spooled=self.spooled,
                replayed=self.replayed,
                spool_pending=spool_pending(),
            )
        if raw_statistics is None:
            return snapshot
        return replace(snapshot, librdkafka=orjson.loads(raw_statistics))

    # -- topics -----------------------------------------------------------------------------

    def check_topics(self, lookup: Callable[..., Any]) -> None:
        """Look up, with ``lookup`` (the client's ``list_topics``), topics sent to and not
        yet seen in the brokers' metadata; name the ones that do not exist, once (on the
        poller thread)."""
        self.next_topic_check = time.monotonic() + TOPIC_CHECK_INTERVAL
        with self.lock:
            unchecked = sorted(self.unchecked)
        for topic in unchecked:
            try:
                metadata = lookup(topic, timeout=METADATA_TIMEOUT)
            except Exception:  # no broker answered: look again later
                return
            found = metadata.topics.get(topic)
            if found is not None and found.error is not None and _is_unknown_topic(found.error):
                with self.lock:
                    self.absent.add(topic)
                    self.unchecked.discard(topic)
                    # One line a minute per topic, this one or the failure count's.
                    warned = topic in self._missing_warned
                    failed = self.missing.get(topic, 0)
                    self._missing_warned[topic] = (time.monotonic(), failed)
                if warned:
                    continue
                report(
                    f"topic {topic!r} does not exist on {self.where}: its events wait, then "
                    "fail; not waited for at close. Create it, or route these events elsewhere.",
                    self.services,
                )
                continue
            if found is None or found.error is not None:
                continue  # no answer for it (leader election…): look again later
            with self.lock:
                self.unchecked.discard(topic)

    # -- warnings ---------------------------------------------------------------------------

    def warn_drops(self, *, force: bool = False) -> None:
        """One stderr line per ``warn_interval`` at most, with the drops since the last."""
        now = time.monotonic()
        policy = self._policy
        with self.lock:
            total = sum(self.dropped.values())
            new = total - self._dropped_warned
            if not new or (not force and now - self._dropped_warned_at < policy.warn_interval):
                return
            reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.dropped.items()))
            self._dropped_warned, self._dropped_warned_at = total, now
        report(
            f"dropped {new} log event(s) (policy {policy.on_full!r}; so far {reasons}); "
            "see stats()",
            self.services,
        )

    def warn_missing_topics(self) -> None:
        """Print which topics are missing, at most once a minute per topic.

        Runs on the poller thread, so an application thread never writes to stderr."""
        now = time.monotonic()
        due: list[tuple[str, int]] = []
        with self.lock:
            self.missing_pending = False
            for topic, count in self.missing.items():
                warned_at, warned_count = self._missing_warned.get(topic, (-1e9, 0))
                if count == warned_count:
                    continue
                if now - warned_at >= MISSING_TOPIC_WARN_INTERVAL:
                    self._missing_warned[topic] = (now, count)
                    due.append((topic, count))
                else:  # new failures, but warned recently: look again on a later pass
                    self.missing_pending = True
        for topic, count in due:
            report(
                f"topic {topic!r} does not exist on {self.where}; "
                f"{count} log event(s) sent to it failed so far. The producer never creates "
                "topics: create it, or route these events to an existing one.",
                self.services,
            )

    def unreachable_warning_due(self) -> bool:
        """Whether, while no broker answers, a warning is due (the next one is then
        ``warn_interval`` away)."""
        if not self.unreachable or time.monotonic() < self.next_unreachable_warn:
            return False
        self.next_unreachable_warn = time.monotonic() + self._policy.warn_interval
        return True

    def warn_unreachable(self, stats: ProducerStats) -> None:
        """Say on stderr that no broker answers, with what waits and what was dropped."""
        # len() counts client logs and error reports too: never more than were enqueued.
        queued = min(stats.queue_length, max(stats.enqueued - stats.failed, 0))
        report(
            f"cannot reach {self.where}: {queued} event(s) "
            f"queued, {stats.dropped} dropped (last error: {stats.last_error})",
            self.services,
        )

    def report_close(self, remaining: int, bound: float, unconfirmed: int, kept: str = "") -> None:
        """Say once, on stderr, what a close leaves behind (``kept``: what the spool keeps
        for the next start); flush pending warnings."""
        if self.missing_pending:  # failures the poller had no time to warn about
            self.warn_missing_topics()
        self.warn_drops(force=True)
        if not remaining:
            return
        line = f"{remaining} log event(s) not delivered to {self.where}"
        if self.gave_up:
            line += f" at close: no broker reachable, so the {bound:.1f}s bound was not waited out"
        else:
            line += f" within {bound:.1f}s at close"
        line += f" ({remaining - unconfirmed} never sent, "
        line += f"{unconfirmed} sent but unconfirmed: those may be in Kafka)"
        if self.purged_absent:
            named = ", ".join(f"{t!r}: {n}" for t, n in sorted(self.purged_absent.items()))
            line += f"; for topics that do not exist, not waited for: {named}"
        if kept:
            line += f"; {kept}"
        report(line, self.services)
