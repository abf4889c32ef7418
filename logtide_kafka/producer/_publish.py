"""What every integration does between building an event and producing it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from difflib import get_close_matches
from sys import modules as _modules
from typing import Any, Final, TypedDict

from typing_extensions import Unpack

from logtide_kafka._redact import DEFAULT_REDACT_KEYS, Redactor
from logtide_kafka._routing import DEFAULT_TOPIC, Router
from logtide_kafka.producer import LogProducer, set_exit_timeout
from logtide_kafka.producer._context import OTEL_MODULE as _OTEL
from logtide_kafka.producer._context import current_trace_ids
from logtide_kafka.producer._policy import DeliveryPolicy, FsyncPolicy, OnFull

__all__ = ["PublishOptions", "Publisher", "check_options"]


class PublishOptions(TypedDict, total=False):
    """The keyword arguments every integration (handler, processor, ``configure``) takes."""

    #: Logger-name prefix -> category (``logs.{category}``); the longest prefix wins.
    logger_categories: Mapping[str, str] | None
    #: Level (name or number) -> category.
    level_categories: Mapping[str | int, str] | None
    #: Added to every event's metadata (the event's own values win).
    fields: Mapping[str, Any] | None
    #: Keys whose values become ``"[REDACTED]"``; replaces :data:`DEFAULT_REDACT_KEYS`.
    redact: Iterable[str]
    #: Keys redacted besides ``redact`` (the defaults unless ``redact`` is given).
    redact_extra: Iterable[str]
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
#: The arguments the integrations take besides :class:`PublishOptions`: offered as
#: corrections of a misspelt option too ("did you mean 'bootstrap_servers'?").
INTEGRATION_ARGUMENTS: Final = (
    "service",
    "topic",
    "bootstrap_servers",
    "producer_config",
    "level",
    "ignore_formatter",
    "exit_timeout",
)


def check_options(options: Mapping[str, object]) -> None:
    """Raise ``TypeError`` for an unknown option (with the closest known name) or an
    option of the wrong type, naming it: dictConfig and INI files pass whatever they hold,
    and a mistake must fail at configuration time, not at the first log call."""
    known = PublishOptions.__annotations__
    unknown = sorted(name for name in options if name not in known)
    if unknown:
        hints = []
        for name in unknown:
            # An argument of another integration (``level`` given to the processor) is
            # unknown here but no typo: not offered as its own correction.
            candidates = [c for c in (*known, *INTEGRATION_ARGUMENTS) if c != name]
            close = get_close_matches(str(name), candidates, n=1)
            hints.append(f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name))
        raise TypeError(f"unexpected keyword argument(s): {', '.join(hints)}")
    for name, expected in _SCALAR_TYPES.items():
        value = options.get(name)
        if value is not None and not isinstance(value, expected):
            # "trace_context": "false" from a config file would otherwise read as true.
            raise TypeError(f"{name} must be {_TYPE_NAMES[expected]}, not {value!r}")
    maps: dict[str, Mapping[object, object]] = {}
    for name in ("logger_categories", "level_categories", "fields"):
        value = options.get(name)
        if value is None:
            continue
        if not isinstance(value, Mapping):
            raise TypeError(
                f"{name} must be a mapping such as {_MAPPING_EXAMPLES[name]}, "
                f"not {type(value).__name__} {value!r}"
            )
        maps[name] = value
    for name, mapping in maps.items():
        if name == "fields":
            continue  # any keys (made str) and values
        for key, item in mapping.items():
            if not isinstance(item, str):
                raise TypeError(
                    f"{name}[{key!r}] must be a category name (str), "
                    f"not {type(item).__name__} {item!r}"
                )


_SCALAR_TYPES: Final[dict[str, type | tuple[type, ...]]] = {
    "trace_context": bool,
    "block_timeout": (int, float),
    "warn_interval": (int, float),
    "spool_max_bytes": int,
}
_TYPE_NAMES: Final[dict[type | tuple[type, ...], str]] = {
    bool: "true or false",
    (int, float): "a number of seconds",
    int: "an int",
}
_MAPPING_EXAMPLES: Final = {
    "logger_categories": '{"sqlalchemy": "infrastructure"}',
    "level_categories": '{"CRITICAL": "security"}',
    "fields": '{"environment": "production"}',
}


def redact_keys(options: PublishOptions) -> tuple[str, ...]:
    """The keys to redact, checked: ``redact`` (else the defaults) plus ``redact_extra``."""
    return _keys("redact", options.get("redact", DEFAULT_REDACT_KEYS)) + _keys(
        "redact_extra", options.get("redact_extra", ())
    )


def _keys(name: str, value: object) -> tuple[str, ...]:
    """A key, or an iterable of keys (str), as a tuple."""
    if isinstance(value, str):  # redact="password" would otherwise mean p, a, s, …
        return (value,)
    if isinstance(value, (bytes, Mapping)) or not isinstance(value, Iterable):
        raise TypeError(
            f"{name} must be a list of metadata keys such as ['card_number'], "
            f"not {type(value).__name__} {value!r}"
        )
    keys = tuple(value)
    for key in keys:
        if not isinstance(key, str):
            raise TypeError(f"{name} must hold metadata keys (str), not {key!r}")
    return keys


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
        check_options(options)
        if not isinstance(topic, str):
            raise TypeError(f"topic must be a topic name (str), not {type(topic).__name__}")
        self._router = Router(
            topic, options.get("logger_categories"), options.get("level_categories")
        )
        # The one topic when no rule but an explicit category can apply: skips a call.
        self._fixed = self._router.fixed
        fields = options.get("fields") or {}
        self._fields = tuple((str(key), value) for key, value in fields.items())
        redactor = Redactor(redact_keys(options))
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
