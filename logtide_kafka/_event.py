"""The LogTide-native event: building it from parts and encoding it to JSON bytes.

Every Kafka message value is one JSON object that LogTide's ``POST /api/v1/ingest`` accepts
as a log entry as it is (see ``docs/event-schema.md``).
"""

from __future__ import annotations

import math
import re
import socket
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final, TypeAlias

import orjson

__all__ = [
    "ENCODE_ERRORS",
    "ENCODE_OPTIONS",
    "HOSTNAME",
    "MAX_SERVICE_LEN",
    "describe_exception",
    "encode_default",
    "encode_event",
    "encode_repaired",
    "format_time",
    "level_name",
    "make_event",
    "normalize_level",
    "normalize_service",
    "safe_str",
]

MAX_SERVICE_LEN: Final = 100
EMPTY_MESSAGE: Final = "(empty message)"
UNKNOWN_SERVICE: Final = "unknown"
HOSTNAME: Final = socket.gethostname()

_LEVELS: Final = ((50, "critical"), (40, "error"), (30, "warn"), (20, "info"))
_NAMED_LEVELS: Final = {
    "debug": "debug",
    "trace": "debug",
    "info": "info",
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
    "emergency": "critical",
}
_HEX16: Final = re.compile(r"[0-9a-f]{16}")
_HEX32: Final = re.compile(r"[0-9a-f]{32}")
# Nesting deeper than this is cut while repairing, well inside orjson's own 254-level limit.
_MAX_DEPTH: Final = 32


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
    if level.__class__ is str:
        name = _NAMED_LEVELS.get(level)
        if name is not None:  # the common case: already a lower-case name
            return name, True
    elif isinstance(level, int) and not isinstance(level, bool):
        return level_name(level), True
    name = _NAMED_LEVELS.get(safe_str(level).strip().lower())
    if name is None:
        return "info", False
    return name, True


def normalize_service(service: object) -> str:
    """Coerce a service name to LogTide's 1-100 characters (``unknown`` when empty)."""
    text = service if isinstance(service, str) else safe_str(service)
    text = _valid_text(text.strip())  # it is also the message key: it must encode
    if not text:
        return UNKNOWN_SERVICE
    return text[:MAX_SERVICE_LEN]


_MILLIS: Final = tuple(f".{n:03d}Z" for n in range(1000))
_second: int = -1
_second_text: str = ""


def format_time(created: float) -> str:
    """ISO-8601 UTC with milliseconds and a ``Z`` suffix (LogTide rejects ``+00:00``)."""
    global _second, _second_text
    # Round to microseconds first, as ``datetime.fromtimestamp`` does, then truncate to
    # milliseconds: ``int((t - int(t)) * 1000)`` turns 1.001 into .000 through float error.
    whole, micros = divmod(round(created * 1_000_000), 1_000_000)
    if whole != _second:
        # One strftime per second of log time instead of one per event.  A race between
        # threads only recomputes the same text, so no lock is needed.
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second_text, _second = text, whole
        return text + _MILLIS[micros // 1000]
    return _second_text + _MILLIS[micros // 1000]


def make_event(
    created: float | str,
    service: str,
    level: str,
    message: str,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """Assemble one event.

    ``created`` is a UNIX time, or a time already in the schema's format
    (``2025-11-25T08:30:03.214Z``).  A valid ``trace_id`` (32 lower-case hex) moves from
    metadata to the top level, and with it a valid ``span_id`` (16 hex); anything else
    stays in metadata untouched (a span without its trace means nothing to a trace view).
    """
    event: dict[str, Any] = {
        "time": created if isinstance(created, str) else format_time(created),
        "service": service,
        "level": level,
        "message": message or EMPTY_MESSAGE,
        "metadata": metadata,
    }
    trace_id = metadata.get("trace_id")
    if trace_id.__class__ is str and _HEX32.fullmatch(trace_id):
        event["trace_id"] = metadata.pop("trace_id")
        span_id = metadata.get("span_id")
        if isinstance(span_id, str) and _HEX16.fullmatch(span_id):
            event["span_id"] = metadata.pop("span_id")
    return event


ExcInfo: TypeAlias = tuple[type[BaseException], BaseException, TracebackType | None]


def describe_exception(exc_info: ExcInfo, stack: str) -> dict[str, str]:
    """The ``metadata["exception"]`` object: type, message and the formatted traceback."""
    return {"type": exc_info[0].__qualname__, "message": safe_str(exc_info[1]), "stack": stack}


def encode_default(obj: Any) -> Any:
    """orjson fallback: anything it cannot encode natively becomes a string (or a list)."""
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).decode("utf-8", "backslashreplace")
    return safe_str(obj)


def safe_str(obj: object) -> str:
    """``str(obj)``, or a placeholder naming the type when ``__str__`` raises."""
    try:
        return str(obj)
    except Exception:
        return f"<unprintable {type(obj).__name__}>"


#: What ``orjson.dumps`` raises for an event it refuses.
ENCODE_ERRORS: Final = (orjson.JSONEncodeError, TypeError, ValueError, RecursionError)
#: The options of the fast path, shared with the producer's inlined copy of it.
ENCODE_OPTIONS: Final = orjson.OPT_NON_STR_KEYS


def encode_event(event: Mapping[str, Any]) -> tuple[bytes, bool]:
    """Encode an event to JSON bytes; never raises.

    Returns ``(payload, repaired)``.  ``repaired`` is true when orjson refused the event as
    given (integers beyond 64 bits, lone surrogates, cycles, keys of odd types…) and the
    event was rewritten into plain JSON values before encoding.
    """
    try:
        return orjson.dumps(event, default=encode_default, option=ENCODE_OPTIONS), False
    except ENCODE_ERRORS:
        return encode_repaired(event), True


def encode_repaired(event: Mapping[str, Any]) -> bytes:
    """The slow path: rewrite ``event`` into plain JSON values, then encode it."""
    return orjson.dumps(_repair(event, 0, set()), default=encode_default)


def _repair(value: Any, depth: int, seen: set[int]) -> Any:
    """Rewrite a value into types orjson always accepts, in pure Python (the slow path)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _valid_text(value)
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= _MAX_DEPTH:
        return "<nested too deep>"
    if isinstance(value, Mapping):
        if id(value) in seen:
            return "<cycle>"
        seen.add(id(value))
        out = {_repair_key(k): _repair(v, depth + 1, seen) for k, v in value.items()}
        seen.discard(id(value))
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        if id(value) in seen:
            return "<cycle>"
        seen.add(id(value))
        items = [_repair(v, depth + 1, seen) for v in value]
        seen.discard(id(value))
        return items
    return _repair(encode_default(value), depth + 1, seen)


def _repair_key(key: object) -> str:
    return _valid_text(key if isinstance(key, str) else safe_str(key))


def _valid_text(text: str) -> str:
    """Rejoin surrogate pairs and turn lone surrogates into U+FFFD."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
