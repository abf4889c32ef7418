"""The one LogTide contract (``_contract``) and its users: UTF-16 lengths, U+0000 (no broker)."""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
import pytest

from logtide_kafka import _contract, testing
from logtide_kafka._contract import (
    LEVELS,
    MAX_SERVICE_LEN,
    REPLACEMENT_CHAR,
    TIME_PATTERN,
    WRITTEN_TIME_PATTERN,
    cut_utf16,
    entry_errors,
    replace_forbidden_json,
    utf16_len,
)
from logtide_kafka._encode import encode_event
from logtide_kafka._event import make_event, normalize_service
from logtide_kafka.pipeline import _ingest, shipper
from logtide_kafka.pipeline._ingest import Source, normalize, validate_entry
from logtide_kafka.testing import event_problems

EMOJI = "\U0001f600"
SOURCE = Source("logs.application", 0, 7, b"svc", 1_700_000_000_000)


def test_levels_are_listed_once() -> None:
    assert LEVELS == ("debug", "info", "warn", "error", "critical")
    assert frozenset(LEVELS) == testing.LEVELS
    assert frozenset(LEVELS) == _ingest.LEVELS


@pytest.mark.parametrize(
    ("text", "units"),
    [("", 0), ("abc", 3), ("é", 1), (EMOJI, 2), (EMOJI * 60, 120), ("a" + EMOJI + "b", 4)],
)
def test_utf16_len_counts_as_javascript_does(text: str, units: int) -> None:
    assert utf16_len(text) == units
    assert utf16_len(text) == len(text.encode("utf-16-le")) // 2


def test_cut_never_splits_a_surrogate_pair() -> None:
    assert cut_utf16(EMOJI * 60, 100) == EMOJI * 50
    assert cut_utf16("a" + EMOJI * 60, 100) == "a" + EMOJI * 49  # 99 units: 100 would split
    assert cut_utf16("x" * 150, 100) == "x" * 100
    assert cut_utf16("short", 100) == "short"


@pytest.mark.parametrize(
    ("time", "accepted"),
    [
        ("2025-11-25T08:30:03.214Z", True),
        ("2025-11-25T08:30:03Z", True),
        ("2025-11-25T08:30Z", True),  # zod makes the seconds optional
        ("2025-11-25T08:30:03.1234567890Z", True),
        ("2024-02-29T00:00:00Z", True),
        ("2025-02-29T00:00:00Z", False),
        ("2025-04-31T00:00:00Z", False),
        ("2025-11-25T24:00:00Z", False),
        ("2025-11-25T08:30:60Z", False),
        ("2025-11-25T08:30:03.214+02:00", False),
        ("2025-11-25T08:30:03.214+00:00", False),
        ("2025-11-25T08:30:03.214", False),
        ("2025-11-25 08:30:03Z", False),
        ("2025-11-25t08:30:03z", False),
        ("2025-11-25T08:30:03.Z", False),
        ("\uff12\uff10\uff12\uff15-11-25T08:30:03Z", False),  # JavaScript's \d: ASCII only
    ],
)
def test_time_pattern_is_zods(time: str, accepted: bool) -> None:
    assert bool(TIME_PATTERN.fullmatch(time)) is accepted
    assert (entry_errors(valid(time=time)) == {}) is accepted


def test_the_written_format_is_a_subset_of_what_logtide_accepts() -> None:
    assert WRITTEN_TIME_PATTERN.fullmatch("2025-11-25T08:30:03.214Z")
    assert not WRITTEN_TIME_PATTERN.fullmatch("2025-11-25T08:30:03Z")
    assert not WRITTEN_TIME_PATTERN.fullmatch("2025-02-30T08:30:03.214Z")


def valid(**changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "time": "2025-11-25T08:30:03.214Z",
        "service": "s",
        "level": "info",
        "message": "m",
    }
    entry.update(changes)
    return {key: value for key, value in entry.items() if value is not ...}


@pytest.mark.parametrize(
    ("entry", "errors"),
    [
        (valid(), {}),
        (valid(metadata={}, trace_id="any string at all", span_id="ABCDEF0123456789"), {}),
        (valid(service=EMOJI * 50), {}),
        (valid(service=EMOJI * 51), {"service": ["String must contain at most 100 character(s)"]}),
        (valid(service=""), {"service": ["String must contain at least 1 character(s)"]}),
        (valid(message=""), {"message": ["String must contain at least 1 character(s)"]}),
        (valid(time="2025-11-25T08:30:03+02:00"), {"time": ["Invalid datetime"]}),
        (valid(span_id="0123456789abcdef0"), {"span_id": ["Invalid"]}),
        (valid(metadata=[1]), {"metadata": ["Expected object, received array"]}),
        (valid(trace_id=None), {"trace_id": ["Expected string, received null"]}),
        (
            valid(level="warning"),
            {
                "level": [
                    "Invalid enum value. Expected 'debug' | 'info' | 'warn' | 'error' | "
                    "'critical', received 'warning'"
                ]
            },
        ),
        (
            {},
            {
                "time": ["Required", "Required"],
                "service": ["Required"],
                "level": ["Required"],
                "message": ["Required"],
            },
        ),
        (
            valid(time=1),
            {"time": ["Expected string, received number", "Expected date, received number"]},
        ),
    ],
)
def test_entry_errors_are_zods(entry: dict[str, Any], errors: dict[str, list[str]]) -> None:
    assert entry_errors(entry) == errors
    assert (validate_entry(entry) is None) == (not errors)


