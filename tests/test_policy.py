"""Backpressure policies (drop, block), the drop warning, statistics and SIGTERM."""

from __future__ import annotations

import logging.config
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from logtide_kafka import KafkaHandler, LogProducer
from logtide_kafka.producer import DeliveryPolicy, resolve_config
from logtide_kafka.testing import read_events

EVENT = {"time": "t", "service": "s", "level": "info", "message": "m", "metadata": {}}
TINY_QUEUE = {"queue.buffering.max.messages": 10}


def test_invalid_policies_raise_before_a_client_exists() -> None:
    with pytest.raises(ValueError, match="on_full"):
        DeliveryPolicy(on_full="wait")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="spool_dir"):
        DeliveryPolicy(on_full="spool")
    with pytest.raises(ValueError, match="spool_fsync"):
        DeliveryPolicy(spool_fsync="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=">= 0"):
        KafkaHandler("svc", block_timeout=-1)


def test_drop_counts_by_reason_and_warns_once_per_interval(
    dead_bootstrap: str, capfd: pytest.CaptureFixture[str]
) -> None:
    policy = DeliveryPolicy(on_full="drop", warn_interval=0.5)
    producer = LogProducer(resolve_config(dead_bootstrap, TINY_QUEUE), policy)
    results = [producer.send("logs.application", b"s", EVENT) for _ in range(25)]
    assert results.count(True) == 10
    assert producer.stats().dropped_by == {"queue_full": 15}
    time.sleep(2.0)  # the poller wakes every 0.2 s; room for a slow machine
    for _ in range(4):
        producer.send("logs.application", b"s", EVENT)
    time.sleep(2.0)
    lines = [line for line in capfd.readouterr().err.splitlines() if "dropped" in line]
    assert len(lines) == 2, lines
    assert lines[0].startswith("logtide-kafka: dropped 15 log event(s)")
    assert lines[1].startswith("logtide-kafka: dropped 4 log event(s)")
    stats = producer.stats()
    assert (stats.dropped, stats.enqueued) == (19, 10)
    producer.close(0)


def test_block_waits_its_bound_then_drops(dead_bootstrap: str) -> None:
    policy = DeliveryPolicy(on_full="block", block_timeout=0.2)
    producer = LogProducer(resolve_config(dead_bootstrap, TINY_QUEUE), policy)
    for _ in range(10):
        assert producer.send("logs.application", b"s", EVENT)
    started = time.monotonic()
    assert producer.send("logs.application", b"s", EVENT) is False
    waited = time.monotonic() - started
    assert 0.19 <= waited < 1.0
    assert producer.stats().dropped_by == {"block_timeout": 1}
    producer.close(0)


def test_block_delivers_a_burst_larger_than_the_queue(
    kafka_bootstrap: str, topic: str, service: str
) -> None:
    config = {"queue.buffering.max.messages": 50, "linger.ms": 1}
    policy = DeliveryPolicy(on_full="block", block_timeout=5.0)
    producer = LogProducer(resolve_config(kafka_bootstrap, config), policy)
    for seq in range(2000):
        event = dict(EVENT, service=service, metadata={"seq": seq})
        assert producer.send(topic, service.encode(), event)
    assert producer.flush(30) == 0
    stats = producer.stats()
    assert (stats.dropped, stats.failed, stats.delivered) == (0, 0, 2000)
    events = read_events(kafka_bootstrap, topic, count=2000, timeout=60)
    assert [e.value["metadata"]["seq"] for e in events if e.key == service.encode()] == list(
        range(2000)
    )
    producer.close(5)


def test_librdkafka_statistics_are_exposed(kafka_bootstrap: str) -> None:
    seen: list[str] = []
    config = {"statistics.interval.ms": 100, "stats_cb": seen.append}
    producer = LogProducer(resolve_config(kafka_bootstrap, config))
    deadline = time.monotonic() + 10
    while producer.stats().librdkafka is None and time.monotonic() < deadline:
        time.sleep(0.05)
    statistics = producer.stats().librdkafka
    assert statistics is not None
    assert statistics["type"] == "producer"
    assert "brokers" in statistics
    assert seen, "the application's own stats_cb is still called"
    producer.close(5)


def test_statistics_are_absent_unless_enabled(dead_bootstrap: str) -> None:
    producer = LogProducer(resolve_config(dead_bootstrap))
    time.sleep(0.3)
    assert producer.stats().librdkafka is None
    producer.close(0)


SIGTERM_APP = textwrap.dedent(
    """
    import logging, os, signal, sys, time
    from logtide_kafka import KafkaHandler
    bootstrap, topic, service, own_handler = sys.argv[1:5]
    if own_handler == "yes":
        def handler(signum, frame):
            print("app handler ran", flush=True)
            sys.exit(3)
        signal.signal(signal.SIGTERM, handler)
    log = logging.getLogger("app")
    log.propagate = False
    log.setLevel(logging.INFO)
    # A long linger: the events are still in librdkafka's queue when SIGTERM arrives.
    log.addHandler(KafkaHandler(service, topic, bootstrap, {"linger.ms": 20000}))
    for seq in range(200):
        log.info("event", extra={"seq": seq})
    print("ready", flush=True)
    time.sleep(60)
    """
)


@pytest.mark.parametrize(("own_handler", "exit_code"), [("no", 128 + 15), ("yes", 3)])
def test_sigterm_flushes_and_keeps_the_apps_own_handler(
    kafka_bootstrap: str, topic: str, own_handler: str, exit_code: int
) -> None:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k != "LOGTIDE_KAFKA_SIGTERM"}
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGTERM_APP, kafka_bootstrap, topic, service, own_handler],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert time.monotonic() - started < 15
    assert proc.returncode == exit_code
    assert ("app handler ran" in out) == (own_handler == "yes")
    events = read_events(kafka_bootstrap, topic, count=200, timeout=60)
    mine = [e.value["metadata"]["seq"] for e in events if e.value["service"] == service]
    assert mine == list(range(200))


def test_sigterm_handler_is_not_installed_off_the_main_thread_or_when_disabled() -> None:
    code = textwrap.dedent(
        """
        import os, signal, threading
        from logtide_kafka import get_producer
        t = threading.Thread(target=lambda: get_producer("127.0.0.1:1"))
        t.start(); t.join()
        print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
    env = dict(os.environ, LOGTIDE_KAFKA_SIGTERM="0")
    code = "import signal\nfrom logtide_kafka import get_producer\nget_producer('127.0.0.1:1')\n"
    code += "print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "True"


def test_policy_options_pass_through_dictconfig(dead_bootstrap: str) -> None:
    logging.config.dictConfig(
        {
            "version": 1,
            "handlers": {
                "kafka": {
                    "class": "logtide_kafka.KafkaHandler",
                    "service": "svc",
                    "bootstrap_servers": dead_bootstrap,
                    "on_full": "block",
                    "block_timeout": 0.05,
                }
            },
            "loggers": {"policy-dictconfig": {"handlers": ["kafka"], "propagate": False}},
        }
    )
    handler = logging.getLogger("policy-dictconfig").handlers[0]
    assert isinstance(handler, KafkaHandler)
    assert handler.producer.policy == DeliveryPolicy(on_full="block", block_timeout=0.05)
    handler.close()
    logging.getLogger("policy-dictconfig").handlers.clear()
