"""Fitting an encoded event under the size limit (``message.max.bytes``): cut the longest
strings, drop the largest metadata entries, say so in ``metadata["truncated"]``; and the
event reduced to what the schema requires, the last resort of every encoding path."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from logtide_kafka._contract import LEVEL_SET, OTEL_SPAN_ID, OTEL_TRACE_ID
from logtide_kafka._event import (
    EMPTY_MESSAGE,
    HOSTNAME,
    UNKNOWN_SERVICE,
    format_time,
    normalize_service,
    safe_str,
    valid_text,
)

__all__ = [
    "MAX_DROPPED_NAMES",
    "MIN_CUT",
    "TRUNCATED_KEY",
    "fit_payload",
    "minimal_event",
    "truncation_mark",
]

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
        return minimal_event(event, {TRUNCATED_KEY: _marker(len(payload), 1, 0, [])}, limit)


def _marker(original: int, cut: int, dropped: int, names: list[str]) -> dict[str, Any]:
    return {"original_bytes": original, "cut": cut, "dropped": dropped, "dropped_keys": names}


def _json_len(value: Any) -> int:
    return len(orjson.dumps(value))


class _Leaf:
    """A string that may be cut: where it is, how long its JSON is, its metadata entry."""

    __slots__ = ("container", "entry", "key", "size")

    def __init__(self, container: Any, key: Any, size: int, entry: str | None) -> None:
        self.container, self.key, self.size, self.entry = container, key, size, entry


@dataclass(slots=True)
class _Sizes:
    """What fitting works from: the strings that may be cut, each metadata entry's size
    (``"key":value``) and what cutting its strings could save (``None``: the message)."""

    leaves: list[_Leaf]
    entry: dict[str, int]
    saving: dict[str | None, int]


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
    sizes = _measure(doc, metadata)
    dropped, size = _drop_entries(metadata, sizes, _json_len(doc), limit, names)
    cut = _cut_longest(sizes.leaves, dropped, size - limit) if size > limit else 0
    marker["cut"], marker["dropped"] = cut, len(dropped)
    out = orjson.dumps(doc)
    if len(out) <= limit:
        return out
    everything = len(sizes.entry) - ("hostname" in sizes.entry)  # all but hostname go
    return minimal_event(source, {TRUNCATED_KEY: _marker(original, 1, everything, [])}, limit)


def _measure(doc: dict[str, Any], metadata: dict[str, Any]) -> _Sizes:
    """Find the strings that may be cut (the message's, the metadata's at any depth) and
    size every metadata entry but the marker."""
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
    return _Sizes(leaves, entry_size, saving)


def _drop_entries(
    metadata: dict[str, Any], sizes: _Sizes, size: int, limit: int, names: list[str]
) -> tuple[set[str], int]:
    """Step 1: drop metadata entries while cutting every string could not save enough,
    the most bytes that cutting cannot save first, ``hostname`` never; name the first
    :data:`MAX_DROPPED_NAMES` in ``names`` (the marker's list).  Returns the keys dropped
    and the event's size (an upper bound) after."""
    dropped: set[str] = set()
    can_save = sum(sizes.saving.values())
    if size - can_save <= limit:
        return dropped, size
    entry_size, saving = sizes.entry, sizes.saving
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
    return dropped, size


def _cut_longest(leaves: list[_Leaf], dropped: set[str], need: int) -> int:
    """Step 2: cut the longest strings of the entries left to a common length, just enough
    to save ``need`` bytes; return how many were cut."""
    alive = sorted(
        (leaf for leaf in leaves if leaf.entry not in dropped),
        key=lambda leaf: leaf.size,
        reverse=True,
    )
    cap = _water_level([leaf.size for leaf in alive], need)
    cut = 0
    for leaf in alive:
        if leaf.size <= cap:
            break
        leaf.container[leaf.key] = _cut(leaf.container[leaf.key], cap)
        cut += 1
    return cut


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


def minimal_event(source: Mapping[str, Any], extra: dict[str, Any], limit: int = 0) -> bytes:
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
                "hostname": valid_text(hostname[:255]) if isinstance(hostname, str) else HOSTNAME,
                **extra,
            },
        }
        for key, pattern in (("trace_id", OTEL_TRACE_ID), ("span_id", OTEL_SPAN_ID)):
            value = source.get(key)
            if isinstance(value, str) and pattern.fullmatch(value):
                doc[key] = value
        text = valid_text(message if isinstance(message, str) else safe_str(message))
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
