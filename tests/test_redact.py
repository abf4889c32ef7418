"""Redaction: secret values never reach Kafka, whichever path they take."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import orjson
import pytest

import logtide_kafka
from logtide_kafka import DEFAULT_REDACT_KEYS, KafkaHandler
from logtide_kafka._redact import REDACTED, Redactor
from logtide_kafka.testing import read_events


def _redacted(metadata: dict[str, Any], keys: tuple[str, ...] = DEFAULT_REDACT_KEYS) -> Any:
    Redactor(keys).redact(metadata)
    return metadata


def test_every_default_key_in_any_case() -> None:
    metadata = {
        key.upper() if n % 2 else key.title(): "s3cr3t" for n, key in enumerate(DEFAULT_REDACT_KEYS)
    }
    assert set(_redacted(dict(metadata)).values()) == {REDACTED}
    assert len(DEFAULT_REDACT_KEYS) == 9


def test_nested_dicts_lists_tuples_and_dataclasses() -> None:
    @dataclass
    class Login:
        user: str
        password: str

    metadata: dict[str, Any] = {
        "user": "bob",
        "request": {"headers": {"Authorization": "Bearer x", "Accept": "*/*"}, "id": 3},
        "attempts": [{"token": "t1"}, {"ok": True}, "plain", ({"Set-Cookie": "c"},)],
        "login": Login("bob", "hunter2"),
        "proxy": MappingProxyType({"apikey": "k"}),
    }
    out = orjson.loads(orjson.dumps(_redacted(metadata)))
    assert out == {
        "user": "bob",
        "request": {"headers": {"Authorization": REDACTED, "Accept": "*/*"}, "id": 3},
        "attempts": [{"token": REDACTED}, {"ok": True}, "plain", [{"Set-Cookie": REDACTED}]],
        "login": {"user": "bob", "password": REDACTED},
        "proxy": {"apikey": REDACTED},
    }


def test_the_applications_objects_are_left_untouched() -> None:
    headers = {"Authorization": "Bearer x"}
    attempts = [{"token": "t1"}]
    metadata = {"headers": headers, "attempts": attempts, "clean": {"a": [1, 2]}}
    before = copy.deepcopy(metadata)
    clean = metadata["clean"]
    out = _redacted(metadata)
    assert (headers, attempts) == (before["headers"], before["attempts"])
    assert out["headers"] is not headers
    assert out["clean"] is clean  # nothing to redact: not copied


def test_only_whole_keys_match_and_values_are_not_scanned() -> None:
    metadata = {"token_count": 3, "csrf_token": "x", "note": "password=hunter2", "keys": ["token"]}
    assert _redacted(dict(metadata)) == metadata


def test_configurable_keys_and_disabling() -> None:
    assert _redacted({"SSN": 1, "password": 2}, ("ssn",)) == {"SSN": REDACTED, "password": 2}
    assert _redacted({"password": 2}, ()) == {"password": 2}
    assert not Redactor(()).keys
    # A single string is one key, not its letters.
    assert Redactor("ssn").keys == frozenset({"ssn"})


def test_deep_wide_and_self_referencing_input_is_bounded() -> None:
    deep: dict[str, Any] = {"password": "hunter2"}
    for _ in range(100):
        deep = {"next": deep}
    cyclic: dict[str, Any] = {"token": "t"}
    cyclic["self"] = cyclic
    wide: list[Any] = [{"n": n} for n in range(20_000)]
    out = _redacted({"deep": deep, "cyclic": cyclic, "wide": wide, "odd": {1: "a", None: "b"}})
    text = orjson.dumps(out, option=orjson.OPT_NON_STR_KEYS, default=str).decode()
    assert "<nested too deep>" in text
    assert "<too large to redact>" in text
    assert '"cyclic":{"token":"[REDACTED]","self":"<cycle>"}' in text
    assert "hunter2" not in text


# -- against the broker: both paths ---------------------------------------------------


def test_secrets_never_reach_kafka(
    kafka_bootstrap: str, topic: str, service: str, logger: logging.Logger
) -> None:
    logger.addHandler(
        KafkaHandler(
            service, topic=topic, bootstrap_servers=kafka_bootstrap, redact=["password", "pin"]
        )
    )
    logger.warning("login", extra={"Password": "hunter2", "card": {"PIN": "1234", "last4": "4242"}})
    logtide_kafka.configure(kafka_bootstrap, topic=topic)
    logtide_kafka.send_log(
        "info",
        "call",
        service,
        headers={"Authorization": "Bearer abc"},
        cookies=[{"cookie": "c=1"}],
    )
    logger.handlers[0].flush()
    logtide_kafka.flush(10)
    events = {e.value["message"]: e for e in read_events(kafka_bootstrap, topic, count=2)}
    assert events["login"].value["metadata"]["Password"] == REDACTED
    assert events["login"].value["metadata"]["card"] == {"PIN": REDACTED, "last4": "4242"}
    assert events["call"].value["metadata"]["headers"] == {"Authorization": REDACTED}
    assert events["call"].value["metadata"]["cookies"] == [{"cookie": REDACTED}]
    for event in events.values():
        for secret in (b"hunter2", b"1234", b"Bearer abc", b"c=1"):
            assert secret not in event.raw


@pytest.mark.parametrize("redact", [(), ["other"]])
def test_redaction_can_be_turned_off(dead_bootstrap: str, redact: list[str]) -> None:
    handler = KafkaHandler("svc", bootstrap_servers=dead_bootstrap, redact=redact)
    record = logging.makeLogRecord({"msg": "m", "levelno": 20, "password": "visible"})
    assert handler.to_event(record)["metadata"]["password"] == "visible"


class _Unreadable(dict[str, object]):
    def items(self) -> Any:
        raise RuntimeError("no")

    def __iter__(self) -> Any:
        raise RuntimeError("no")


def test_a_container_that_cannot_be_read_is_replaced_not_raised() -> None:
    metadata: dict[str, object] = {"odd": _Unreadable(a=1), "ok": [_Unreadable()]}
    Redactor(DEFAULT_REDACT_KEYS).redact(metadata)
    assert metadata == {"odd": "<unreadable _Unreadable>", "ok": ["<unreadable _Unreadable>"]}
