"""The LogTide-native event: building it from parts and encoding it to JSON bytes.

Every Kafka message value is one JSON object that LogTide's ``POST /api/v1/ingest`` accepts
as a log entry as it is (see ``docs/event-schema.md``).
"""

from __future__ import annotations

import codecs
import math
import socket
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final, TypeAlias, TypeGuard, TypeVar

import orjson

from logtide_kafka._contract import (
    LEVEL_SET,
    MAX_SERVICE_LEN,
    OTEL_SPAN_ID,
    OTEL_TRACE_ID,
    WRITTEN_TIME_PATTERN,
    cut_utf16,
    replace_forbidden,
)

__all__ = [
    "BUDGETS_IN_USE",
    "DECODE_BUDGET",
    "ENCODE_ERRORS",
    "ENCODE_OPTIONS",
    "HOSTNAME",
    "LEVEL_ALIASES",
    "MAX_DROPPED_NAMES",
    "MAX_SERVICE_LEN",
    "MAX_VALUE_LEN",
    "MIN_CUT",
    "TRUNCATED_KEY",
    "describe_exception",
    "encode_default",
    "encode_event",
    "encode_repaired",
    "fit_payload",
    "format_time",
    "is_a",
    "level_name",
    "make_event",
    "normalize_level",
    "normalize_service",
    "safe_repr",
    "safe_str",
    "truncation_mark",
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
# Nesting deeper than this is cut while repairing, well inside orjson's own 254-level limit.
_MAX_DEPTH: Final = 32
#: Characters one event may have decoded from its ``bytes`` values, or repaired in its
#: strings (lone surrogates), in all.  Beyond, values are cut before the work (decoding
#: 10 MB of invalid UTF-8 held a logging call for seconds): past librdkafka's default
#: ``message.max.bytes`` the size limit would cut them anyway.
MAX_VALUE_LEN: Final = 1 << 20
_DECODE_CHUNK: Final = 1 << 16
_REPAIR_COST: Final = 4  # repairing costs about four times as much per character


class DecodeBudget(threading.local):
    """What is left of the current event's :data:`MAX_VALUE_LEN` on this thread.

    Whoever encodes an event calls :meth:`reset` after it when :data:`BUDGETS_IN_USE` is
    not zero: the hot path reads one list item, not the thread-local."""

    left = MAX_VALUE_LEN
    cut = False

    def take(self, wanted: int) -> int:
        """Take up to ``wanted`` characters; return how many were granted."""
        granted = max(0, min(wanted, self.left))
        if granted and self.left == MAX_VALUE_LEN:
            with _in_use_lock:
                BUDGETS_IN_USE[0] += 1
        self.left -= granted
        if granted < wanted:
            self.cut = True
        return granted

    def reset(self) -> bool:
        """Restore the allowance for the next event; return whether a value was cut."""
        if self.left != MAX_VALUE_LEN:
            with _in_use_lock:
                BUDGETS_IN_USE[0] -= 1
        cut, self.cut, self.left = self.cut, False, MAX_VALUE_LEN
        return cut


#: How many threads have part of their allowance in use (a list: changed in place).
BUDGETS_IN_USE: Final[list[int]] = [0]
_in_use_lock = threading.Lock()


DECODE_BUDGET: Final = DecodeBudget()
_budget = DECODE_BUDGET


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
    text = _valid_text(text.strip())  # it is also the message key: it must encode
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


def encode_default(obj: Any) -> Any:
    """orjson fallback: anything it cannot encode natively becomes a string (or a list).

    Never raises: a set whose iteration fails or a released ``memoryview`` falls back to
    :func:`safe_str` (an exception here would make orjson refuse the whole event)."""
    try:
        if isinstance(obj, (set, frozenset)):
            return list(obj)
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return _decode_bounded(memoryview(obj).cast("B"))
    except Exception:
        pass
    return safe_str(obj)


def _decode_bounded(raw: memoryview) -> str:
    """UTF-8 text of ``raw`` (invalid bytes as ``\\xNN``), decoded only until it holds
    :data:`MAX_VALUE_LEN` characters; the rest is cut and counted by the truncation mark."""
    decoder = codecs.getincrementaldecoder("utf-8")("backslashreplace")
    parts: list[str] = []
    done = 0
    while done < len(raw):  # chunk by chunk, while this thread's allowance lasts
        # Taken before decoding (a byte gives at least one character), the rest after.
        wanted = min(len(raw) - done, _DECODE_CHUNK)
        granted = _budget.take(wanted)
        chunk = raw[done : done + granted]
        done += granted
        parts.append(decoder.decode(chunk.tobytes(), final=done == len(raw)))
        if granted < wanted or _budget.take(len(parts[-1]) - granted) < len(parts[-1]) - granted:
            break  # the allowance ran out: the rest is cut
    text = "".join(parts)
    return text if done == len(raw) else text + truncation_mark(len(raw) - done)


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
    finally:
        if BUDGETS_IN_USE[0]:
            _budget.reset()


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
    kind = type(value)  # never value.__class__, which a lazy proxy may make raise
    if value is None or kind is bool:
        return value
    if issubclass(kind, str):
        if value.isascii():  # no surrogates: nothing to repair
            return value
        keep = _budget.take(len(value) * _REPAIR_COST) // _REPAIR_COST
        if keep < len(value):  # repaired only while this thread's allowance lasts
            rest = value[keep:].encode("utf-8", "surrogatepass")
            return _valid_text(value[:keep]) + truncation_mark(len(rest))
        return _valid_text(value)
    if issubclass(kind, int):
        return value if -(2**63) <= value < 2**64 else _int_text(value)
    if issubclass(kind, float):
        return value if math.isfinite(value) else None
    if depth >= _MAX_DEPTH:
        return "<nested too deep>"
    if issubclass(kind, (Mapping, list, tuple, set, frozenset)):
        if id(value) in seen:
            return "<cycle>"
        seen.add(id(value))
        try:
            if issubclass(kind, Mapping):
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
    return _valid_text(key if is_a(key, str) else safe_str(key))


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
            "level": level if level in LEVEL_SET else "info",
            "message": "",
            "metadata": {
                "hostname": _valid_text(hostname[:255]) if isinstance(hostname, str) else HOSTNAME,
                **extra,
            },
        }
        for key, pattern in (("trace_id", OTEL_TRACE_ID), ("span_id", OTEL_SPAN_ID)):
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
