"""Normalising Kafka messages into LogTide entries, and LogTide's validation rules (no broker)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from logtide_server import entry_problem

from logtide_kafka._contract import WRITTEN_TIME_PATTERN, replace_forbidden_json
from logtide_kafka._encode import encode_event
from logtide_kafka._event import make_event
from logtide_kafka.pipeline import _ingest
from logtide_kafka.pipeline._ingest import (
    Source,
    Unshippable,
    body_size,
    encode_body,
    encode_entry,
    normalize,
    parse_time,
    to_logtide_level,
    to_payload,
    validate_entry,
)

SOURCE = Source("logs.application", 2, 41, b"checkout", 1_700_000_000_123)
KAFKA = {"topic": "logs.application", "partition": 2, "offset": 41}
NATIVE: dict[str, Any] = {
    "time": "2025-11-25T08:30:03.214Z",
    "service": "checkout",
    "level": "error",
    "message": "payment failed",
    "metadata": {"hostname": "web-3", "order_id": "A-1042"},
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "span_id": "00f067aa0ba902b7",
}


def run(value: Any, source: Source = SOURCE) -> dict[str, Any]:
    """Normalise a JSON value; the result must also satisfy the test server's rules."""
    entry, _ = normalize(orjson.dumps(value), source)
    assert entry_problem(entry) is None, entry
    assert validate_entry(entry) is None
    return entry


# -- LogTide-native events ----------------------------------------------------------------


def test_native_event_passes_unchanged_but_for_kafka_coordinates() -> None:
    entry, converted = normalize(orjson.dumps(NATIVE), SOURCE)
    assert converted is False
    expected = {**NATIVE, "metadata": {**NATIVE["metadata"], "kafka": KAFKA}}
    assert entry == expected
    assert list(entry) == list(NATIVE)


def test_older_producer_message_is_converted() -> None:
    old = {
        "timestamp": "2025-11-25T10:30:03.5+02:00",
        "hostname": "web-1",
        "service": "billing",
        "level": "WARNING",
        "message": "disk 91% full",
        "logger": "app.disk",
    }
    entry, converted = normalize(orjson.dumps(old), SOURCE)
    assert converted is True
    assert entry == {
        "time": "2025-11-25T08:30:03.500Z",
        "service": "billing",
        "level": "warn",
        "message": "disk 91% full",
        "metadata": {"hostname": "web-1", "logger": "app.disk", "kafka": KAFKA},
    }


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("warning", "warn"),
        ("WARNING", "warn"),
        ("Warn", "warn"),
        ("fatal", "critical"),
        ("CRITICAL", "critical"),
        ("err", "error"),
        ("exception", "error"),
        ("notice", "info"),
        ("information", "info"),
        ("trace", "debug"),
        ("verbose", "debug"),
        ("emerg", "critical"),
        (" info ", "info"),
        (10, "debug"),
        (20, "info"),
        (30, "warn"),
        (35, "warn"),
        (40, "error"),
        (50, "critical"),
        (60, "critical"),
        (40.0, "error"),
        ("40", "error"),
        (0, "critical"),  # syslog emergency
        (3, "error"),  # syslog err
        (4, "warn"),
        (6, "info"),
        (7, "debug"),
        (9, "debug"),
    ],
)
def test_level_aliases_and_numbers(level: object, expected: str) -> None:
    assert to_logtide_level(level) == expected
    entry = run({"message": "m", "level": level})
    assert entry["level"] == expected
    assert "original_level" not in entry["metadata"]


@pytest.mark.parametrize("level", ["loud", "", -1, 40.5, True, None, [], {"x": 1}, "nan"])
def test_unknown_level_becomes_info_and_the_original_is_kept(level: object) -> None:
    assert to_logtide_level(level) is None
    entry = run({"message": "m", "level": level})
    assert entry["level"] == "info"
    assert entry["metadata"]["original_level"] == level


def test_level_aliases_for_the_field_name() -> None:
    assert run({"message": "m", "severity": "ERROR"})["level"] == "error"
    assert run({"message": "m", "levelname": "WARNING"})["level"] == "warn"
    assert run({"message": "m"})["level"] == "info"


