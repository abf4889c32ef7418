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
    "LEVEL_ALIASES",
    "MAX_DROPPED_NAMES",
    "MAX_SERVICE_LEN",
    "MIN_CUT",
    "TRUNCATED_KEY",
    "describe_exception",
    "encode_default",
    "encode_event",
    "encode_repaired",
    "fit_payload",
    "format_time",
    "level_name",
    "make_event",
    "normalize_level",
    "normalize_service",
    "safe_repr",
    "safe_str",
    "truncation_mark",
]

MAX_SERVICE_LEN: Final = 100
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
_HEX16: Final = re.compile(r"[0-9a-f]{16}")
_HEX32: Final = re.compile(r"[0-9a-f]{32}")
#: The first UNIX time whose year has five digits, which the schema cannot express.
_YEAR_10000: Final = 253_402_300_800.0
_TIME_TEXT: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
#: The date, time and dot of the last time text _TIME_TEXT accepted.
_time_text_second = ""
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
        name = LEVEL_ALIASES.get(level)
        if name is not None:  # the common case: already a lower-case name
            return name, True
    elif isinstance(level, int) and not isinstance(level, bool):
        return level_name(level), True
    name = LEVEL_ALIASES.get(safe_str(level).strip().lower())
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
    if created.__class__ is float and 0.0 <= created < _YEAR_10000:
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
    if trace_id.__class__ is str and _HEX32.fullmatch(trace_id):
        event["trace_id"] = metadata.pop("trace_id")
        span_id = metadata.get("span_id")
        if isinstance(span_id, str) and _HEX16.fullmatch(span_id):
            event["span_id"] = metadata.pop("span_id")
    return event


