"""Turning Kafka messages into entries LogTide's ingest API accepts, and its validation rules.

Pure functions, no I/O: the shipper (``logtide_kafka.pipeline.shipper``) calls :func:`normalize` on
every message it consumes and :func:`validate_entry` before it sends anything.

LogTide's rules are those of ``logtide_kafka._contract``: one bad entry rejects the whole
request, and unknown top-level fields are silently dropped, which is why :func:`normalize`
moves them into ``metadata``; U+0000 anywhere makes LogTide answer 500, which is why
:func:`normalize` replaces it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

import orjson

from logtide_kafka._contract import (
    LEVEL_SET,
    MAX_BATCH,
    MAX_SERVICE_LEN,
    SPAN_ID,
    WRITTEN_TIME_PATTERN,
    cut_utf16,
    entry_errors,
    replace_forbidden,
    replace_forbidden_json,
    utf16_len,
)
from logtide_kafka._encode import encode_event
from logtide_kafka._event import LEVEL_ALIASES, level_name, safe_str

__all__ = [
    "LEVELS",
    "MAX_BATCH",
    "MAX_SERVICE_LEN",
    "Source",
    "Unshippable",
    "encode_body",
    "format_utc",
    "normalize",
    "parse_time",
    "to_logtide_level",
    "to_payload",
    "validate_entry",
]

#: LogTide's five levels (the contract's, as a set).
LEVELS: Final = LEVEL_SET
# Where older producers put each field, tried in order when the LogTide name is absent.
_TIME_KEYS: Final = ("timestamp", "@timestamp", "ts")
_SERVICE_KEYS: Final = ("service_name", "app")
_LEVEL_KEYS: Final = ("severity", "levelname", "log_level")
_MESSAGE_KEYS: Final = ("msg", "log", "event")

# Syslog severities 0-7 (RFC 5424); numbers from 10 up are Python logging levels.
_SYSLOG: Final = ("critical", "critical", "critical", "error", "warn", "info", "info", "debug")

# What the shipper keeps as a top-level trace_id: OpenTelemetry (32 hex), 64-bit (16 hex)
# or a UUID.  LogTide takes any string, but a trace view can only place these.
_TRACE_ID: Final = re.compile(
    r"[0-9a-fA-F]{32}|[0-9a-fA-F]{16}|[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}"
)
_NUMBER: Final = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
# Epoch magnitudes: below 1e11 is seconds (until year 5138), then ms, µs, ns.
_EPOCH_SCALES: Final = ((1e11, 1.0), (1e14, 1e3), (1e17, 1e6))
_MIN_EPOCH: Final = datetime(1, 1, 1, tzinfo=UTC).timestamp()
_MAX_EPOCH: Final = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()


class Source(NamedTuple):
    """Where a message came from: its Kafka coordinates, key and timestamp.

    A named tuple, not a frozen dataclass: one is made for every message consumed, and a
    frozen dataclass takes several times as long to build."""

    topic: str
    partition: int
    offset: int
    key: bytes | None = None
    #: The message's Kafka timestamp in ms, None when the broker has none.
    timestamp_ms: int | None = None

    def coordinates(self) -> dict[str, Any]:
        """``{"topic", "partition", "offset"}``, as stored in ``metadata.kafka``."""
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}

    def coordinates_json(self) -> bytes:
        """:meth:`coordinates` encoded as ``orjson.dumps`` does, without the dict."""
        return b'{"topic":%s,"partition":%d,"offset":%d}' % (
            orjson.dumps(self.topic),
            self.partition,
            self.offset,
        )


class Unshippable(ValueError):
    """A message that cannot be made into a valid LogTide entry (it goes to the DLQ)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def validate_entry(entry: Any) -> str | None:
    """Why LogTide would reject ``entry`` (decoded JSON), or None when it accepts it.

    The contract's schema (``_contract.entry_errors``, zod's messages): the first field
    at fault, its value and LogTide's message.
    """
    if not isinstance(entry, dict):
        return f"entry is a {type(entry).__name__}, not an object"
    errors = entry_errors(entry)
    if not errors:
        return None
    field, messages = next(iter(errors.items()))
    return f"{field} {_short(entry.get(field))}: {messages[0]}"


