"""The two web-app filters of ``logtide_kafka.filters``: what they add to a record and so
to the event's metadata.  No broker needed."""

from __future__ import annotations

import asyncio
import logging
import logging.config
from collections.abc import Iterator

import pytest
import structlog

from logtide_kafka import KafkaHandler
from logtide_kafka.filters import ACCESS_FIELDS, StructlogContextFilter, UvicornAccessFilter


@pytest.fixture(autouse=True)
def _clean_context() -> Iterator[None]:
    structlog.contextvars.clear_contextvars()
    yield
    structlog.contextvars.clear_contextvars()


@pytest.fixture
def handler(dead_bootstrap: str) -> KafkaHandler:
    return KafkaHandler("api", bootstrap_servers=dead_bootstrap)


def _record(
    name: str = "shop", msg: str = "m", args: tuple[object, ...] = (), **extra: object
) -> logging.LogRecord:
    record = logging.getLogger(name).makeRecord(name, logging.INFO, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def test_context_variables_reach_the_metadata(handler: KafkaHandler) -> None:
    handler.addFilter(StructlogContextFilter())
    structlog.contextvars.bind_contextvars(request_id="req-1", user_id=7)
    record = _record()
    assert handler.filter(record)
    metadata = handler.to_event(record)["metadata"]
    assert (metadata["request_id"], metadata["user_id"]) == ("req-1", 7)


def test_extra_and_record_attributes_win_over_the_context(handler: KafkaHandler) -> None:
    context_filter = StructlogContextFilter()
    structlog.contextvars.bind_contextvars(request_id="ctx", name="ctx", msg="ctx", levelno=1)
    record = _record(request_id="extra")
    assert context_filter.filter(record)
    assert (record.__dict__["request_id"], record.name, record.msg, record.levelno) == (
        "extra",
        "shop",
        "m",
        logging.INFO,
    )
    event = handler.to_event(record)
    assert event["message"] == "m"
    assert event["metadata"]["request_id"] == "extra"


def test_without_context_the_record_is_unchanged() -> None:
    record = _record()
    before = dict(record.__dict__)
    assert StructlogContextFilter().filter(record)
    assert record.__dict__ == before


def test_each_task_sees_its_own_context(handler: KafkaHandler) -> None:
    context_filter = StructlogContextFilter()

    async def request(request_id: str) -> logging.LogRecord:
        structlog.contextvars.bind_contextvars(request_id=request_id)
        await asyncio.sleep(0)  # the other request binds its id meanwhile
        record = _record()
        context_filter.filter(record)
        return record

    async def both() -> list[logging.LogRecord]:
        return list(await asyncio.gather(request("a"), request("b")))

    first, second = asyncio.run(both())
    assert (first.__dict__["request_id"], second.__dict__["request_id"]) == ("a", "b")


def test_a_failing_context_never_costs_the_record() -> None:
    context_filter = StructlogContextFilter()

    def broken() -> dict[str, object]:
        raise RuntimeError("no context")

    context_filter._get = broken
    record = _record()
    assert context_filter.filter(record) is True


# -- uvicorn.access ------------------------------------------------------------------


def _access_record(status: int = 200) -> logging.LogRecord:
    """A record as uvicorn's h11 and httptools protocols log each response."""
    return _record(
        "uvicorn.access",
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:51234", "GET", "/items/7?full=1", "1.1", status),
    )


def test_access_records_get_method_path_status_and_client(handler: KafkaHandler) -> None:
    handler.addFilter(UvicornAccessFilter())
    record = _access_record(404)
    assert handler.filter(record)
    event = handler.to_event(record)
    assert event["message"] == '127.0.0.1:51234 - "GET /items/7?full=1 HTTP/1.1" 404'
    metadata = event["metadata"]
    assert {key: metadata[key] for key in ACCESS_FIELDS} == {
        "client": "127.0.0.1:51234",
        "method": "GET",
        "path": "/items/7?full=1",
        "http_version": "1.1",
        "status": 404,
    }


@pytest.mark.parametrize(
    "record",
    [
        _record("shop", "%s %s %s %s %s", ("a", "b", "c", "d", "e")),  # not uvicorn.access
        _record("uvicorn.access", "%s", ("only one",)),  # not the access line's arguments
        _record("uvicorn.access", "no args"),
    ],
)
def test_other_records_pass_unchanged(record: logging.LogRecord) -> None:
    before = dict(record.__dict__)
    assert UvicornAccessFilter().filter(record) is True
    assert record.__dict__ == before


def test_both_filters_from_dictconfig(dead_bootstrap: str) -> None:
    logger = logging.getLogger("uvicorn.access")
    saved = logger.handlers[:], logger.propagate, logger.level
    try:
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "filters": {
                    "context": {"()": "logtide_kafka.filters.StructlogContextFilter"},
                    "access": {"()": "logtide_kafka.filters.UvicornAccessFilter"},
                },
                "handlers": {
                    "kafka": {
                        "class": "logtide_kafka.KafkaHandler",
                        "service": "api",
                        "bootstrap_servers": dead_bootstrap,
                        "filters": ["context", "access"],
                    }
                },
                "loggers": {"uvicorn.access": {"handlers": ["kafka"], "propagate": False}},
            }
        )
        (kafka,) = logger.handlers
        assert isinstance(kafka, KafkaHandler)
        structlog.contextvars.bind_contextvars(request_id="req-9")
        record = _access_record()
        assert kafka.filter(record)
        metadata = kafka.to_event(record)["metadata"]
        assert (metadata["request_id"], metadata["status"]) == ("req-9", 200)
        kafka.close()
    finally:
        logger.handlers[:], logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])
