"""Three real brokers: replicated topics survive one broker stopping and coming back."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient

import logtide_kafka
from logtide_kafka.testing import LocalKafka, read_events


def test_three_brokers_replicate_and_survive_a_stopped_broker(kafka3: LocalKafka) -> None:
    topic, service = "logs.replicated", "replicated-svc"
    kafka3.create_topics([topic], partitions=3)
    assert set(kafka3.admin().list_topics(timeout=10).brokers) == {1, 2, 3}
    replicas = kafka3.admin().list_topics(topic, timeout=10).topics[topic].partitions
    assert all(len(p.replicas) == 3 for p in replicas.values())

    logtide_kafka.configure(kafka3.bootstrap_servers, topic=topic)
    for seq in range(200):
        logtide_kafka.send_log("info", "before", service, seq=seq)
    assert logtide_kafka.flush(30) == 0

    kafka3.stop_broker(2)
    assert not kafka3.nodes[1].running
    for seq in range(200, 400):
        logtide_kafka.send_log("info", "one broker down", service, seq=seq)
    assert logtide_kafka.flush(60) == 0

    kafka3.start_broker(2)
    for seq in range(400, 600):
        logtide_kafka.send_log("info", "after", service, seq=seq)
    assert logtide_kafka.flush(30) == 0

    stats = logtide_kafka.stats()
    assert (stats.enqueued, stats.delivered, stats.failed, stats.dropped) == (600, 600, 0, 0)
    events = read_events(kafka3.bootstrap_servers, topic, count=600, timeout=60)
    assert [e.value["metadata"]["seq"] for e in events] == list(range(600))


def test_a_killed_broker_loses_nothing_acknowledged(kafka3: LocalKafka) -> None:
    topic, service = "logs.killed", "killed-svc"
    kafka3.create_topics([topic], partitions=3, config={"min.insync.replicas": "2"})
    logtide_kafka.configure(kafka3.bootstrap_servers, topic=topic)
    for seq in range(300):
        logtide_kafka.send_log("info", "before crash", service, seq=seq)
    assert logtide_kafka.flush(30) == 0
    kafka3.stop_broker(3, kill=True)
    try:
        for seq in range(300, 600):
            logtide_kafka.send_log("info", "after crash", service, seq=seq)
        assert logtide_kafka.flush(60) == 0
    finally:
        kafka3.start_broker(3)
    events = read_events(kafka3.bootstrap_servers, topic, count=600, timeout=60)
    assert sorted(e.value["metadata"]["seq"] for e in events) == list(range(600))
    stats = logtide_kafka.stats()
    assert (stats.delivered, stats.failed) == (600, 0)


def test_a_restarted_broker_answers_when_start_broker_returns(kafka3: LocalKafka) -> None:
    # Restarted within the broker session (3 s), the killed node is still registered, so
    # the metadata alone would call it back before the new process serves anything.
    kafka3.stop_broker(3, kill=True)
    kafka3.start_broker(3)
    restarted = AdminClient({"bootstrap.servers": kafka3.nodes[2].address})
    assert set(restarted.list_topics(timeout=2).brokers) == {1, 2, 3}