def normalize(raw: bytes | None, source: Source) -> tuple[dict[str, Any], bool]:
    """Build the LogTide entry for one Kafka message value, or raise :class:`Unshippable`.

    Returns ``(entry, converted)``; ``converted`` is false for a LogTide-native event.

    LogTide-native events pass through unchanged apart from ``metadata.kafka`` (the
    message's topic, partition and offset).  Older shapes are converted: ``timestamp``
    (ISO-8601 with any offset, or epoch seconds/ms/µs/ns) becomes ``time`` in UTC with
    ``Z``; level names and numbers map to LogTide's five levels; unknown top-level fields
    move into ``metadata``.  Unshippable: a value that is not a JSON object, or that has no
    usable message (missing, ``null`` or empty).
    """
    if raw is not None:  # U+0000 in any string: LogTide would answer 500
        raw = replace_forbidden_json(raw)
    return _entry(_decode(raw), source)


def _entry(value: Any, source: Source) -> tuple[dict[str, Any], bool]:
    """:func:`normalize`'s steps after decoding."""
    entry = _native(value)
    if entry is not None:  # the common case, what our own producer writes
        entry["metadata"]["kafka"] = source.coordinates()
        return entry, False
    return _convert(value, source)


def to_payload(raw: bytes | None, source: Source) -> tuple[bytes, bool]:
    """The encoded LogTide entry for one Kafka message value (what the shipper sends), or
    raise :class:`Unshippable`: ``(encode_entry(entry), converted)`` of :func:`normalize`,
    as JSON that decodes to the same entry.

    A LogTide-native event (what this library's producer writes) is not encoded again:
    its own bytes are sent with ``metadata.kafka`` spliced into its metadata object, which
    is then its last member (see :func:`_splice`).  Anything else, or a value only the
    second parser reads, takes :func:`normalize` and :func:`encode_entry`.
    """
    if raw is None:
        value = _decode(raw)  # raises Unshippable: an empty value
    else:
        if raw.find(b"\\") >= 0:  # without a backslash there is no escape to replace
            raw = replace_forbidden_json(raw)  # U+0000 in any string: LogTide would answer 500
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            value = _second_parse(raw, str(exc))  # never spliced: encode_entry repairs it
        else:
            if _is_native(value):
                payload = _splice(raw, value, source)
                if payload is not None:
                    return payload, False
    # Decoded once: the entry is built from this value, not from the bytes again.
    entry, converted = _entry(value, source)
    return encode_entry(entry), converted


def _splice(raw: bytes, value: dict[str, Any], source: Source) -> bytes | None:
    """``raw`` with ``"kafka": coordinates`` added to its metadata object, or None.

    ``raw`` decoded (by orjson, strictly) to the native event ``value``: every top-level
    value but ``metadata`` is a string, and ``metadata``, whose last occurrence is the one
    that counts (for orjson as for LogTide's JSON.parse), has no ``kafka`` member.  The
    text is read from its end: after the last ``metadata`` come only ``trace_id`` and
    ``span_id`` (when present, as this library's producer writes them: compact, in that
    order); an object before those (or before the closing brace) can only be that
    ``metadata``, so the new member goes before its closing brace.  A string cannot hide
    the tail: its quotes follow ``:`` and ``,``, never a backslash.  Any other layout
    gives None: the caller encodes the entry.  So does a value with many brackets: the
    entry could be nested deeper than orjson encodes, and encode_entry repairs it.
    """
    if len(raw) >= 2 * _SPLICE_DEPTH and raw.count(b"{") + raw.count(b"[") >= _SPLICE_DEPTH:
        # Perhaps nested deeper than orjson encodes: encode_entry repairs it.  (A shorter
        # value cannot hold that many brackets, opened and closed: no need to count.)
        return None
    topic, partition, offset, _, _ = source  # unpacked: no slice
    head = _kafka_heads.get(topic)
    if head is None:
        head = _kafka_head(topic)
    if len(value) == _ENTRY_MIN and raw.endswith(b"}}"):
        # No trace_id or span_id (_is_native counted the fields): compact, metadata last,
        # the common case, no search.
        return b'%b%b%b%d,"offset":%d}}}' % (
            raw[:-2],
            b"," if value["metadata"] else b"",
            head,
            partition,
            offset,
        )
    end = _metadata_end(raw, value)
    if end < 0:
        return None
    return b'%b%b%b%d,"offset":%d}%b' % (
        raw[:end],
        b"," if value["metadata"] else b"",
        head,
        partition,
        offset,
        raw[end:],
    )