# -- time -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1_700_000_000, "2023-11-14T22:13:20.000Z"),
        (1_700_000_000.5, "2023-11-14T22:13:20.500Z"),
        (1_700_000_000_123, "2023-11-14T22:13:20.123Z"),
        (1_700_000_000_123_456, "2023-11-14T22:13:20.123Z"),
        (1_700_000_000_123_456_789, "2023-11-14T22:13:20.123Z"),
        ("1700000000", "2023-11-14T22:13:20.000Z"),
        ("1700000000123", "2023-11-14T22:13:20.123Z"),
        (0, "1970-01-01T00:00:00.000Z"),
        ("2025-11-25T08:30:03Z", "2025-11-25T08:30:03.000Z"),
        ("2025-11-25T08:30:03.123456Z", "2025-11-25T08:30:03.123Z"),
        ("2025-11-25T08:30:03.9999999Z", "2025-11-25T08:30:03.999Z"),
        ("2025-11-25T09:30:03.214+01:00", "2025-11-25T08:30:03.214Z"),
        ("2025-11-25T03:30:03.214-05:00", "2025-11-25T08:30:03.214Z"),
        ("2025-11-25T08:30:03.214+00:00", "2025-11-25T08:30:03.214Z"),
        ("2025-11-25 08:30:03.214+00:00", "2025-11-25T08:30:03.214Z"),
        ("2025-11-26T00:30:00+14:00", "2025-11-25T10:30:00.000Z"),
        ("2024-02-29T23:59:59.999Z", "2024-02-29T23:59:59.999Z"),
    ],
)
def test_time_formats_become_utc_with_z(value: object, expected: str) -> None:
    assert run({"message": "m", "timestamp": value})["time"] == expected
    assert run({"message": "m", "time": value})["time"] == expected


def test_canonical_time_is_kept_as_is() -> None:
    assert run({"message": "m", "time": "0999-01-02T03:04:05.006Z"})["time"] == (
        "0999-01-02T03:04:05.006Z"
    )


@pytest.mark.parametrize(
    "value",
    [
        "2025-11-25T08:30:03",  # no offset: UTC or local? not guessed
        "2025-11-25 08:30:03.214",
        "yesterday",
        "2025-02-30T00:00:00Z",
        "2025-13-01T00:00:00Z",
        float("inf"),
        1e30,
        -1e30,
        None,
        True,
        [],
    ],
)
def test_time_that_cannot_be_used_falls_back_to_the_kafka_timestamp(value: object) -> None:
    raw = orjson.dumps({"message": "m", "time": value})
    entry, converted = normalize(raw, SOURCE)
    assert converted is True
    assert entry["time"] == "2023-11-14T22:13:20.123Z"  # SOURCE.timestamp_ms
    # orjson writes inf as null: the kept original is what the message held.
    assert entry["metadata"]["original_time"] == orjson.loads(raw)["time"]


def test_missing_time_uses_the_kafka_timestamp_then_now() -> None:
    assert run({"message": "m"})["time"] == "2023-11-14T22:13:20.123Z"
    before = time.time()
    entry = run({"message": "m"}, Source("t", 0, 0, None, None))
    stamp = datetime.fromisoformat(entry["time"]).timestamp()
    assert before - 1 <= stamp <= time.time() + 1
    assert "original_time" not in entry["metadata"]


def test_parse_time_rejects_naive_and_accepts_offsets() -> None:
    assert parse_time("2025-11-25T08:30:03") is None
    assert parse_time("2025-11-25T08:30:03+00:00") == datetime(2025, 11, 25, 8, 30, 3, tzinfo=UTC)
    assert parse_time("nope") is None
    assert parse_time(False) is None


# -- metadata -----------------------------------------------------------------------------


def test_top_level_fields_move_into_metadata_without_overwriting_it() -> None:
    entry = run(
        {
            "message": "m",
            "hostname": "top-host",
            "pid": 12,
            "metadata": {"hostname": "meta-host", "user": "u1"},
        }
    )
    assert entry["metadata"] == {
        "hostname": "meta-host",
        "user": "u1",
        "pid": 12,
        "shadowed": {"hostname": "top-host"},
        "kafka": KAFKA,
    }


