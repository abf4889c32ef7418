"""The LogTide-native event: levels, times and building it from its parts.

Every Kafka message value is one JSON object that LogTide's ``POST /api/v1/ingest`` accepts
as a log entry as it is (see ``docs/event-schema.md``).  Encoding it to JSON bytes is
:mod:`logtide_kafka._encode`; fitting it under the size limit, :mod:`logtide_kafka._fit`.
"""

from __future__ import annotations

import socket
import time
from types import TracebackType
from typing import Any, Final, TypeAlias, TypeGuard, TypeVar

from logtide_kafka._contract import (
    MAX_SERVICE_LEN,
    OTEL_SPAN_ID,
    OTEL_TRACE_ID,
    WRITTEN_TIME_PATTERN,
    cut_utf16,
    replace_forbidden,
)

__all__ = [
    "EMPTY_MESSAGE",
    "HOSTNAME",
    "LEVEL_ALIASES",
    "UNKNOWN_SERVICE",
    "ExcInfo",
    "describe_exception",
    "format_time",
    "is_a",
    "level_name",
    "make_event",
    "normalize_level",
    "normalize_service",
    "safe_repr",
    "safe_str",
    "valid_text",
]

EMPTY_MESSAGE: Final = "(empty message)"
UNKNOWN_SERVICE: Final = "unknown"
HOSTNAME: Final = socket.gethostname()

_LEVELS: Final = ((50, "critical"), (40, "error"), (30, "warn"), (20, "info"))
#: Level names other loggers use (syslog, log4j, Go, Node), to LogTide's five.
LEVEL_ALIASES: Final = {
    "debug": "debug",
    "trace": "debug",
    "verbose": "debug",
    "fine": "debug",
    "info": "info",
    "information": "info",
    "informational": "info",
    "notice": "info",
    "warn": "warn",
    "warning": "warn",
    "error": "error",
    "err": "error",
    "exception": "error",
    "critical": "critical",
    "crit": "critical",
    "fatal": "critical",
    "alert": "critical",
    "emerg": "critical",
    "emergency": "critical",
    "panic": "critical",
}
#: The first UNIX time whose year has five digits, which the schema cannot express.
_YEAR_10000: Final = 253_402_300_800.0
#: The date, time and dot of the last time text WRITTEN_TIME_PATTERN accepted.
_time_text_second = ""


def _round_down(levelno: int) -> str:
    for floor, name in _LEVELS:
        if levelno >= floor:
            return name
    return "debug"


# Precomputed for the usual range: one dict lookup per record instead of a loop.
_BY_NUMBER: Final = {levelno: _round_down(levelno) for levelno in range(61)}


def level_name(levelno: int) -> str:
    """Map a numeric stdlib level to a LogTide level, rounding custom levels down."""
    return _BY_NUMBER.get(levelno) or _round_down(levelno)


def normalize_level(level: str | int) -> tuple[str, bool]:
    """Return ``(logtide_level, known)`` for a level given as a name or a number.

    Names are case-insensitive and accept the usual aliases (``warning``, ``fatal``…).
    An unknown name maps to ``info`` with ``known`` false, so callers can keep the original.
    """
    if type(level) is str:
        name = LEVEL_ALIASES.get(level)
        if name is not None:  # the common case: already a lower-case name
            return name, True
    elif is_a(level, int) and type(level) is not bool:
        return level_name(level), True
    name = LEVEL_ALIASES.get(safe_str(level).strip().lower())
    if name is None:
        return "info", False
    return name, True


def normalize_service(service: object) -> str:
    """Coerce a service name to LogTide's 1-100 UTF-16 code units (``unknown`` when empty).

    Longer names are cut to 100 units, never inside a surrogate pair (50 emoji fit, not
    100); U+0000, which LogTide cannot store, becomes U+FFFD."""
    text = service if is_a(service, str) else safe_str(service)
    text = valid_text(text.strip())  # it is also the message key: it must encode
    if not text:
        return UNKNOWN_SERVICE
    return cut_utf16(replace_forbidden(text), MAX_SERVICE_LEN)


_MILLIS: Final = tuple(f".{n:03d}Z" for n in range(1000))
#: The first microsecond of the last second formatted, and its text, in one tuple so a
#: thread never pairs one second's start with another's text.
_second: tuple[int, str] = (-(2**62), "")  # matches no time make_event accepts