def _kafka_head(topic: str) -> bytes:
    """``"kafka":{"topic":...,"partition":``, the start of the spliced member (as
    :meth:`Source.coordinates_json` encodes it), remembered per topic."""
    if len(_kafka_heads) >= _KAFKA_HEADS_MAX:  # a pattern subscription's many topics
        _kafka_heads.clear()
    head = _kafka_heads[topic] = b'"kafka":{"topic":%b,"partition":' % orjson.dumps(topic)
    return head


def _metadata_end(raw: bytes, value: dict[str, Any]) -> int:
    """Where the last ``metadata``'s closing brace is in ``raw`` (see :func:`_splice`),
    or -1."""
    last = len(raw) - 1
    while raw[last] in _JSON_SPACE:
        last -= 1
    if raw[last] != _CLOSE:
        return -1
    tail = b""
    if "trace_id" in value:
        tail = b',"trace_id":"%s"' % value["trace_id"].encode()
    if "span_id" in value:
        tail += b',"span_id":"%s"' % value["span_id"].encode()
    end = last - len(tail)
    if tail and raw[end:last] != tail:
        return -1
    end -= 1
    while raw[end] in _JSON_SPACE:
        end -= 1
    return end if raw[end] == _CLOSE else -1


def _convert(value: Any, source: Source) -> tuple[dict[str, Any], bool]:
    """:func:`normalize`'s steps for a decoded value, one field at a time."""
    if not isinstance(value, dict):
        raise Unshippable(f"value is {_json_type(value)}, not a JSON object")
    fields = dict(value)
    metadata = _take_metadata(fields)
    moved: dict[str, Any] = {}

    message = _take_message(fields)
    time = _take_time(fields, source, moved)
    level = _take_level(fields, moved)
    service = _take_service(fields, source, moved)
    entry: dict[str, Any] = {
        "time": time,
        "service": service,
        "level": level,
        "message": message,
        "metadata": metadata,
    }
    _take_ids(fields, entry, moved)
    # Whatever is left was not a LogTide field: LogTide would drop it, so keep it here.
    moved.update(fields)
    for key, item in moved.items():
        _merge(metadata, key, item)
    converted = entry != value  # one C-level comparison; before metadata.kafka is added
    _merge(metadata, "kafka", source.coordinates())
    problem = validate_entry(entry)
    if problem is not None:  # not expected after the steps above; never send it regardless
        raise Unshippable(f"still invalid after normalising: {problem}")
    return entry, converted


def encode_entry(entry: dict[str, Any]) -> bytes:
    """An entry as JSON bytes (never raises: odd values are repaired, see ``_encode``).

    An entry holds decoded JSON (string keys, JSON types), which orjson encodes as
    ``encode_event`` would without its options; they matter only when orjson refuses the
    entry (nesting beyond its limit, a lone surrogate from the second parser...)."""
    try:
        return orjson.dumps(entry)
    except orjson.JSONEncodeError:
        return encode_event(entry)[0]


def encode_body(entries: Sequence[bytes]) -> bytes:
    """The request body ``{"logs": [...]}`` from already encoded entries.

    Built by one join: the envelope goes onto the first and last entries, so the body (up
    to a few MB) is allocated and copied once, not three times."""
    if not entries:
        return _EMPTY_BODY
    parts = list(entries)
    parts[0] = _BODY_HEAD + parts[0]
    parts[-1] += _BODY_TAIL
    return b",".join(parts)


