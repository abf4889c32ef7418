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
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from logtide_kafka._event import ENCODE_ERRORS, ENCODE_OPTIONS, encode_default, encode_repaired

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_EXIT_TIMEOUT",
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
#: Seconds between two stderr warnings about the same missing topic.
MISSING_TOPIC_WARN_INTERVAL: Final = 60.0
#: Loggers under this name carry the library's own and librdkafka's messages; the logging
#: integrations never ship them to Kafka.
CLIENT_LOGGER: Final = "logtide_kafka.client"

_UNKNOWN_TOPIC: Final = frozenset({KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC})
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
    #: Events never enqueued: the local queue was full or the producer was closed.
    dropped: int
    #: Events orjson refused as given, repaired into plain JSON and sent anyway.
    encode_errors: int
    #: What librdkafka still holds: events not yet acknowledged, plus any client logs
    #: and error reports waiting for the poller (``len(producer)``).
    queue_length: int
    #: The most recent client or delivery error, as text.
    last_error: str | None


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

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._config = dict(config)
        self._user_on_delivery: Callable[..., Any] | None = self._config.pop("on_delivery", None)
        self._user_error_cb: Callable[..., Any] | None = self._config.pop("error_cb", None)
        self._reset_counters()
        self._closed = False
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
        self._dropped = 0
        self._encode_errors = 0
        self._last_error: str | None = None
        # topic -> events failed because it does not exist; warned about by the poller.
        self._missing: dict[str, int] = {}
        self._missing_warned: dict[str, tuple[float, int]] = {}
        self._missing_pending = False

    def _start(self) -> None:
        conf = dict(self._config)
        conf["on_delivery"] = self._on_delivery
        conf["error_cb"] = self._on_error
        conf.setdefault("logger", logging.getLogger(CLIENT_LOGGER))
        self._producer = Producer(conf)
        self._produce = self._producer.produce
        # False once closed, or in a forked child until the client is restarted: the hot
        # path checks this one flag and leaves both cases to ``_send_unusable``.
        self._usable = True
        self._forked = False
        self._stop = threading.Event()
        self._poller = threading.Thread(
            target=self._poll_loop, name="logtide-kafka-poller", daemon=True
        )
        self._poller.start()

    def __repr__(self) -> str:
        servers = self._config.get("bootstrap.servers")
        return f"<LogProducer bootstrap.servers={servers!r} closed={self._closed}>"

    # -- the hot path ---------------------------------------------------------------------

    def send(self, topic: str, key: bytes | None, event: Mapping[str, Any]) -> bool:
        """Encode ``event`` and enqueue it without waiting; never raises.

        Returns whether the event was enqueued.  An event that cannot be enqueued is
        counted in :meth:`stats` (``dropped`` or ``failed``), never raised to the caller.
        """
        try:
            # encode_event's fast path, inlined: this is the cost every log call pays.
            payload = orjson.dumps(event, default=encode_default, option=ENCODE_OPTIONS)
        except ENCODE_ERRORS:
            payload = encode_repaired(event)
            with self._lock:
                self._encode_errors += 1
        if not self._usable:
            return self._send_unusable(topic, key, event)
        try:
            self._produce(topic, payload, key)
        except BufferError:
            with self._lock:
                self._dropped += 1
            return False
        except (KafkaException, TypeError, ValueError) as exc:
            with self._lock:
                self._failed += 1
                self._last_error = f"producing to {topic!r} failed: {_describe(exc)}"
                if isinstance(exc, KafkaException) and _is_unknown_topic(exc.args[0]):
                    self._count_missing(topic)
            return False
        next(self._enqueued)
        return True

    def _send_unusable(self, topic: str, key: bytes | None, event: Mapping[str, Any]) -> bool:
        if self._forked:  # first send in a forked child: start its own client, then send
            self._after_fork()
            return self.send(topic, key, event)
        with self._lock:
            self._dropped += 1
        return False

    # -- lifecycle --------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> int:
        """Wait up to ``timeout`` seconds (default: the exit timeout, see
        :func:`set_exit_timeout`) for queued events; return how many remain."""
        if not self._usable:
            return 0
        bound = _exit_timeout if timeout is None else timeout
        remaining: int = self._producer.flush(max(bound, 0.0))
        return remaining

    def close(self, timeout: float | None = None) -> int:
        """Flush within ``timeout``, stop the poller and refuse further events.

        Events still undelivered when the bound is reached are purged, counted as
        ``failed`` and reported once on stderr.  Returns how many were left undelivered.
        """
        if self._closed:
            return 0
        if self._forked:  # a child that never sent anything: no client to flush
            self._closed = True
            _forget(self)
            return 0
        bound = _exit_timeout if timeout is None else timeout
        remaining = self.flush(bound)
        self._closed = True
        self._usable = False
        if remaining:
            self._producer.purge(in_queue=True, in_flight=True, blocking=False)
            self._producer.poll(0)  # serve the purge's delivery reports: counted as failed
            print(
                f"logtide-kafka: {remaining} log event(s) not delivered to "
                f"{self._config.get('bootstrap.servers')} within {bound:.1f}s at close",
                file=sys.stderr,
            )
        self._stop.set()
        if self._poller is not threading.current_thread():
            self._poller.join(timeout=1.0)
        if self._missing_pending:  # failures the poller had no time to warn about
            self._warn_missing_topics()
        _forget(self)
        return remaining

    def count_failure(self, exc: BaseException) -> None:
        """Count an event a caller could not even build (a broken ``__str__``…) as failed."""
        with self._lock:
            self._failed += 1
            self._last_error = _describe(exc)

    def stats(self) -> ProducerStats:
        """Return a snapshot of the counters (see :class:`ProducerStats`)."""
        in_flight = len(self._producer) if self._usable else 0
        with self._lock:
            enqueued = next(self._enqueued) - self._enqueued_reads
            self._enqueued_reads += 1
            delivered = enqueued - self._delivery_failures - in_flight
            return ProducerStats(
                enqueued=enqueued,
                delivered=max(delivered, 0),
                failed=self._failed,
                dropped=self._dropped,
                encode_errors=self._encode_errors,
                queue_length=in_flight,
                last_error=self._last_error,
            )

    @property
    def closed(self) -> bool:
        return self._closed

    # -- background work --------------------------------------------------------------------

    def _poll_loop(self) -> None:
        producer, stop = self._producer, self._stop
        while not stop.is_set():
            try:
                producer.poll(0.2)
            except Exception as exc:  # a user callback raised; keep serving
                with self._lock:
                    self._last_error = _describe(exc)
            if self._missing_pending:
                self._warn_missing_topics()

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
            with self._lock:
                self._failed += 1
                self._delivery_failures += 1
                self._last_error = f"delivery to {topic!r} failed: {err.str()}"
                if _is_unknown_topic(err):
                    self._count_missing(topic)
        if self._user_on_delivery is not None:
            self._user_on_delivery(err, msg)

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
            _abandoned.append(self._producer)
            # A parent thread may have held the counter lock at the fork: start new ones.
            self._reset_counters()
            self._start()


def _is_unknown_topic(err: object) -> bool:
    return isinstance(err, KafkaError) and err.code() in _UNKNOWN_TOPIC


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return str(exc.args[0].str())
    return f"{type(exc).__name__}: {exc}"


# -- the registry: one producer per distinct configuration --------------------------------

_registry: dict[tuple[tuple[str, str], ...], LogProducer] = {}
_registry_lock = threading.RLock()
_abandoned: list[Any] = []
_instances: weakref.WeakSet[LogProducer] = weakref.WeakSet()
_exit_timeout = DEFAULT_EXIT_TIMEOUT


def _registry_key(config: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(k), repr(v)) for k, v in config.items()))


def get_producer(
    bootstrap_servers: str | None = None, config: Mapping[str, Any] | None = None
) -> LogProducer:
    """Return the process-wide :class:`LogProducer` for this configuration, creating it
    on first use.  Arguments are merged as in :func:`resolve_config`."""
    merged = resolve_config(bootstrap_servers, config)
    key = _registry_key(merged)
    with _registry_lock:
        producer = _registry.get(key)
        if producer is None or producer.closed:
            producer = _registry[key] = LogProducer(merged)
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
