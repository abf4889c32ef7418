"""The one non-blocking producer wrapper that every logging path hands its events to.

``LogProducer`` owns a ``confluent_kafka.Producer`` and a daemon thread that serves its
callbacks, so application threads only ever call the non-blocking ``produce()``.  One
instance exists per distinct configuration (``get_producer``), and every instance is
flushed, within a bound, when the interpreter exits.
"""

from __future__ import annotations

import _thread
import atexit
import itertools
import logging
import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Final

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from logtide_kafka._client_log import CollapsedLog, handled
from logtide_kafka._contract import replace_forbidden_json
from logtide_kafka._event import (
    BUDGETS_IN_USE,
    DECODE_BUDGET,
    ENCODE_ERRORS,
    ENCODE_OPTIONS,
    encode_default,
    encode_repaired,
    fit_payload,
)
from logtide_kafka._headers import (
    Headers,
    event_headers,
    new_event_id,
    unwrap_key,
    wrap_key,
)
from logtide_kafka._policy import DEFAULT_POLICY, DeliveryPolicy
from logtide_kafka._report import report
from logtide_kafka._spool import Spool, SpoolLocked
from logtide_kafka._threads import start_daemon

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_EXIT_TIMEOUT",
    "EXIT_TIMEOUT_ENV",
    "DeliveryPolicy",
    "LogProducer",
    "ProducerStats",
    "close_all",
    "exit_timeout",
    "flush_all",
    "get_producer",
    "resolve_config",
    "set_exit_timeout",
    "stats_all",
]

#: The local queue's default bounds (see DEFAULT_CONFIG).
QUEUE_MAX_MESSAGES: Final = 200_000
QUEUE_MAX_KBYTES: Final = 256 * 1024
#: librdkafka settings applied before the caller's own (which always win).
DEFAULT_CONFIG: Final[Mapping[str, Any]] = {
    "linger.ms": 50,
    "batch.size": 65536,
    "compression.type": "lz4",
    "acks": "all",
    "enable.idempotence": True,
    # Successes need no Python callback: delivered = enqueued - failed - in flight.
    "delivery.report.only.error": True,
    # Topics are created by the pipeline's bootstrap, never by a typo in a category.
    "allow.auto.create.topics": False,
    # Room to ride out one broker crash: the cluster takes no acknowledgement for 9-11 s
    # (broker.session.timeout.ms 9 s, then the new leaders) while an app logging 10,000
    # events/s keeps queueing; 200,000 events is 20 s of that.  By bytes too: 256 MiB
    # holds 200,000 events of up to 1.3 KB each.  Memory: docs/producer.md (about
    # 370 MiB at worst, 430 MiB under spool, with the cost per queued event).
    "queue.buffering.max.messages": QUEUE_MAX_MESSAGES,
    "queue.buffering.max.kbytes": QUEUE_MAX_KBYTES,
}
DEFAULT_BOOTSTRAP: Final = "localhost:9092"
#: Seconds the exit hook waits, in all, for every producer to deliver what it holds: half
#: of the 10 s a container runtime grants between SIGTERM and SIGKILL.
DEFAULT_EXIT_TIMEOUT: Final = 5.0
#: A close stops waiting once nothing was delivered for this long while every broker is
#: unreachable, or while events wait for topics known not to exist.
STALL_SECONDS: Final = 1.0
#: Seconds between two metadata looks for topics not yet confirmed to exist.
TOPIC_CHECK_INTERVAL: Final = 5.0
_METADATA_TIMEOUT: Final = 0.5
#: Sets the exit timeout (seconds) without code: read when the library is imported.
EXIT_TIMEOUT_ENV: Final = "LOGTIDE_KAFKA_EXIT_TIMEOUT"
#: Bytes kept free under ``message.max.bytes`` for the key (a service name: up to 400
#: bytes), the record headers (up to about 200) and the record framing.
RECORD_OVERHEAD: Final = 1024
#: Seconds close() waits, past its bound, for the reports of the events it purged (they
#: take milliseconds): without them it cannot tell never sent from unconfirmed, nor spool.
PURGE_REPORT_WAIT: Final = 0.5
#: Seconds between two stderr warnings about the same missing topic.
MISSING_TOPIC_WARN_INTERVAL: Final = 60.0
#: Loggers under this name carry the library's own and librdkafka's messages; the logging
#: integrations never ship them to Kafka.
CLIENT_LOGGER: Final = "logtide_kafka.client"

_UNKNOWN_TOPIC: Final = frozenset({KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC})
# Delivery errors after which, under the ``spool`` policy, the event goes back to disk:
# it never reached a broker for good, and may well reach one later.
_RETURN_TO_SPOOL: Final = frozenset(
    {KafkaError._MSG_TIMED_OUT, KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT}
)
_PURGED: Final = frozenset({KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT})
# The delivery error after which the event may be in Kafka all the same: it was sent and
# its acknowledgement never came (purged in flight at close).  confluent-kafka does not
# expose the message's persistence status (rd_kafka_message_status), so the error code is
# what there is: an event timed out (after message.timeout.ms) counts as failed, although
# it may have been sent, and so does one purged from the queue while it waited to be sent
# again after a connection loss (see docs/reliability.md).
_UNCONFIRMED: Final = frozenset({KafkaError._PURGE_INFLIGHT})
#: Seconds between two looks for spool directories that exited children left behind.
ADOPT_INTERVAL: Final = 60.0
#: Records moved from the spool into librdkafka's queue per pass of the poller.
REPLAY_CHUNK: Final = 1000
# Per-topic failure counts are kept for at most this many topics (categories can be made
# up at run time); failures beyond are still counted in ``failed``.
_MAX_MISSING_TOPICS: Final = 256
_MAX_SERVICES: Final = 64