def test_same_value_at_both_levels_is_not_shadowed() -> None:
    entry = run({"message": "m", "hostname": "h", "metadata": {"hostname": "h"}})
    assert entry["metadata"] == {"hostname": "h", "kafka": KAFKA}


def test_kafka_coordinates_win_over_a_metadata_kafka_key() -> None:
    entry = run({"message": "m", "metadata": {"kafka": {"cluster": "eu-1"}}})
    assert entry["metadata"]["kafka"] == KAFKA
    assert entry["metadata"]["shadowed"] == {"kafka": {"cluster": "eu-1"}}


@pytest.mark.parametrize("metadata", [[1, 2], "text", 5, False])
def test_metadata_that_is_not_an_object_is_kept_inside_one(metadata: object) -> None:
    entry = run({"message": "m", "metadata": metadata})
    assert entry["metadata"] == {"original_metadata": metadata, "kafka": KAFKA}


def test_null_metadata_becomes_an_object() -> None:
    assert run({"message": "m", "metadata": None})["metadata"] == {"kafka": KAFKA}


# -- service ------------------------------------------------------------------------------


def test_service_falls_back_to_the_message_key_then_unknown() -> None:
    assert run({"message": "m"})["service"] == "checkout"
    assert run({"message": "m", "service": "  "})["service"] == "checkout"
    assert run({"message": "m"}, Source("t", 0, 0, None, None))["service"] == "unknown"
    assert run({"message": "m", "service_name": "api"})["service"] == "api"
    assert run({"message": "m", "service": 42})["service"] == "42"


def test_long_service_is_cut_to_100_utf16_units_and_kept() -> None:
    entry = run({"message": "m", "service": "s" * 150})
    assert entry["service"] == "s" * 100
    assert entry["metadata"]["original_service"] == "s" * 150
    # An emoji is two UTF-16 units: LogTide (JavaScript) counts 100 of them as 200.
    entry = run({"message": "m", "service": "\U0001f600" * 60})
    assert entry["service"] == "\U0001f600" * 50
    assert run({"message": "m", "service": "é" * 100})["service"] == "é" * 100


# -- message ------------------------------------------------------------------------------


def test_message_aliases_and_non_string_messages() -> None:
    assert run({"msg": "from msg"})["message"] == "from msg"
    assert run({"log": "from log"})["message"] == "from log"
    assert run({"event": "structlog event"})["message"] == "structlog event"
    assert run({"message": 5})["message"] == "5"
    assert run({"message": False})["message"] == "False"
    assert run({"message": {"a": 1}})["message"] == '{"a":1}'
    assert run({"message": "   "})["message"] == "   "  # LogTide takes it: min length 1


def test_structured_event_alias_is_metadata_not_a_message() -> None:
    with pytest.raises(Unshippable, match="no message"):
        normalize(orjson.dumps({"event": {"type": "click"}}), SOURCE)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b'{"message": NaN}', "not JSON"),
        (b'{"message": "m"', "not JSON"),
        (b"", "not JSON"),
        (None, "null Kafka message value"),
        (b"[1, 2]", "an array, not a JSON object"),
        (b'"text"', "a string, not a JSON object"),
        (b"42", "a number, not a JSON object"),
        (b"null", "null, not a JSON object"),
        (b"true", "a boolean, not a JSON object"),
        (b'{"message": ""}', "message is empty"),
        (b'{"message": null}', "message is null"),
        (b'{"level": "info"}', "no message"),
        (b'{"msg": ""}', "no message"),
    ],
)
def test_unshippable_messages_say_why(raw: bytes | None, reason: str) -> None:
    with pytest.raises(Unshippable) as caught:
        normalize(raw, SOURCE)
    assert reason in caught.value.reason


def test_lone_surrogate_is_repaired_not_rejected() -> None:
    entry, _ = normalize(b'{"message": "bad \\ud800 text"}', SOURCE)
    decoded = orjson.loads(encode_entry(entry))
    assert decoded["message"] == "bad \ufffd text"


