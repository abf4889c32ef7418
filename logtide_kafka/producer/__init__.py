"""The one non-blocking producer wrapper that every logging path hands its events to.

``LogProducer`` owns a ``confluent_kafka.Producer`` and a daemon thread that serves its
callbacks, so application threads only ever call the non-blocking ``produce()``.  One
instance exists per distinct configuration (``get_producer``), and every instance is
flushed, within a bound, when the interpreter exits.

This package is the producer wing (``docs/architecture.md``) and this module its public
face.  Its rooms: the process-wide registry, exit bound and exit hooks in ``_lifecycle``;
the counters and the warnings they feed in ``_counters``; the way to and from the disk
spool in ``_spool_bridge``; the full-queue policies in ``_policy``; what every integration
does before producing in ``_publish``; ``send_log`` and ``send_logs`` in ``_direct`` and
``_batch``.  ``LogProducer`` keeps the send path and the life of its one client.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Final

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from logtide_kafka._client_log import CLIENT_LOGGER, LIBRARY_LOGGER, CollapsedLog, handled
from logtide_kafka._contract import replace_forbidden_json
from logtide_kafka._encode import (
    BUDGETS_IN_USE,
    DECODE_BUDGET,
    ENCODE_ERRORS,
    ENCODE_OPTIONS,
    encode_default,
    encode_repaired,
)
from logtide_kafka._fit import fit_payload
from logtide_kafka._headers import Headers, event_headers, new_event_id, wrap_key
from logtide_kafka._threads import start_daemon
from logtide_kafka.producer import _lifecycle
from logtide_kafka.producer._counters import (
    METADATA_TIMEOUT,
    PURGED,
    Counters,
    ProducerStats,
)
from logtide_kafka.producer._lifecycle import (
    DEFAULT_EXIT_TIMEOUT,
    EXIT_TIMEOUT_ENV,
    close_all,
    exit_timeout,
    flush_all,
    set_exit_timeout,
    stats_all,
)
from logtide_kafka.producer._policy import DEFAULT_POLICY, DeliveryPolicy
from logtide_kafka.producer._spool_bridge import RETURN_TO_SPOOL, SpoolBridge, open_spool

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
#: A close stops waiting once nothing was delivered for this long while every broker is
#: unreachable, or while events wait for topics known not to exist.
STALL_SECONDS: Final = 1.0
#: Bytes kept free under ``message.max.bytes`` for the key (a service name: up to 400
#: bytes), the record headers (up to about 200) and the record framing.
RECORD_OVERHEAD: Final = 1024
#: Seconds close() waits, past its bound, for the reports of the events it purged (they
#: take milliseconds): without them it cannot tell never sent from unconfirmed, nor spool.
PURGE_REPORT_WAIT: Final = 0.5
_MAX_SERVICES: Final = 64

_log = logging.getLogger(LIBRARY_LOGGER)


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


def get_producer(
    bootstrap_servers: str | None = None,
    config: Mapping[str, Any] | None = None,
    policy: DeliveryPolicy = DEFAULT_POLICY,
) -> LogProducer:
    """Return the process-wide :class:`LogProducer` for this configuration and policy,
    creating it on first use.  Arguments are merged as in :func:`resolve_config`."""
    merged = resolve_config(bootstrap_servers, config)
    key = _lifecycle.registry_key(merged, policy)
    return _lifecycle.shared(key, partial(LogProducer, merged, policy))


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
        _lifecycle.track(self)

    def _reset_counters(self) -> None:
        self._counts = Counters(self.policy, self._config.get("bootstrap.servers"), self.services)
        # Used by every send: bound here, so the hot path looks up one attribute, not two.
        self._enqueued = self._counts.enqueued
        self._topics = self._counts.topics

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
        spool = open_spool(self.policy, self._forked_child)
        self._bridge = (
            None
            if spool is None
            else SpoolBridge(
                spool, self._counts, self._producer, self._replay_room, self._produce_replayed
            )
        )
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
        _lifecycle.hook_worker_exit()

    def __repr__(self) -> str:
        servers = self._config.get("bootstrap.servers")
        return f"<LogProducer bootstrap.servers={servers!r} closed={self._closed}>"

    # -- the hot path ---------------------------------------------------------------------
    # Every log call pays for what ``send`` does: the encoding is inlined and the counters
    # it touches are bound to attributes of this object, rather than called through the
    # rooms they belong to (_encode, _counters).

    def send(self, topic: str, key: bytes | None, event: Mapping[str, Any]) -> bool:
        """Encode ``event`` and enqueue it without waiting; never raises.

        Returns whether the event was enqueued.  An event that cannot be enqueued is
        counted in :meth:`stats` (``dropped`` or ``failed``), never raised to the caller.
        """
        if self._full and self._usable and self._still_full():  # ``drop``: not worth encoding
            return self._counts.drop("queue_full")
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
                self._counts.count_encode_error()
        # Bytes decoded or text repaired (rare): values past the allowance were cut.
        cut = BUDGETS_IN_USE[0] > 0 and DECODE_BUDGET.reset()
        if len(payload) > self._max_payload:
            payload = fit_payload(event, payload, self._max_payload)
            cut = True
        if cut:
            self._counts.count_truncated()
        # U+0000 anywhere (message, keys, values) would make LogTide answer 500: replaced
        # by U+FFFD.  One byte search when there is none.
        payload = replace_forbidden_json(payload)
        if not self._usable:
            return self._send_unusable(topic, key, event)
        # Without a spool (the usual case) one attribute test, as a flag would cost.
        if self._bridge is not None and self._bridge.spooling:
            return self._bridge.append(topic, key, payload)  # behind the older events on disk
        event_id = new_event_id()
        headers = event_headers(event, event_id)
        on_report = self._report_for(event_id)
        try:
            self._produce(topic, payload, key, on_delivery=on_report, headers=headers)
        except BufferError:
            return self._queue_full(topic, key, payload, headers, on_report)
        except (KafkaException, TypeError, ValueError) as exc:
            return self._counts.produce_failed(topic, exc)
        next(self._enqueued)
        if topic not in self._topics:  # once per topic: looked up in the background
            self._counts.new_topic(topic)
        return True

    def add_service(self, service: str) -> None:
        """Name ``service`` in this producer's stderr lines (a bounded few)."""
        if len(self.services) < _MAX_SERVICES:
            self.services.add(service)

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
            assert self._bridge is not None
            return self._bridge.append(topic, key, payload)
        if on_full == "drop":
            self._full = True
            return self._counts.drop("queue_full")
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
                return self._counts.produce_failed(topic, exc)
            next(self._enqueued)
            return True
        return self._counts.drop("block_timeout")

    def _still_full(self) -> bool:
        """Whether librdkafka's queue still holds its maximum of messages.  Only produce()
        tells a full queue for sure, so the event that finds it full is encoded and later
        ones are not until this is false; a queue full by bytes (``.max.kbytes``) is only
        found by produce()."""
        if len(self._producer) >= self._queue_max:
            return True
        self._full = False
        return False

    def _produce_replayed(
        self, topic: str, value: bytes, key: bytes | None, headers: Headers, event_id: bytes
    ) -> bool:
        """Enqueue one record replayed from the spool; False when the queue has no room."""
        try:
            self._produce(
                topic, value, key, on_delivery=self._report_for(event_id), headers=headers
            )
        except BufferError:
            return False
        except (KafkaException, TypeError, ValueError) as exc:
            self._counts.produce_failed(topic, exc)  # counted; never stalls the spool
        else:
            next(self._enqueued)
        return True

    def _send_unusable(self, topic: str, key: bytes | None, event: Mapping[str, Any]) -> bool:
        if self._forked:  # first send in a forked child: start its own client, then send
            self._after_fork()
            return self.send(topic, key, event)
        return self._counts.drop("closed")

    # -- lifecycle --------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> int:
        """Wait up to ``timeout`` seconds (default: the exit timeout, see
        :func:`set_exit_timeout`) for queued (and spooled) events; return how many remain."""
        if not self._usable:
            return 0
        bound = exit_timeout() if timeout is None else timeout
        deadline = time.monotonic() + max(bound, 0.0)
        bridge = self._bridge
        if bridge is not None and bridge.spool.pending:
            bridge.replay_until(deadline)
        remaining: int = self._producer.flush(max(deadline - time.monotonic(), 0.0))
        return remaining + (bridge.spool.pending if bridge is not None else 0)

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
            _lifecycle.forget(self)
            return 0
        bound = exit_timeout() if timeout is None else timeout
        deadline = time.monotonic() + max(bound, 0.0)
        self._usable = False  # from here on, sends are dropped as "closed"
        self._stop.set()  # the poller stops replaying; this thread finishes the work
        if self._poller is not threading.current_thread():
            self._poller.join(timeout=1.0)
        bridge, counts = self._bridge, self._counts
        if bridge is not None:
            bridge.replay_until(deadline)
        remaining = self._drain(deadline)
        self._closed = True
        unconfirmed = counts.unconfirmed
        if remaining:
            # len() counts pending client logs and error reports too: count the events
            # the purge hands back instead.
            counts.purged = 0
            self._producer.purge(in_queue=True, in_flight=True, blocking=False)
            # Each broker thread hands back its events (in flight too, with their
            # payloads, for the spool) on its next pass: serve their delivery reports,
            # which takes some milliseconds, within a short bound of its own.
            self._producer.flush(PURGE_REPORT_WAIT)
            remaining = counts.purged
        if bridge is not None:
            bridge.return_handed_back()
        kept = bridge.kept() if bridge is not None else ""
        counts.report_close(remaining, bound, counts.unconfirmed - unconfirmed, kept)
        if bridge is not None:
            bridge.spool.close()
        _lifecycle.forget(self)
        return remaining

    def _drain(self, deadline: float) -> int:
        """Wait for librdkafka's queue until it is empty or ``deadline``, but not for what
        cannot arrive: once nothing was delivered for :data:`STALL_SECONDS` while every
        broker is unreachable (checked again with a metadata request) or events wait for
        topics known not to exist.  Returns what ``len()`` still counts."""
        producer, counts = self._producer, self._counts
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
            if counts.absent and now - progress_at >= STALL_SECONDS:
                break
            if counts.unreachable and now - checked_at >= STALL_SECONDS:
                checked_at = now
                if not self._reachable(min(METADATA_TIMEOUT, left)):
                    counts.gave_up = True
                    break
        return last

    def _reachable(self, timeout: float) -> bool:
        try:
            self._producer.list_topics(timeout=timeout)
        except Exception:
            return False
        self._counts.unreachable = False
        return True

    def count_failure(self, exc: BaseException) -> None:
        """Count an event a caller could not even build (a broken ``__str__``…) as failed."""
        self._counts.count_failure(exc)

    def stats(self) -> ProducerStats:
        """Return a snapshot of the counters (see :class:`ProducerStats`)."""
        bridge = self._bridge
        # A forked child's inherited client belongs to the parent; a closed one is still
        # there to ask.  A closed spool is still read: its events wait for the next start.
        return self._counts.snapshot(
            lambda: 0 if self._forked else len(self._producer),
            lambda: bridge.spool.pending if bridge is not None and not self._forked else 0,
        )

    def missing_topics(self) -> dict[str, int]:
        """Topics that did not exist when events were sent to them, with how many events
        each lost (also counted in ``failed``)."""
        return self._counts.missing_topics()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- background work --------------------------------------------------------------------

    def _poll_loop(self) -> None:
        producer, stop, bridge, counts = self._producer, self._stop, self._bridge, self._counts
        room = self._replay_room
        while not stop.is_set():
            # While the spool holds events and the queue has room, come back quickly to move
            # the next chunk; during an outage (no room) the usual pace will do.
            busy = bridge is not None and bridge.spool.pending > 0
            try:
                producer.poll(0.01 if busy and len(producer) < room else 0.2)
            except Exception as exc:  # a user callback raised; keep serving
                counts.note_error(exc)
            if bridge is not None:
                bridge.return_handed_back()
                if busy and len(producer) < room:
                    bridge.replay()
            if counts.missing_pending:
                counts.warn_missing_topics()
            if counts.unchecked and time.monotonic() >= counts.next_topic_check:
                counts.check_topics(producer.list_topics)
            self._client_log.flush_due()
            if counts.unreachable_warning_due():
                self._warn_unreachable()
            counts.warn_drops()
            if bridge is not None:
                bridge.maintain()
            _lifecycle.watch_sigterm()  # a SIGTERM the main thread slept through

    def _warn_unreachable(self) -> None:
        """While no broker answers, and nothing handles the library's loggers (where
        librdkafka's own lines go), one stderr line per ``warn_interval`` says so."""
        if handled(self._client_log.logger) or self._reachable(METADATA_TIMEOUT):
            return
        self._counts.warn_unreachable(self.stats())

    # -- callbacks (on the poller thread, or the thread that flushes) -----------------------

    def _report_for(self, event_id: bytes) -> Callable[[KafkaError | None, Message], None] | None:
        """The delivery-report callback of one event: under ``spool``, one that knows its
        id (a report carries no headers), so an event handed back keeps it in the spool;
        otherwise None, the shared callback (a callback per event costs about 0.2 KB
        while it is queued)."""
        if self._bridge is None:
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
            if code in PURGED:
                self._counts.count_purged(topic)
            if self._bridge is not None and code in RETURN_TO_SPOOL and value is not None:
                # Its id goes with it: if this copy is in Kafka after all, the replayed
                # one is recognised as a repeat (the shipper drops it).
                self._bridge.hand_back(topic, wrap_key(msg.key(), event_id), value, code)
                return
            self._counts.count_delivery_failure(topic, err)
        if self._user_on_delivery is not None:
            self._user_on_delivery(err, msg)

    def _on_stats(self, raw: str) -> None:
        self._counts.statistics = raw  # parsed only when someone asks (stats())
        if self._user_stats_cb is not None:
            self._user_stats_cb(raw)

    def _on_error(self, err: KafkaError) -> None:
        self._counts.client_error(err)
        if err.fatal():
            _log.error("Kafka producer fatal error: %s", err.str())
        if self._user_error_cb is not None:
            self._user_error_cb(err)

    # -- fork -------------------------------------------------------------------------------

    def _enter_forked_child(self) -> None:
        """Called by the at-fork hook in a child: the client is the parent's until
        :meth:`_after_fork` starts this process's own (on the first send)."""
        # The parent's client, a closed one too, is kept: the child's garbage collector
        # must never destroy it (that joins threads the child does not have: a crash).
        _lifecycle.abandon(self._producer)
        if not self.closed:
            self._usable, self._forked = False, True

    def _after_fork(self) -> None:
        """In a forked child the parent's librdkafka threads do not exist: start afresh.

        The inherited client is kept, never used or destroyed (destroying it would wait on
        threads that are gone), so nothing queued by the parent is delivered twice.
        """
        with _lifecycle.registry_lock():
            if not self._forked:
                return
            # The parent's client was kept at the fork (_enter_forked_child); its spool
            # too: closing it here would release the parent's lock.
            bridge = self._bridge
            if bridge is not None:
                _lifecycle.abandon(bridge.spool)
            # A parent thread may have held the counter lock at the fork: start new ones.
            self._reset_counters()
            self._forked_child = True
            self._start()
