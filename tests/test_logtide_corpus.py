"""Every event the producer writes is stored by the real LogTide as it is, bad input included.

The whole bad-input corpus (``tests/corpus/bad_input.py``: huge and odd values, cycles, lone
surrogates, NUL, events cut to the size limit...) is logged through ``KafkaHandler`` to a
real broker; the values the producer wrote are posted to the real LogTide unchanged, in one
batch, and read back through its query API.  Runs only when a real LogTide is reachable.
"""

from __future__ import annotations

import http.client
import logging
import urllib.parse
import urllib.request
import uuid
from typing import Any

import orjson
import pytest
from conftest import LogTide
from corpus.bad_input import MESSAGE_MAX_BYTES, cases_for

from logtide_kafka import KafkaHandler
from logtide_kafka._contract import INGEST_PATH
from logtide_kafka.pipeline._ingest import encode_body
from logtide_kafka.testing import event_problems, read_events

pytestmark = pytest.mark.logtide
# The corpus's size limit, so its cases that are cut to fit are cut here too.
CONFIG = {"message.max.bytes": MESSAGE_MAX_BYTES}


def _stored(logtide: LogTide, service: str) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"service": service, "limit": 1000})
    request = urllib.request.Request(
        f"{logtide.api_url}/api/v1/logs?{query}", headers={"X-API-Key": logtide.api_key}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        rows: list[dict[str, Any]] = orjson.loads(response.read())["logs"]
    return rows


def _comparable(event: dict[str, Any]) -> bytes:
    """What LogTide returns of an event, in a canonical form (sorted keys)."""
    kept = {key: event.get(key) for key in ("time", "service", "level", "message", "metadata")}
    kept["trace_id"] = event.get("trace_id", event.get("traceId"))
    return orjson.dumps(kept, option=orjson.OPT_SORT_KEYS)


def test_every_event_of_the_bad_input_corpus_is_stored_as_written(
    logtide: LogTide, kafka_bootstrap: str, topic: str
) -> None:
    # ``logtide`` first: without a server the test skips before a broker is started.
    service = f"corpus-{uuid.uuid4().hex[:10]}"
    logger = logging.getLogger(f"corpus.{service}")
    logger.setLevel(1)
    logger.propagate = False
    delivered = 0
    for case in cases_for("handler"):
        if not case.outcome.delivered:
            continue
        handler = KafkaHandler(service, topic, kafka_bootstrap, producer_config=CONFIG)
        if case.formatter is not None:
            handler.setFormatter(case.formatter())
        logger.addHandler(handler)
        try:
            case.run_handler_call(logger)
        finally:
            logger.removeHandler(handler)
        delivered += 1
    assert handler.producer.flush(30) == 0
    written = read_events(kafka_bootstrap, topic, count=delivered)
    assert all(event_problems(event.value) == [] for event in written)

    parts = urllib.parse.urlsplit(logtide.api_url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    try:
        headers = {"Content-Type": "application/json", "X-API-Key": logtide.api_key}
        connection.request("POST", INGEST_PATH, encode_body([e.raw for e in written]), headers)
        response = connection.getresponse()
        answer = orjson.loads(response.read())
    finally:
        connection.close()
    assert response.status == 200, answer
    assert answer["received"] == delivered

    stored = sorted(_comparable(row) for row in _stored(logtide, service))
    assert stored == sorted(_comparable(event.value) for event in written)
