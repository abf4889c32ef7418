"""Encoding an event to JSON bytes, never raising: orjson first, then a repair of what it
refuses (integers beyond 64 bits, lone surrogates, cycles, keys of odd types…), within a
per-event allowance of characters decoded or repaired."""

from __future__ import annotations

import codecs
import math
import threading
from collections.abc import Mapping
from typing import Any, Final

import orjson

from logtide_kafka._event import is_a, safe_str, valid_text
from logtide_kafka._fit import minimal_event, truncation_mark

__all__ = [
    "BUDGETS_IN_USE",
    "CYCLE",
    "DECODE_BUDGET",
    "ENCODE_ERRORS",
    "ENCODE_OPTIONS",
    "MAX_DEPTH",
    "MAX_VALUE_LEN",
    "TOO_DEEP",
    "encode_default",
    "encode_event",
    "encode_repaired",
    "unreadable",
]

#: Nesting deeper than this is cut while repairing (and redacting), well inside orjson's
#: own 254-level limit.
MAX_DEPTH: Final = 32
#: What stands for a container nested deeper than :data:`MAX_DEPTH`, or met again inside
#: itself, in a repaired (or redacted) event.
TOO_DEEP: Final = "<nested too deep>"
CYCLE: Final = "<cycle>"
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
        return minimal_event(event, {"encode_error": f"{type(exc).__name__}: {safe_str(exc)}"})


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
            return valid_text(value[:keep]) + truncation_mark(len(rest))
        return valid_text(value)
    if issubclass(kind, int):
        return value if -(2**63) <= value < 2**64 else _int_text(value)
    if issubclass(kind, float):
        return value if math.isfinite(value) else None
    if depth >= MAX_DEPTH:
        return TOO_DEEP
    if issubclass(kind, (Mapping, list, tuple, set, frozenset)):
        if id(value) in seen:
            return CYCLE
        seen.add(id(value))
        try:
            if issubclass(kind, Mapping):
                return {_repair_key(k): _repair(v, depth + 1, seen) for k, v in value.items()}
            return [_repair(v, depth + 1, seen) for v in value]
        except Exception:  # a container subclass whose items() or __iter__ raises
            return unreadable(value)
        finally:
            seen.discard(id(value))
    return _repair(encode_default(value), depth + 1, seen)


def unreadable(value: object) -> str:
    """What stands for a container whose items cannot be read (its ``items()`` raised)."""
    return f"<unreadable {type(value).__name__}>"


def _int_text(value: int) -> str:
    """Decimal text of an integer JSON numbers cannot carry; hexadecimal beyond the
    interpreter's limit on decimal conversion (4300 digits by default), which would raise."""
    try:
        return str(value)
    except ValueError:
        return hex(value)


def _repair_key(key: object) -> str:
    return valid_text(key if is_a(key, str) else safe_str(key))
