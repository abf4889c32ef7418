"""Context: OpenTelemetry trace ids and static fields, on every path."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import textwrap

import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider

import logtide_kafka
from logtide_kafka import KafkaHandler
from logtide_kafka.producer._context import current_trace_ids
from logtide_kafka.structlog import KafkaProcessor
from logtide_kafka.testing import event_problems, read_events

TRACER = TracerProvider().get_tracer("logtide-kafka-tests")


def test_no_span_no_ids() -> None:
    assert current_trace_ids() is None
    with TRACER.start_as_current_span("op") as span:
        context = span.get_span_context()
        assert current_trace_ids() == (f"{context.trace_id:032x}", f"{context.span_id:016x}")
    assert current_trace_ids() is None


def test_a_broken_opentelemetry_never_breaks_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.trace", object())
    assert current_trace_ids() is None


def test_opentelemetry_is_never_imported_by_the_library() -> None:
    code = textwrap.dedent(
        """
        import sys
        import logging
        import logtide_kafka, logtide_kafka.structlog
        handler = logtide_kafka.KafkaHandler("svc", bootstrap_servers="127.0.0.1:1")
        handler.to_event(logging.makeLogRecord({"msg": "m", "levelno": 20}))
        processor = logtide_kafka.structlog.KafkaProcessor("svc", bootstrap_servers="127.0.0.1:1")
        processor.to_event(None, "info", {"event": "m"})
        print(sorted(name for name in sys.modules if name.startswith("opentelemetry")))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_trace_ids_and_static_fields_on_every_path(
    kafka_bootstrap: str, topic: str, service: str, logger: logging.Logger
) -> None:
    fields = {"environment": "staging", "version": "1.4.2", "region": "eu-west-1"}
    handler = KafkaHandler(service, topic=topic, bootstrap_servers=kafka_bootstrap, fields=fields)
    logger.addHandler(handler)
    logtide_kafka.configure(kafka_bootstrap, topic=topic, fields=fields)
    processor = KafkaProcessor(
        service, topic=topic, bootstrap_servers=kafka_bootstrap, fields=fields
    )
    log = structlog.wrap_logger(
        structlog.PrintLogger(io.StringIO()),
        processors=[processor, structlog.processors.KeyValueRenderer()],
    )
    given = "4bf92f3577b34da6a3ce929d0e0e4736"
    with TRACER.start_as_current_span("checkout") as span:
        context = span.get_span_context()
        logger.info("handler in span")
        logtide_kafka.send_log("info", "send_log in span", service)
        log.info("structlog in span")
        # Values on the event win over the span and over static fields.
        logger.info("explicit", extra={"trace_id": given, "region": "us-east-1"})
    logger.info("handler outside")
    logtide_kafka.send_log("info", "send_log outside", service)
    log.info("structlog outside")
    handler.flush()
    logtide_kafka.flush(10)
    events = {e.value["message"]: e.value for e in read_events(kafka_bootstrap, topic, count=7)}
    ids = (f"{context.trace_id:032x}", f"{context.span_id:016x}")
    for message, event in events.items():
        assert event_problems(event) == [], event
        if message == "explicit":
            assert (event["trace_id"], "span_id" in event) == (given, False)
            assert event["metadata"]["region"] == "us-east-1"
            assert event["metadata"]["environment"] == "staging"
        elif "in span" in message:
            assert (event["trace_id"], event["span_id"]) == ids, message
            assert {k: event["metadata"][k] for k in fields} == fields, message
        else:
            assert "trace_id" not in event, message
            assert "span_id" not in event, message
            assert {k: event["metadata"][k] for k in fields} == fields, message


def test_trace_context_can_be_turned_off(dead_bootstrap: str) -> None:
    handler = KafkaHandler("svc", bootstrap_servers=dead_bootstrap, trace_context=False)
    with TRACER.start_as_current_span("op"):
        event = handler.to_event(logging.makeLogRecord({"msg": "m", "levelno": 20}))
    assert "trace_id" not in event
