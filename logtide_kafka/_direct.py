"""``send_log``: log without the logging module, through the same shared producer."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from time import time
from typing import Any, Final

from logtide_kafka._event import HOSTNAME, make_event, normalize_level, normalize_service, safe_str
from logtide_kafka.producer import (
    DEFAULT_EXIT_TIMEOUT,
    LogProducer,
    ProducerStats,
    get_producer,
    set_exit_timeout,
)
from logtide_kafka.stdlib import DEFAULT_TOPIC

__all__ = ["configure", "flush", "send_log", "stats"]

_lock = threading.Lock()
_settings: dict[str, Any] = {"bootstrap_servers": None, "config": None, "topic": DEFAULT_TOPIC}
_producer: LogProducer | None = None
#: Encoded message keys by service name; bounded so arbitrary names cannot grow it forever.
_keys: dict[str, tuple[str, bytes]] = {}
_MAX_KEYS: Final = 1024


def configure(
    bootstrap_servers: str | None = None,
    *,
    topic: str = DEFAULT_TOPIC,
    producer_config: Mapping[str, Any] | None = None,
    exit_timeout: float = DEFAULT_EXIT_TIMEOUT,
) -> None:
    """Set where :func:`send_log` publishes (like :func:`logging.basicConfig`).

    Without a call, ``send_log`` uses ``KAFKA_BROKERS`` and ``logs.application``.
    ``exit_timeout`` bounds, in all, the flush of every producer at interpreter exit.
    The producer is created here, so an invalid librdkafka setting raises here
    (``KafkaException``) rather than being hidden by ``send_log``.
    """
    global _producer
    producer = get_producer(bootstrap_servers, producer_config)
    with _lock:
        _settings.update(bootstrap_servers=bootstrap_servers, config=producer_config, topic=topic)
        _producer = producer
    set_exit_timeout(exit_timeout)


def _default_producer() -> LogProducer:
    global _producer
    producer = _producer
    if producer is None:
        with _lock:
            producer = _producer = get_producer(_settings["bootstrap_servers"], _settings["config"])
    # Once closed (close_all, interpreter exit) it stays closed and sends count as dropped,
    # as for the handlers: a new producer now would never be flushed.  configure() reopens.
    return producer


def _service_key(service: object) -> tuple[str, bytes]:
    cached = _keys.get(service) if service.__class__ is str else None
    if cached is None:
        name = normalize_service(service)
        cached = (name, name.encode())
        if service.__class__ is str and len(_keys) < _MAX_KEYS:
            _keys[service] = cached
    return cached


def send_log(level: str | int, message: str, service: str, /, **metadata: Any) -> bool:
    """Publish one event; never blocks and never raises.

    ``level`` is a LogTide level name, a stdlib level name (``"WARNING"``) or number; an
    unknown name is sent as ``info`` with the original kept in ``metadata["level_name"]``.
    Keyword arguments become the event's ``metadata``; ``trace_id`` and ``span_id``, when
    valid hex ids, become top-level fields.  Returns whether the event was enqueued (see
    :func:`stats` for what happened to those that were not).
    """
    producer = _default_producer()
    try:
        name, known = normalize_level(level)
        if not known:
            metadata["level_name"] = safe_str(level)
        svc, key = _service_key(service)
        if message.__class__ is not str:
            message = safe_str(message)
        metadata.setdefault("hostname", HOSTNAME)
        event = make_event(time(), svc, name, message, metadata)
    except Exception as exc:  # never propagate into the application, but count it
        producer.count_failure(exc)
        return False
    return producer.send(_settings["topic"], key, event)


def flush(timeout: float | None = None) -> int:
    """Wait up to ``timeout`` seconds (default: the exit timeout) for ``send_log``'s
    events; return how many remain."""
    return _default_producer().flush(timeout)


def stats() -> ProducerStats:
    """Counters of the producer behind :func:`send_log`."""
    return _default_producer().stats()
