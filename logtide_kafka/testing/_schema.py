"""The rules a LogTide-native event follows, as a checker (see ``docs/event-schema.md``)."""

from __future__ import annotations

from typing import Any, Final

from logtide_kafka._contract import (
    ENTRY_FIELDS,
    FORBIDDEN_CHARS,
    LEVEL_SET,
    MAX_SERVICE_LEN,
    OTEL_SPAN_ID,
    OTEL_TRACE_ID,
    TIME_FORMAT,
    WRITTEN_TIME_PATTERN,
    utf16_len,
)

__all__ = ["LEVELS", "event_problems"]

#: LogTide's five levels (a frozenset, as it always was).
LEVELS: Final = LEVEL_SET
_HEX: Final = {"trace_id": OTEL_TRACE_ID, "span_id": OTEL_SPAN_ID}


def event_problems(event: Any) -> list[str]:
    """Every way ``event`` (decoded JSON) breaks the schema; an empty list when it is valid.

    Checks what LogTide's ingest API requires and stores, in the library's own format:
    ``time`` ISO-8601 UTC with milliseconds and ``Z``; ``service`` 1-100 UTF-16 code units
    (as JavaScript counts: an emoji is 2); ``level`` one of :data:`LEVELS`; a non-empty
    ``message``; ``metadata`` an object with ``hostname``; ``trace_id`` (32 hex) and
    ``span_id`` (16 hex) only when present as strings, never ``null``; no other fields; and
    no U+0000 in any string, key or value (PostgreSQL cannot store it).
    """
    if not isinstance(event, dict):
        return [f"event is a {type(event).__name__}, not an object"]
    problems = [f"unexpected field {key!r}" for key in event if key not in ENTRY_FIELDS]
    time = event.get("time")
    if not (isinstance(time, str) and WRITTEN_TIME_PATTERN.fullmatch(time)):
        problems.append(f"time {time!r} is not {TIME_FORMAT} (UTC, a real date)")
    service = event.get("service")
    if not (isinstance(service, str) and 1 <= utf16_len(service) <= MAX_SERVICE_LEN):
        problems.append(
            f"service {service!r} is not a string of 1-{MAX_SERVICE_LEN} UTF-16 code units"
        )
    if event.get("level") not in LEVELS:
        problems.append(f"level {event.get('level')!r} is not one of {sorted(LEVELS)}")
    message = event.get("message")
    if not (isinstance(message, str) and message):
        problems.append(f"message {message!r} is not a non-empty string")
    metadata = event.get("metadata")
    if not isinstance(metadata, dict):
        problems.append(f"metadata {metadata!r} is not an object")
    elif not isinstance(metadata.get("hostname"), str):
        problems.append("metadata has no hostname")
    for key, pattern in _HEX.items():
        if key in event and not (isinstance(event[key], str) and pattern.fullmatch(event[key])):
            problems.append(f"{key} {event[key]!r} is not {pattern.pattern}")
    if _has_forbidden(event):
        problems.append(f"a string holds a forbidden character {FORBIDDEN_CHARS!r} (U+0000)")
    return problems


def _has_forbidden(value: Any) -> bool:
    """Whether any string in ``value`` (keys included, at any depth) has U+0000."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if FORBIDDEN_CHARS in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
