"""The one non-blocking producer wrapper that every logging path hands its events to.

``LogProducer`` owns a ``confluent_kafka.Producer`` and a daemon thread that serves its
callbacks, so application threads only ever call the non-blocking ``produce()``.  One
instance exists per distinct configuration (``get_producer``), and every instance is
flushed, within a bound, when the interpreter exits.
"""

from __future__ import annotations

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
from typing import Any, Final

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from logtide_kafka._event import (
    ENCODE_ERRORS,
    encode_default,
    encode_event,
    fit_payload,
)
from logtide_kafka._policy import DEFAULT_POLICY, DeliveryPolicy
from logtide_kafka._spool import Spool, SpoolLocked
from logtide_kafka._threads import start_daemon

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_EXIT_TIMEOUT",
    "DeliveryPolicy",
    "LogProducer",
    "ProducerStats",
    "get_producer",
    "resolve_config",
]

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
}
DEFAULT_BOOTSTRAP: Final = "localhost:9092"
#: Seconds the exit hook waits, in all, for every producer to deliver what it holds.
DEFAULT_EXIT_TIMEOUT: Final = 10.0
#: Bytes kept free under ``message.max.bytes`` for the key and record framing.
RECORD_OVERHEAD: Final = 512
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
#: Seconds between two looks for spool directories that exited children left behind.
ADOPT_INTERVAL: Final = 60.0
#: Records moved from the spool into librdkafka's queue per pass of the poller.
REPLAY_CHUNK: Final = 1000
# Per-topic failure counts are kept for at most this many topics (categories can be made
# up at run time); failures beyond are still counted in ``failed``.
_MAX_MISSING_TOPICS: Final = 256

_log = logging.getLogger("logtide_kafka")
# A library leaves output to the application's logging configuration (logging HOWTO):
# without one, librdkafka's retries would reach stderr through logging.lastResort.
_log.addHandler(logging.NullHandler())