def body_size(entry_sizes: int, count: int) -> int:
    """Size in bytes of the body :func:`encode_body` makes from ``count`` entries."""
    return len(_EMPTY_BODY) + entry_sizes + max(0, count - 1)


_BODY_HEAD: Final = b'{"logs":['
_BODY_TAIL: Final = b"]}"
_EMPTY_BODY: Final = _BODY_HEAD + _BODY_TAIL


def to_logtide_level(level: object) -> str | None:
    """A LogTide level for a level name or number, None when it cannot be mapped.

    Names are case-insensitive with the usual aliases (``WARNING``, ``fatal``, ``err``…).
    Integers 0-7 are syslog severities (0 emergency … 7 debug); from 10 up, Python logging
    levels rounded down (``40`` error, ``50`` critical).  Numeric strings count as numbers.
    Not the producer's ``_event.normalize_level``: that one reads every number as a Python
    level and answers ``info`` (marked unknown) where this one answers None.
    """
    if isinstance(level, str):
        text = level.strip().lower()
        name = LEVEL_ALIASES.get(text)
        if name is not None or not _NUMBER.fullmatch(text):
            return name
        level = float(text)
    if isinstance(level, bool) or not isinstance(level, (int, float)):
        return None
    if isinstance(level, float):
        if not math.isfinite(level) or level != int(level):
            return None
        level = int(level)
    if 0 <= level < len(_SYSLOG):
        return _SYSLOG[level]
    if level < 0:
        return None
    return level_name(level)


def parse_time(value: object) -> datetime | None:
    """A UTC datetime for an ISO-8601 time with an offset or an epoch number, else None.

    Epoch numbers (or numeric strings) are told apart by magnitude: below 1e11 seconds,
    then milliseconds, microseconds, nanoseconds.  An ISO time without an offset returns
    None: it may be UTC or local time, and guessing would shift it by hours.
    """
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER.fullmatch(text):
            return _from_epoch(float(text))
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            return None
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return _from_epoch(float(value))