_log = logging.getLogger("logtide_kafka")
# A library leaves output to the application's logging configuration (logging HOWTO):
# without one, librdkafka's retries would reach stderr through logging.lastResort.
_log.addHandler(logging.NullHandler())


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


def resolve_config(
    bootstrap_servers: str | None = None, config: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Merge defaults, the ``KAFKA_BROKERS`` environment variable and overrides.

    Precedence, lowest first: :data:`DEFAULT_CONFIG`, ``KAFKA_BROKERS`` (comma-separated),
    ``config`` (any librdkafka key), ``bootstrap_servers``.
    """
    merged: dict[str, Any] = dict(DEFAULT_CONFIG)
    merged["bootstrap.servers"] = os.environ.get("KAFKA_BROKERS") or DEFAULT_BOOTSTRAP
    if config:
        merged.update(config)
    if bootstrap_servers:
        merged["bootstrap.servers"] = bootstrap_servers
    return merged


class LogProducer:
    """A process-wide, never-blocking JSON event producer.

    Use :func:`get_producer` rather than constructing one per call site: each instance
    owns a librdkafka client with its own threads and connections.
    """

    def __init__(self, config: Mapping[str, Any], policy: DeliveryPolicy = DEFAULT_POLICY) -> None:
        self._config = dict(config)
        self.policy = policy
        # A delivery-failure callback: with ``delivery.report.only.error`` (the default)
        # librdkafka reports only failures, so this is called once per lost event.
        self._user_on_delivery: Callable[..., Any] | None = self._config.pop("on_delivery", None)
        self._user_error_cb: Callable[..., Any] | None = self._config.pop("error_cb", None)
        self._user_stats_cb: Callable[[str], Any] | None = self._config.pop("stats_cb", None)
        if policy.on_full == "spool":
            # Queued events wait for the brokers as long as it takes, instead of failing
            # after five minutes; at close, what is left goes back to the spool.
            self._config.setdefault("message.timeout.ms", 0)
        self._queue_max = int(self._config.get("queue.buffering.max.messages", QUEUE_MAX_MESSAGES))
        self._replay_room = self._queue_max // 2
        # Room for the record's key, headers and framing under librdkafka's size limit.
        limit = int(self._config.get("message.max.bytes", 1_000_000))
        self._max_payload = max(limit - RECORD_OVERHEAD, 1024)
        #: Service names of the handlers, processors and send_log calls using this producer,
        #: named in its stderr lines (see :meth:`add_service`).
        self.services: set[str] = set()
        self._reset_counters()
        self._closed = False
        self._forked_child = False
        self._start()
        _instances.add(self)

    def _reset_counters(self) -> None:
        self._lock = threading.Lock()
        # ``next()`` on an itertools.count is atomic, so the hot path counts without the
        # lock; stats() reads it with one more next() and subtracts its own earlier reads.
        self._enqueued = itertools.count()
        self._enqueued_reads = 0
        self._failed = 0
        self._delivery_failures = 0
        self._dropped: dict[str, int] = {}
        self._dropped_warned = 0
        self._dropped_warned_at = time.monotonic()
        self._encode_errors = 0
        self._truncated = 0
        self._spooled = 0
        self._replayed = 0
        self._statistics: str | None = None
        # Events librdkafka handed back (purged at close, timed out) for the spool.
        self._returned: list[tuple[str, bytes | None, bytes]] = []
        self._purged = 0
        self._unconfirmed = 0
        self._never_sent = 0
        self._last_error: str | None = None
        # topic -> events failed because it does not exist; warned about by the poller.
        self._missing: dict[str, int] = {}
        self._missing_warned: dict[str, tuple[float, int]] = {}
        self._missing_pending = False
        # Topics sent to, checked in the background: those not yet seen in metadata, and
        # those the brokers said do not exist (events for them are not waited for at close).
        self._topics: set[str] = set()
        self._unchecked: set[str] = set()
        self._absent: set[str] = set()
        self._next_topic_check = 0.0
        self._purged_absent: dict[str, int] = {}
        # librdkafka said every broker is down, and no metadata request succeeded since.
        self._unreachable = False
        self._gave_up = False  # the close stopped waiting: no broker was reachable
        self._next_unreachable_warn = 0.0

    def _start(self) -> None:
        conf = dict(self._config)
        conf["on_delivery"] = self._on_delivery
        conf["error_cb"] = self._on_error
        if int(conf.get("statistics.interval.ms", 0)) > 0:
            conf["stats_cb"] = self._on_stats
        # librdkafka's lines, one per kind per interval (a logger of the caller's own is
        # given everything, as it comes).
        # Looked up here, not at import: dictConfig disables the loggers that exist then.
        self._client_log = CollapsedLog(logging.getLogger(CLIENT_LOGGER), self.policy.warn_interval)
        conf.setdefault("logger", self._client_log)
        self._producer = Producer(conf)
        self._spool = self._open_spool()
        self._spool_lock = threading.Lock()
        self._replay_lock = threading.Lock()
        self._next_adopt = time.monotonic() + ADOPT_INTERVAL
        # True while the spool holds events: new ones queue up behind them, in order.
        self._spooling = self._spool is not None and self._spool.pending > 0
        self._produce = self._producer.produce
        # Set by a full queue under ``drop``: until there is room again, events are dropped
        # before they are encoded (see ``send``).
        self._full = False
        # False once closed, or in a forked child until the client is restarted: the hot
        # path checks this one flag and leaves both cases to ``_send_unusable``.
        self._usable = True
        self._forked = False
        self._stop = threading.Event()
        self._poller = start_daemon(self._poll_loop, "logtide-kafka-poller")
        _hook_worker_exit()

    def __repr__(self) -> str:
        servers = self._config.get("bootstrap.servers")
        return f"<LogProducer bootstrap.servers={servers!r} closed={self._closed}>"

    # -- the hot path ---------------------------------------------------------------------

    def send(self, topic: str, key: bytes | None, event: Mapping[str, Any]) -> bool:
        """Encode ``event`` and enqueue it without waiting; never raises.

        Returns whether the event was enqueued.  An event that cannot be enqueued is
        counted in :meth:`stats` (``dropped`` or ``failed``), never raised to the caller.
        """
        if self._full and self._usable and self._still_full():  # ``drop``: not worth encoding
            return self._drop("queue_full")
        try:
            # encode_event's first try, inlined: this is the cost every log call pays.
            payload = orjson.dumps(event, default=encode_default)
        except ENCODE_ERRORS:
            # The first try allows string keys only (a third cheaper); others land here.
            if BUDGETS_IN_USE[0]:
                DECODE_BUDGET.reset()  # the next try decodes from the start again
            try:
                payload = orjson.dumps(event, default=encode_default, option=ENCODE_OPTIONS)
            except ENCODE_ERRORS:
                payload = encode_repaired(event)
                with self._lock:
                    self._encode_errors += 1
        # Bytes decoded or text repaired (rare): values past the allowance were cut.
        cut = BUDGETS_IN_USE[0] > 0 and DECODE_BUDGET.reset()
        if len(payload) > self._max_payload:
            payload = fit_payload(event, payload, self._max_payload)
            cut = True
        if cut:
            with self._lock:
                self._truncated += 1
        # U+0000 anywhere (message, keys, values) would make LogTide answer 500: replaced
        # by U+FFFD.  One byte search when there is none.
        payload = replace_forbidden_json(payload)
        if not self._usable:
            return self._send_unusable(topic, key, event)
        if self._spooling:  # older events wait on disk: this one goes behind them
            return self._to_spool(topic, key, payload)
        event_id = new_event_id()
        headers = event_headers(event, event_id)
        on_report = self._report_for(event_id)
        try:
            self._produce(topic, payload, key, on_delivery=on_report, headers=headers)
        except BufferError:
            return self._queue_full(topic, key, payload, headers, on_report)
        except (KafkaException, TypeError, ValueError) as exc:
            return self._produce_failed(topic, exc)
        next(self._enqueued)
        if topic not in self._topics:  # once per topic: looked up in the background
            self._new_topic(topic)
        return True

    def add_service(self, service: str) -> None:
        """Name ``service`` in this producer's stderr lines (a bounded few)."""
        if len(self.services) < _MAX_SERVICES:
            self.services.add(service)

    def _new_topic(self, topic: str) -> None:
        with self._lock:
            if len(self._topics) < _MAX_MISSING_TOPICS:
                self._topics.add(topic)
                self._unchecked.add(topic)
                self._next_topic_check = 0.0

    def _queue_full(
        self,
        topic: str,
        key: bytes | None,
        payload: bytes,
        headers: Headers,
        report: Callable[[KafkaError | None, Message], None] | None,
    ) -> bool:
        """Apply the policy to an event librdkafka's queue has no room for (a spooled event
        was never sent: it gets a new id when replayed)."""
        on_full = self.policy.on_full
        if on_full == "spool":
            return self._to_spool(topic, key, payload)
        if on_full == "drop":
            self._full = True
            return self._drop("queue_full")
        deadline = time.monotonic() + self.policy.block_timeout
        delay = 0.0005
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(delay, left))
            delay = min(delay * 2, 0.01)
            try:
                self._produce(topic, payload, key, on_delivery=report, headers=headers)
            except BufferError:
                continue
            except (KafkaException, TypeError, ValueError) as exc:
                return self._produce_failed(topic, exc)
            next(self._enqueued)
            return True
        return self._drop("block_timeout")

    def _still_full(self) -> bool:
        """Whether librdkafka's queue still holds its maximum of messages.  Only produce()
        tells a full queue for sure, so the event that finds it full is encoded and later
        ones are not until this is false; a queue full by bytes (``.max.kbytes``) is only
        found by produce()."""
        if len(self._producer) >= self._queue_max:
            return True
        self._full = False
        return False

    def _produce_failed(self, topic: str, exc: Exception) -> bool:
        with self._lock:
            self._failed += 1
            self._last_error = f"producing to {topic!r} failed: {_describe(exc)}"
            if isinstance(exc, KafkaException) and _is_unknown_topic(exc.args[0]):
                self._count_missing(topic)
        return False

    def _drop(self, reason: str) -> bool:
        with self._lock:
            self._dropped[reason] = self._dropped.get(reason, 0) + 1
        return False

    def _to_spool(self, topic: str, key: bytes | None, payload: bytes) -> bool:
        spool = self._spool
        assert spool is not None
        with self._spool_lock:
            if not spool.append(topic, key, payload):
                return self._drop("spool_full")
            self._spooling = True
        with self._lock:
            self._spooled += 1
        return True

    def _send_unusable(self, topic: str, key: bytes | None, event: Mapping[str, Any]) -> bool:
        if self._forked:  # first send in a forked child: start its own client, then send
            self._after_fork()
            return self.send(topic, key, event)
        return self._drop("closed")

    # -- lifecycle --------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> int:
        """Wait up to ``timeout`` seconds (default: the exit timeout, see
        :func:`set_exit_timeout`) for queued (and spooled) events; return how many remain."""
        if not self._usable:
            return 0
        bound = _exit_timeout if timeout is None else timeout
        deadline = time.monotonic() + max(bound, 0.0)
        if self._spool is not None and self._spool.pending:
            self._replay_until(deadline)
        remaining: int = self._producer.flush(max(deadline - time.monotonic(), 0.0))
        return remaining + (self._spool.pending if self._spool is not None else 0)

    def close(self, timeout: float | None = None) -> int:
        """Flush within ``timeout``, stop the poller and refuse further events.

        Events still undelivered when the bound is reached are purged and reported once on
        stderr: counted as ``failed``, or, under the ``spool`` policy, written back to the
        front of the spool for the next process.  Returns how many were left undelivered.
        """
        if self._closed:
            return 0
        if self._forked:  # a child that never sent anything: no client to flush
            self._closed = True
            _forget(self)
            return 0
        bound = _exit_timeout if timeout is None else timeout
        deadline = time.monotonic() + max(bound, 0.0)
        self._usable = False  # from here on, sends are dropped as "closed"
        self._stop.set()  # the poller stops replaying; this thread finishes the work
        if self._poller is not threading.current_thread():
            self._poller.join(timeout=1.0)
        if self._spool is not None:
            self._replay_until(deadline)
        remaining = self._drain(deadline)
        self._closed = True
        unconfirmed = self._unconfirmed
        if remaining:
            # len() counts pending client logs and error reports too: count the events
            # the purge hands back instead.
            self._purged = 0
            self._producer.purge(in_queue=True, in_flight=True, blocking=False)
            # Each broker thread hands back its events (in flight too, with their
            # payloads, for the spool) on its next pass: serve their delivery reports,
            # which takes some milliseconds, within a short bound of its own.
            self._producer.flush(PURGE_REPORT_WAIT)
            remaining = self._purged
        self._return_to_spool()
        self._report_close(remaining, bound, self._unconfirmed - unconfirmed)
        if self._spool is not None:
            self._spool.close()
        _forget(self)
        return remaining

    def _drain(self, deadline: float) -> int:
        """Wait for librdkafka's queue until it is empty or ``deadline``, but not for what
        cannot arrive: once nothing was delivered for :data:`STALL_SECONDS` while every
        broker is unreachable (checked again with a metadata request) or events wait for
        topics known not to exist.  Returns what ``len()`` still counts."""
        producer = self._producer
        last = len(producer)
        progress_at = checked_at = time.monotonic()
        while last and (left := deadline - time.monotonic()) > 0:
            remaining: int = producer.flush(min(0.1, left))
            now = time.monotonic()
            # len() counts client logs and error reports too: a fall is not always a
            # delivery, hence the metadata request before giving up on the brokers.
            if remaining < last:
                progress_at = now
            last = remaining
            if self._absent and now - progress_at >= STALL_SECONDS:
                break
            if self._unreachable and now - checked_at >= STALL_SECONDS:
                checked_at = now
                if not self._reachable(min(_METADATA_TIMEOUT, left)):
                    self._gave_up = True
                    break
        return last

    def _reachable(self, timeout: float) -> bool:
        try:
            self._producer.list_topics(timeout=timeout)
        except Exception:
            return False
        self._unreachable = False
        return True

    def _report_close(self, remaining: int, bound: float, unconfirmed: int) -> None:
        """Say once, on stderr, what the close leaves behind; flush pending warnings."""
        if self._missing_pending:  # failures the poller had no time to warn about
            self._warn_missing_topics()
        self._warn_drops(force=True)
        if not remaining:
            return
        where = self._config.get("bootstrap.servers")
        line = f"{remaining} log event(s) not delivered to {where}"
        if self._gave_up:
            line += f" at close: no broker reachable, so the {bound:.1f}s bound was not waited out"
        else:
            line += f" within {bound:.1f}s at close"
        line += f" ({remaining - unconfirmed} never sent, "
        line += f"{unconfirmed} sent but unconfirmed: those may be in Kafka)"
        if self._purged_absent:
            named = ", ".join(f"{t!r}: {n}" for t, n in sorted(self._purged_absent.items()))
            line += f"; for topics that do not exist, not waited for: {named}"
        if self._spool is not None:
            line += (
                f"; {self._spool.pending} event(s) kept in the spool {self._spool.directory} "
                "for the next start"
            )
        report(line, self.services)

    def count_failure(self, exc: BaseException) -> None:
        """Count an event a caller could not even build (a broken ``__str__``…) as failed."""
        with self._lock:
            self._failed += 1
            self._last_error = _describe(exc)

    def stats(self) -> ProducerStats:
        """Return a snapshot of the counters (see :class:`ProducerStats`)."""
        spool = self._spool
        with self._lock:
            # The order keeps ``delivered`` a lower bound while other threads log: an
            # event counted in ``enqueued`` is then either still in librdkafka's queue when
            # its length is read, or out of it, in which case a failure was counted before
            # it left (the callback runs before librdkafka frees it), so before the
            # failures are read.  Read the other way round, an event enqueued or failed in
            # between would count as delivered.
            enqueued = next(self._enqueued) - self._enqueued_reads
            self._enqueued_reads += 1
            # A forked child's inherited client belongs to the parent; a closed one is
            # still there to ask.
            in_flight = 0 if self._forked else len(self._producer)
            delivered = enqueued - self._delivery_failures - in_flight
            raw_statistics = self._statistics
            snapshot = ProducerStats(
                enqueued=enqueued,
                delivered=max(delivered, 0),
                failed=self._failed,
                unconfirmed=self._unconfirmed,
                never_sent=self._never_sent,
                dropped=sum(self._dropped.values()),
                dropped_by=dict(self._dropped),
                encode_errors=self._encode_errors,
                queue_length=in_flight,
                last_error=self._last_error,
                truncated=self._truncated,
                spooled=self._spooled,
                replayed=self._replayed,
                # Still read once closed: the events are on disk for the next start.
                spool_pending=spool.pending if spool is not None and not self._forked else 0,
            )
        if raw_statistics is None:
            return snapshot
        return replace(snapshot, librdkafka=orjson.loads(raw_statistics))

    @property
    def closed(self) -> bool:
        return self._closed

    # -- background work --------------------------------------------------------------------

    def _poll_loop(self) -> None:
        producer, stop, spool = self._producer, self._stop, self._spool
        while not stop.is_set():
            # While the spool holds events and the queue has room, come back quickly to move
            # the next chunk; during an outage (no room) the usual pace will do.
            busy = spool is not None and spool.pending > 0
            try:
                producer.poll(0.01 if busy and len(producer) < self._replay_room else 0.2)
            except Exception as exc:  # a user callback raised; keep serving
                with self._lock:
                    self._last_error = _describe(exc)
            if self._returned:
                self._return_to_spool()
            if busy and len(producer) < self._replay_room:
                self._replay()
            if self._missing_pending:
                self._warn_missing_topics()
            if self._unchecked and time.monotonic() >= self._next_topic_check:
                self._check_topics()
            self._client_log.flush_due()
            if self._unreachable and time.monotonic() >= self._next_unreachable_warn:
                self._warn_unreachable()
            self._warn_drops()
            if spool is not None:
                spool.sync_if_due()
            if spool is not None and time.monotonic() >= self._next_adopt:
                self._next_adopt = time.monotonic() + ADOPT_INTERVAL
                if spool.adopt():  # children (prefork workers) that exited left events
                    with self._spool_lock:
                        self._spooling = True

    # -- the spool ----------------------------------------------------------------------------

    def _open_spool(self) -> Spool | None:
        """Open the policy's spool directory (a forked child gets a directory of its own)."""
        policy = self.policy
        if policy.on_full != "spool" or policy.spool_dir is None:
            return None
        size, fsync = policy.spool_max_bytes, policy.spool_fsync
        if not self._forked_child:
            try:
                return Spool(policy.spool_dir, max_bytes=size, fsync=fsync)
            except SpoolLocked:  # another live process (a spawned worker's parent) owns it
                pass
        return Spool.for_child(policy.spool_dir, max_bytes=size, fsync=fsync)

    def _replay(self) -> int:
        """Move the oldest spooled events into librdkafka's queue, in order, while it has
        room; return how many moved.  The spool forgets them once they are queued: what is
        still queued at close goes back to its front."""
        spool = self._spool
        assert spool is not None
        moved = 0
        with self._replay_lock:
            while len(self._producer) < self._replay_room:
                records = spool.read(REPLAY_CHUNK)
                if not records:
                    break
                done = 0
                for topic, stored_key, value in records:
                    key, event_id = unwrap_key(stored_key)
                    event_id = event_id or new_event_id()
                    headers = event_headers(_trace_ids(value), event_id)
                    report = self._report_for(event_id)
                    try:
                        self._produce(topic, value, key, on_delivery=report, headers=headers)
                    except BufferError:
                        break
                    except (KafkaException, TypeError, ValueError) as exc:
                        self._produce_failed(topic, exc)  # counted; never stalls the spool
                    else:
                        next(self._enqueued)
                    done += 1
                spool.commit(done)
                moved += done
                if done < len(records):
                    break
            with self._spool_lock:
                if spool.pending == 0:
                    self._spooling = False
        if moved:
            with self._lock:
                self._replayed += moved
        return moved

    def _replay_until(self, deadline: float) -> None:
        """Replay, on the calling thread, until the spool is empty or ``deadline``."""
        spool = self._spool
        assert spool is not None
        while spool.pending and (left := deadline - time.monotonic()) > 0:
            if not self._replay():  # no room: wait for the queue to drain a little
                self._producer.flush(min(0.2, left))

    def _return_to_spool(self) -> None:
        """Write events librdkafka handed back to the front of the spool: they are older
        than anything spooled since."""
        with self._lock:
            returned, self._returned = self._returned, []
        if returned and self._spool is not None:
            with self._spool_lock:
                kept = self._spool.prepend(returned)
                if kept:
                    self._spooling = True
            with self._lock:
                self._spooled += kept
                # Enqueued once, so not "dropped" (never enqueued): they failed.
                self._failed += len(returned) - kept

    def _warn_drops(self, *, force: bool = False) -> None:
        """One stderr line per ``warn_interval`` at most, with the drops since the last."""
        now = time.monotonic()
        with self._lock:
            total = sum(self._dropped.values())
            new = total - self._dropped_warned
            if not new or (not force and now - self._dropped_warned_at < self.policy.warn_interval):
                return
            reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self._dropped.items()))
            self._dropped_warned, self._dropped_warned_at = total, now
        report(
            f"dropped {new} log event(s) (policy {self.policy.on_full!r}; so far {reasons}); "
            "see stats()",
            self.services,
        )

    def _count_missing(self, topic: str) -> None:
        """Count an event lost to a topic that does not exist (caller holds the lock)."""
        if topic in self._missing or len(self._missing) < _MAX_MISSING_TOPICS:
            self._missing[topic] = self._missing.get(topic, 0) + 1
            self._missing_pending = True

    def _warn_missing_topics(self) -> None:
        """Print which topics are missing, at most once a minute per topic.

        Runs on the poller thread, so an application thread never writes to stderr."""
        now = time.monotonic()
        due: list[tuple[str, int]] = []
        with self._lock:
            self._missing_pending = False
            for topic, count in self._missing.items():
                warned_at, warned_count = self._missing_warned.get(topic, (-1e9, 0))
                if count == warned_count:
                    continue
                if now - warned_at >= MISSING_TOPIC_WARN_INTERVAL:
                    self._missing_warned[topic] = (now, count)
                    due.append((topic, count))
                else:  # new failures, but warned recently: look again on a later pass
                    self._missing_pending = True
        for topic, count in due:
            report(
                f"topic {topic!r} does not exist on {self._config.get('bootstrap.servers')}; "
                f"{count} log event(s) sent to it failed so far. The producer never creates "
                "topics: create it, or route these events to an existing one.",
                self.services,
            )

    def _warn_unreachable(self) -> None:
        """While no broker answers, and nothing handles the library's loggers (where
        librdkafka's own lines go), one stderr line per ``warn_interval`` says so."""
        self._next_unreachable_warn = time.monotonic() + self.policy.warn_interval
        if handled(self._client_log.logger) or self._reachable(_METADATA_TIMEOUT):
            return
        stats = self.stats()
        # len() counts client logs and error reports too: never more than were enqueued.
        queued = min(stats.queue_length, max(stats.enqueued - stats.failed, 0))
        report(
            f"cannot reach {self._config.get('bootstrap.servers')}: {queued} event(s) "
            f"queued, {stats.dropped} dropped (last error: {stats.last_error})",
            self.services,
        )

    def _check_topics(self) -> None:
        """Look up, in the brokers' metadata, topics sent to and not yet seen there; name
        the ones that do not exist, once (on the poller thread)."""
        self._next_topic_check = time.monotonic() + TOPIC_CHECK_INTERVAL
        with self._lock:
            unchecked = sorted(self._unchecked)
        for topic in unchecked:
            try:
                metadata = self._producer.list_topics(topic, timeout=_METADATA_TIMEOUT)
            except Exception:  # no broker answered: look again later
                return
            found = metadata.topics.get(topic)
            if found is not None and found.error is not None and _is_unknown_topic(found.error):
                with self._lock:
                    self._absent.add(topic)
                    self._unchecked.discard(topic)
                    # One line a minute per topic, this one or the failure count's.
                    warned = topic in self._missing_warned
                    failed = self._missing.get(topic, 0)
                    self._missing_warned[topic] = (time.monotonic(), failed)
                if warned:
                    continue
                report(
                    f"topic {topic!r} does not exist on "
                    f"{self._config.get('bootstrap.servers')}: its events wait, then fail; "
                    "not waited for at close. Create it, or route these events elsewhere.",
                    self.services,
                )
                continue
            if found is None or found.error is not None:
                continue  # no answer for it (leader election…): look again later
            with self._lock:
                self._unchecked.discard(topic)

    def missing_topics(self) -> dict[str, int]:
        """Topics that did not exist when events were sent to them, with how many events
        each lost (also counted in ``failed``)."""
        with self._lock:
            return dict(self._missing)

    def _report_for(self, event_id: bytes) -> Callable[[KafkaError | None, Message], None] | None:
        """The delivery-report callback of one event: under ``spool``, one that knows its
        id (a report carries no headers), so an event handed back keeps it in the spool;
        otherwise None, the shared callback (a callback per event costs about 0.2 KB
        while it is queued)."""
        if self._spool is None:
            return None
        return partial(self._on_report, event_id)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        self._on_report(None, err, msg)

    def _on_report(self, event_id: bytes | None, err: KafkaError | None, msg: Message) -> None:
        """A delivery report (only failures, by default) of the event ``event_id``."""
        if err is not None:
            topic = msg.topic() or ""
            value = msg.value()
            code = err.code()
            if code in _PURGED:
                self._purged += 1
                if topic in self._absent:
                    self._purged_absent[topic] = self._purged_absent.get(topic, 0) + 1
            if self._spool is not None and code in _RETURN_TO_SPOOL and value is not None:
                # Its id goes with it: if this copy is in Kafka after all, the replayed
                # one is recognised as a repeat (the shipper drops it).
                stored_key = wrap_key(msg.key(), event_id)
                with self._lock:
                    self._delivery_failures += 1
                    if code in _UNCONFIRMED:
                        self._unconfirmed += 1
                    self._returned.append((topic, stored_key, value))
                return
            with self._lock:
                self._delivery_failures += 1
                if code in _UNCONFIRMED:
                    self._unconfirmed += 1  # may be in Kafka: not counted as failed
                else:
                    self._failed += 1
                    if code == KafkaError._PURGE_QUEUE:
                        self._never_sent += 1
                self._last_error = f"delivery to {topic!r} failed: {err.str()}"
                if _is_unknown_topic(err):
                    self._count_missing(topic)
        if self._user_on_delivery is not None:
            self._user_on_delivery(err, msg)

    def _on_stats(self, raw: str) -> None:
        self._statistics = raw  # parsed only when someone asks (stats())
        if self._user_stats_cb is not None:
            self._user_stats_cb(raw)

    def _on_error(self, err: KafkaError) -> None:
        with self._lock:
            self._last_error = err.str()
            if err.code() == KafkaError._ALL_BROKERS_DOWN:
                self._unreachable = True
        if err.fatal():
            _log.error("Kafka producer fatal error: %s", err.str())
        if self._user_error_cb is not None:
            self._user_error_cb(err)

    def _after_fork(self) -> None:
        """In a forked child the parent's librdkafka threads do not exist: start afresh.

        The inherited client is kept, never used or destroyed (destroying it would wait on
        threads that are gone), so nothing queued by the parent is delivered twice.
        """
        with _registry_lock:
            if not self._forked:
                return
            # The parent's spool too: closing it here would release the parent's lock.
            _abandoned.append((self._producer, self._spool))
            # A parent thread may have held the counter lock at the fork: start new ones.
            self._reset_counters()
            self._forked_child = True
            self._start()


