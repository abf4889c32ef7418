"""The rules a LogTide-native event follows, as a checker (see ``docs/event-schema.md``)."""

from __future__ import annotations

import re
from typing import Any, Final

__all__ = ["LEVELS", "event_problems"]

LEVELS: Final = frozenset({"debug", "info", "warn", "error", "critical"})
_TIME: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
_FIELDS: Final = frozenset(
    {"time", "service", "level", "message", "metadata", "trace_id", "span_id"}
)
_HEX: Final = {"trace_id": re.compile(r"[0-9a-f]{32}"), "span_id": re.compile(r"[0-9a-f]{16}")}


def event_problems(event: Any) -> list[str]:
    """Every way ``event`` (decoded JSON) breaks the schema; an empty list when it is valid.

    Checks what LogTide's ingest API requires: ``time`` ISO-8601 UTC with milliseconds and
    ``Z``; ``service`` 1-100 characters; ``level`` one of :data:`LEVELS`; a non-empty
    ``message``; ``metadata`` an object with ``hostname``; ``trace_id`` (32 hex) and
    ``span_id`` (16 hex) only when present as strings, never ``null``; no other fields.
    """
    if not isinstance(event, dict):
        return [f"event is a {type(event).__name__}, not an object"]
    problems = [f"unexpected field {key!r}" for key in event if key not in _FIELDS]
    time = event.get("time")
    if not (isinstance(time, str) and _TIME.fullmatch(time)):
        problems.append(f"time {time!r} is not ISO-8601 UTC with milliseconds and Z")
    service = event.get("service")
    if not (isinstance(service, str) and 1 <= len(service) <= 100):
        problems.append(f"service {service!r} is not a string of 1-100 characters")
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
    return problems
