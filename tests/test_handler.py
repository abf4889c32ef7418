"""The logging handler's record → event mapping and its guards (real producer, no broker).

These tests point the producer at a port where nothing listens: ``send`` still only
enqueues, so what reached the producer is visible in its counters without a broker.
"""

from __future__ import annotations

import logging
import logging.config
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from logtide_kafka import KafkaHandler, get_producer
from logtide_kafka._event import HOSTNAME
from logtide_kafka.testing import event_problems


@pytest.fixture
def handler(dead_bootstrap: str) -> Iterator[KafkaHandler]:
    handler = KafkaHandler("unit-svc", bootstrap_servers=dead_bootstrap)
    yield handler
    handler.producer.close(0)


def _record(  # noqa: PLR0917
    msg: object = "hello %s",
    args: Any = ("world",),
    level: int = logging.INFO,
    exc_info: Any = None,
    extra: dict[str, Any] | None = None,
    name: str = "app.orders",
) -> logging.LogRecord:
    logger = logging.getLogger(name)
    return logger.makeRecord(name, level, "/src/app.py", 42, msg, args, exc_info, "fn", extra)


def test_event_from_a_plain_record(handler: KafkaHandler) -> None:
    record = _record()
    event = handler.to_event(record)
    assert event["service"] == "unit-svc"
    assert event["level"] == "info"
    assert event["message"] == "hello world"
    assert event["metadata"] == {
        "hostname": HOSTNAME,
        "logger": "app.orders",
        "function": "fn",
        "line": 42,
        "thread": record.threadName,
        "process": record.process,
    }
    assert event_problems(event) == []


def test_extra_fields_go_to_metadata_and_win(handler: KafkaHandler) -> None:
    extra = {"order_id": 7, "tags": ["a"], "logger": "from-extra", "nested": {"k": None}}
    metadata = handler.to_event(_record(extra=extra))["metadata"]
    assert metadata["order_id"] == 7
    assert metadata["tags"] == ["a"]
    assert metadata["nested"] == {"k": None}
    assert metadata["logger"] == "from-extra"


def test_extras_of_records_built_in_other_ways(handler: KafkaHandler) -> None:
    class EarlyRecord(logging.LogRecord):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.set_first = "early"  # before LogRecord's own attributes
            super().__init__(*args, **kwargs)

    early = EarlyRecord("app", logging.INFO, "f.py", 1, "m", None, None)
    early.late = "late"
    assert {k: handler.to_event(early)["metadata"].get(k) for k in ("set_first", "late")} == {
        "set_first": "early",
        "late": "late",
    }
    formatted = _record(extra={"order": 1})
    logging.Formatter("%(asctime)s %(message)s").format(formatted)  # adds message, asctime
    formatted.after_format = True
    metadata = handler.to_event(formatted)["metadata"]
    assert (metadata["order"], metadata["after_format"]) == (1, True)
    assert "asctime" not in metadata
    assert "message" not in metadata


def test_exception_fields(handler: KafkaHandler) -> None:
    try:
        raise KeyError("missing")
    except KeyError:
        record = _record("failed", (), logging.ERROR, exc_info=sys.exc_info())
    exception = handler.to_event(record)["metadata"]["exception"]
    assert exception["type"] == "KeyError"
    assert exception["message"] == "'missing'"
    assert exception["stack"].startswith("Traceback (most recent call last):")
    assert "raise KeyError" in exception["stack"]