def _other_time(created: object, metadata: dict[str, Any]) -> str:
    """The event time from anything but a plain float in range (the usual case)."""
    if isinstance(created, str):
        global _time_text_second
        # Times of one second share their first 20 characters: the regular expression
        # checks them once; after that, the three digits (``\d`` is str.isdecimal) and Z.
        if created[:20] == _time_text_second and created[23:] == "Z":
            if created[20:23].isdecimal():
                return created
        elif _TIME_TEXT.fullmatch(created):
            _time_text_second = created[:20]
            return created
    elif (
        isinstance(created, (int, float))
        and not isinstance(created, bool)
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


def encode_default(obj: Any) -> Any:
    """orjson fallback: anything it cannot encode natively becomes a string (or a list).

    Never raises: a set whose iteration fails or a released ``memoryview`` falls back to
    :func:`safe_str` (an exception here would make orjson refuse the whole event)."""
    try:
        if isinstance(obj, (set, frozenset)):
            return list(obj)
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return bytes(obj).decode("utf-8", "backslashreplace")
    except Exception:
        pass
    return safe_str(obj)


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


#: What ``orjson.dumps`` raises for an event it refuses.
ENCODE_ERRORS: Final = (orjson.JSONEncodeError, TypeError, ValueError, RecursionError)
#: The options of the second try: keys that are not strings (``{1: "x"}``) become
#: strings.  Not in the first: orjson's dicts take a slower path under this option (about
#: a third of the encoding time of a usual event), and most events have string keys only.
ENCODE_OPTIONS: Final = orjson.OPT_NON_STR_KEYS


def encode_event(event: Mapping[str, Any]) -> tuple[bytes, bool]:
    """Encode an event to JSON bytes; never raises.

    Returns ``(payload, repaired)``.  ``repaired`` is true when orjson refused the event as
    given (integers beyond 64 bits, lone surrogates, cycles, keys of odd types…) and the
    event was rewritten into plain JSON values before encoding.  The first try (the
    producer's hot path inlines it) allows string keys only; an event with other keys is
    encoded again with :data:`ENCODE_OPTIONS`, so ``default`` may see its values twice.
    """
    try:
        return orjson.dumps(event, default=encode_default), False
    except ENCODE_ERRORS:
        pass
    try:
        return orjson.dumps(event, default=encode_default, option=ENCODE_OPTIONS), False
    except ENCODE_ERRORS:
        return encode_repaired(event), True


def encode_repaired(event: Mapping[str, Any]) -> bytes:
    """The slow path: rewrite ``event`` into plain JSON values, then encode it.

    Never raises: should even the rewrite fail, the result is the event's time, service,
    level and message with ``metadata`` reduced to ``hostname`` and ``encode_error``."""
    try:
        return orjson.dumps(_repair(event, 0, set()), default=encode_default)
    except Exception as exc:  # the last line of defence: the app must never see this
        return _minimal(event, {"encode_error": f"{type(exc).__name__}: {safe_str(exc)}"})


def _repair(value: Any, depth: int, seen: set[int]) -> Any:
    """Rewrite a value into types orjson always accepts, in pure Python (the slow path)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _valid_text(value)
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else _int_text(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= _MAX_DEPTH:
        return "<nested too deep>"
    if isinstance(value, (Mapping, list, tuple, set, frozenset)):
        if id(value) in seen:
            return "<cycle>"
        seen.add(id(value))
        try:
            if isinstance(value, Mapping):
                return {_repair_key(k): _repair(v, depth + 1, seen) for k, v in value.items()}
            return [_repair(v, depth + 1, seen) for v in value]
        except Exception:  # a container subclass whose items() or __iter__ raises
            return f"<unreadable {type(value).__name__}>"
        finally:
            seen.discard(id(value))
    return _repair(encode_default(value), depth + 1, seen)


def _int_text(value: int) -> str:
    """Decimal text of an integer JSON numbers cannot carry; hexadecimal beyond the
    interpreter's limit on decimal conversion (4300 digits by default), which would raise."""
    try:
        return str(value)
    except ValueError:
        return hex(value)


def _repair_key(key: object) -> str:
    return _valid_text(key if isinstance(key, str) else safe_str(key))


def _valid_text(text: str) -> str:
    """Rejoin surrogate pairs and turn lone surrogates into U+FFFD."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


#: The metadata key that marks an event cut to fit the size limit.
TRUNCATED_KEY: Final = "truncated"
#: Strings whose JSON is at most this many bytes are never cut (nor cut below it).
MIN_CUT: Final = 64
#: At most this many dropped metadata keys are named in the marker, each cut to this length.
MAX_DROPPED_NAMES: Final = 10
_DROPPED_NAME_CHARS: Final = 64
#: Metadata keys never dropped to make room: the schema requires ``hostname``.
_KEPT: Final = frozenset({"hostname", TRUNCATED_KEY})
_LEVEL_NAMES: Final = frozenset(name for _, name in _LEVELS) | {"debug"}


def truncation_mark(removed: int) -> str:
    """What ends a string cut to fit: ``"… [truncated N bytes]"``, N the UTF-8 bytes removed."""
    return f"\u2026 [truncated {removed} bytes]"


def fit_payload(event: Mapping[str, Any], payload: bytes, limit: int) -> bytes:
    """Re-encode an event whose JSON ``payload`` is over ``limit`` bytes to fit within it.

    Works on ``payload`` (decoded again, so every value is plain JSON) and keeps a valid
    event: ``time``, ``service``, ``level`` and the trace ids are never touched.  Then:

    1. when cutting every string longer than :data:`MIN_CUT` bytes would still not be
       enough, metadata entries are dropped, the most bytes that cutting cannot save
       first (a list of 100 000 numbers goes before a long string), ``hostname`` never;
    2. the longest strings (the message and string values at any depth of the metadata)
       are cut to a common length, just enough to fit: each keeps its start, whole code
       points only, and ends with :func:`truncation_mark`;
    3. ``metadata["truncated"]`` records ``original_bytes`` (``len(payload)``), ``cut``
       (strings cut), ``dropped`` (entries dropped) and ``dropped_keys`` (the first
       :data:`MAX_DROPPED_NAMES` of them); it replaces any ``truncated`` key of the event.

    Linear in ``len(payload)`` (plus sorting the strings and entries by size).  Never
    raises: if anything fails, or the result still does not fit, the event is reduced to
    its fixed fields, the cut message and ``metadata`` with ``hostname`` and the marker.
    No event fits under about 400 bytes (a 100-character service, the trace ids, the
    marker): below that the reduced event is returned even though it is over ``limit``.
    ``event`` (the unencoded event) is only read in that last case.
    """
    try:
        return _fit(payload, limit)
    except Exception:
        return _minimal(event, {TRUNCATED_KEY: _marker(len(payload), 1, 0, [])}, limit)


def _marker(original: int, cut: int, dropped: int, names: list[str]) -> dict[str, Any]:
    return {"original_bytes": original, "cut": cut, "dropped": dropped, "dropped_keys": names}


def _json_len(value: Any) -> int:
    return len(orjson.dumps(value))


class _Leaf:
    """A string that may be cut: where it is, how long its JSON is, its metadata entry."""

    __slots__ = ("container", "entry", "key", "size")

    def __init__(self, container: Any, key: Any, size: int, entry: str | None) -> None:
        self.container, self.key, self.size, self.entry = container, key, size, entry


def _fit(payload: bytes, limit: int) -> bytes:
    doc = orjson.loads(payload)
    metadata = doc.get("metadata")
    if not isinstance(metadata, dict):  # not one of our events; keep the schema anyway
        metadata = doc["metadata"] = {"hostname": HOSTNAME}
    metadata.pop(TRUNCATED_KEY, None)
    # What the last resort needs, before anything is cut.
    source = {**doc, "metadata": {"hostname": metadata.get("hostname")}}
    original = len(payload)
    names: list[str] = []
    # The counts are placeholders with as many digits as they can ever have (both are at
    # most ``original``), so every size computed from here on is an upper bound.
    marker = metadata[TRUNCATED_KEY] = _marker(original, original, original, names)
    size = _json_len(doc)

    leaves: list[_Leaf] = []
    if isinstance(doc.get("message"), str):
        _collect(doc, "message", None, leaves)
    entry_size: dict[str, int] = {}
    saving: dict[str | None, int] = dict.fromkeys(metadata, 0)
    saving[None] = 0
    for key, value in metadata.items():
        if key != TRUNCATED_KEY:
            value_size = _json_len(value)
            entry_size[key] = _json_len(key) + 1 + value_size  # "key":value
            if value_size > MIN_CUT:  # else nothing in it is long enough to cut
                _collect(metadata, key, key, leaves)
    for leaf in leaves:
        saving[leaf.entry] += leaf.size - MIN_CUT
    can_save = sum(saving.values())

    # 1. Drop entries while cutting every string could not save enough.
    dropped: set[str] = set()
    if size - can_save > limit:
        order = sorted(
            (key for key in entry_size if key not in _KEPT),
            key=lambda key: entry_size[key] - saving[key],
            reverse=True,
        )
        for key in order:
            if size - can_save <= limit:
                break
            del metadata[key]
            dropped.add(key)
            size -= entry_size[key] + 1  # and its comma: hostname and the marker remain
            can_save -= saving[key]
            if len(names) < MAX_DROPPED_NAMES:
                names.append(key[:_DROPPED_NAME_CHARS])
                size += _json_len(names[-1]) + (len(names) > 1)

    # 2. Cut the longest strings to a common length.
    cut = 0
    if size > limit:
        alive = sorted(
            (leaf for leaf in leaves if leaf.entry not in dropped),
            key=lambda leaf: leaf.size,
            reverse=True,
        )
        cap = _water_level([leaf.size for leaf in alive], size - limit)
        for leaf in alive:
            if leaf.size <= cap:
                break
            leaf.container[leaf.key] = _cut(leaf.container[leaf.key], cap)
            cut += 1

    marker["cut"], marker["dropped"] = cut, len(dropped)
    out = orjson.dumps(doc)
    if len(out) <= limit:
        return out
    everything = len(entry_size) - ("hostname" in entry_size)  # all but hostname go
    return _minimal(source, {TRUNCATED_KEY: _marker(original, 1, everything, [])}, limit)


def _collect(container: Any, key: Any, entry: str | None, leaves: list[_Leaf]) -> None:
    """Add every string under ``container[key]`` whose JSON is over :data:`MIN_CUT` bytes.

    ``container[key]`` comes from ``orjson.loads``: only exact dicts, lists and scalars."""
    value = container[key]
    if value.__class__ is str:
        _add_leaf(container, key, value, entry, leaves)
        return
    stack = [value] if value.__class__ in (dict, list) else []
    while stack:  # no recursion: a payload may nest as deep as orjson allows
        node = stack.pop()
        for at, item in node.items() if node.__class__ is dict else enumerate(node):
            cls = item.__class__
            if cls is str:
                if len(item) > _MIN_CUT_CHARS:
                    _add_leaf(node, at, item, entry, leaves)
            elif cls is dict or cls is list:
                stack.append(item)


#: A string of at most this many characters has JSON of at most MIN_CUT bytes (6 per
#: character at worst, plus quotes): not worth encoding to measure.
_MIN_CUT_CHARS: Final = (MIN_CUT - 2) // 6


def _add_leaf(container: Any, key: Any, text: str, entry: str | None, leaves: list[_Leaf]) -> None:
    size = _json_len(text)
    if size > MIN_CUT:
        leaves.append(_Leaf(container, key, size, entry))


def _water_level(sizes: list[int], need: int) -> int:
    """The largest cap such that cutting every size (descending) above it to it saves at
    least ``need`` bytes; :data:`MIN_CUT` when even that is not enough."""
    total = 0
    for count, size in enumerate(sizes, 1):
        total += size
        below = sizes[count] if count < len(sizes) else MIN_CUT
        cap = (total - need) // count
        if cap >= below:
            return max(cap, MIN_CUT)
    return MIN_CUT


def _cut(text: str, cap: int) -> str:
    """``text`` cut so that its JSON (quotes included) is at most ``cap`` bytes, with the
    mark; whole code points only.  The mark may be all that is left."""
    raw = text.encode()
    room = cap - 2 - len(truncation_mark(len(raw)).encode())  # the mark is never escaped
    kept = _prefix(raw, room)
    return kept + truncation_mark(len(raw) - len(kept.encode()))


def _prefix(raw: bytes, room: int) -> str:
    """The longest start of the UTF-8 text ``raw`` (about) whose JSON, quotes excluded, is
    at most ``room`` bytes.  Escapes (``\\n``, ``\\u0000``) make the JSON longer than the
    text, so the guess shrinks until it fits; it gives up on nothing after a few tries."""
    keep = min(len(raw), room)
    for _ in range(8):
        if keep <= 0:
            break
        # "ignore" drops only a code point split at the end: raw itself is valid UTF-8.
        piece = raw[:keep].decode("utf-8", "ignore")
        size = _json_len(piece) - 2
        if size <= room:
            return piece
        keep = min(keep - 1, keep * room // size)
    return ""


def _minimal(source: Mapping[str, Any], extra: dict[str, Any], limit: int = 0) -> bytes:
    """The event reduced to what the schema requires, plus ``extra`` metadata: its fixed
    fields, the message (cut to ``limit`` when given) and the host name.  Never raises."""
    try:
        metadata = source.get("metadata")
        hostname = metadata.get("hostname") if isinstance(metadata, Mapping) else None
        created = source.get("time")
        level = source.get("level")
        message = source.get("message")
        doc: dict[str, Any] = {
            "time": created if isinstance(created, str) else format_time(time.time()),
            "service": normalize_service(source.get("service")),
            "level": level if level in _LEVEL_NAMES else "info",
            "message": "",
            "metadata": {
                "hostname": _valid_text(hostname[:255]) if isinstance(hostname, str) else HOSTNAME,
                **extra,
            },
        }
        for key, pattern in (("trace_id", _HEX32), ("span_id", _HEX16)):
            value = source.get(key)
            if isinstance(value, str) and pattern.fullmatch(value):
                doc[key] = value
        text = _valid_text(message if isinstance(message, str) else safe_str(message))
        doc["message"] = text or EMPTY_MESSAGE
        out = orjson.dumps(doc)
        if limit and len(out) > limit:
            doc["message"] = _cut(text, max(_json_len(text) - (len(out) - limit), 0))
            out = orjson.dumps(doc)
        return out
    except Exception:
        fallback = {
            "time": format_time(time.time()),
            "service": UNKNOWN_SERVICE,
            "level": "info",
            "message": "(an event that could not be encoded)",
            "metadata": {"hostname": HOSTNAME, **extra},
        }
        return orjson.dumps(fallback, default=safe_str)
