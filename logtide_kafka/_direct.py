"""``send_log``: log without the logging module, through the same shared producer."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from time import time
from typing import Any, Final

from typing_extensions import Unpack

from logtide_kafka._event import HOSTNAME, make_event, normalize_level, normalize_service, safe_str
from logtide_kafka._publish import Publisher, PublishOptions
from logtide_kafka._routing import DEFAULT_TOPIC
from logtide_kafka.producer import (
    DEFAULT_EXIT_TIMEOUT,
    ProducerStats,
    get_producer,
    set_exit_timeout,
)

__all__ = ["configure", "flush", "send_log", "stats"]

_lock = threading.Lock()
_publisher: Publisher | None = None
#: Encoded message keys by service name; bounded so arbitrary names cannot grow it forever.
_keys: dict[str, tuple[str, bytes]] = {}
_MAX_KEYS: Final = 1024


def configure(
    bootstrap_servers: str | None = None,
    *,
    topic: str = DEFAULT_TOPIC,
    producer_config: Mapping[str, Any] | None = None,
    exit_timeout: float = DEFAULT_EXIT_TIMEOUT,
    **options: Unpack[PublishOptions],
) -> None:
    """Set where and how :func:`send_log` publishes (like :func:`logging.basicConfig`).

    Without a call, ``send_log`` uses ``KAFKA_BROKERS`` and ``logs.application``.
    ``exit_timeout`` bounds, in all, the flush of every producer at interpreter exit.
    Routing, ``fields``, ``redact`` and ``trace_context`` work as for
    :class:`~logtide_kafka.KafkaHandler`; ``logger_categories`` applies to a ``logger=``
    keyword.  The producer is created here, so an invalid librdkafka setting raises here
    (``KafkaException``), as does invalid routing (``ValueError``), rather than being
    hidden by ``send_log``.
    """
    global _publisher
    publisher = Publisher(
        lambda policy: get_producer(bootstrap_servers, producer_config, policy),
        topic,
        **options,
    )
    with _lock:
        _publisher = publisher
    set_exit_timeout(exit_timeout)


def _default_publisher() -> Publisher:
    global _publisher
    publisher = _publisher
    if publisher is None:
        with _lock:
            if _publisher is None:
                _publisher = Publisher(lambda policy: get_producer(policy=policy))
            publisher = _publisher
    # Once closed (close_all, interpreter exit) its producer stays closed and sends count as
    # dropped, as for the handlers: a new producer now would never be flushed.  configure()
    # reopens.
    return publisher


def _service_key(service: object) -> tuple[str, bytes]:
    cached = _keys.get(service) if type(service) is str else None
    if cached is None:
        name = normalize_service(service)
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
        svc, key = _service_key(service)
        if type(message) is not str:
            message = safe_str(message)
        metadata.setdefault("hostname", HOSTNAME)
        event = publisher.complete(make_event(time(), svc, name, message, metadata))
        return publisher.publish(event, key)
    except Exception as exc:  # never propagate into the application, but count it
        publisher.producer.count_failure(exc)
        return False


def flush(timeout: float | None = None) -> int:
    """Wait up to ``timeout`` seconds (default: the exit timeout) for ``send_log``'s
    events; return how many remain."""
    return _default_publisher().producer.flush(timeout)


def stats() -> ProducerStats:
    """Counters of the producer behind :func:`send_log`."""
    return _default_publisher().producer.stats()
