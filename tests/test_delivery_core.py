"""The shipper's delivery core (``_delivery.Poster``) against ``httpx.MockTransport``: poison
entries, outages, probes and the retry-streak lines, without Kafka."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import httpx
import orjson
import pytest

from logtide_kafka.pipeline._delivery import POISON_ATTEMPTS, Fatal, Health, Item, Poster
from logtide_kafka.pipeline._ingest import Source
from logtide_kafka.pipeline._logtide_client import BASE_BACKOFF, LogTideClient
from logtide_kafka.pipeline._metrics import ShipperMetrics


def item(message: str, offset: int = 0) -> Item:
    entry = {"time": "2025-01-01T00:00:00Z", "service": "s", "level": "info", "message": message}
    return Item(Source("logs.app", 0, offset, None, None), None, orjson.dumps(entry))


CONNECT_ERROR = 0


class Rig:
    """A Poster whose LogTide is ``answer(messages) -> status`` (``CONNECT_ERROR``: the
    connection is refused); waits are instant (they move a fake clock on)."""

    def __init__(self, answer: Callable[[list[str]], int], retry_after: str | None = None) -> None:
        self.bodies: list[list[str]] = []
        self.stop = False
        self.waits: list[float] = []
        self.holds: list[float] = []  # the shared hold, as each wait began

        def handler(request: httpx.Request) -> httpx.Response:
            messages = [e["message"] for e in orjson.loads(request.content)["logs"]]
            self.bodies.append(messages)
            status = answer(messages)
            if status == CONNECT_ERROR:
                raise httpx.ConnectError("connection refused")
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            return httpx.Response(status, json={"error": "Internal Server Error"}, headers=headers)

        self.metrics = ShipperMetrics()
        self.now = 1000.0  # a fake clock: waits are instant, and advance it
        self.health = Health(self.metrics, clock=lambda: self.now)
        client = LogTideClient("http://lt", "k", transport=httpx.MockTransport(handler))
        self.poster = Poster(
            client,
            self.health,
            self.metrics,
            max_backoff=0.01,
            stopping=lambda: self.stop,
            wait=self._wait,
        )

    def _wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.holds.append(self.health.hold_remaining())
        self.now += seconds


def test_a_lone_poison_entry_is_dead_lettered_after_one_probe() -> None:
    rig = Rig(lambda messages: 500 if "poison" in messages else 200)
    rig.health.accepted(-1.0, 1, item("good").payload)  # accepted before: a known-good entry
    poison = item("poison")
    rig.poster.deliver([poison])
    assert poison.reason is not None
    assert not poison.done
    assert f"failed {POISON_ATTEMPTS} times alone" in poison.reason
    assert rig.bodies.count(["poison"]) == POISON_ATTEMPTS
    assert rig.bodies.count(["good"]) == 1  # the probe: the only duplicate
    assert rig.metrics.snapshot()["probes"] == 1
    assert rig.metrics.snapshot()["poison_dead_lettered"] == 1


def test_poison_in_a_batch_is_bisected_out_and_the_rest_accepted() -> None:
    rig = Rig(lambda messages: 500 if "poison-7" in messages else 200)
    items = [item(f"poison-{i}" if i == 7 else f"ok-{i}", i) for i in range(40)]
    rig.poster.deliver(items)
    assert [i.reason is not None for i in items] == [i == 7 for i in range(40)]
    assert all(i.done for n, i in enumerate(items) if n != 7)
    accepted = [m for body in rig.bodies for m in body if "poison-7" not in body]
    # Once its siblings are all delivered, the lone entry's last failure needs fresh
    # evidence: one probe, the only duplicate.
    probes = rig.metrics.snapshot()["probes"]
    assert probes <= 1
    assert len(accepted) == 39 + probes
    assert set(accepted) == {f"ok-{i}" for i in range(40) if i != 7}


@pytest.mark.parametrize("count", [1, 5])
def test_a_logtide_down_for_everything_never_dead_letters(count: int) -> None:
    rig = Rig(lambda messages: 503)
    rig.health.accepted(-1.0, 1, item("good").payload)
    items = [item(f"e{i}", i) for i in range(count)]
    worker = threading.Thread(target=rig.poster.deliver, args=(items,))
    worker.start()
    while len(rig.bodies) < 300:
        worker.join(0.01)
    rig.stop = True
    worker.join(10)
    assert not worker.is_alive()
    assert all(i.reason is None and not i.done for i in items)
    snapshot = rig.metrics.snapshot()
    if count == 1:  # alone, it asked with a known-good entry; that failed too
        assert snapshot["probes"] >= 1
    assert snapshot["dead_lettered"] == snapshot["poison_dead_lettered"] == 0
    # Never a hot loop: every failure was followed by a wait.
    assert len(rig.waits) >= snapshot["retries"] - 5


def test_429_holds_and_is_never_poison() -> None:
    answers = iter([429] * 20)
    rig = Rig(lambda messages: next(answers, 200))
    only = item("only")
    rig.poster.deliver([only])
    assert only.done
    assert rig.metrics.snapshot()["splits"] == rig.metrics.snapshot()["probes"] == 0


def test_retry_after_zero_waits_the_base_backoff_and_holds_every_thread() -> None:
    answers = iter([429] * 5)
    rig = Rig(lambda messages: next(answers, 200), retry_after="0")
    only = item("only")
    rig.poster.deliver([only])
    assert only.done
    assert rig.waits == [BASE_BACKOFF] * 5  # one wait per 429, floored, never zero
    # The hold is shared: any other posting thread would wait as long.
    assert all(0.4 <= hold <= BASE_BACKOFF for hold in rig.holds), rig.holds


def test_fatal_answer_raises() -> None:
    rig = Rig(lambda messages: 401)
    with pytest.raises(Fatal, match="refused the API key"):
        rig.poster.deliver([item("x")])


def test_streak_lines_start_escalate_end(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="logtide_kafka.shipper")
    answers = iter([503] * 9)
    rig = Rig(lambda messages: next(answers, 200))
    rig.poster.deliver([item("a"), item("b")])
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines[0] == (
        "WARNING",
        "LogTide retry streak started: LogTide answered 503: Internal Server Error; "
        "2 event(s) wait for a retry",
    )
    goes_on = [m for level, m in lines if "goes on" in m and level == "WARNING"]
    assert [m.split(":")[1].split(" failed")[0].strip() for m in goes_on] == ["2", "4", "8"]
    level, last = lines[-1]
    assert level == "INFO"
    assert last.startswith("LogTide retry streak ended after ")
    assert last.endswith("9 failed attempt(s), 2 event(s) delivered, 0 dead-lettered as poison")
    snapshot = rig.metrics.snapshot()
    assert snapshot["retry_streak_active"] == 0
    assert snapshot["last_retry_cause"] == "LogTide answered 503: Internal Server Error"
    assert "logtide_shipper_retry_streak_active 0" in rig.metrics.prometheus()


def test_400_bisects_to_the_invalid_entry_without_retrying() -> None:
    rig = Rig(lambda messages: 400 if "bad-5" in messages else 200)
    items = [item(f"bad-{i}" if i == 5 else f"ok-{i}", i) for i in range(8)]
    rig.poster.deliver(items)
    assert [i.reason is not None for i in items] == [i == 5 for i in range(8)]
    assert items[5].reason == "LogTide answered 400: Internal Server Error"
    assert all(i.done for n, i in enumerate(items) if n != 5)
    snapshot = rig.metrics.snapshot()
    assert snapshot["retries"] == 0  # a 400 is never repeated as it was
    assert snapshot["splits"] == 3  # 8 -> 4 -> 2 -> 1
    assert rig.waits == []
    assert snapshot["events_shipped"] == 7


def test_413_splits_and_an_entry_too_large_alone_gets_a_reason() -> None:
    rig = Rig(lambda messages: 413 if "huge" in messages else 200)
    items = [item("a", 0), item("huge", 1)]
    rig.poster.deliver(items)
    assert items[0].done
    assert items[1].reason == "LogTide answered 413: the entry is too large"
    assert rig.metrics.snapshot()["retries"] == 0


def test_a_transport_error_is_retried_as_suspect_without_holding_others() -> None:
    answers = iter([CONNECT_ERROR, CONNECT_ERROR])
    rig = Rig(lambda messages: next(answers, 200))
    only = item("only")
    rig.poster.deliver([only])
    assert only.done
    assert rig.bodies == [["only"]] * 3
    assert rig.metrics.snapshot()["retries"] == 2
    assert rig.metrics.snapshot()["request_errors"] == 2
    assert rig.holds == [0.0, 0.0]  # the connection failed, not a rate limit: no shared hold
    assert rig.metrics.snapshot()["last_retry_cause"].startswith(
        "request to LogTide failed: ConnectError"
    )


def test_408_holds_every_thread_like_a_rate_limit() -> None:
    answers = iter([408])
    rig = Rig(lambda messages: next(answers, 200))
    only = item("only")
    rig.poster.deliver([only])
    assert only.done
    assert len(rig.holds) == 1
    assert rig.holds[0] > 0
    assert rig.metrics.snapshot()["splits"] == 0


def test_stopping_during_a_retry_leaves_the_batch_for_the_next_run() -> None:
    rig = Rig(lambda messages: 503)
    items = [item("a", 0), item("b", 1)]

    def stop_on_first_wait(seconds: float) -> None:
        rig.stop = True

    rig.poster._wait = stop_on_first_wait
    rig.poster.deliver(items)
    assert all(not i.done and i.reason is None for i in items)
    assert len(rig.bodies) == 1
