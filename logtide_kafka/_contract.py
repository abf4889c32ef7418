"""LogTide's ingest contract, defined once: what ``POST /api/v1/ingest`` accepts and stores.

Read from LogTide v0.5.0's source (``packages/shared/src/schemas/index.ts``, zod 3.25, and
``packages/backend/src/modules/ingestion/routes.ts``) and checked against the running
server (``tests/test_logtide_contract.py``)::

    logSchema = z.object({
      time: z.string().datetime().or(z.date()),
      service: z.string().min(1).max(100),
      level: z.enum(['debug', 'info', 'warn', 'error', 'critical']),
      message: z.string().min(1),
      metadata: z.record(z.unknown()).optional(),
      trace_id: z.string().optional(),
      span_id: z.string().regex(/^[a-f0-9]{16}$/i).optional(),
    });
    ingestRequestSchema = z.object({logs: z.array(logSchema).min(1).max(1000)});

JavaScript counts string lengths in UTF-16 code units, so ``service`` is limited to 100
units: 50 emoji, not 100.  Optional fields may be absent but never ``null``; unknown
top-level fields are dropped silently; one bad entry makes the whole request a 400.
What the schema lets through but PostgreSQL cannot store is :data:`FORBIDDEN_CHARS`: U+0000
in any string (message, service, metadata keys and values) makes the whole request a 500.

The producer, the shipper (normalisation and validation), ``testing.event_problems``, the
CLI and the test server (``tests/logtide_server.py``) all import their rules from here.
"""

from __future__ import annotations

import re
from typing import Any, Final

__all__ = [
    "ENTRY_FIELDS",
    "FORBIDDEN_CHARS",
    "INGEST_PATH",
    "LEVELS",
    "LEVEL_SET",
    "MAX_BATCH",
    "MAX_BODY_BYTES",
    "MAX_SERVICE_LEN",
    "OTEL_SPAN_ID",
    "OTEL_TRACE_ID",
    "QUOTA_CODE",
    "REPLACEMENT_CHAR",
    "REQUIRED_FIELDS",
    "SPAN_ID",
    "TIME_FORMAT",
    "TIME_PATTERN",
    "WRITTEN_TIME_PATTERN",
    "cut_utf16",
    "entry_errors",
    "replace_forbidden",
    "replace_forbidden_json",
    "utf16_len",
]

#: The ingest route, relative to the API's base URL.
INGEST_PATH: Final = "/api/v1/ingest"
#: LogTide's five levels, least severe first.
LEVELS: Final = ("debug", "info", "warn", "error", "critical")
LEVEL_SET: Final = frozenset(LEVELS)
#: Every field of an entry, in the schema's order; anything else is dropped by LogTide.
ENTRY_FIELDS: Final = ("time", "service", "level", "message", "metadata", "trace_id", "span_id")
REQUIRED_FIELDS: Final = ("time", "service", "level", "message")
#: ``service`` is 1 to this many UTF-16 code units (:func:`utf16_len`).
MAX_SERVICE_LEN: Final = 100
#: Entries per request: 1 to this many.
MAX_BATCH: Final = 1000
#: The ingest route's body limit (Fastify ``bodyLimit``), decided from ``Content-Length``.
MAX_BODY_BYTES: Final = 50 * 1024 * 1024
#: The ``code`` of LogTide's monthly-quota 429, which waiting does not cure.
QUOTA_CODE: Final = "capability.ingestion.max_events_monthly.exceeded"

#: Characters PostgreSQL cannot store (text and jsonb refuse U+0000): LogTide answers 500.
FORBIDDEN_CHARS: Final = "\x00"
#: What this library writes in their place: U+FFFD REPLACEMENT CHARACTER, as for lone
#: surrogates, so a reader sees where something unprintable was.
REPLACEMENT_CHAR: Final = "\ufffd"
# How JSON carries U+0000 (raw control characters are invalid JSON, refused by parsers).
_FORBIDDEN_JSON: Final = b"\\u0000"
_REPLACEMENT_JSON: Final = b"\\ufffd"
_BACKSLASH: Final = ord("\\")

# zod 3.25's ``z.string().datetime()`` regex, verbatim: a real calendar date (leap years
# included), hours 00-23, seconds optional, any number of fractional digits, and ``Z``
# only (offsets such as ``+02:00`` are refused).  ASCII digits only, as in JavaScript.
_DATE: Final = (
    r"((\d\d[2468][048]|\d\d[13579][26]|\d\d0[48]|[02468][048]00|[13579][26]00)-02-29"
    r"|\d{4}-((0[13578]|1[02])-(0[1-9]|[12]\d|3[01])|(0[469]|11)-(0[1-9]|[12]\d|30)"
    r"|(02)-(0[1-9]|1\d|2[0-8])))"
)
_HOUR_MINUTE: Final = r"([01]\d|2[0-3]):[0-5]\d"
#: Every ``time`` LogTide accepts (use ``fullmatch``).
TIME_PATTERN: Final = re.compile(rf"{_DATE}T{_HOUR_MINUTE}(:[0-5]\d(\.\d+)?)?Z", re.ASCII)
#: The one format this library writes: UTC, milliseconds, ``Z`` (a strict subset of
#: :data:`TIME_PATTERN`): ``2025-11-25T08:30:03.214Z``.
TIME_FORMAT: Final = "YYYY-MM-DDTHH:MM:SS.mmmZ"
WRITTEN_TIME_PATTERN: Final = re.compile(rf"{_DATE}T{_HOUR_MINUTE}:[0-5]\d\.\d{{3}}Z", re.ASCII)