# -- trace and span ids ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "trace_id",
    [
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "4BF92F3577B34DA6A3CE929D0E0E4736",
        "a3ce929d0e0e4736",
        "4bf92f35-77b3-4da6-a3ce-929d0e0e4736",
    ],
)
def test_usable_trace_ids_stay_top_level(trace_id: str) -> None:
    assert run({"message": "m", "trace_id": trace_id})["trace_id"] == trace_id


@pytest.mark.parametrize("trace_id", ["req-7f3a", "", 12, "4bf92f3577b34da6a3ce929d0e0e473"])
def test_other_trace_ids_move_to_metadata(trace_id: object) -> None:
    entry = run({"message": "m", "trace_id": trace_id})
    assert "trace_id" not in entry
    assert entry["metadata"]["trace_id"] == trace_id


def test_span_id_rules() -> None:
    assert run({"message": "m", "span_id": "00F067AA0BA902B7"})["span_id"] == "00F067AA0BA902B7"
    entry = run({"message": "m", "span_id": "00f067aa0ba902b"})
    assert "span_id" not in entry
    assert entry["metadata"]["span_id"] == "00f067aa0ba902b"


def test_null_ids_are_dropped_never_sent_as_null() -> None:
    entry = run({"message": "m", "trace_id": None, "span_id": None})
    assert "trace_id" not in entry
    assert "span_id" not in entry
    assert "trace_id" not in entry["metadata"]


# -- LogTide's validation rules -----------------------------------------------------------


def valid(**changes: Any) -> dict[str, Any]:
    entry = {**NATIVE, **changes}
    return {key: value for key, value in entry.items() if value is not ...}


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (valid(), None),
        (valid(metadata=..., trace_id=..., span_id=...), None),
        (valid(metadata=None), "metadata"),
        (valid(metadata=[]), "metadata"),
        (valid(trace_id=None), "trace_id"),
        (valid(trace_id="anything goes"), None),
        (valid(span_id=None), "span_id"),
        (valid(span_id="00f067aa0ba902b"), "span_id"),
        (valid(span_id="00F067AA0BA902B7"), None),
        (valid(span_id="00f067aa0ba902bz"), "span_id"),
        (valid(service=""), "service"),
        (valid(service="s" * 100), None),
        (valid(service="s" * 101), "service"),
        (valid(service="\U0001f600" * 51), "service"),
        (valid(service=None), "service"),
        (valid(level="warning"), "level"),
        (valid(level="INFO"), "level"),
        (valid(level=None), "level"),
        (valid(message=""), "message"),
        (valid(message=None), "message"),
        (valid(message=3), "message"),
        (valid(time="2025-11-25T08:30:03.214+00:00"), "time"),
        (valid(time="2025-11-25T08:30:03.214"), "time"),
        (valid(time="2025-11-25T08:30:03Z"), None),
        (valid(time="2025-11-25T08:30:03.1234567Z"), None),
        (valid(time="2025-02-30T08:30:03Z"), "time"),
        (valid(time="2025-11-25 08:30:03Z"), "time"),
        (valid(time=1_700_000_000), "time"),
        (valid(time=...), "time"),
        ([], "not an object"),
    ],
)
def test_validate_entry_matches_logtide(entry: Any, problem: str | None) -> None:
    found = validate_entry(entry)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found
    # The test server (checked against the real LogTide) agrees on the verdict.
    assert (entry_problem(entry) is None) == (found is None)


def test_body_is_the_logs_array_and_its_size_is_exact() -> None:
    encoded = [encode_entry(NATIVE), encode_entry({**NATIVE, "message": "second"})]
    body = encode_body(encoded)
    assert orjson.loads(body) == {"logs": [NATIVE, {**NATIVE, "message": "second"}]}
    assert body_size(sum(map(len, encoded)), len(encoded)) == len(body)
    assert body_size(len(encoded[0]), 1) == len(encode_body(encoded[:1]))