def format_utc(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` (milliseconds truncated), the library's time format."""
    m = moment.astimezone(UTC)
    # Not strftime: %Y does not zero-pad years below 1000 on glibc.
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}"
        f".{m.microsecond // 1000:03d}Z"
    )


# -- the steps of normalize ---------------------------------------------------------------

# JSON's whitespace (RFC 8259) and the closing brace, as bytes values.
_JSON_SPACE: Final = frozenset(b" \t\r\n")
_CLOSE: Final = ord("}")
# Opening brackets from which a value may be nested deeper than orjson's 254 levels.
_SPLICE_DEPTH: Final = 250
# The top-level fields of a native event without trace_id and span_id.
_ENTRY_MIN: Final = 5
#: The start of the spliced ``kafka`` member, per topic (see _kafka_head).
_kafka_heads: dict[str, bytes] = {}
_KAFKA_HEADS_MAX: Final = 1024
#: The date, time and dot of the last time text WRITTEN_TIME_PATTERN accepted.
_checked_second = ""
#: The last time text and service name accepted whole (events in a row mostly share them).
_checked_time: str | None = None
_checked_service: str | None = None


def _written_time(text: str) -> bool:
    """``WRITTEN_TIME_PATTERN.fullmatch(text)``, with the pattern run once per second.

    Consecutive events mostly share their second, i.e. their first 20 characters; after the
    pattern accepted those once, the rest is three ASCII digits and ``Z`` (as
    ``_event._other_time`` does for the producer)."""
    global _checked_second, _checked_time
    if text[:20] == _checked_second and text[23:] == "Z":
        digits = text[20:23]
        if digits.isascii() and digits.isdigit():
            _checked_time = text
            return True
        return False
    if WRITTEN_TIME_PATTERN.fullmatch(text):
        _checked_second = text[:20]
        _checked_time = text
        return True
    return False


def _stored_service(service: str) -> bool:
    """Would LogTide store ``service`` as it is (not empty, not padded, not too long)?"""
    global _checked_service
    if (
        not service
        or service != service.strip()
        or (
            (len(service) > MAX_SERVICE_LEN or not service.isascii())
            and utf16_len(service) > MAX_SERVICE_LEN
        )
    ):
        return False
    _checked_service = service
    return True


def _native(value: Any) -> dict[str, Any] | None:
    """``value`` as its entry when every step below would leave it as it is, else None.

    The fast path for LogTide-native events (what this library's producer writes): a few
    type checks (:func:`_is_native`) instead of the steps, with the same outcome as those
    steps, byte for byte once encoded (tests/test_ingest.py compares both on every case).
    """
    if not _is_native(value):
        return None
    entry: dict[str, Any] = {
        "time": value["time"],
        "service": value["service"],
        "level": value["level"],
        "message": value["message"],
        "metadata": value["metadata"],
    }
    if "trace_id" in value:
        entry["trace_id"] = value["trace_id"]
    if "span_id" in value:
        entry["span_id"] = value["span_id"]
    return entry


def _is_native(value: Any) -> bool:
    """Would every step of :func:`_convert` leave ``value`` as it is (``metadata.kafka``
    aside)?  Anything unusual (missing metadata, ``metadata.kafka`` already there, a level
    alias, padded service, another time format, extra fields) says no.  ``value`` is
    decoded JSON, so ``__class__`` checks are exact."""
    if value.__class__ is not dict:
        return False
    try:
        time = value["time"]
        service = value["service"]
        level = value["level"]
        message = value["message"]
        metadata = value["metadata"]
    except KeyError:
        return False
    fields = len(value)
    if fields != _ENTRY_MIN:  # five fields, all found above: no trace_id, no span_id
        if "trace_id" in value:
            trace_id = value["trace_id"]
            if trace_id.__class__ is not str or not _TRACE_ID.fullmatch(trace_id):
                return False
            fields -= 1
        if "span_id" in value:
            span_id = value["span_id"]
            if span_id.__class__ is not str or not SPAN_ID.fullmatch(span_id):
                return False
            fields -= 1
    # The fields found above are all there is (no key outside the contract's
    # ENTRY_FIELDS); the time and service checks run only for a text other than the last
    # one they accepted.
    return (
        fields == _ENTRY_MIN
        and time.__class__ is str
        and service.__class__ is str
        and level.__class__ is str
        and message.__class__ is str
        and metadata.__class__ is dict
        and message != ""
        and level in LEVEL_SET
        and "kafka" not in metadata
        and (time == _checked_time or _written_time(time))
        and (service == _checked_service or _stored_service(service))
    )


def _decode(raw: bytes | None) -> Any:
    if raw is None:
        raise Unshippable("value is empty (a null Kafka message value)")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _second_parse(raw, str(exc))


def _second_parse(raw: bytes, first: str) -> Any:
    """``raw`` read by the standard parser after orjson refused it (``first``: why)."""
    # orjson refuses escaped lone surrogates ("\ud800"), which JSON allows and the encoder
    # repairs; it is the only case worth a second parser.  NaN and Infinity stay errors.
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise Unshippable(f"value is not JSON: {first}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _take_metadata(fields: dict[str, Any]) -> dict[str, Any]:
    metadata = fields.pop("metadata", None)
    if isinstance(metadata, dict):
        return dict(metadata)
    if metadata is None:  # absent, or null, which LogTide rejects: nothing to keep
        return {}
    return {"original_metadata": metadata}


def _take_message(fields: dict[str, Any]) -> str:
    if "message" in fields:
        message = fields.pop("message")
    else:
        for key in _MESSAGE_KEYS:
            # An alias counts only as a string: a structured ``event`` stays metadata.
            if isinstance(fields.get(key), str) and fields[key]:
                message = fields.pop(key)
                break
        else:
            raise Unshippable("no message (no message, msg, log or event field)")
    if message is None:
        raise Unshippable("message is null")
    if isinstance(message, (dict, list)):
        message = orjson.dumps(message, option=orjson.OPT_NON_STR_KEYS).decode()
    elif not isinstance(message, str):
        message = safe_str(message)
    if not message:
        raise Unshippable("message is empty")
    return message


def _take_time(fields: dict[str, Any], source: Source, moved: dict[str, Any]) -> str:
    key = "time" if "time" in fields else next((k for k in _TIME_KEYS if k in fields), None)
    if key is not None:
        value = fields.pop(key)
        if isinstance(value, str) and WRITTEN_TIME_PATTERN.fullmatch(value):
            return value  # the producer's own format: the common case, as it is
        parsed = parse_time(value)
        if parsed is not None:
            return format_utc(parsed)
        moved["original_time"] = value  # kept, not guessed
    if source.timestamp_ms is not None and source.timestamp_ms > 0:
        return format_utc(datetime.fromtimestamp(source.timestamp_ms / 1000, UTC))
    return format_utc(datetime.now(UTC))


def _take_level(fields: dict[str, Any], moved: dict[str, Any]) -> str:
    key = "level" if "level" in fields else next((k for k in _LEVEL_KEYS if k in fields), None)
    if key is None:
        return "info"
    value = fields.pop(key)
    level = to_logtide_level(value)
    if level is None:
        moved["original_level"] = value
        return "info"
    return level


def _take_service(fields: dict[str, Any], source: Source, moved: dict[str, Any]) -> str:
    key = next((k for k in ("service", *_SERVICE_KEYS) if k in fields), None)
    value: Any = fields.pop(key) if key is not None else None
    text = "" if value is None else value.strip() if isinstance(value, str) else safe_str(value)
    if not text:
        if value is not None and value != "":
            moved["original_service"] = value
        # The library keys every message by its service: the next best name.
        text = source.key.decode("utf-8", "replace").strip() if source.key else ""
        text = replace_forbidden(text)  # the value's strings are replaced already
        if not text:
            return "unknown"
    if utf16_len(text) > MAX_SERVICE_LEN:
        moved["original_service"] = value
        text = cut_utf16(text, MAX_SERVICE_LEN)
    return text


def _take_ids(fields: dict[str, Any], entry: dict[str, Any], moved: dict[str, Any]) -> None:
    trace_id = fields.pop("trace_id", None)
    if isinstance(trace_id, str) and _TRACE_ID.fullmatch(trace_id):
        entry["trace_id"] = trace_id
    elif trace_id is not None:
        moved["trace_id"] = trace_id
    span_id = fields.pop("span_id", None)
    if isinstance(span_id, str) and SPAN_ID.fullmatch(span_id):
        entry["span_id"] = span_id
    elif span_id is not None:
        moved["span_id"] = span_id


def _merge(metadata: dict[str, Any], key: str, value: Any) -> None:
    """Add ``key`` to metadata; on a clash keep both, the older value under ``shadowed``."""
    if key not in metadata:
        metadata[key] = value
        return
    if metadata[key] == value:
        return
    shadowed = metadata.get("shadowed")
    if not isinstance(shadowed, dict):
        shadowed = {} if shadowed is None else {"shadowed": shadowed}
        metadata["shadowed"] = shadowed
    if key == "kafka":  # the coordinates win: they are what the DLQ and dedup rely on
        shadowed[key] = metadata[key]
        metadata[key] = value
    else:
        shadowed[key] = value


# -- small helpers ------------------------------------------------------------------------


def _from_epoch(number: float) -> datetime | None:
    if not math.isfinite(number):
        return None
    per_second = next((scale for limit, scale in _EPOCH_SCALES if abs(number) < limit), 1e9)
    seconds = number / per_second
    if not _MIN_EPOCH <= seconds <= _MAX_EPOCH:
        return None
    return datetime.fromtimestamp(seconds, UTC)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