@dataclass(frozen=True, slots=True)
class ProducerStats:
    """A point-in-time snapshot of one producer's counters."""

    #: Events accepted into librdkafka's local queue.
    enqueued: int
    #: Events the brokers acknowledged: enqueued - failed deliveries - queue_length.
    #: Exact once the queue is drained (after ``flush``); a lower bound before, because
    #: successes are not reported one by one (``delivery.report.only.error``).
    delivered: int
    #: Events librdkafka gave up on (delivery error, timeout, purge at close) or refused.
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
        self._queue_max = int(self._config.get("queue.buffering.max.messages", 100000))
        self._replay_room = self._queue_max // 2
        # Room for the record's key, headers and framing under librdkafka's size limit.
        limit = int(self._config.get("message.max.bytes", 1_000_000))
        self._max_payload = max(limit - RECORD_OVERHEAD, 1024)
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
        self._last_error: str | None = None
        # topic -> events failed because it does not exist; warned about by the poller.
        self._missing: dict[str, int] = {}
        self._missing_warned: dict[str, tuple[float, int]] = {}
        self._missing_pending = False

    def _start(self) -> None:
        conf = dict(self._config)
        conf["on_delivery"] = self._on_delivery
        conf["error_cb"] = self._on_error
        if int(conf.get("statistics.interval.ms", 0)) > 0:
            conf["stats_cb"] = self._on_stats
        conf.setdefault("logger", logging.getLogger(CLIENT_LOGGER))
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
            payload, repaired = encode_event(event)
            if repaired:
                with self._lock:
                    self._encode_errors += 1
        if len(payload) > self._max_payload:
            payload = fit_payload(event, payload, self._max_payload)
            with self._lock:
                self._truncated += 1
        if not self._usable:
            return self._send_unusable(topic, key, event)
        if self._spooling:  # older events wait on disk: this one goes behind them
            return self._to_spool(topic, key, payload)
        try:
            self._produce(topic, payload, key)
        except BufferError:
            return self._queue_full(topic, key, payload)
        except (KafkaException, TypeError, ValueError) as exc:
            return self._produce_failed(topic, exc)
        next(self._enqueued)
        return True

    def _queue_full(self, topic: str, key: bytes | None, payload: bytes) -> bool:
        """Apply the policy to an event librdkafka's queue has no room for."""
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
                self._produce(topic, payload, key)
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
        remaining = self._producer.flush(max(deadline - time.monotonic(), 0.0))
        self._closed = True
        if remaining:
            # len() counts pending client logs and error reports too: count the events
            # the purge hands back instead.
            self._purged = 0
            self._producer.purge(in_queue=True, in_flight=True, blocking=False)
            self._producer.flush(0)  # serve the purge's delivery reports
            remaining = self._purged
        self._return_to_spool()
        self._report_close(remaining, bound)
        if self._spool is not None:
            self._spool.close()
        _forget(self)
        return remaining

    def _report_close(self, remaining: int, bound: float) -> None:
        """Say once, on stderr, what the close leaves behind; flush pending warnings."""
        if self._missing_pending:  # failures the poller had no time to warn about
            self._warn_missing_topics()
        self._warn_drops(force=True)
        if not remaining:
            return
        where = self._config.get("bootstrap.servers")
        line = f"logtide-kafka: {remaining} log event(s) not delivered to {where} "
        line += f"within {bound:.1f}s at close"
        if self._spool is not None:
            line += (
                f"; {self._spool.pending} event(s) kept in the spool {self._spool.directory} "
                "for the next start"
            )
        print(line, file=sys.stderr)

    def count_failure(self, exc: BaseException) -> None:
        """Count an event a caller could not even build (a broken ``__str__``…) as failed."""
        with self._lock:
            self._failed += 1
            self._last_error = _describe(exc)

    def stats(self) -> ProducerStats:
        """Return a snapshot of the counters (see :class:`ProducerStats`)."""
        in_flight = len(self._producer) if self._usable else 0
        spool = self._spool
        with self._lock:
            enqueued = next(self._enqueued) - self._enqueued_reads
            self._enqueued_reads += 1
            delivered = enqueued - self._delivery_failures - in_flight
            raw_statistics = self._statistics
            snapshot = ProducerStats(
                enqueued=enqueued,
                delivered=max(delivered, 0),
                failed=self._failed,
                dropped=sum(self._dropped.values()),
                dropped_by=dict(self._dropped),
                encode_errors=self._encode_errors,
                queue_length=in_flight,
                last_error=self._last_error,
                truncated=self._truncated,
                spooled=self._spooled,
                replayed=self._replayed,
                spool_pending=spool.pending if spool is not None and self._usable else 0,
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
                for topic, key, value in records:
                    try:
                        self._produce(topic, value, key)
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
                lost = len(returned) - kept
                if lost:
                    self._dropped["spool_full"] = self._dropped.get("spool_full", 0) + lost
                    self._failed += lost

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
        print(
            f"logtide-kafka: dropped {new} log event(s) (policy {self.policy.on_full!r}; "
            f"so far {reasons}); see stats()",
            file=sys.stderr,
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
            print(
                f"logtide-kafka: topic {topic!r} does not exist on "
                f"{self._config.get('bootstrap.servers')}; {count} log event(s) sent to it "
                "failed so far. The producer never creates topics: create it, or route "
                "these events to an existing one.",
                file=sys.stderr,
            )

    def missing_topics(self) -> dict[str, int]:
        """Topics that did not exist when events were sent to them, with how many events
        each lost (also counted in ``failed``)."""
        with self._lock:
            return dict(self._missing)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            topic = msg.topic() or ""
            value = msg.value()
            if err.code() in _PURGED:
                self._purged += 1
            if self._spool is not None and err.code() in _RETURN_TO_SPOOL and value is not None:
                with self._lock:
                    self._delivery_failures += 1
                    self._returned.append((topic, msg.key(), value))
                return
            with self._lock:
                self._failed += 1
                self._delivery_failures += 1
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
_exit_timeout = DEFAULT_EXIT_TIMEOUT


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
    """Set the total bound on flushing every producer at interpreter exit."""
    global _exit_timeout
    _exit_timeout = float(seconds)


def close_all(timeout: float | None = None) -> int:
    """Close every producer, sharing one deadline; return the events left undelivered."""
    deadline = time.monotonic() + (_exit_timeout if timeout is None else timeout)
    with _registry_lock:
        producers = list(_registry.values())
    left = 0
    for producer in producers:
        left += producer.close(max(deadline - time.monotonic(), 0.0))
    return left


_sigterm_installed = False


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
    except (ValueError, OSError):  # not the main interpreter, or no signals here
        pass


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # Raised rather than flushing here: the interrupted code may hold a producer's lock.
    signal.signal(signum, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise SystemExit(128 + signum)


def _in_forked_child() -> None:
    global _registry_lock
    _registry_lock = threading.RLock()  # a parent thread may have held it at the fork
    for producer in list(_instances):
        if not producer.closed:
            producer._usable, producer._forked = False, True


os.register_at_fork(after_in_child=_in_forked_child)
# Registered at import, after ``logging`` registered its own hook: exit hooks run last-in
# first-out, so producers are flushed before logging.shutdown() closes the handlers, and
# after any exit hook the application registers later than this import.
atexit.register(close_all)