@pytest.mark.parametrize("count", [0, 1, 2, 3, 1000])
def test_the_body_is_the_entries_joined_in_the_envelope_and_they_stay_as_they_are(
    count: int,
) -> None:
    entries = [encode_entry({**NATIVE, "message": f"m{n}"}) for n in range(count)]
    kept = list(entries)
    body = encode_body(entries)
    assert body == b'{"logs":[' + b",".join(kept) + b"]}"
    assert body_size(sum(map(len, entries)), count) == len(body)
    assert entries == kept  # the caller's entries are not changed
    assert [len(entry) for entry in entries] == [len(entry) for entry in kept]


WEIRD: list[bytes] = [
    orjson.dumps(value)
    for value in (
        {"message": "m", "time": "2025-11-25T08:30:03.214Z", "level": "info", "service": "x"},
        {"message": "m", "metadata": {"nested": {"deep": [1, {"a": None}]}}},
        {"message": "m", "time": 1e12, "level": 45, "service": "x" * 300},
        {"message": "m", "ts": "2025-11-25T08:30:03.214-03:30", "app": "legacy"},
        {"message": "m", "level": {"name": "warn"}, "service": ["a"]},
        {"message": "m", "trace_id": "0" * 32, "span_id": "1" * 16, "extra": None},
        {"message": "m", "span_id": "1" * 16},
        {"message": ["a", "b"], "@timestamp": "2025-11-25T08:30:03.214Z"},
        {"message": "m", "time": "2025-11-25T08:30:03.214Z", "timestamp": 5},
        {"message": "m", "shadowed": 1, "hostname": "a", "metadata": {"hostname": "b"}},
    )
]


@pytest.mark.parametrize("raw", WEIRD)
def test_every_normalised_entry_is_valid_for_logtide(raw: bytes) -> None:
    entry, _ = normalize(raw, SOURCE)
    decoded = orjson.loads(encode_entry(entry))
    assert entry_problem(decoded) is None
    assert decoded["metadata"]["kafka"] == KAFKA


# -- the fast path for LogTide-native events ------------------------------------------------


def _producer_event(**metadata: Any) -> bytes:
    """An event as this library's producer writes it."""
    return encode_event(make_event(time.time(), "checkout", "info", "order paid", metadata))[0]


_EMOJI = "\U0001f600"


def _nested(levels: int) -> bytes:
    """JSON nested ``levels`` deep, as text: orjson refuses to encode it."""
    return b"[" * levels + b"]" * levels