#: LogTide's ``span_id``: exactly 16 hex digits, either case.  ``trace_id``: any string.
SPAN_ID: Final = re.compile(r"[0-9a-fA-F]{16}", re.ASCII)
#: The ids the producer moves to the top level: OpenTelemetry's lower-case hex forms.
OTEL_TRACE_ID: Final = re.compile(r"[0-9a-f]{32}", re.ASCII)
OTEL_SPAN_ID: Final = re.compile(r"[0-9a-f]{16}", re.ASCII)


# -- lengths as JavaScript counts them ------------------------------------------------------


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units (JavaScript's ``length``): 2 for each astral character."""
    if text.isascii():
        return len(text)
    return len(text) + sum(1 for char in text if char > "\uffff")


def cut_utf16(text: str, limit: int) -> str:
    """The longest start of ``text`` of at most ``limit`` UTF-16 units (whole characters,
    so a surrogate pair is never split)."""
    if len(text) <= limit // 2 or utf16_len(text) <= limit:
        return text
    units = 0
    for index, char in enumerate(text):
        units += 2 if char > "\uffff" else 1
        if units > limit:
            return text[:index]
    return text


# -- forbidden characters -------------------------------------------------------------------


def replace_forbidden(text: str) -> str:
    """``text`` with every forbidden character replaced by :data:`REPLACEMENT_CHAR`."""
    if FORBIDDEN_CHARS in text:
        return text.replace(FORBIDDEN_CHARS, REPLACEMENT_CHAR)
    return text


def replace_forbidden_json(payload: bytes) -> bytes:
    """Encoded JSON with every forbidden character replaced, in keys and values at any
    depth, without decoding it.  JSON can only carry U+0000 escaped (``\\u0000``).  When
    there is none, the common case, ``payload`` itself is returned after a byte search.
    An escape counts only after an even run of backslashes: the text ``\\u0000`` (a
    backslash, then ``u0000``) is left alone."""
    # ``find``, not ``in``: for bytes, ``in`` first tries the needle as an integer and
    # clears the TypeError, which costs more than the search.  Most events have no escape
    # at all, and memchr settles that.
    if payload.find(b"\\") < 0:
        return payload
    at = payload.find(_FORBIDDEN_JSON)
    if at < 0:
        return payload
    parts: list[bytes] = []
    start = 0
    while at >= 0:
        run = at
        while run > 0 and payload[run - 1] == _BACKSLASH:
            run -= 1
        if (at - run) % 2 == 0:  # this backslash starts an escape: a real U+0000
            parts.append(payload[start:at])
            parts.append(_REPLACEMENT_JSON)
            start = at + len(_FORBIDDEN_JSON)
        at = payload.find(_FORBIDDEN_JSON, at + 1)
    parts.append(payload[start:])
    return b"".join(parts)


# -- the schema, as zod reports it ------------------------------------------------------------

_LEVEL_LIST: Final = " | ".join(f"'{name}'" for name in LEVELS)


def _js_type(value: object) -> str:
    """zod's name for a decoded JSON value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def entry_errors(entry: dict[str, Any]) -> dict[str, list[str]]:
    """zod's errors for one entry (decoded JSON object), by field in the schema's order, with
    LogTide's messages (``"Invalid datetime"``, ``"Required"``…); empty when it is valid.

    Forbidden characters are not schema errors (they pass zod and fail in PostgreSQL)."""
    errors: dict[str, list[str]] = {}
    time = entry.get("time", ...)
    if time is ...:
        errors["time"] = ["Required", "Required"]  # both branches of the union
    elif not isinstance(time, str):
        kind = _js_type(time)
        errors["time"] = [f"Expected string, received {kind}", f"Expected date, received {kind}"]
    elif not TIME_PATTERN.fullmatch(time):
        errors["time"] = ["Invalid datetime"]
    for field in ("service", "message"):
        value = entry.get(field, ...)
        if value is ...:
            errors[field] = ["Required"]
        elif not isinstance(value, str):
            errors[field] = [f"Expected string, received {_js_type(value)}"]
        elif not value:
            errors[field] = ["String must contain at least 1 character(s)"]
        elif field == "service" and utf16_len(value) > MAX_SERVICE_LEN:
            errors[field] = [f"String must contain at most {MAX_SERVICE_LEN} character(s)"]
        if field == "service":  # keep the schema's order: level comes between the two
            level = entry.get("level", ...)
            if level is ...:
                errors["level"] = ["Required"]
            elif not isinstance(level, str):
                errors["level"] = [f"Expected {_LEVEL_LIST}, received {_js_type(level)}"]
            elif level not in LEVEL_SET:
                errors["level"] = [
                    f"Invalid enum value. Expected {_LEVEL_LIST}, received '{level}'"
                ]
    if "metadata" in entry and not isinstance(entry["metadata"], dict):
        errors["metadata"] = [f"Expected object, received {_js_type(entry['metadata'])}"]
    if "trace_id" in entry and not isinstance(entry["trace_id"], str):
        errors["trace_id"] = [f"Expected string, received {_js_type(entry['trace_id'])}"]
    if "span_id" in entry:
        span_id = entry["span_id"]
        if not isinstance(span_id, str):
            errors["span_id"] = [f"Expected string, received {_js_type(span_id)}"]
        elif not SPAN_ID.fullmatch(span_id):
            errors["span_id"] = ["Invalid"]
    return errors
