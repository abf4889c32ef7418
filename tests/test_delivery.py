"""End to end against a real broker: what the app logs is what Kafka holds."""

from __future__ import annotations

import logging
import logging.config
import os
import subprocess
import sys
import textwrap
import time

import logtide_kafka
from logtide_kafka import KafkaHandler
from logtide_kafka._event import HOSTNAME, format_time
from logtide_kafka.testing import ConsumedEvent, event_problems, read_events

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


class Keep(logging.Handler):
    """Keeps the records, to compare each consumed event with the record behind it."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _read(servers: str, topic: str, service: str, count: int) -> list[ConsumedEvent]:
    events = read_events(servers, topic, count=count, where=lambda e: e["service"] == service)
    for event in events:
        assert event_problems(event.value) == [], event.value
        assert event.key == service.encode()
    return events


def test_handler_events_arrive_field_for_field(
    kafka_bootstrap: str, topic: str, service: str, logger: logging.Logger
) -> None:
    handler = KafkaHandler(service, topic=topic, bootstrap_servers=kafka_bootstrap)
    keep = Keep()
    logger.addHandler(handler)
    logger.addHandler(keep)
    logger.info("order %s placed", 7, extra={"order_id": 7, "items": [1, 2], "user": None})
    logger.warning("stock low", extra={"trace_id": TRACE, "span_id": SPAN})
    lookup: dict[str, int] = {}
    try:
        lookup["missing"]
    except KeyError:
        logger.exception("lookup failed")
    logger.log(5, "very verbose")
    assert handler.producer.flush(10) == 0

    events = [e.value for e in _read(kafka_bootstrap, topic, service, 4)]
    for event, record in zip(events, keep.records, strict=True):
        expected_metadata = {
            "hostname": HOSTNAME,
            "logger": logger.name,
            "function": record.funcName,
            "line": record.lineno,
            "thread": record.threadName,
            "process": os.getpid(),
        }
        assert event["time"] == format_time(record.created)
        assert event["service"] == service
        assert event["message"] == record.getMessage()
        metadata = event["metadata"]
        assert {k: metadata[k] for k in expected_metadata} == expected_metadata

    assert [e["level"] for e in events] == ["info", "warn", "error", "debug"]
    assert {k: events[0]["metadata"][k] for k in ("order_id", "items", "user")} == {
        "order_id": 7,
        "items": [1, 2],
        "user": None,
    }
    assert "trace_id" not in events[0]
    assert (events[1]["trace_id"], events[1]["span_id"]) == (TRACE, SPAN)
    assert "trace_id" not in events[1]["metadata"]
    exception = events[2]["metadata"]["exception"]
    assert (exception["type"], exception["message"]) == ("KeyError", "'missing'")
    assert 'File "' in exception["stack"]
    assert exception["stack"].endswith("KeyError: 'missing'")
    stats = handler.stats()
    assert (stats.enqueued, stats.delivered, stats.failed, stats.dropped) == (4, 4, 0, 0)


def test_dictconfig_handler_delivers(
    kafka_bootstrap: str, topic: str, service: str, logger: logging.Logger
) -> None:
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"short": {"format": "%(levelname)s %(message)s"}},
            "handlers": {
                "kafka": {
                    "class": "logtide_kafka.KafkaHandler",
                    "service": service,
                    "topic": topic,
                    "bootstrap_servers": kafka_bootstrap,
                    "producer_config": {"linger.ms": 5, "client.id": "dictconfig-test"},
                    "formatter": "short",
                }
            },
            "loggers": {logger.name: {"handlers": ["kafka"], "level": "INFO"}},
        }
    )
    logger.debug("filtered out by the logger's level")
    logger.info("configured by dict", extra={"via": "dictConfig"})
    logtide_kafka.close_all(10)
    (event,) = _read(kafka_bootstrap, topic, service, 1)
    assert event.value["message"] == "INFO configured by dict"
    assert event.value["metadata"]["via"] == "dictConfig"


def test_send_log_delivers(kafka_bootstrap: str, topic: str, service: str) -> None:
    logtide_kafka.configure(kafka_bootstrap, topic=topic)
    assert logtide_kafka.send_log("WARNING", "disk almost full", service, disk="/var", pct=91.5)
    assert logtide_kafka.send_log(
        "info", "traced", service, trace_id=TRACE, span_id=SPAN, user={"id": 1}
    )
    assert logtide_kafka.send_log("loudest", "odd level", service)
    assert logtide_kafka.send_log(logging.CRITICAL, "", service)
    assert logtide_kafka.flush(10) == 0
    first, second, third, fourth = (e.value for e in _read(kafka_bootstrap, topic, service, 4))
    assert (first["level"], first["message"]) == ("warn", "disk almost full")
    assert first["metadata"] == {"disk": "/var", "pct": 91.5, "hostname": HOSTNAME}
    assert (second["trace_id"], second["span_id"]) == (TRACE, SPAN)
    assert second["metadata"] == {"user": {"id": 1}, "hostname": HOSTNAME}
    assert (third["level"], third["metadata"]["level_name"]) == ("info", "loudest")
    assert (fourth["level"], fourth["message"]) == ("critical", "(empty message)")
    stats = logtide_kafka.stats()
    assert (stats.enqueued, stats.delivered, stats.failed) == (4, 4, 0)


def test_one_service_stays_in_one_partition_in_order(
    kafka_bootstrap: str, topic: str, service: str, logger: logging.Logger
) -> None:
    services = [f"{service}-{n}" for n in range(4)]
    handlers = {
        name: KafkaHandler(name, topic=topic, bootstrap_servers=kafka_bootstrap)
        for name in services
    }
    for handler in handlers.values():
        logger.addHandler(handler)
    logtide_kafka.configure(kafka_bootstrap, topic=topic)
    for seq in range(400):
        name = services[seq % 4]
        # The handler and send_log share one producer: both keep the service's order.
        if seq % 8 < 4:
            record = logger.makeRecord(logger.name, 20, "f", 1, "ordered", (), None)
            record.seq = seq
            handlers[name].handle(record)
        else:
            logtide_kafka.send_log("info", "ordered", name, seq=seq)
    assert logtide_kafka.flush(10) == 0
    events = read_events(
        kafka_bootstrap, topic, count=400, where=lambda e: e["service"] in services
    )
    for name in services:
        mine = [e for e in events if e.value["service"] == name]
        assert len({e.partition for e in mine}) == 1, name
        first = services.index(name)
        assert [e.value["metadata"]["seq"] for e in mine] == list(range(first, 400, 4))


def test_a_process_that_exits_without_flush_delivers_everything(
    kafka_bootstrap: str, topic: str, service: str
) -> None:
    count = 3000
    script = textwrap.dedent(
        f"""
        import logging
        from logtide_kafka import KafkaHandler, send_log, configure
        logger = logging.getLogger("child")
        logger.setLevel(logging.INFO)
        logger.addHandler(KafkaHandler({service!r}, topic={topic!r},
                                       bootstrap_servers={kafka_bootstrap!r}))
        configure({kafka_bootstrap!r}, topic={topic!r})
        for i in range({count}):
            if i % 2:
                logger.info("child event", extra={{"seq": i}})
            else:
                send_log("info", "child event", {service!r}, seq=i)
        """
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 30
    events = _read(kafka_bootstrap, topic, service, count)
    assert sorted(e.value["metadata"]["seq"] for e in events) == list(range(count))


def test_unencodable_metadata_still_produces_an_event(
    kafka_bootstrap: str, topic: str, service: str, logger: logging.Logger
) -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "Opaque()"

    cycle: list[object] = []
    cycle.append(cycle)
    handler = KafkaHandler(service, topic=topic, bootstrap_servers=kafka_bootstrap)
    logger.addHandler(handler)
    logger.info(
        "odd extras",
        extra={
            "obj": Opaque(),
            "raw": b"\xff\x00ok",
            "big": 2**80,
            "cycle": cycle,
            "text": "bad \ud800 text",
            "tags": frozenset({"x"}),
        },
    )
    logger.error("bad \udcff message")
    assert handler.producer.flush(10) == 0
    first, second = (e.value for e in _read(kafka_bootstrap, topic, service, 2))
    metadata = first["metadata"]
    assert metadata["obj"] == "Opaque()"
    assert metadata["raw"] == "\\xff\ufffdok"  # NUL, which LogTide cannot store, replaced
    assert metadata["big"] == str(2**80)
    assert metadata["cycle"] == ["<cycle>"]
    assert metadata["text"] == "bad \ufffd text"
    assert metadata["tags"] == ["x"]
    assert second["message"] == "bad \ufffd message"
    stats = handler.stats()
    assert (stats.encode_errors, stats.delivered, stats.failed) == (2, 2, 0)


def test_queue_overflow_is_counted_and_the_rest_delivered(
    kafka_bootstrap: str, topic: str, service: str
) -> None:
    logtide_kafka.configure(
        kafka_bootstrap,
        topic=topic,
        producer_config={"queue.buffering.max.messages": 100, "linger.ms": 1000},
    )
    results = [logtide_kafka.send_log("info", "burst", service, seq=i) for i in range(1000)]
    assert logtide_kafka.flush(15) == 0
    stats = logtide_kafka.stats()
    assert stats.dropped == results.count(False) > 0
    assert stats.enqueued == stats.delivered == results.count(True)
    events = _read(kafka_bootstrap, topic, service, stats.delivered)
    sent = [i for i, ok in enumerate(results) if ok]
    assert [e.value["metadata"]["seq"] for e in events] == sent


def test_a_forked_child_gets_its_own_client_and_nothing_is_sent_twice(
    kafka_bootstrap: str, topic: str, service: str
) -> None:
    logtide_kafka.configure(kafka_bootstrap, topic=topic)
    for seq in range(10):
        logtide_kafka.send_log("info", "parent", service, seq=seq)
    # Fork with events still queued in the parent: the child must not send them again.
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            for seq in range(10, 15):
                logtide_kafka.send_log("info", "child", service, seq=seq)
            stats = logtide_kafka.stats()
            code = 0 if logtide_kafka.flush(20) == 0 and stats.enqueued == 5 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert logtide_kafka.flush(10) == 0
    events = _read(kafka_bootstrap, topic, service, 15)
    assert sorted(e.value["metadata"]["seq"] for e in events) == list(range(15))
    assert len(read_events(kafka_bootstrap, topic, where=lambda e: e["service"] == service)) == 15
