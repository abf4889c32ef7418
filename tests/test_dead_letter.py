"""The dead-letter envelope (``_dead_letter.envelope``), as ``docs/shipper.md`` shows it.
No Kafka: writing it to the topic is covered in ``test_shipper.py``."""

from __future__ import annotations

import orjson

from logtide_kafka.pipeline._dead_letter import MAX_DLQ_VALUE, envelope
from logtide_kafka.pipeline._delivery import Item
from logtide_kafka.pipeline._ingest import Source

SOURCE = Source("logs.application", 2, 41, b"checkout", 1_700_000_000_123)


def test_the_envelope_names_the_reason_the_source_and_what_logtide_was_sent() -> None:
    entry = b'{"service":"checkout","message":"m"}'
    item = Item(SOURCE, b'{"message":"m"}', entry, "LogTide answered 400: bad")
    document = orjson.loads(envelope(item, "logtide-ingest"))
    assert document["reason"] == "LogTide answered 400: bad"
    assert document["source"] == {
        "topic": "logs.application",
        "partition": 2,
        "offset": 41,
        "timestamp": 1_700_000_000_123,
        "key": "checkout",
    }
    assert document["group"] == "logtide-ingest"
    assert document["failed_at"].endswith("Z")
    assert document["value"] == '{"message":"m"}'
    assert document["value_size"] == 15
    assert document["entry"] == {"service": "checkout", "message": "m"}
    assert "value_truncated" not in document
    assert "value_encoding" not in document


def test_a_value_that_is_not_utf8_or_too_large_is_kept_readable_and_cut() -> None:
    raw = b"\xff" + b"x" * MAX_DLQ_VALUE
    document = orjson.loads(envelope(Item(SOURCE, raw, None, "not JSON"), "g"))
    assert document["value"].startswith("\\xffxxx")
    assert document["value_encoding"] == "backslashreplace"
    assert document["value_truncated"] is True
    assert document["value_size"] == len(raw)
    assert "entry" not in document


def test_a_message_without_a_value_or_key() -> None:
    item = Item(Source("logs.a", 0, 7, None, None), None, None, "empty")
    document = orjson.loads(envelope(item, "g"))
    assert document["value"] is None
    assert document["source"]["key"] is None
    assert "value_size" not in document