# (raw value, whether it takes the fast path).  Every near miss must take the full steps.
FAST_PATH_CASES: list[tuple[bytes, bool]] = [
    (orjson.dumps(NATIVE), True),
    (orjson.dumps({k: v for k, v in NATIVE.items() if k not in ("trace_id", "span_id")}), True),
    (_producer_event(), True),
    (
        _producer_event(trace_id="4bf92f3577b34da6a3ce929d0e0e4736", span_id="00f067aa0ba902b7"),
        True,
    ),
    (_producer_event(exception={"type": "ValueError", "stack": 'line 1\nline 2 \\ "q"'}), True),
    (_producer_event(note="caf\u00e9 \u2603 " + _EMOJI, big=2**63 - 1, f=1.5, n=None), True),
    (orjson.dumps({**NATIVE, "service": _EMOJI * 50}), True),  # 100 UTF-16 units
    (orjson.dumps({**NATIVE, "service": _EMOJI * 51}), False),  # 102: cut
    (orjson.dumps({**NATIVE, "service": "x" * 101}), False),
    (orjson.dumps({**NATIVE, "service": " checkout"}), False),
    (orjson.dumps({**NATIVE, "service": "checkout\n"}), False),
    (orjson.dumps({**NATIVE, "service": ""}), False),
    (orjson.dumps({**NATIVE, "service": 7}), False),
    (orjson.dumps({**NATIVE, "level": "INFO"}), False),
    (orjson.dumps({**NATIVE, "level": "warning"}), False),
    (orjson.dumps({**NATIVE, "level": " info"}), False),
    (orjson.dumps({**NATIVE, "level": 40}), False),
    (orjson.dumps({**NATIVE, "level": ["info"]}), False),
    (orjson.dumps({**NATIVE, "time": "2025-11-25T08:30:03Z"}), False),
    (orjson.dumps({**NATIVE, "time": "2025-11-25T08:30:03.214567Z"}), False),
    (orjson.dumps({**NATIVE, "time": "2025-11-25T10:30:03.214+02:00"}), False),
    (orjson.dumps({**NATIVE, "time": "2025-02-30T08:30:03.214Z"}), False),
    (orjson.dumps({**NATIVE, "time": 1_700_000_000}), False),
    # After NATIVE's second was checked: the same second with other milliseconds, or not.
    (orjson.dumps({**NATIVE, "time": "2025-11-25T08:30:03.999Z"}), True),
    (orjson.dumps({**NATIVE, "time": "2025-11-25T08:30:03.2x4Z"}), False),
    (orjson.dumps({**NATIVE, "time": "2025-11-25T08:30:03.\u0661\u0662\u0663Z"}), False),
    (orjson.dumps({**NATIVE, "time": "2025-11-25T08:30:03.2144Z"}), False),
    (orjson.dumps({**NATIVE, "time": "2025-11-25T08:30:03.21Z"}), False),
    (orjson.dumps({**NATIVE, "time": "2025-11-25T08:30:03.214z"}), False),
    (orjson.dumps({**NATIVE, "message": ""}), False),
    (orjson.dumps({**NATIVE, "message": 12}), False),
    (orjson.dumps({**NATIVE, "message": {"a": 1}}), False),
    (orjson.dumps({**NATIVE, "message": None}), False),
    (orjson.dumps({k: v for k, v in NATIVE.items() if k != "metadata"}), False),
    (orjson.dumps({**NATIVE, "metadata": None}), False),
    (orjson.dumps({**NATIVE, "metadata": [1, 2]}), False),
    (orjson.dumps({**NATIVE, "metadata": {"kafka": KAFKA}}), False),
    (orjson.dumps({**NATIVE, "metadata": {"kafka": "elsewhere"}}), False),
    (orjson.dumps({**NATIVE, "trace_id": "not-a-trace"}), False),
    (orjson.dumps({**NATIVE, "trace_id": 5}), False),
    (orjson.dumps({**NATIVE, "trace_id": "4bf92f3577b34da6"}), True),  # 64-bit
    (orjson.dumps({**NATIVE, "trace_id": "123e4567-e89b-12d3-a456-426614174000"}), True),
    (orjson.dumps({**NATIVE, "span_id": "00F067AA0BA902B7"}), True),  # either case
    (orjson.dumps({**NATIVE, "span_id": "00f067aa0ba902"}), False),
    (orjson.dumps({**NATIVE, "span_id": None}), False),
    (orjson.dumps({**NATIVE, "host": "web-3"}), False),  # not a LogTide field: moved
    (orjson.dumps({**NATIVE, "msg": "other"}), False),
    (orjson.dumps({k: v for k, v in NATIVE.items() if k != "time"}), False),
    (orjson.dumps({k: v for k, v in NATIVE.items() if k != "level"}), False),
    (orjson.dumps({k: v for k, v in NATIVE.items() if k != "service"}), False),
    # U+0000 is replaced before either path sees it.
    (orjson.dumps({**NATIVE, "message": "a\x00b", "metadata": {"k\x00": "v\x00"}}), True),
    (orjson.dumps({**NATIVE, "service": "svc\x00"}), True),
    (b'{"message":"dup","message":"last",' + orjson.dumps(NATIVE)[1:], True),
    (
        b'{"time":"2025-11-25T08:30:03.214Z","service":"s","level":"info","message":"m",'
        b'"metadata":{"kafka":1},"metadata":{"a":1}}',
        True,
    ),  # the last metadata counts
    (
        b'{"time":"2025-11-25T08:30:03.214Z","service":"\\ud800","level":"info","message":"m",'
        b'"metadata":{}}',
        True,
    ),  # a lone surrogate: only the second parser reads it
    # Nested deeper than orjson encodes: the event encoder's repair, on either path.
    (
        orjson.dumps(NATIVE).replace(b'"metadata":{', b'"metadata":{"deep":' + _nested(300) + b","),
        True,
    ),
    (orjson.dumps([NATIVE]), False),
    (b"null", False),
]


