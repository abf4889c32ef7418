"""``send_logs``: many events per call, delivered as ``send_log`` would deliver them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, cast

import pytest

import logtide_kafka
from logtide_kafka._event import HOSTNAME
from logtide_kafka.testing import event_problems, read_events

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def test_send_logs_delivers_every_field(kafka_bootstrap: str, topic: str, service: str) -> None:
    logtide_kafka.configure(kafka_bootstrap, topic=topic)
    category = topic.removeprefix("logs.")  # routes to the same topic
    events: list[Mapping[str, Any]] = [
        {"level": "WARNING", "message": "disk almost full", "service": service,
         "metadata": {"disk": "/var", "pct": 91.5}},
        {"level": "info", "message": "traced", "service": service, "trace_id": TRACE,
         "span_id": SPAN, "time": 1_764_059_403.214},
        {"level": "loudest", "message": "odd level", "service": service,
         "time": "2025-11-25T08:30:03.214Z", "category": category},
        {"level": 50, "message": "", "service": service, "metadata": {"password": "hunter2"}},
    ]  # fmt: skip
    assert logtide_kafka.send_logs(events) == 4
    assert logtide_kafka.flush(10) == 0
    found = read_events(kafka_bootstrap, topic, count=4, where=lambda e: e["service"] == service)
    for event in found:
        assert event_problems(event.value) == [], event.value
        assert event.key == service.encode()
    first, second, third, fourth = (e.value for e in found)
    assert (first["level"], first["message"]) == ("warn", "disk almost full")
    assert first["metadata"] == {"hostname": HOSTNAME, "disk": "/var", "pct": 91.5}
    assert (second["trace_id"], second["span_id"]) == (TRACE, SPAN)
    assert second["time"] == "2025-11-25T08:30:03.214Z"
    assert second["metadata"] == {"hostname": HOSTNAME}
    assert (third["level"], third["metadata"]["level_name"]) == ("info", "loudest")
    assert third["time"] == "2025-11-25T08:30:03.214Z"
    assert third["metadata"]["category"] == category
    assert (fourth["level"], fourth["message"]) == ("critical", "(empty message)")
    assert fourth["metadata"]["password"] == logtide_kafka.REDACTED
    stats = logtide_kafka.stats()
    assert (stats.enqueued, stats.delivered, stats.failed) == (4, 4, 0)


def test_send_logs_keeps_order_and_counts_a_full_queue(
    kafka_bootstrap: str, topic: str, service: str
) -> None:
    logtide_kafka.configure(
        kafka_bootstrap,
        topic=topic,
        producer_config={"queue.buffering.max.messages": 100, "linger.ms": 1000},
    )
    sent = logtide_kafka.send_logs(
        {"level": "info", "message": "burst", "service": service, "metadata": {"seq": i}}
        for i in range(1000)
    )
    assert logtide_kafka.flush(15) == 0
    stats = logtide_kafka.stats()
    assert 0 < sent < 1000
    assert stats.dropped == 1000 - sent
    assert stats.enqueued == stats.delivered == sent
    found = read_events(kafka_bootstrap, topic, count=sent, where=lambda e: e["service"] == service)
    seqs = [e.value["metadata"]["seq"] for e in found]
    assert seqs == sorted(seqs)
    assert len(seqs) == sent


class _Unreadable(Mapping[str, Any]):
    """A mapping whose every read raises."""

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("no")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("no")

    def __len__(self) -> int:
        return 3


def test_bad_items_are_counted_never_raised(dead_bootstrap: str, service: str) -> None:
    logtide_kafka.configure(dead_bootstrap)
    good = {"level": "info", "message": "ok", "service": service}
    items: list[Any] = [
        good,
        "not a mapping",
        None,
        {"level": "info", "service": service},  # no message
        {"level": "info", "message": "m", "service": service, "metadata": ["not", "a", "map"]},
        _Unreadable(),
        {"level": object(), "message": object(), "service": 42},  # odd but readable: sent
        good,
    ]
    assert logtide_kafka.send_logs(cast(list[Mapping[str, Any]], items)) == 3
    stats = logtide_kafka.stats()
    assert (stats.enqueued, stats.failed, stats.dropped) == (3, 5, 0)
    assert stats.last_error is not None


def test_an_iterable_that_raises_midway_keeps_what_came_before(
    dead_bootstrap: str, service: str
) -> None:
    logtide_kafka.configure(dead_bootstrap)

    def items() -> Iterator[Mapping[str, Any]]:
        yield {"level": "info", "message": "one", "service": service}
        yield {"level": "info", "message": "two", "service": service}
        raise ValueError("the source broke")

    assert logtide_kafka.send_logs(items()) == 2
    assert logtide_kafka.send_logs(cast(Any, 42)) == 0  # not even iterable
    stats = logtide_kafka.stats()
    assert (stats.enqueued, stats.failed) == (2, 2)


def test_the_callers_metadata_is_left_unchanged(dead_bootstrap: str, service: str) -> None:
    logtide_kafka.configure(dead_bootstrap, fields={"env": "test"})
    metadata = {"token": "abc", "nested": {"password": "x"}}
    item = {"level": "info", "message": "m", "service": service, "metadata": metadata}
    assert logtide_kafka.send_logs([item, item]) == 2
    assert metadata == {"token": "abc", "nested": {"password": "x"}}


@pytest.mark.parametrize("bad_time", [None, "yesterday", 1.7e15])
def test_an_unreadable_time_is_kept_in_metadata(
    kafka_bootstrap: str, topic: str, service: str, bad_time: object
) -> None:
    logtide_kafka.configure(kafka_bootstrap, topic=topic)
    item = {"level": "info", "message": "m", "service": service, "time": bad_time}
    assert logtide_kafka.send_logs([item]) == 1
    assert logtide_kafka.flush(10) == 0
    (event,) = read_events(kafka_bootstrap, topic, count=1, where=lambda e: e["service"] == service)
    assert event_problems(event.value) == []
    assert event.value["metadata"]["timestamp"] == bad_time


def test_levels_and_services_change_between_items(
    kafka_bootstrap: str, topic: str, service: str
) -> None:
    logtide_kafka.configure(kafka_bootstrap, topic=topic)
    other = service + "-b"
    pairs = [("info", service), ("info", other), ("error", other), ("bogus", other),
             ("bogus", service), (40, service), ("warning", service)]  # fmt: skip
    items = [{"level": lv, "message": f"m{n}", "service": sv} for n, (lv, sv) in enumerate(pairs)]
    assert logtide_kafka.send_logs(items) == len(pairs)
    assert logtide_kafka.flush(10) == 0
    found = read_events(
        kafka_bootstrap, topic, count=len(pairs), where=lambda e: e["service"] in (service, other)
    )
    got = sorted((e.value["message"], e.value["level"], e.value["service"], e.key) for e in found)
    levels = ["info", "info", "error", "info", "info", "error", "warn"]
    assert got == [(f"m{n}", levels[n], sv, sv.encode()) for n, (_, sv) in enumerate(pairs)]
    bogus = [e.value for e in found if e.value["message"] in ("m3", "m4")]
    assert [e["metadata"]["level_name"] for e in bogus] == ["bogus", "bogus"]