def test_an_exception_that_cannot_be_printed_keeps_the_event(handler: KafkaHandler) -> None:
    class Mute(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    try:
        raise Mute
    except Mute:
        record = _record("failed", (), logging.ERROR, exc_info=sys.exc_info())
    exception = handler.to_event(record)["metadata"]["exception"]
    assert exception["type"].endswith("<locals>.Mute")
    assert exception["message"] == "<unprintable Mute>"
    assert exception["stack"].startswith("Traceback (most recent call last):")


def test_stack_info_and_custom_level(handler: KafkaHandler) -> None:
    record = _record(level=25)
    record.stack_info = "Stack (most recent call last):\n  frame"
    event = handler.to_event(record)
    assert event["level"] == "info"
    assert event["metadata"]["stack_info"].startswith("Stack")


def test_a_format_mismatch_keeps_the_event(handler: KafkaHandler) -> None:
    event = handler.to_event(_record("%s and %s", ("only one",)))
    assert event["message"] == "%s and %s"
    assert event["metadata"]["format_error"].startswith("TypeError")
    assert event["metadata"]["format_args"] == "('only one',)"


def test_a_formatter_shapes_the_message(handler: KafkaHandler) -> None:
    handler.setFormatter(logging.Formatter("[%(name)s] %(message)s"))
    assert handler.to_event(_record())["message"] == "[app.orders] hello world"


def test_non_string_messages_and_empty_messages(handler: KafkaHandler) -> None:
    assert handler.to_event(_record({"a": 1}, None))["message"] == "{'a': 1}"
    assert handler.to_event(_record("", None))["message"] == "(empty message)"


def test_a_service_name_that_cannot_be_encoded_is_repaired(dead_bootstrap: str) -> None:
    handler = KafkaHandler("svc\udc80", bootstrap_servers=dead_bootstrap)
    assert handler.service == "svc\ufffd"
    handler.handle(_record())
    assert handler.stats().enqueued == 1
    handler.producer.close(0)


def test_emit_enqueues_one_event(handler: KafkaHandler) -> None:
    handler.handle(_record())
    assert handler.stats().enqueued == 1


def test_records_from_the_library_itself_are_never_sent(handler: KafkaHandler) -> None:
    for name in ("logtide_kafka", "logtide_kafka.client", "logtide_kafka.anything"):
        handler.handle(_record(name=name))
    handler.handle(_record(name="logtide_kafka_app"))  # only a prefix: a user's logger
    assert handler.stats().enqueued == 1


def test_a_record_logged_while_emitting_is_skipped(handler: KafkaHandler) -> None:
    logger = logging.getLogger("app.recursive")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)

    class LogsWhenPrinted:
        def __str__(self) -> str:
            logger.warning("logged from inside emit")
            return "value"

    try:
        logger.info("outer", extra={"odd": LogsWhenPrinted()})
    finally:
        logger.removeHandler(handler)
    assert handler.stats().enqueued == 1
    assert handler.recursion_skipped == 1


def test_librdkafka_logs_stay_out_of_kafka(dead_bootstrap: str) -> None:
    """The client's own messages (refused connections here) go to ``logtide_kafka.client``
    and never come back through a handler on the root logger."""
    seen: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    collector = Collect()
    client_logger = logging.getLogger("logtide_kafka.client")
    client_logger.addHandler(collector)
    root = logging.getLogger()
    handler = KafkaHandler("root-svc", bootstrap_servers=dead_bootstrap)
    root.addHandler(handler)
    try:
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        root.removeHandler(handler)
        client_logger.removeHandler(collector)
        handler.producer.close(0)
    assert seen, "librdkafka reported nothing about the refused connection"
    assert handler.stats().enqueued == 0


def test_emit_never_raises(handler: KafkaHandler, monkeypatch: pytest.MonkeyPatch) -> None:
    errors: list[logging.LogRecord] = []
    monkeypatch.setattr(handler, "handleError", errors.append)
    monkeypatch.setattr(handler, "to_event", lambda record: 1 / 0)
    handler.handle(_record())
    assert len(errors) == 1


def test_dictconfig_builds_the_handler(dead_bootstrap: str) -> None:
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "kafka": {
                    "class": "logtide_kafka.KafkaHandler",
                    "service": "dict-svc",
                    "topic": "logs.security",
                    "bootstrap_servers": dead_bootstrap,
                    "producer_config": {"linger.ms": 5},
                    "level": "WARNING",
                }
            },
            "loggers": {"dictcfg": {"handlers": ["kafka"], "propagate": False}},
        }
    )
    logger = logging.getLogger("dictcfg")
    (handler,) = logger.handlers
    assert isinstance(handler, KafkaHandler)
    assert (handler.service, handler.topic, handler.level) == (
        "dict-svc",
        "logs.security",
        logging.WARNING,
    )
    assert handler.producer is get_producer(dead_bootstrap, {"linger.ms": 5})
    logger.info("below the handler's level")
    logger.warning("sent")
    assert handler.stats().enqueued == 1
    logger.removeHandler(handler)
    handler.producer.close(0)