@pytest.mark.parametrize(("raw", "fast"), FAST_PATH_CASES)
def test_the_fast_path_gives_what_the_full_steps_give(
    raw: bytes, fast: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (_ingest._native(_ingest._decode(replace_forbidden_json(raw))) is not None) is fast

    def outcome() -> tuple[Any, ...]:
        try:
            entry, converted = normalize(raw, SOURCE)
        except Unshippable as exc:
            return ("unshippable", exc.reason)
        return (entry, list(entry), list(entry["metadata"]), converted, encode_entry(entry))

    quick = outcome()
    if quick[0] != "unshippable":  # orjson alone encodes it as the event encoder does
        assert quick[4] == encode_event(quick[0])[0]
    monkeypatch.setattr(_ingest, "_native", lambda value: None)
    assert outcome() == quick
    if fast:
        assert quick[3] is False
        assert validate_entry(quick[0]) is None
        assert quick[0]["metadata"]["kafka"] == KAFKA


_PLAIN = b'{"time":"2025-11-25T08:30:03.214Z","service":"s","level":"info","message":"m",'
_IDS = b'"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7"'
# (raw value, whether its own bytes are sent with metadata.kafka spliced in).
PAYLOAD_CASES: list[tuple[bytes, bool]] = [
    # Native and read by orjson: spliced (a lone surrogate needs the second parser; an
    # entry nested too deep for orjson is repaired by encode_entry).
    *[
        (raw, fast and b"\\ud800" not in raw and b"[" * 300 not in raw)
        for raw, fast in FAST_PATH_CASES
    ],
    (_PLAIN + b'"metadata":{"deep":' + _nested(248) + b"}}", False),
    (_PLAIN + b'"metadata":{"deep":' + _nested(247) + b"}}", True),
    (_PLAIN + b'"metadata":{}}', True),
    (b" \n" + _PLAIN + b' "metadata" : { "a" : [1, {"b": {}}] }\n\t}\r\n', True),
    (_PLAIN + b'"metadata":{ } ,' + _IDS + b"}", True),
    (_PLAIN + b'"metadata":{ }, ' + _IDS + b"}", False),  # not as the producer writes it
    (_PLAIN + b'"metadata":{"x":"}"},' + _IDS.replace(b",", b" ,") + b"}", False),
    (
        _PLAIN + b'"metadata":{"a":1},' + _IDS.split(b",")[1] + b"," + _IDS.split(b",")[0] + b"}",
        False,
    ),
    (_PLAIN + b'"metadata":{"a":1},"trace_id":"\\u0034bf92f3577b34da6a3ce929d0e0e4736"}', False),
    (b'{"metadata":{"a":{}},' + _PLAIN[1:-1] + b"}", False),  # metadata first: encoded
    (_PLAIN + b'"metadata":{"a":"x\\"},\\"span_id\\":\\"00f067aa0ba902b7\\"}"}}', True),
    (_PLAIN + b'"metadata":{"kafka":1,"a":{}},"metadata":{"b":{}}}', True),
    (_PLAIN + b'"metadata":{"b":{}},"message":"last"}', False),
    (_PLAIN + b'"metadata":{"a":1.0,"b":1e2,"c":-0,"d":true,"e":"\\u00e9\\/"}}', True),
]


@pytest.mark.parametrize(("raw", "spliced"), PAYLOAD_CASES)
def test_the_payload_decodes_to_the_entry_normalize_gives(
    raw: bytes, spliced: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the shipper sends: a native event's own bytes with metadata.kafka spliced in,
    JSON-equivalent (as LogTide's parser reads it: the last of duplicate keys counts) to
    the entry of the full steps, with the same metadata order; else the encoded entry."""
    splices: list[bytes | None] = []
    splice = _ingest._splice

    def spy(*args: Any) -> bytes | None:
        splices.append(splice(*args))
        return splices[-1]

    monkeypatch.setattr(_ingest, "_splice", spy)
    reason: str | None = None
    try:
        entry, converted = normalize(raw, SOURCE)
    except Unshippable as exc:
        reason = exc.reason
    if reason is not None:
        with pytest.raises(Unshippable) as raised:
            to_payload(raw, SOURCE)
        assert raised.value.reason == reason
        assert not spliced
        return
    payload, payload_converted = to_payload(raw, SOURCE)
    assert payload_converted is converted
    assert (splices[-1:] != [None] and splices != []) is spliced
    # Types kept apart (1, 1.0, true), keys sorted: equal texts are equal JSON values.
    expected = encode_entry(entry)
    assert json.dumps(json.loads(payload), sort_keys=True) == json.dumps(
        json.loads(expected), sort_keys=True
    )
    assert list(json.loads(payload)["metadata"]) == list(entry["metadata"])
    assert json.loads(payload)["metadata"]["kafka"] == KAFKA
    if spliced:  # its own bytes, up to its (last) metadata at least
        cleaned = replace_forbidden_json(raw)
        assert payload.startswith(cleaned[: cleaned.rindex(b'"metadata"')])


@pytest.mark.parametrize(
    "text",
    [
        "2025-11-25T08:30:03.214Z",
        "2025-11-25T08:30:03.000Z",
        "2025-11-25T08:30:03.2x4Z",
        "2025-11-25T08:30:03.\u0661\u0662\u0663Z",
        "2025-11-25T08:30:03.2144Z",
        "2025-11-25T08:30:03.21Z",
        "2025-11-25T08:30:03.214z",
        "2025-11-25T08:30:03.214",
        "2025-11-25T08:30:04.214Z",
        "2025-02-29T08:30:03.214Z",
        "2024-02-29T08:30:03.214Z",
        "",
    ],
)
def test_the_time_check_per_second_is_the_pattern(text: str) -> None:
    expected = WRITTEN_TIME_PATTERN.fullmatch(text) is not None
    for primed in (
        "2025-11-25T08:30:03.214Z",
        "2024-02-29T08:30:03.214Z",
        "2026-01-01T00:00:00.000Z",
    ):
        assert _ingest._written_time(primed)  # the cache now holds this second
        assert _ingest._written_time(text) is expected


@pytest.mark.parametrize(
    "source",
    [SOURCE, Source("logs.x", 0, 0), Source('odd "topic" \\ \u00e9', 2**31 - 1, 2**63 - 1)],
)
def test_the_coordinates_json_is_the_coordinates_encoded(source: Source) -> None:
    assert source.coordinates_json() == orjson.dumps(source.coordinates())


@pytest.mark.parametrize(
    "source",
    [SOURCE, Source("logs.x", 0, 0), Source('odd "topic" \\ \u00e9', 2**31 - 1, 2**63 - 1)],
)
@pytest.mark.parametrize(
    "tail", [b"}", b',"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7"}']
)
@pytest.mark.parametrize("metadata", [b"{}", b'{"a":1}'])
def test_the_spliced_member_is_the_coordinates_encoded(
    source: Source, tail: bytes, metadata: bytes
) -> None:
    """The spliced ``kafka`` member (its start remembered per topic) for odd topic names,
    the largest partition and offset, with and without ids after the metadata."""
    raw = _PLAIN + b'"metadata":' + metadata + tail
    for _ in range(2):  # the topic's start is made, then remembered
        payload, converted = to_payload(raw, source)
        assert not converted
        assert payload.startswith(_PLAIN + b'"metadata":' + metadata[:-1])  # spliced
        assert orjson.loads(payload)["metadata"]["kafka"] == source.coordinates()
        assert payload == raw.replace(
            metadata + tail,
            metadata[:-1]
            + (b"," if metadata != b"{}" else b"")
            + b'"kafka":'
            + source.coordinates_json()
            + b"}"
            + tail,
        )


def test_the_remembered_topic_starts_are_bounded() -> None:
    raw = _PLAIN + b'"metadata":{}}'
    for n in range(2 * _ingest._KAFKA_HEADS_MAX + 3):
        source = Source(f"logs.t{n}", 0, n)
        payload, _ = to_payload(raw, source)
        assert orjson.loads(payload)["metadata"]["kafka"] == source.coordinates()
        assert len(_ingest._kafka_heads) <= _ingest._KAFKA_HEADS_MAX
