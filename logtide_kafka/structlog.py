"""The structlog integration: a processor that publishes each event dict to Kafka.

structlog itself is never imported here, so this module (and the package) import without
it; ``pip install 'logtide-kafka[structlog]'`` installs it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from datetime import datetime
from time import time
from typing import TYPE_CHECKING, Any, Final

from typing_extensions import Unpack

from logtide_kafka._client_log import LIBRARY_LOGGER, in_logger_tree
from logtide_kafka._event import (
    HOSTNAME,
    LEVEL_ALIASES,
    ExcInfo,
    describe_exception,
    is_a,
    level_name,
    make_event,
    normalize_level,
    normalize_service,
    safe_str,
)
from logtide_kafka._routing import DEFAULT_TOPIC
from logtide_kafka.producer import LogProducer, ProducerStats, get_producer
from logtide_kafka.producer._publish import Publisher, PublishOptions

if TYPE_CHECKING:
    from structlog.typing import EventDict, WrappedLogger

__all__ = ["KafkaProcessor"]

_FORMATTER: Final = logging.Formatter()
# What TimeStamper(fmt="iso", utc=True) writes: cut to milliseconds without parsing.
_ISO_UTC_MICROS: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
#: The date, time and dot of the last such time checked in full.
_iso_second = ""
#: Event dict keys most events lack: exceptions and ProcessorFormatter's bookkeeping.
_RARE_KEYS: Final = frozenset({"exc_info", "exception", "_record", "_from_structlog"})
_EXCEPTION_TYPE: Final = re.compile(r"[A-Za-z_][\w.]*")


class KafkaProcessor:
    """A structlog processor that publishes each event to Kafka and returns it unchanged.

    Put it anywhere before the renderer, after ``merge_contextvars``, ``add_log_level``
    and ``TimeStamper`` if you use them (their output is then reused)::

        structlog.configure(processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            KafkaProcessor(service="checkout"),
            structlog.processors.JSONRenderer(),
        ])

    The event becomes the same JSON as a :class:`~logtide_kafka.KafkaHandler` record:
    ``event`` is the message; ``level`` (else the method name, else a foreign record's
    level) the level; ``timestamp`` (a UNIX time or an ISO-8601 string) the time;
    ``exc_info`` (or an ``exception`` rendered by ``format_exc_info`` or
    ``dict_tracebacks``) ``metadata["exception"]``; every other key goes to ``metadata``,
    with ``hostname`` and, when the wrapped logger has a name, ``logger``.  Routing,
    ``fields``, ``redact`` and ``trace_context`` work as for the handler; redaction
    applies to what is sent, not to the event dict passed on to the next processor.

    It also works in ``structlog.stdlib.ProcessorFormatter``'s ``processors``, where it
    sees structlog events and foreign ``logging`` records alike.  Publishing never
    raises: failures are counted in :meth:`stats`.
    """

    def __init__(
        self,
        service: str,
        topic: str = DEFAULT_TOPIC,
        bootstrap_servers: str | None = None,
        producer_config: Mapping[str, Any] | None = None,
        **options: Unpack[PublishOptions],
    ) -> None:
        self.service = normalize_service(service)
        self._key = self.service.encode()
        self._publisher = Publisher(
            lambda policy: get_producer(bootstrap_servers, producer_config, policy),
            topic,
            **options,
        )
        self._publisher.producer.add_service(self.service)  # named in its stderr lines

    @property
    def topic(self) -> str:
        """The default topic: where events go that no routing rule claims."""
        return self._publisher.topic

    @property
    def producer(self) -> LogProducer:
        """The shared producer this processor sends through."""
        return self._publisher.producer

    def stats(self) -> ProducerStats:
        """Counters of the (shared) producer: see :class:`~logtide_kafka.ProducerStats`."""
        return self._publisher.producer.stats()

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        try:
            event = self.to_event(logger, method_name, event_dict)
            if event is not None:
                self._publisher.publish(event, self._key)
        except Exception as exc:  # never into the application; counted instead
            self._publisher.producer.count_failure(exc)
        return event_dict

    def to_event(
        self, logger: WrappedLogger, method_name: str, event_dict: EventDict
    ) -> dict[str, Any] | None:
        """Build the event as it would be sent (None for the library's own loggers)."""
        metadata: dict[str, Any] = {"hostname": HOSTNAME, **event_dict}
        message = metadata.pop("event", None)
        level = metadata.pop("level", None)
        timestamp = metadata.pop("timestamp", None)
        exc_info = exception = None
        record: logging.LogRecord | None = None
        foreign = False
        if not _RARE_KEYS.isdisjoint(metadata):  # one look instead of four pops
            exc_info = metadata.pop("exc_info", None)
            exception = metadata.pop("exception", None)
            # ProcessorFormatter's bookkeeping (its remove_processors_meta drops them too).
            record = metadata.pop("_record", None)
            foreign = metadata.pop("_from_structlog", True) is False

        if "logger" not in metadata:
            name = record.name if record is not None else _logger_name(logger)
            if is_a(name, str):
                metadata["logger"] = name
        name = metadata.get("logger")
        if in_logger_tree(name, LIBRARY_LOGGER):
            return None  # librdkafka's own messages: sending them could feed on itself

        if foreign and record is not None:
            # A plain logging record: its number decides, custom levels included, as in
            # the handler (add_log_level would give "level 25").
            logtide_level = level_name(record.levelno)
        elif level is not None:
            # add_log_level's lower-case names: one look-up, as normalize_level starts.
            found = LEVEL_ALIASES.get(level) if level.__class__ is str else None
            if found is not None:
                logtide_level = found
            else:
                logtide_level, known = normalize_level(level)
                if not known:
                    metadata["level_name"] = safe_str(level)
        else:
            logtide_level = normalize_level(method_name)[0]

        created = _event_time(timestamp, record)
        if created is None:
            created = record.created if record is not None else time()
            metadata["timestamp"] = timestamp  # not a time we can read: keep it as it was

        info = None if exc_info is None else _exc_info(exc_info)
        if info is not None:
            metadata["exception"] = describe_exception(info, _FORMATTER.formatException(info))
        elif exception is not None:
            metadata["exception"] = _rendered_exception(exception)

        if type(message) is not str:
            message = "" if message is None else safe_str(message)
        return self._publisher.complete(
            make_event(created, self.service, logtide_level, message, metadata)
        )

    def __repr__(self) -> str:
        return f"<KafkaProcessor service={self.service!r} topic={self.topic!r}>"


def _event_time(timestamp: object, record: logging.LogRecord | None) -> float | str | None:
    """The event time from a ``timestamp`` value: a float, an already formatted string,
    the record's time or now when absent, or None when it cannot be read unambiguously."""
    if timestamp is None:
        return record.created if record is not None else time()
    # type(), never isinstance(): a lazy proxy's __class__ may raise (issue 12).
    if is_a(timestamp, str):
        global _iso_second
        # TimeStamper(fmt="iso", utc=True) repeats its first 20 characters for a second:
        # the regular expression checks them once; after that, the digits after the dot.
        # (``\d`` is what str.isdecimal() accepts.)
        tail = timestamp[20:26]
        if timestamp[:20] == _iso_second and timestamp[26:] == "Z" and tail.isdecimal():
            return timestamp[:23] + "Z"
        if _ISO_UTC_MICROS.fullmatch(timestamp):
            _iso_second = timestamp[:20]
            return timestamp[:23] + "Z"
        try:
            timestamp = datetime.fromisoformat(timestamp)
        except ValueError:
            return None
    if is_a(timestamp, datetime):
        # Without an offset it could be UTC (TimeStamper(fmt=..., utc=True)) or local time
        # (utc=False): not guessed.  The caller keeps it and uses the current time.
        return timestamp.timestamp() if timestamp.tzinfo is not None else None
    if (is_a(timestamp, int) or is_a(timestamp, float)) and type(timestamp) is not bool:
        return float(timestamp)
    return None


#: How to read a wrapped logger's name, by its class: ``getattr`` (the class has a
#: ``name`` or a ``__getattr__``), the instance ``__dict__``, or not at all.  structlog's
#: own loggers (PrintLogger, WriteLogger...) have no name, and ``getattr(logger, "name",
#: None)`` on them raises and swallows an AttributeError on every event.
_NAME_BY_CLASS: dict[type, int] = {}
_GETATTR, _INSTANCE_DICT, _NAMELESS = 1, 2, 0
_MAX_NAME_CLASSES: Final = 256


def _logger_name(logger: object) -> object:
    """``getattr(logger, "name", None)``, without an exception for nameless loggers."""
    cls = logger.__class__
    how = _NAME_BY_CLASS.get(cls)
    if how is None:
        if hasattr(cls, "name") or hasattr(cls, "__getattr__"):
            how = _GETATTR
        else:
            how = _INSTANCE_DICT if cls.__dictoffset__ else _NAMELESS
        if len(_NAME_BY_CLASS) < _MAX_NAME_CLASSES:
            _NAME_BY_CLASS[cls] = how
    if how == _GETATTR:
        return getattr(logger, "name", None)
    if how == _INSTANCE_DICT:
        return getattr(logger, "__dict__", {}).get("name")
    return None


def _exc_info(value: object) -> ExcInfo | None:
    """``exc_info`` as structlog accepts it: True, an exception, or a sys.exc_info() tuple."""
    if is_a(value, BaseException):
        return (type(value), value, value.__traceback__)
    if is_a(value, tuple):
        return value if len(value) == 3 and is_a(value[1], BaseException) else None
    if value is True:
        info = sys.exc_info()
        return info if info[1] is not None else None
    return None


def _rendered_exception(exception: object) -> object:
    """``metadata["exception"]`` from what ``format_exc_info`` (text) or ``dict_tracebacks``
    (a list of stacks, outermost first) left in the event dict."""
    if is_a(exception, str):
        lines = exception.rstrip("\n").split("\n")
        # The exception line follows the last indented line (the innermost frame).
        start = len(lines)
        while start > 0 and not lines[start - 1].startswith(" "):
            start -= 1
        tail = lines[start:] or lines[-1:]
        head, _, message = tail[0].partition(": ")
        message = "\n".join([message, *tail[1:]]) if len(tail) > 1 else message
        if _EXCEPTION_TYPE.fullmatch(head):  # "module.Error" -> "Error", as __qualname__
            return {"type": head.rpartition(".")[2], "message": message, "stack": exception}
        return {"type": "", "message": tail[0], "stack": exception}
    if (
        is_a(exception, list)
        and exception
        and all(type(stack) is dict and "exc_type" in stack for stack in exception)
    ):
        outer = exception[0]
        return {
            "type": str(outer["exc_type"]).rpartition(".")[2],
            "message": str(outer.get("exc_value", "")),
            "stack": _render_stacks(exception),
        }
    return exception


def _render_stacks(stacks: list[dict[str, Any]]) -> str:
    """A traceback text (without source lines) from ``dict_tracebacks`` stacks."""
    parts: list[str] = []
    for index in range(len(stacks) - 1, -1, -1):
        stack = stacks[index]
        lines = ["Traceback (most recent call last):"]
        for frame in stack.get("frames") or ():
            if isinstance(frame, dict):
                lines.append(
                    f'  File "{frame.get("filename")}", line {frame.get("lineno")}, '
                    f"in {frame.get('name')}"
                )
        lines.append(f"{stack.get('exc_type')}: {stack.get('exc_value')}")
        parts.append("\n".join(lines))
        if index:
            parts.append(
                "The above exception was the direct cause of the following exception:"
                if stack.get("is_cause")
                else "During handling of the above exception, another exception occurred:"
            )
    return "\n\n".join(parts)