# -- U+0000 -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "\x00",
        "a\x00b\x00",
        "\\u0000",  # the text backslash-u-0000: not a NUL, left alone
        "\\\x00",
        {"k\x00": ["\x00", {"deep\x00": "x\x00"}]},
        "plain",
    ],
)
def test_replace_forbidden_json_replaces_exactly_the_nul_characters(value: Any) -> None:
    replaced = orjson.loads(replace_forbidden_json(orjson.dumps(value)))
    assert replaced == _replaced(value)
    assert "\x00" not in json.dumps(replaced, ensure_ascii=False)


def test_replace_forbidden_json_on_random_strings_of_the_tricky_characters() -> None:
    rng = random.Random(20251125)
    alphabet = ["\x00", "\\", "u", "0", "a", '"', "\n", REPLACEMENT_CHAR]
    for _ in range(3_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20)))
        value = {text: [text, {"k": text}]}
        assert orjson.loads(replace_forbidden_json(orjson.dumps(value))) == _replaced(value)


def _replaced(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", REPLACEMENT_CHAR)
    if isinstance(value, dict):
        return {_replaced(key): _replaced(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_replaced(item) for item in value]
    return value


def test_service_names_lose_nul_and_are_cut_in_utf16_units() -> None:
    assert normalize_service("a\x00b") == f"a{REPLACEMENT_CHAR}b"
    assert normalize_service(EMOJI * 60) == EMOJI * 50
    assert utf16_len(normalize_service("é" * 30 + EMOJI * 60)) <= MAX_SERVICE_LEN
    assert normalize_service("x" * 300) == "x" * 100


def test_event_problems_counts_utf16_and_flags_nul() -> None:
    def event(**changes: Any) -> dict[str, Any]:
        base = make_event(1.5, "svc", "info", "m", {"hostname": "h"})
        decoded: dict[str, Any] = orjson.loads(encode_event({**base, **changes})[0])
        return decoded

    assert event_problems(event()) == []
    assert event_problems(event(service=EMOJI * 50)) == []
    [problem] = event_problems(event(service=EMOJI * 51))
    assert "UTF-16" in problem
    for changed in (
        {"message": "a\x00"},
        {"service": "s\x00"},
        {"metadata": {"hostname": "h", "k": ["\x00"]}},
        {"metadata": {"hostname": "h", "k\x00": 1}},
    ):
        [problem] = event_problems(event(**changed))
        assert "U+0000" in problem


def test_shipper_normalisation_replaces_nul_and_cuts_services() -> None:
    raw = orjson.dumps(
        {
            "message": "a\x00b",
            "service": "s\x00" + EMOJI * 60,
            "level": "info",
            "metadata": {"k\x00": {"v": ["\x00"]}},
            "extra\x00": "x\x00",
        }
    )
    entry, converted = normalize(raw, SOURCE)
    assert converted
    assert entry["message"] == "a\ufffdb"
    assert entry["service"] == "s\ufffd" + EMOJI * 49
    assert entry["metadata"]["k\ufffd"] == {"v": ["\ufffd"]}
    assert entry["metadata"]["extra\ufffd"] == "x\ufffd"
    assert entry["metadata"]["original_service"] == "s\ufffd" + EMOJI * 60
    assert "\\u0000" not in orjson.dumps(entry).decode()
    assert validate_entry(entry) is None


def test_service_from_the_message_key_loses_nul() -> None:
    entry, _ = normalize(b'{"message":"m"}', Source("t", 0, 1, b"k\x00ey", None))
    assert entry["service"] == "k\ufffdey"


def test_the_common_path_returns_the_payload_itself() -> None:
    # No copy, no decoding: a byte search and the same object back (timings in the notes).
    for message in ("plain", "multi\nline \\ with escapes", "\\u0000 as text"):
        payload = orjson.dumps(make_event(1.5, "svc", "info", message, {"hostname": "h"}))
        assert replace_forbidden_json(payload) is payload


def test_limits_are_logtides() -> None:
    assert _contract.MAX_BODY_BYTES == 52_428_800
    assert _ingest.MAX_BATCH == _contract.MAX_BATCH == 1000
    assert shipper.QUOTA_CODE == _contract.QUOTA_CODE
