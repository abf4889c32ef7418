"""The shipper drops repeats of an event (same ``event-id`` header) within its window."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence

import orjson
import pytest
from confluent_kafka import Producer
from logtide_server import LogTideServer

from logtide_kafka._headers import EVENT_ID, event_headers
from logtide_kafka.pipeline._dedupe import RecentIds
from logtide_kafka.pipeline.shipper import EXIT_OK, Shipper, ShipperConfig
from logtide_kafka.testing import create_topics


def _h(event_id: bytes) -> list[tuple[str, bytes]]:
    return [("content-type", b"application/json"), (EVENT_ID, event_id)]


def test_a_repeat_at_another_offset_is_dropped_a_reread_is_not() -> None:
    recent = RecentIds(window=10)
    assert not recent.repeats(("t", 0), 5, _h(b"a"))
    assert not recent.repeats(("t", 0), 5, _h(b"a"))  # the same message read again: ship it
    assert recent.repeats(("t", 0), 9, _h(b"a"))  # a replayed copy
    assert recent.repeats(("t", 0), 9, _h(b"a"))  # ... read again: still the copy
    assert not recent.repeats(("t", 1), 3, _h(b"a"))  # another partition: not the same event
    assert not recent.repeats(("u", 0), 9, _h(b"a"))  # another topic
    assert not recent.repeats(("t", 0), 10, None)  # no id: never a repeat
    assert not recent.repeats(("t", 0), 11, [("content-type", b"x")])
    assert recent.repeats(("t", 0), 12, event_headers({}, b"a"))  # the id first, as produced
    assert not recent.repeats(("t", 0), 13, [(EVENT_ID, None), ("x", b"a")])
    assert len(recent) == 3


def test_the_window_is_bounded_and_forgets_the_oldest() -> None:
    recent = RecentIds(window=1000)
    for offset in range(5000):
        assert not recent.repeats(("t", offset % 3), offset, _h(b"id-%d" % offset))
    assert len(recent) == 1000
    assert recent.repeats(("t", 4999 % 3), 6000, _h(b"id-4999"))  # remembered
    assert recent.repeats(("t", 4000 % 3), 6001, _h(b"id-4000"))  # the oldest kept
    assert not recent.repeats(("t", 3999 % 3), 6002, _h(b"id-3999"))  # forgotten: shipped
    assert len(recent) == 1000
    with pytest.raises(ValueError, match="window"):
        RecentIds(window=0)


def _produce(servers: str, topic: str, records: Sequence[tuple[bytes, bytes | None]]) -> None:
    producer = Producer({"bootstrap.servers": servers, "linger.ms": 5})
    for value, event_id in records:
        headers = None if event_id is None else event_headers({}, event_id)
        producer.produce(topic, value, b"svc", headers=headers)
    assert producer.flush(30) == 0


def _event(message: str) -> bytes:
    return orjson.dumps(
        {"time": "2025-11-25T08:30:03.214Z", "service": "svc", "level": "info", "message": message}
    )


def test_an_event_replayed_into_kafka_reaches_logtide_once(kafka_bootstrap: str) -> None:
    topic = f"logs.dedupe-{uuid.uuid4().hex[:10]}"
    create_topics(kafka_bootstrap, [topic], partitions=3)
    # "a" sent, its acknowledgement lost, spooled at exit and replayed by the next process
    # behind "b": Kafka holds it twice.  "c" has no id (another producer): always shipped.
    _produce(
        kafka_bootstrap,
        topic,
        [(_event("a"), b"p.1"), (_event("b"), b"p.2"), (_event("a"), b"p.1"), (_event("c"), None)],
    )
    with LogTideServer(api_key="k") as server:
        config = ShipperConfig(
            kafka_bootstrap,
            server.url,
            "k",
            group=f"dedupe-{uuid.uuid4().hex[:10]}",
            topics=(topic,),
            dlq_topic=f"logs.dlq-{uuid.uuid4().hex[:10]}",
            batch_max_wait=0.2,
        )
        shipper = Shipper(config)
        codes: list[int] = []
        thread = threading.Thread(target=lambda: codes.append(shipper.run()), daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 30
            while shipper.metrics()["messages_consumed"] < 4 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert server.wait_for(lambda s: sum(s.messages().values()) >= 3, 30)
            time.sleep(1.0)  # a repeat, had it been shipped, would be in by now
        finally:
            shipper.stop()
            thread.join(30)
        assert codes == [EXIT_OK]
        assert server.messages() == {"a": 1, "b": 1, "c": 1}
        metrics = shipper.metrics()
        assert (metrics["messages_consumed"], metrics["duplicates_dropped"]) == (4, 1)
        assert "logtide_shipper_duplicates_dropped_total 1" in shipper.prometheus()
