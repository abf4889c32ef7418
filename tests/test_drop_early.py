"""Under ``on_full="drop"``, an event meeting a full queue is dropped before it is encoded."""

from __future__ import annotations

import time

import logtide_kafka
from logtide_kafka import get_producer
from logtide_kafka.producer._policy import DeliveryPolicy


class Spy:
    """A value orjson cannot encode natively: each encoding calls its ``__str__``."""

    encoded = 0

    def __str__(self) -> str:
        Spy.encoded += 1
        return "spy"


def test_a_full_queue_drops_before_encoding(dead_bootstrap: str) -> None:
    producer = get_producer(dead_bootstrap, {"queue.buffering.max.messages": 5})
    Spy.encoded = 0
    event = {"time": "2025-11-25T08:30:03.214Z", "service": "s", "level": "info",
             "message": "m", "metadata": {"hostname": "h", "spy": Spy()}}  # fmt: skip
    results = [producer.send("logs.application", b"s", event) for _ in range(50)]
    assert results == [True] * 5 + [False] * 45
    # Five enqueued, one encoded only to learn from produce() that the queue is full.
    assert Spy.encoded == 6
    stats = producer.stats()
    assert (stats.enqueued, stats.dropped, stats.dropped_by) == (5, 45, {"queue_full": 45})


def test_room_again_means_encoding_again(dead_bootstrap: str) -> None:
    producer = get_producer(dead_bootstrap, {"queue.buffering.max.messages": 5})
    Spy.encoded = 0
    event = {"time": "2025-11-25T08:30:03.214Z", "service": "s", "level": "info",
             "message": "m", "metadata": {"hostname": "h", "spy": Spy()}}  # fmt: skip
    for _ in range(10):
        producer.send("logs.application", b"s", event)
    producer._producer.purge()  # the queue empties (the events count as failed)
    # len() counts the purged events until their reports are served (and client logs):
    # wait until it shows room, as the next send will look.
    deadline = time.monotonic() + 10
    while len(producer._producer) >= 5 and time.monotonic() < deadline:
        producer._producer.poll(0.05)
    assert producer.send("logs.application", b"s", event)
    assert Spy.encoded == 7
    assert producer.stats().dropped == 5


def test_block_and_spool_still_encode_a_refused_event(dead_bootstrap: str) -> None:
    policy = DeliveryPolicy(on_full="block", block_timeout=0.0)
    producer = get_producer(dead_bootstrap, {"queue.buffering.max.messages": 2}, policy)
    Spy.encoded = 0
    event = {"time": "2025-11-25T08:30:03.214Z", "service": "s", "level": "info",
             "message": "m", "metadata": {"hostname": "h", "spy": Spy()}}  # fmt: skip
    for _ in range(5):
        producer.send("logs.application", b"s", event)
    assert Spy.encoded == 5  # block retries the encoded event: nothing is skipped
    assert producer.stats().dropped_by == {"block_timeout": 3}
    logtide_kafka.close_all(0)
