"""``send_log``: log without the logging module, through the same shared producer."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from time import time
from typing import Any, Final

from typing_extensions import Unpack

from logtide_kafka._event import HOSTNAME, make_event, normalize_level, normalize_service, safe_str
from logtide_kafka._routing import DEFAULT_TOPIC
from logtide_kafka.producer import (
    LogProducer,
    ProducerStats,
    flush_all,
    get_producer,
    stats_all,
)
from logtide_kafka.producer._policy import DeliveryPolicy
from logtide_kafka.producer._publish import Publisher, PublishOptions

__all__ = ["configure", "flush", "send_log", "stats"]

_lock = threading.Lock()
_publisher: Publisher | None = None
#: A configuration checked by ``configure`` whose producer waits for the first send_log.
_deferred: Callable[[], Publisher] | None = None
#: Encoded message keys by service name; bounded so arbitrary names cannot grow it forever.
_keys: dict[str, tuple[str, bytes]] = {}
_MAX_KEYS: Final = 1024


def configure(
    bootstrap_servers: str | None = None,
    *,
    topic: str = DEFAULT_TOPIC,
    producer_config: Mapping[str, Any] | None = None,
    **options: Unpack[PublishOptions],
) -> None:
    """Set where and how :func:`send_log` publishes (like :func:`logging.basicConfig`).

    Without a call, ``send_log`` uses ``KAFKA_BROKERS`` and ``logs.application``.
    ``exit_timeout``, when given, bounds in all the flush of every producer at interpreter
    exit (as :func:`~logtide_kafka.set_exit_timeout`).  Routing, ``fields``, ``redact`` and
    ``trace_context`` work as for :class:`~logtide_kafka.KafkaHandler`;
    ``logger_categories`` applies to a ``logger=`` keyword.  Every option is checked here
    (``ValueError``, ``TypeError``).  With ``bootstrap_servers`` or ``producer_config``
    the producer is created here too, so an invalid librdkafka setting raises here
    (``KafkaException``) rather than being hidden by ``send_log``; without either, it is
    created by the first ``send_log``: ``configure(exit_timeout=3)`` starts no client.
    """
    global _publisher, _deferred

    def build() -> Publisher:
        return Publisher(
            lambda policy: get_producer(bootstrap_servers, producer_config, policy),
            topic,
            **options,
        )

    if bootstrap_servers or producer_config:
        publisher = build()
        with _lock:
            _publisher, _deferred = publisher, None
        return
    with contextlib.suppress(_Checked):  # every check, then _Checked, not a producer
        Publisher(_checked_only, topic, **options)
    with _lock:
        _publisher, _deferred = None, build


class _Checked(Exception):
    """Raised instead of creating a producer: the options passed every check."""


def _checked_only(policy: DeliveryPolicy) -> LogProducer:
    raise _Checked


def _default_publisher() -> Publisher:
    global _publisher
    publisher = _publisher
    if publisher is None:
        with _lock:
            if _publisher is None:
                _publisher = (_deferred or _plain)()
            publisher = _publisher
    # Once closed (close_all, interpreter exit) its producer stays closed and sends count as
    # dropped, as for the handlers: a new producer now would never be flushed.  configure()
    # reopens.
    return publisher


def _service_key(service: object, producer: LogProducer) -> tuple[str, bytes]:
    cached = _keys.get(service) if type(service) is str else None
    if cached is None:
        name = normalize_service(service)
        producer.add_service(name)
        cached = (name, name.encode())
        if type(service) is str and len(_keys) < _MAX_KEYS:
            _keys[service] = cached
    return cached


def send_log(level: str | int, message: str, service: str, /, **metadata: Any) -> bool:
    """Publish one event; never blocks and never raises.

    ``level`` is a LogTide level name, a stdlib level name (``"WARNING"``) or number; an
    unknown name is sent as ``info`` with the original kept in ``metadata["level_name"]``.
    Keyword arguments become the event's ``metadata``; ``trace_id`` and ``span_id``, when
    valid hex ids, become top-level fields.  Returns whether the event was enqueued (see
    :func:`stats` for what happened to those that were not).  A ``category`` keyword
    routes the event to ``logs.{category}``.
    """
    publisher = _default_publisher()
    try:
        name, known = normalize_level(level)
        if not known:
            metadata["level_name"] = safe_str(level)
        svc, key = _service_key(service, publisher.producer)
        if type(message) is not str:
            message = safe_str(message)
        metadata.setdefault("hostname", HOSTNAME)
        event = publisher.complete(make_event(time(), svc, name, message, metadata))
        return publisher.publish(event, key)
    except Exception as exc:  # never propagate into the application, but count it
        publisher.producer.count_failure(exc)
        return False


def _plain() -> Publisher:
    return Publisher(lambda policy: get_producer(policy=policy))


def flush(timeout: float | None = None) -> int:
    """Wait up to ``timeout`` seconds (default: the exit timeout) for the events of every
    producer in the process (handlers, processors, ``send_log``), sharing one deadline;
    return how many are still undelivered, queued or spooled.  Creates no producer."""
    return flush_all(timeout)


def stats() -> ProducerStats:
    """The counters of every producer in the process, added up (see
    :func:`~logtide_kafka.producer.stats_all`); one handler's with ``handler.stats()``.
    Creates no producer."""
    return stats_all()