def _trace_ids(value: bytes) -> dict[str, Any]:
    """The ``trace_id`` and ``span_id`` of an encoded event (for a replayed record's
    headers); empty when there are none or it does not parse."""
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(event, dict):
        return {}
    return {k: event[k] for k in ("trace_id", "span_id") if k in event}


def _is_unknown_topic(err: object) -> bool:
    return isinstance(err, KafkaError) and err.code() in _UNKNOWN_TOPIC


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return str(exc.args[0].str())
    return f"{type(exc).__name__}: {exc}"


# -- the registry: one producer per distinct configuration --------------------------------

_registry: dict[tuple[object, ...], LogProducer] = {}
_registry_lock = threading.RLock()
_abandoned: list[Any] = []
_instances: weakref.WeakSet[LogProducer] = weakref.WeakSet()


def _exit_timeout_from_env() -> float:
    raw = os.environ.get(EXIT_TIMEOUT_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_EXIT_TIMEOUT
    try:
        return check_exit_timeout(float(raw))
    except ValueError:
        report(f"ignoring {EXIT_TIMEOUT_ENV}={raw!r}: not a number of seconds >= 0")
        return DEFAULT_EXIT_TIMEOUT


def check_exit_timeout(seconds: float) -> float:
    """``seconds`` as a float, or ValueError naming the option when it is not >= 0."""
    value = float(seconds)
    if not value >= 0:  # NaN too
        raise ValueError(f"exit_timeout must be a number of seconds >= 0, not {seconds!r}")
    return value


def _registry_key(config: Mapping[str, Any], policy: DeliveryPolicy) -> tuple[object, ...]:
    return (*sorted((str(k), repr(v)) for k, v in config.items()), policy)


def get_producer(
    bootstrap_servers: str | None = None,
    config: Mapping[str, Any] | None = None,
    policy: DeliveryPolicy = DEFAULT_POLICY,
) -> LogProducer:
    """Return the process-wide :class:`LogProducer` for this configuration and policy,
    creating it on first use.  Arguments are merged as in :func:`resolve_config`."""
    merged = resolve_config(bootstrap_servers, config)
    key = _registry_key(merged, policy)
    with _registry_lock:
        producer = _registry.get(key)
        if producer is None or producer.closed:
            producer = _registry[key] = LogProducer(merged, policy)
            _handle_sigterm()
        return producer


def _forget(producer: LogProducer) -> None:
    with _registry_lock:
        for key, value in list(_registry.items()):
            if value is producer:
                del _registry[key]


def set_exit_timeout(seconds: float) -> None:
    """Set the total bound on flushing every producer at interpreter exit (also the
    default of ``flush()``).  Creates no producer; the last value set wins, and
    ``LOGTIDE_KAFKA_EXIT_TIMEOUT`` gives the value before any is set."""
    global _exit_timeout
    _exit_timeout = check_exit_timeout(seconds)


def exit_timeout() -> float:
    """The bound set by :func:`set_exit_timeout` (or the environment, or the default)."""
    return _exit_timeout


def _open_producers() -> list[LogProducer]:
    """Every producer of this process that is not closed: shared or built directly."""
    with _registry_lock:
        return [producer for producer in list(_instances) if not producer.closed]


def flush_all(timeout: float | None = None) -> int:
    """Wait for every producer of the process, sharing one deadline (default: the exit
    timeout); return how many events are still undelivered (queued or spooled) in all.
    Creates no producer."""
    deadline = time.monotonic() + max(_exit_timeout if timeout is None else timeout, 0.0)
    return sum(p.flush(max(deadline - time.monotonic(), 0.0)) for p in _open_producers())


def stats_all() -> ProducerStats:
    """The counters of every producer of the process, added up: closed ones too, whose
    ``dropped_by["closed"]`` counts what was sent after the close (``last_error`` and
    ``librdkafka`` come from one producer only when there is only one).  All zero when
    there is none; creates no producer."""
    with _registry_lock:
        producers = list(_instances)
    snapshots = [producer.stats() for producer in producers]
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


def close_all(timeout: float | None = None) -> int:
    """Close every producer of the process, sharing one deadline; return the events left
    undelivered.  Creates no producer.  Without ``timeout``, the exit timeout counts from
    the first SIGTERM the library's handler took, when there was one: the time the
    process spent ending (joining workers that flush on their own) is part of the bound."""
    start = time.monotonic()
    if timeout is None and _sigterm_at is not None:
        start = min(start, _sigterm_at)
    deadline = start + max(_exit_timeout if timeout is None else timeout, 0.0)
    left = 0
    for producer in _open_producers():
        left += producer.close(max(deadline - time.monotonic(), 0.0))
    return left


#: The pid whose worker-exit hooks are registered (a forked child registers its own).
_hooked_pid: int | None = None
#: Runtimes whose worker processes end with ``os._exit`` after running these finalizers.
_WORKER_RUNTIMES: Final = ("multiprocessing.util", "billiard.util")
#: Billiard's pool workers (Celery prefork) call ``os._exit`` from inside their target, so
#: no finalizer runs there; Celery sends this signal in the child just before.
_CELERY_SIGNALS: Final = "celery.signals"
# Below the default priorities of the runtimes' own finalizers (queues, managers): a
# finalizer that still logs is flushed too.
_FINALIZE_PRIORITY: Final = 0


def _hook_worker_exit() -> None:
    """Close every producer when a ``multiprocessing`` or ``billiard`` (Celery) worker ends.

    Their workers end with ``os._exit`` (a pool recycling a child after
    ``maxtasksperchild``, ``ProcessPoolExecutor(max_tasks_per_child=...)``, Celery's
    ``worker_max_tasks_per_child``), so exit hooks never run; but ``Process._bootstrap``
    first runs the finalizers registered with ``util.Finalize``.  Registered once per
    process, when its first producer starts (a fork child's on its first send: the
    runtime clears the inherited ones), and only for runtimes already imported: never
    imported here.
    """
    global _hooked_pid
    pid = os.getpid()
    if _hooked_pid == pid:
        return
    _hooked_pid = pid
    for name in _WORKER_RUNTIMES:
        util = sys.modules.get(name)
        if util is None:
            continue
        try:
            util.Finalize(None, _close_at_worker_exit, exitpriority=_FINALIZE_PRIORITY)
        except Exception as exc:  # a runtime version we do not know: exit hooks only
            report(f"cannot hook the exit of {name.partition('.')[0]} workers: {exc!r}")
    celery = sys.modules.get(_CELERY_SIGNALS)
    if celery is not None:
        try:  # a dispatch_uid: connected once, however often a process gets here
            celery.worker_process_shutdown.connect(
                _close_at_celery_worker_exit, weak=False, dispatch_uid=__name__
            )
        except Exception as exc:
            report(f"cannot hook the exit of celery workers: {exc!r}")


def _close_at_worker_exit() -> None:
    close_all()


def _close_at_celery_worker_exit(**_: object) -> None:
    close_all()


_sigterm_installed = False
#: When the library's SIGTERM handler first ran (monotonic), in this process.
_sigterm_at: float | None = None


def _handle_sigterm() -> None:
    """Make SIGTERM (what containers and process managers send) flush like a normal exit.

    Python's default for SIGTERM ends the process without running exit hooks, so queued
    logs would be lost.  Only when nobody handles SIGTERM yet, and only from the main
    thread, a handler is set that raises ``SystemExit(128 + SIGTERM)``: the stack unwinds
    and the exit hook flushes, within the exit bound.  An application's own handler, set
    before or after, is left alone (and wins).  ``LOGTIDE_KAFKA_SIGTERM=0`` turns this off.
    """
    global _sigterm_installed
    if _sigterm_installed or os.environ.get("LOGTIDE_KAFKA_SIGTERM") == "0":
        return
    _sigterm_installed = True
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
            # Registered last, so the child's hook runs after every at-fork hook of import.
            os.register_at_fork(
                before=_block_sigterm_for_fork,
                after_in_parent=_unblock_sigterm_in_parent,
                after_in_child=_unblock_sigterm_in_child,
            )
    except (ValueError, OSError):  # not the main interpreter, or no signals here
        pass


def _exit_on_sigterm(signum: int, frame: object) -> None:
    global _sigterm_at
    _sigterm_at = time.monotonic()
    # Raised rather than flushing here: the interrupted code may hold a producer's lock.
    signal.signal(signum, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise SystemExit(128 + signum)


# -- SIGTERM across fork() --------------------------------------------------------------------
# A child inherits the handler above, but until the interpreter has run its after-fork
# steps a SIGTERM sent to it is lost: one that arrives before them is cleared, and one
# taken inside an at-fork hook has its SystemExit swallowed.  ``Pool.terminate()`` sends
# SIGTERM to a worker it may have forked a moment before (replacing one that died), then
# waits for it forever.  So the forking thread blocks SIGTERM across fork(): in the child
# it stays pending until the last at-fork hook, then ends the child as the default
# disposition would (a child that has run nothing has no events of its own).

#: Threads (by ident) that blocked SIGTERM for a fork in progress.
_sigterm_blocked_for_fork: set[int] = set()


def _block_sigterm_for_fork() -> None:
    if signal.getsignal(signal.SIGTERM) is not _exit_on_sigterm:
        return  # the application's own handler (or none): not ours to protect
    try:
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    except SystemExit:  # a SIGTERM taken here, inside the hook, would be swallowed
        _sigterm_again()
        blocked = set()
    if signal.SIGTERM not in blocked:
        _sigterm_blocked_for_fork.add(threading.get_ident())


def _unblock_sigterm_in_parent() -> None:
    if threading.get_ident() not in _sigterm_blocked_for_fork:
        return
    _sigterm_blocked_for_fork.discard(threading.get_ident())
    try:  # a SIGTERM that came during the fork is handled in this call
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    except SystemExit:
        _sigterm_again()


def _sigterm_again() -> None:
    """Hand a SIGTERM the handler took inside an at-fork hook (which swallows its
    SystemExit) back to the main thread, which takes it once the hooks have returned."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # only the main thread runs handlers
    _thread.interrupt_main(signal.SIGTERM)


def _unblock_sigterm_in_child() -> None:
    if threading.get_ident() not in _sigterm_blocked_for_fork:
        return
    _sigterm_blocked_for_fork.clear()  # the parent's other forking threads are not here
    if signal.SIGTERM in signal.sigpending():  # terminated before it could run anything
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    except SystemExit:  # one came in between: the handler has restored the default
        os.kill(os.getpid(), signal.SIGTERM)


def _in_forked_child() -> None:
    global _registry_lock, _hooked_pid, _sigterm_at
    _hooked_pid = None  # the runtime may have cleared the parent's finalizers
    _sigterm_at = None
    _registry_lock = threading.RLock()  # a parent thread may have held it at the fork
    for producer in list(_instances):
        # The parent's client, closed too: the child's garbage collector must never
        # destroy it (that joins threads the child does not have: a crash, or a hang).
        _abandoned.append(producer._producer)
        if not producer.closed:
            producer._usable, producer._forked = False, True


_exit_timeout = _exit_timeout_from_env()
os.register_at_fork(after_in_child=_in_forked_child)
# Registered at import, after ``logging`` registered its own hook: exit hooks run last-in
# first-out, so producers are flushed before logging.shutdown() closes the handlers, and
# after any exit hook the application registers later than this import.
atexit.register(close_all)
