"""The structlog processor: the same events as the stdlib handler, from structlog chains."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import structlog
from structlog.typing import EventDict, Processor

from logtide_kafka import KafkaHandler
from logtide_kafka._event import HOSTNAME, format_time
from logtide_kafka.structlog import KafkaProcessor
from logtide_kafka.testing import event_problems, read_events

CALL_SITE = {"function", "line", "thread", "process"}  # only stdlib records carry these


@pytest.fixture
def processor(dead_bootstrap: str) -> Iterator[KafkaProcessor]:
    processor = KafkaProcessor("svc", bootstrap_servers=dead_bootstrap)
    yield processor
    processor.producer.close(0)  # its broker is down: nothing to wait for


@pytest.fixture(autouse=True)
def _clean_contextvars() -> Iterator[None]:
    structlog.contextvars.clear_contextvars()
    yield
    structlog.contextvars.clear_contextvars()


def _boom() -> ValueError:
    try:
        raise ValueError("boom")
    except ValueError as exc:
        return exc


def test_keys_map_to_the_event(processor: KafkaProcessor) -> None:
    event_dict: EventDict = {
        "event": "order placed",
        "level": "warning",
        "timestamp": "2026-11-25T08:30:03.214999Z",
        "order_id": 7,
        "nested": {"a": [1]},
    }
    event = processor.to_event(None, "info", event_dict)
    assert event == {
        "time": "2026-11-25T08:30:03.214Z",
        "service": "svc",
        "level": "warn",  # the level key wins over the method name
        "message": "order placed",
        "metadata": {"hostname": HOSTNAME, "order_id": 7, "nested": {"a": [1]}},
    }
    assert event_problems(event) == []


@pytest.mark.parametrize(
    ("method", "event_dict", "level", "extra"),
    [
        ("warning", {}, "warn", {}),
        ("exception", {}, "error", {}),
        ("msg", {}, "info", {}),  # PrintLogger.msg: no level of its own
        ("info", {"level": "fatal"}, "critical", {}),
        ("info", {"level": "loud"}, "info", {"level_name": "loud"}),
        ("info", {"level": 40}, "error", {}),
    ],
)
def test_levels(
    processor: KafkaProcessor, method: str, event_dict: EventDict, level: str, extra: dict[str, str]
) -> None:
    event = processor.to_event(None, method, {"event": "e", **event_dict})
    assert event is not None
    assert (event["level"], event["metadata"]) == (level, {"hostname": HOSTNAME, **extra})


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2026-11-25T08:30:03.999999Z", "2026-11-25T08:30:03.999Z"),  # TimeStamper iso, utc
        ("2026-11-25T08:30:03Z", "2026-11-25T08:30:03.000Z"),  # utc, no microseconds
        ("2026-11-25T09:30:03.5+01:00", "2026-11-25T08:30:03.500Z"),
        (1795595403.25, "2026-11-25T08:30:03.250Z"),  # TimeStamper(fmt=None)
        (datetime(2026, 11, 25, 8, 30, 3, tzinfo=UTC), "2026-11-25T08:30:03.000Z"),
    ],
)
def test_timestamps_are_reused(processor: KafkaProcessor, timestamp: object, expected: str) -> None:
    event = processor.to_event(None, "info", {"event": "e", "timestamp": timestamp})
    assert event is not None
    assert event["time"] == expected
    assert "timestamp" not in event["metadata"]


@pytest.mark.parametrize(
    "timestamp",
    [
        "2026-11-25T08:30:03.123000",  # TimeStamper(fmt="iso", utc=False): local time
        "2026-11-25 08:30:03",  # TimeStamper(fmt="%Y-%m-%d %H:%M:%S"): UTC by default
        datetime(2026, 11, 25, 8, 30, 3),
    ],
)
def test_a_time_without_offset_is_not_guessed(processor: KafkaProcessor, timestamp: object) -> None:
    before = time.time()
    event = processor.to_event(None, "info", {"event": "e", "timestamp": timestamp})
    assert event is not None
    assert event["metadata"]["timestamp"] == timestamp  # kept as it was
    assert format_time(before) <= event["time"] <= format_time(time.time())


def test_an_unreadable_timestamp_is_kept_in_metadata(processor: KafkaProcessor) -> None:
    event = processor.to_event(None, "info", {"event": "e", "timestamp": "yesterday"})
    assert event is not None
    assert event["metadata"]["timestamp"] == "yesterday"
    assert event_problems(event) == []


def test_every_exception_form_gives_the_stdlib_fields(processor: KafkaProcessor) -> None:
    try:
        raise ValueError("boom")
    except ValueError as exc:  # exc_info=True reads the exception being handled
        stack = logging.Formatter().formatException((ValueError, exc, exc.__traceback__))
        forms: list[EventDict] = [
            {"exc_info": exc},
            {"exc_info": (ValueError, exc, exc.__traceback__)},
            {"exc_info": True},
            structlog.processors.format_exc_info(None, "error", {"exc_info": exc}),
        ]
        events = [processor.to_event(None, "error", {"event": "e", **form}) for form in forms]
    expected = {"type": "ValueError", "message": "boom", "stack": stack}
    for form, event in zip(forms, events, strict=True):
        assert event is not None
        assert event["metadata"]["exception"] == expected, form
    event = processor.to_event(None, "error", {"event": "e", "exc_info": True})  # none handled
    assert event is not None
    assert "exception" not in event["metadata"]


def test_exception_text_with_a_module_and_a_multiline_message(processor: KafkaProcessor) -> None:
    text = 'Traceback (most recent call last):\n  File "a.py", line 1, in f\n    g()\nshop.E: a\nb'
    event = processor.to_event(None, "error", {"event": "e", "exception": text})
    assert event is not None
    assert event["metadata"]["exception"] == {"type": "E", "message": "a\nb", "stack": text}


def test_dict_tracebacks_are_rendered(processor: KafkaProcessor) -> None:
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise RuntimeError("outer") from inner
    except RuntimeError as exc:
        event_dict = structlog.processors.dict_tracebacks(None, "error", {"exc_info": exc})
    event = processor.to_event(None, "error", {"event": "e", **event_dict})
    assert event is not None
    exception = event["metadata"]["exception"]
    assert (exception["type"], exception["message"]) == ("RuntimeError", "outer")
    stack = exception["stack"]
    assert stack.index("KeyError: 'inner'") < stack.index("direct cause") < stack.index("outer")
    assert "in test_dict_tracebacks_are_rendered" in stack


def test_the_event_dict_is_returned_unchanged(processor: KafkaProcessor) -> None:
    nested = {"password": "hunter2"}
    event_dict: EventDict = {"event": "e", "password": "x", "nested": nested, "exc_info": True}
    before = dict(event_dict)
    assert processor(None, "info", event_dict) is event_dict
    assert event_dict == before
    assert nested == {"password": "hunter2"}  # redaction copies, never edits


def test_the_processor_never_raises(processor: KafkaProcessor) -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    event_dict: EventDict = {"event": Unprintable(), "level": Unprintable()}
    assert processor(None, "info", event_dict) is event_dict
    event = processor.to_event(None, "info", event_dict)
    assert event is not None
    assert event["message"] == "<unprintable Unprintable>"
    assert processor.stats().failed == 0  # a placeholder, not a failure
    broken: Any = object()  # not even a dict
    assert processor(None, "info", broken) is broken
    assert processor.stats().failed == 1


def test_the_librarys_own_loggers_are_never_sent(processor: KafkaProcessor) -> None:
    client = logging.getLogger("logtide_kafka.client")
    assert processor.to_event(client, "info", {"event": "e"}) is None
    assert processor.to_event(None, "info", {"event": "e", "logger": "logtide_kafka"}) is None
    assert processor.to_event(None, "info", {"event": "e", "logger": "logtide_kafkaesque"})


def test_importing_without_structlog_works() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["structlog"] = None  # makes `import structlog` fail
        import logtide_kafka
        from logtide_kafka.structlog import KafkaProcessor
        processor = KafkaProcessor("svc", bootstrap_servers="127.0.0.1:1")
        event = processor.to_event(None, "info", {"event": "no structlog here"})
        assert event["message"] == "no structlog here", event
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.strip() == "ok", result.stderr


# -- against the broker: parity with the stdlib handler ------------------------------


def _same_content(
    stdlib_event: dict[str, Any], structlog_event: dict[str, Any], call_site: set[str]
) -> None:
    """Field by field: equal, except the time (logged a moment apart) and the call-site
    fields only stdlib records have."""
    assert set(stdlib_event) == set(structlog_event)
    for field, value in stdlib_event.items():
        if field == "time":
            assert abs(_epoch(value) - _epoch(structlog_event[field])) < 5
        elif field == "metadata":
            assert set(value) - set(structlog_event["metadata"]) == call_site
            for key, item in structlog_event["metadata"].items():
                assert value[key] == item, key
        else:
            assert value == structlog_event[field], field


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_structlog_and_stdlib_events_match(
    kafka_bootstrap: str, topic: str, service: str, logger: logging.Logger
) -> None:
    handler = KafkaHandler(service, topic=topic, bootstrap_servers=kafka_bootstrap)
    logger.addHandler(handler)
    chain: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        KafkaProcessor(service, topic=topic, bootstrap_servers=kafka_bootstrap),
        structlog.processors.JSONRenderer(),
    ]
    out = io.StringIO()
    # A stand-alone logger of the same name, outside the hierarchy: add_logger_name gives
    # the same name as the stdlib record's, and the handler above never sees its output.
    stdlib_logger = logging.Logger(logger.name)
    stdlib_logger.addHandler(logging.StreamHandler(out))
    log = structlog.wrap_logger(
        stdlib_logger, processors=chain, wrapper_class=structlog.stdlib.BoundLogger
    )
    exc = _boom()
    structlog.contextvars.bind_contextvars(request_id="req-1")
    content = {"request_id": "req-1", "order": {"id": 7, "token": "t"}}
    logger.error("payment failed", exc_info=exc, extra=content)
    log.error("payment failed", exc_info=exc, order={"id": 7, "token": "t"})
    handler.flush()
    events = read_events(kafka_bootstrap, topic, count=2)
    assert {e.key for e in events} == {service.encode()}
    assert len({e.partition for e in events}) == 1
    by_path = {"function" in e.value["metadata"]: e.value for e in events}
    stdlib_event, structlog_event = by_path[True], by_path[False]
    for event in by_path.values():
        assert event_problems(event) == []
        assert event["metadata"]["order"]["token"] == "[REDACTED]"
        assert event["metadata"]["exception"]["message"] == "boom"
    _same_content(stdlib_event, structlog_event, CALL_SITE)
    # The renderer downstream saw the event dict as it was, secrets included.
    rendered = orjson.loads(out.getvalue())
    assert rendered["order"]["token"] == "t"
    assert rendered["request_id"] == "req-1"


def test_processor_formatter_sends_structlog_and_foreign_records(
    kafka_bootstrap: str, topic: str, service: str, logger: logging.Logger
) -> None:
    kafka = KafkaProcessor(service, topic=topic, bootstrap_servers=kafka_bootstrap)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
    ]
    out = io.StringIO()
    stream = logging.StreamHandler(out)
    stream.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(allow=["cart"])],
            processors=[
                kafka,
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    logger.addHandler(stream)
    log = structlog.wrap_logger(
        logger,
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    structlog.contextvars.bind_contextvars(request_id="req-2")
    log.warning("from structlog", cart=3)
    logger.log(25, "from logging", extra={"cart": 4})  # a custom level between INFO and WARNING
    kafka.producer.flush(10)
    events = {e.value["message"]: e.value for e in read_events(kafka_bootstrap, topic, count=2)}
    common = {"hostname": HOSTNAME, "logger": logger.name, "request_id": "req-2"}
    assert events["from structlog"]["metadata"] == {**common, "cart": 3}
    assert events["from logging"]["metadata"] == {**common, "cart": 4}
    assert events["from structlog"]["level"] == "warn"
    assert events["from logging"]["level"] == "info"  # 25 rounds down, as in the handler
    assert len(out.getvalue().splitlines()) == 2  # and the console output still happens


def test_native_structlog_logger(kafka_bootstrap: str, topic: str, service: str) -> None:
    out = io.StringIO()
    log = structlog.wrap_logger(
        structlog.PrintLogger(out),
        processors=[
            structlog.contextvars.merge_contextvars,
            KafkaProcessor(service, topic=topic, bootstrap_servers=kafka_bootstrap),
            structlog.processors.KeyValueRenderer(),
        ],
    )
    structlog.contextvars.bind_contextvars(tenant="acme")
    log.bind(user="bob").info("native", category="ignored here: no such topic?")
    log.critical("second")
    KafkaProcessor(service, topic=topic, bootstrap_servers=kafka_bootstrap).producer.flush(10)
    events = read_events(kafka_bootstrap, topic, count=2)
    assert [e.value["message"] for e in events] == ["native", "second"]
    assert events[0].value["metadata"] == {
        "hostname": HOSTNAME,
        "user": "bob",
        "category": "ignored here: no such topic?",
        "tenant": "acme",
    }
    assert events[1].value["level"] == "critical"
    assert "event='native'" in out.getvalue()
