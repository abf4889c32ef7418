"""The event: levels, time, service, trace ids, and encoding of anything (no broker)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from logtide_kafka._encode import encode_event
from logtide_kafka._event import (
    EMPTY_MESSAGE,
    format_time,
    level_name,
    make_event,
    normalize_level,
    normalize_service,
)
from logtide_kafka.testing import event_problems

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


@pytest.mark.parametrize(
    ("levelno", "expected"),
    [
        (0, "debug"),
        (5, "debug"),
        (10, "debug"),
        (19, "debug"),
        (20, "info"),
        (25, "info"),
        (30, "warn"),
        (35, "warn"),
        (40, "error"),
        (49, "error"),
        (50, "critical"),
        (60, "critical"),
    ],
)
def test_numeric_levels_round_down(levelno: int, expected: str) -> None:
    assert level_name(levelno) == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("WARNING", ("warn", True)),
        ("warn", ("warn", True)),
        ("Fatal", ("critical", True)),
        ("CRITICAL", ("critical", True)),
        (" error ", ("error", True)),
        ("trace", ("debug", True)),
        (30, ("warn", True)),
        ("verbose", ("debug", True)),
        ("loudest", ("info", False)),
        (True, ("info", False)),
    ],
)
def test_level_names_and_aliases(given: str | int, expected: tuple[str, bool]) -> None:
    assert normalize_level(given) == expected


def test_time_matches_datetime_for_many_instants() -> None:
    rng = random.Random(7)
    instants = [0.0, 1.001, 1.999, 1_700_000_000.0005, 1_700_000_000.9999]
    instants += [rng.uniform(0, 4_000_000_000) for _ in range(2000)]
    for instant in instants:
        expected = datetime.fromtimestamp(instant, UTC).isoformat(timespec="milliseconds")
        assert format_time(instant) == expected.replace("+00:00", "Z"), instant


def test_time_cache_does_not_leak_between_seconds() -> None:
    assert format_time(100.5) == "1970-01-01T00:01:40.500Z"
    assert format_time(101.25) == "1970-01-01T00:01:41.250Z"
    assert format_time(100.75) == "1970-01-01T00:01:40.750Z"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("checkout", "checkout"),
        ("  api  ", "api"),
        ("", "unknown"),
        ("   ", "unknown"),
        ("x" * 250, "x" * 100),
        (42, "42"),
        ("bad\ud800name", "bad\ufffdname"),
    ],
)
def test_service_is_1_to_100_characters(given: object, expected: str) -> None:
    assert normalize_service(given) == expected


def test_valid_trace_and_span_ids_move_to_the_top_level() -> None:
    event = make_event(1.0, "s", "info", "m", {"trace_id": TRACE, "span_id": SPAN, "k": 1})
    assert event["trace_id"] == TRACE
    assert event["span_id"] == SPAN
    assert event["metadata"] == {"k": 1}
    assert event_problems(event) == ["metadata has no hostname"]


@pytest.mark.parametrize(
    "metadata",
    [
        {"trace_id": None},
        {"trace_id": "not-hex"},
        {"trace_id": TRACE.upper()},
        {"trace_id": 1234},
        {"trace_id": TRACE, "span_id": "short"},
        {"trace_id": "not-hex", "span_id": SPAN},
        {"span_id": SPAN},
    ],
)
def test_unknown_or_invalid_ids_never_reach_the_top_level(
    metadata: dict[str, Any],
) -> None:
    original = dict(metadata)
    event = make_event(1.0, "s", "info", "m", metadata)
    if original.get("trace_id") == TRACE:
        assert event["trace_id"] == TRACE
    else:
        assert "trace_id" not in event
    assert "span_id" not in event
    # Whatever was not lifted stays in metadata, as given.
    for key, value in original.items():
        if key not in event:
            assert event["metadata"][key] == value


def test_empty_message_is_replaced() -> None:
    assert make_event(1.0, "s", "info", "", {})["message"] == EMPTY_MESSAGE


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no")


class Custom:
    def __str__(self) -> str:
        return "custom!"


def _roundtrip(value: Any) -> tuple[Any, bool]:
    payload, repaired = encode_event({"metadata": {"v": value}})
    return orjson.loads(payload)["metadata"]["v"], repaired


@pytest.mark.parametrize(
    ("value", "expected", "repaired"),
    [
        ({1, 2}, [1, 2], False),
        (b"caf\xc3\xa9", "café", False),
        (b"\xff\xfe", "\\xff\\xfe", False),
        (Custom(), "custom!", False),
        (Unprintable(), "<unprintable Unprintable>", False),
        (2**70, str(2**70), True),
        (-(2**64), str(-(2**64)), True),
        (float("nan"), None, False),
        (float("inf"), None, False),
        ("lone \ud800 surrogate", "lone \ufffd surrogate", True),
        ({(1, 2): "tuple key"}, {"(1, 2)": "tuple key"}, True),
        ({1: "int key", None: "none key"}, {"1": "int key", "null": "none key"}, False),
    ],
)
def test_values_orjson_refuses_become_plain_json(value: Any, expected: Any, repaired: bool) -> None:
    got, was_repaired = _roundtrip(value)
    if isinstance(expected, list):
        got = sorted(got)
    assert got == expected
    assert was_repaired is repaired


def test_cycles_and_deep_nesting_are_cut() -> None:
    cycle: dict[str, Any] = {"name": "loop"}
    cycle["self"] = cycle
    deep: list[Any] = []
    cursor = deep
    for _ in range(300):
        cursor.append([])
        cursor = cursor[0]
    got, repaired = _roundtrip({"cycle": cycle, "deep": deep})
    assert repaired
    assert got["cycle"] == {"name": "loop", "self": "<cycle>"}
    depth, cursor = 0, got["deep"]
    while isinstance(cursor, list):
        depth, cursor = depth + 1, cursor[0]
    assert cursor == "<nested too deep>"
    assert depth < 40


def test_a_repaired_event_keeps_its_other_fields() -> None:
    event = make_event(1.5, "svc", "error", "boom \udc80", {"hostname": "h", "n": 2**65})
    payload, repaired = encode_event(event)
    decoded = orjson.loads(payload)
    assert repaired
    assert decoded["message"] == "boom \ufffd"
    assert decoded["metadata"] == {"hostname": "h", "n": str(2**65)}
    assert event_problems(decoded) == []


def test_schema_checker_accepts_a_valid_event() -> None:
    event = make_event(1.5, "svc", "warn", "hi", {"hostname": "h"})
    assert event_problems(orjson.loads(encode_event(event)[0])) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"time": "2024-01-01T00:00:00.000+00:00"}, "time"),
        ({"time": "2024-01-01T00:00:00Z"}, "time"),
        ({"service": ""}, "service"),
        ({"service": "x" * 101}, "service"),
        ({"level": "warning"}, "level"),
        ({"message": ""}, "message"),
        ({"metadata": []}, "metadata"),
        ({"metadata": {}}, "hostname"),
        ({"trace_id": None}, "trace_id"),
        ({"span_id": TRACE}, "span_id"),
        ({"extra": 1}, "unexpected"),
    ],
)
def test_schema_checker_rejects_each_broken_rule(change: dict[str, Any], problem: str) -> None:
    event = make_event(1.5, "svc", "warn", "hi", {"hostname": "h"}) | change
    problems = event_problems(event)
    assert len(problems) == 1
    assert problem in problems[0]