def format_time(created: float) -> str:
    """ISO-8601 UTC with milliseconds and a ``Z`` suffix (LogTide rejects ``+00:00``)."""
    global _second
    # Round to microseconds first, as ``datetime.fromtimestamp`` does, then truncate to
    # milliseconds: ``int((t - int(t)) * 1000)`` turns 1.001 into .000 through float error.
    micros = round(created * 1_000_000)
    start, text = _second
    offset = micros - start
    if not 0 <= offset < 1_000_000:
        # One strftime per second of log time instead of one per event.  A race between
        # threads only recomputes the same text, so no lock is needed.
        whole = micros // 1_000_000
        start = whole * 1_000_000
        offset = micros - start
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second = (start, text)
    return text + _MILLIS[offset // 1000]


def make_event(
    created: float | str,
    service: str,
    level: str,
    message: str,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """Assemble one event.

    ``created`` is a UNIX time, or a time already in the schema's format
    (``2025-11-25T08:30:03.214Z``).  Anything else (text in another format, ``None`` set
    by a filter, milliseconds passed as seconds: a year beyond 9999) is kept in
    ``metadata["timestamp"]``, unless that key is taken, and the event gets the current
    time.  A valid ``trace_id`` (32 lower-case hex) moves from metadata to the top level,
    and with it a valid ``span_id`` (16 hex); anything else stays in metadata untouched
    (a span without its trace means nothing to a trace view).
    """
    if type(created) is float and 0.0 <= created < _YEAR_10000:
        when = format_time(created)
    else:
        when = _other_time(created, metadata)
    event: dict[str, Any] = {
        "time": when,
        "service": service,
        "level": level,
        "message": message or EMPTY_MESSAGE,
        "metadata": metadata,
    }
    trace_id = metadata.get("trace_id")
    if type(trace_id) is str and OTEL_TRACE_ID.fullmatch(trace_id):
        event["trace_id"] = metadata.pop("trace_id")
        span_id = metadata.get("span_id")
        if is_a(span_id, str) and OTEL_SPAN_ID.fullmatch(span_id):
            event["span_id"] = metadata.pop("span_id")
    return event


def _other_time(created: object, metadata: dict[str, Any]) -> str:
    """The event time from anything but a plain float in range (the usual case)."""
    if is_a(created, str):
        global _time_text_second
        # Times of one second share their first 20 characters: the pattern checks them
        # once; after that, the three (ASCII, as the pattern wants) digits and the Z.
        if created[:20] == _time_text_second and created[23:] == "Z":
            digits = created[20:23]
            if digits.isascii() and digits.isdigit():
                return created
        elif WRITTEN_TIME_PATTERN.fullmatch(created):
            _time_text_second = created[:20]
            return created
    elif (
        (is_a(created, int) or is_a(created, float))
        and type(created) is not bool
        and 0 <= created < _YEAR_10000  # NaN fails this too
    ):
        return format_time(float(created))
    # Text in another format, None, milliseconds taken for seconds...: not guessed.
    metadata.setdefault("timestamp", created)
    return format_time(time.time())


ExcInfo: TypeAlias = tuple[type[BaseException], BaseException, TracebackType | None]


def describe_exception(exc_info: ExcInfo, stack: str) -> dict[str, str]:
    """The ``metadata["exception"]`` object: type, message and the formatted traceback."""
    return {"type": exc_info[0].__qualname__, "message": safe_str(exc_info[1]), "stack": stack}


_T = TypeVar("_T")


def is_a(value: object, kind: type[_T]) -> TypeGuard[_T]:
    """``isinstance(value, kind)`` without reading ``value.__class__``, which a lazy proxy
    (Django's ``SimpleLazyObject`` whose loader fails) makes raise; ``type()`` cannot."""
    return issubclass(type(value), kind)


def safe_str(obj: object) -> str:
    """``str(obj)``, or a placeholder naming the type when ``__str__`` raises."""
    try:
        return str(obj)
    except Exception:
        return f"<unprintable {type(obj).__name__}>"


def safe_repr(obj: object) -> str:
    """``repr(obj)``, or a placeholder naming the type when ``__repr__`` raises."""
    try:
        return repr(obj)
    except Exception:
        return f"<unrepresentable {type(obj).__name__}>"


def valid_text(text: str) -> str:
    """Rejoin surrogate pairs and turn lone surrogates into U+FFFD."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
