"""What every integration does between building an event and producing it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from sys import modules as _modules
from typing import Any, TypedDict

from typing_extensions import Unpack

from logtide_kafka._context import OTEL_MODULE as _OTEL
from logtide_kafka._context import current_trace_ids
from logtide_kafka._policy import DeliveryPolicy, FsyncPolicy, OnFull
from logtide_kafka._redact import DEFAULT_REDACT_KEYS, Redactor
from logtide_kafka._routing import DEFAULT_TOPIC, Router
from logtide_kafka.producer import LogProducer, set_exit_timeout

__all__ = ["PublishOptions", "Publisher"]


class PublishOptions(TypedDict, total=False):
    """The keyword arguments every integration (handler, processor, ``configure``) takes."""

    #: Logger-name prefix -> category (``logs.{category}``); the longest prefix wins.
    logger_categories: Mapping[str, str] | None
    #: Level (name or number) -> category.
    level_categories: Mapping[str | int, str] | None
    #: Added to every event's metadata (the event's own values win).
    fields: Mapping[str, Any] | None
    #: Keys whose values become ``"[REDACTED]"``; default :data:`DEFAULT_REDACT_KEYS`.
    redact: Iterable[str]
    #: Add the active OpenTelemetry span's ids (default true).
    trace_context: bool
    #: When librdkafka's queue is full: ``drop`` (default), ``block`` or ``spool``.
    on_full: OnFull
    #: Seconds ``block`` waits for room before dropping (default 0.1).
    block_timeout: float
    #: The spool directory (``on_full="spool"``).
    spool_dir: str
    #: The spool's bound in bytes (default 256 MiB); beyond it the newest is dropped.
    spool_max_bytes: int
    #: ``never``, ``interval`` (default: at most once a second) or ``always``.
    spool_fsync: FsyncPolicy
    #: Seconds between two stderr lines about dropped events (default 10).
    warn_interval: float
    #: Seconds the exit flush waits in all, for every producer of the process
    #: (:func:`~logtide_kafka.set_exit_timeout`; process-wide, the last value set wins).
    exit_timeout: float


#: The options that choose the producer's :class:`DeliveryPolicy` rather than the event.
_POLICY_OPTIONS = frozenset(DeliveryPolicy.__dataclass_fields__)


class Publisher:
    """Static fields, trace ids, redaction and routing, then the shared producer.

    Each handler, structlog processor and the ``send_log`` configuration owns one; the
    producer underneath is shared by configuration (:func:`~logtide_kafka.get_producer`).
    """

    __slots__ = ("_fields", "_fixed", "_redact", "_router", "_send", "_trace_context", "producer")

    def __init__(
        self,
        make_producer: Callable[[DeliveryPolicy], LogProducer],
        topic: str = DEFAULT_TOPIC,
        **options: Unpack[PublishOptions],
    ) -> None:
        """Check the options, then take the producer for their delivery policy from
        ``make_producer``: a mistake raises before any Kafka client exists."""
        unknown = set(options) - set(PublishOptions.__annotations__)
        if unknown:  # dictConfig passes whatever the config holds: name the typo
            raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")
        self._router = Router(
            topic, options.get("logger_categories"), options.get("level_categories")
        )
        # The one topic when no rule but an explicit category can apply: skips a call.
        self._fixed = self._router.fixed
        fields = options.get("fields") or {}
        self._fields = tuple((str(key), value) for key, value in fields.items())
        redactor = Redactor(options.get("redact", DEFAULT_REDACT_KEYS))
        self._redact = redactor.redact if redactor.keys else None
        self._trace_context = options.get("trace_context", True)
        chosen: dict[str, Any] = {k: v for k, v in options.items() if k in _POLICY_OPTIONS}
        policy = DeliveryPolicy(**chosen)
        exit_timeout = options.get("exit_timeout")
        if exit_timeout is not None:
            set_exit_timeout(exit_timeout)
        self.producer = make_producer(policy)
        self._send = self.producer.send

    @property
    def topic(self) -> str:
        """The default topic (events no routing rule claims)."""
        return self._router.topic

    def complete(self, event: dict[str, Any]) -> dict[str, Any]:
        """Add static fields and the active trace ids, then redact; in place.

        Must run on the thread that logs: the OpenTelemetry span is read from its context.
        Values the event already has win over static fields and over the active span.
        """
        metadata: dict[str, Any] = event["metadata"]
        if self._fields:
            for key, value in self._fields:
                if key not in metadata:
                    metadata[key] = value
        # Only an application that imported OpenTelemetry can have a span: one dict lookup.
        if self._trace_context and _OTEL in _modules and "trace_id" not in event:
            ids = current_trace_ids()
            if ids is not None:
                event["trace_id"], event["span_id"] = ids
        if self._redact is not None:
            self._redact(metadata)
        return event

    def publish(self, event: dict[str, Any], key: bytes) -> bool:
        """Route a completed event to its topic and hand it to the producer."""
        metadata = event["metadata"]
        topic = self._fixed
        if topic is None or "category" in metadata:
            topic = self._router.route(event["service"], event["level"], metadata)
        return self._send(topic, key, event)
