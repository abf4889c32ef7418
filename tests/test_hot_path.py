"""The shortcuts of the logging hot path give the answers of the long way round."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import logtide_kafka.structlog as logtide_structlog
from logtide_kafka import KafkaHandler
from logtide_kafka._contract import WRITTEN_TIME_PATTERN
from logtide_kafka._event import make_event
from logtide_kafka.structlog import _event_time, _logger_name


class Named:
    name = "by-class"


class Nameless:
    pass


class Slotted:
    __slots__ = ("other",)


class Dynamic:
    def __getattr__(self, attr: str) -> Any:
        if attr == "name":
            return "by-getattr"
        raise AttributeError(attr)


@pytest.mark.parametrize(
    ("logger", "expected"),
    [
        (Named(), "by-class"),
        (Nameless(), None),
        (Slotted(), None),
        (Dynamic(), "by-getattr"),
        (logging.getLogger("hot.path"), "hot.path"),
    ],
)
def test_logger_name_is_getattr_name_none(logger: object, expected: object) -> None:
    for _ in range(2):  # the first call learns the class, the second uses what it learned
        assert _logger_name(logger) == getattr(logger, "name", None) == expected


def test_a_nameless_class_with_a_named_instance() -> None:
    first, second = Nameless(), Nameless()
    second.name = "by-instance"  # type: ignore[attr-defined]
    assert _logger_name(first) is None
    assert _logger_name(second) == "by-instance"


@pytest.mark.parametrize(
    "timestamp",
    [
        "2025-11-25T08:30:03.214567Z",
        "2025-11-25T08:30:03.999999Z",
        "2025-11-25T08:30:03.21456Z",
        "2025-11-25T08:30:03.214567+00:00",
        "2025-11-25T08:30:03.2145x7Z",
        "2025-11-25T08:30:03.214567ZZ",
        "2025-11-25T08:30:03.\u0661\u0662\u0663\u0664\u0665\u0666Z",
        "2025-11-25T08:30:04.214567Z",
    ],
)
def test_iso_times_in_a_checked_second_read_as_before(
    timestamp: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logtide_structlog, "_iso_second", "")
    expected = _event_time(timestamp, None)  # nothing checked yet: the full check
    assert _event_time("2025-11-25T08:30:03.000001Z", None) == "2025-11-25T08:30:03.000Z"
    assert logtide_structlog._iso_second == "2025-11-25T08:30:03."
    assert _event_time(timestamp, None) == expected  # the shortcut, same answer


def test_a_handler_filter_still_applies(dead_bootstrap: str) -> None:
    handler = KafkaHandler("hot", bootstrap_servers=dead_bootstrap)
    record = logging.LogRecord("hot", logging.INFO, __file__, 1, "m", None, None)
    assert handler.handle(record) is True
    handler.addFilter(lambda r: False)
    assert handler.handle(record) is False
    assert handler.stats().enqueued == 1


@pytest.mark.parametrize(
    "text",
    [
        "2025-11-25T08:30:03.214Z",
        "2025-11-25T08:30:03.21xZ",
        "2025-11-25T08:30:03.2145Z",
        "2025-11-25T08:30:03.214ZZ",
        "2025-11-25T08:30:03.\u0661\u0662\u0663Z",
        "2025-11-25T08:30:04.214Z",
        "2025-11-25T08:30:03.214",
    ],
)
def test_time_text_in_a_checked_second_is_judged_as_by_the_pattern(text: str) -> None:
    assert make_event("2025-11-25T08:30:03.000Z", "s", "info", "m", {})["time"] == (
        "2025-11-25T08:30:03.000Z"
    )
    metadata: dict[str, Any] = {}
    event = make_event(text, "s", "info", "m", metadata)
    if WRITTEN_TIME_PATTERN.fullmatch(text):
        assert (event["time"], metadata) == (text, {})
    else:
        assert metadata == {"timestamp": text}
        assert event["time"] != text
