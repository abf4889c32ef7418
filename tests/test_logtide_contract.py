"""Parity: the same requests to the real LogTide and to ``tests/logtide_server.py``.

Runs only when a real LogTide is reachable (the ``logtide`` fixture; skipped with the reason
otherwise).  Status codes and body shapes (keys, recursively) must be equal; zod's
``details`` must be equal word for word, since the shipper puts them in dead-letter reasons.
The contract module is then right too: the test server takes its rules from it.
"""

from __future__ import annotations

import http.client
import json
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import LogTide
from logtide_server import LogTideServer

from logtide_kafka._contract import INGEST_PATH, MAX_BATCH, MAX_BODY_BYTES

pytestmark = pytest.mark.logtide

EMOJI = "\U0001f600"
JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


def post(url: str, body: bytes, headers: dict[str, str]) -> Answer:
    """One POST to the ingest route; no header is added but ``Content-Length``."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        connection.request("POST", INGEST_PATH, body=body, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        names = {name.lower(): value for name, value in response.getheaders()}
        return Answer(response.status, names, json.loads(raw) if raw else None)
    finally:
        connection.close()


def post_too_large(url: str, key: str) -> tuple[Answer, bool]:
    """A ``Content-Length`` over the limit with only a little of the body sent: the answer
    and whether the server then closed the connection."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "", parts.port or 80), timeout=30) as sock:
        head = (
            f"POST {INGEST_PATH} HTTP/1.1\r\nHost: {parts.netloc}\r\nX-API-Key: {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"logs":[' + b" " * 1000)
        data = b""
        while b"\r\n\r\n" not in data or not _complete(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        header_text, _, payload = data.partition(b"\r\n\r\n")
        lines = header_text.decode().split("\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:])
        }
        sock.settimeout(5)
        try:
            closed = sock.recv(65536) == b""
        except ConnectionResetError:
            closed = True
        return Answer(int(lines[0].split()[1]), headers, json.loads(payload)), closed


def _complete(data: bytes) -> bool:
    head, _, payload = data.partition(b"\r\n\r\n")
    for line in head.decode().split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return len(payload) >= int(value)
    return False


def shape(value: Any) -> Any:
    """The keys of a JSON value, recursively (lists by their first item)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def entry(service: str, **changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "time": "2025-11-25T08:30:03.214Z",
        "service": service,
        "level": "info",
        "message": "parity",
        "metadata": {"hostname": "h"},
    }
    fields.update(changes)
    return {key: value for key, value in fields.items() if value is not ...}


def body(*entries: dict[str, Any]) -> bytes:
    return json.dumps({"logs": list(entries)}).encode()


Request = Callable[[str, str], tuple[bytes, dict[str, str]]]  # (service, key) -> request


def case(payload: bytes | Callable[[str], bytes], **headers: str) -> Request:
    def build(service: str, key: str) -> tuple[bytes, dict[str, str]]:
        data = payload(service) if callable(payload) else payload
        sent = {**JSON, "X-API-Key": key, **headers}
        return data, {name: value for name, value in sent.items() if value != "-"}

    return build


CASES: dict[str, Request] = {
    "valid batch": case(lambda s: body(entry(s), entry(s, level="critical", message="two"))),
    "valid: any trace_id, upper-case span_id, no metadata": case(
        lambda s: body(entry(s, trace_id="not hex", span_id="ABCDEF0123456789", metadata=...))
    ),
    "valid: 50 emoji service, time without seconds": case(
        lambda s: body(entry(EMOJI * 50, time="2025-11-25T08:30Z"))
    ),
    "schema errors of each kind": case(
        lambda s: body(
            entry(s),
            entry(""),
            entry(s, level="warning"),
            entry(s, message=""),
            entry(s, metadata=[1]),
            entry(s, trace_id=7),
            entry(s, span_id=None),
            entry(s, time=1_700_000_000),
            {},
        )
    ),
    "time with +02:00": case(lambda s: body(entry(s, time="2025-11-25T10:30:03.214+02:00"))),
    "time on 2025-02-29": case(lambda s: body(entry(s, time="2025-02-29T08:30:03Z"))),
    "span_id of 17 hex": case(lambda s: body(entry(s, span_id="0123456789abcdef0"))),
    "service of 51 emoji (102 UTF-16 units)": case(lambda s: body(entry(EMOJI * 51))),
    "NUL in the message": case(lambda s: body(entry(s, message="a\x00b"))),
    "NUL in a metadata key": case(lambda s: body(entry(s, metadata={"k\x00": 1}))),
    "no entries": case(b'{"logs":[]}'),
    "too many entries": case(lambda s: body(*[entry(s)] * (MAX_BATCH + 1))),
    "no logs field": case(b'{"entries":[]}'),
    "logs not an array": case(b'{"logs":{"a":1}}'),
    "an entry not an object": case(b'{"logs":[null]}'),
    "body an array": case(b"[1]"),
    "body not JSON": case(b"{bad"),
    "empty body": case(b""),
    "no Content-Type": case(lambda s: body(entry(s)), **{"Content-Type": "-"}),
    "Content-Type text/html": case(lambda s: body(entry(s)), **{"Content-Type": "text/html"}),
    "wrong key": case(lambda s: body(entry(s)), **{"X-API-Key": "lp_wrong"}),
    "no key": case(lambda s: body(entry(s)), **{"X-API-Key": "-"}),
}
RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


@pytest.fixture(scope="module")
def fake(logtide: LogTide) -> Iterator[LogTideServer]:
    with LogTideServer(api_key=logtide.api_key) as server:
        yield server


@pytest.mark.parametrize("name", list(CASES))
def test_the_test_server_answers_as_logtide_does(
    name: str, logtide: LogTide, fake: LogTideServer
) -> None:
    service = f"parity-{uuid.uuid4().hex[:8]}"
    data, headers = CASES[name](service, logtide.api_key)
    real = post(logtide.api_url, data, headers)
    ours = post(fake.url, data, headers)
    assert ours.status == real.status, (real.body, ours.body)
    assert shape(ours.body) == shape(real.body), (real.body, ours.body)
    if isinstance(real.body, dict):
        for same in ("code", "error", "details", "received"):
            assert ours.body.get(same) == real.body.get(same), same
        if real.status in (401, 413, 415, 500) or "code" in real.body:
            assert ours.body.get("message") == real.body.get("message")
    # Rate-limit headers on every answer but a 401 (the key is checked first).
    for header in RATE_HEADERS:
        assert (header in ours.headers) == (header in real.headers), header
    assert "rejected" not in (real.body or {})


def test_413_is_decided_from_content_length_and_the_connection_closed(
    logtide: LogTide, fake: LogTideServer
) -> None:
    real, real_closed = post_too_large(logtide.api_url, logtide.api_key)
    ours, ours_closed = post_too_large(fake.url, logtide.api_key)
    assert real.status == ours.status == 413
    assert ours.body == real.body
    assert real.headers.get("connection") == ours.headers.get("connection") == "close"
    assert real_closed
    assert ours_closed
    for header in RATE_HEADERS:
        assert header in ours.headers
        assert header in real.headers


def test_rate_limit_answers_alike(logtide: LogTide) -> None:
    # The real server's limit is shared by every client of the machine: not exhausted
    # here.  Its headers on a normal answer, and the test server's 429 past a small limit.
    service = f"parity-{uuid.uuid4().hex[:8]}"
    real = post(logtide.api_url, body(entry(service)), {**JSON, "X-API-Key": logtide.api_key})
    with LogTideServer(api_key=logtide.api_key, rate_limit=2) as server:
        answers = [
            post(server.url, body(entry(service)), {**JSON, "X-API-Key": logtide.api_key})
            for _ in range(3)
        ]
    assert [a.status for a in answers] == [200, 200, 429]
    assert answers[0].headers["x-ratelimit-limit"] == "2"
    assert [a.headers["x-ratelimit-remaining"] for a in answers] == ["1", "0", "0"]
    assert 0 < int(answers[2].headers["retry-after"]) <= 60
    assert answers[2].body == {
        "statusCode": 429,
        "error": "Too Many Requests",
        "message": "Rate limit exceeded, retry in 1 minute",
    }
    assert real.status == 200
    assert int(real.headers["x-ratelimit-limit"]) >= 1
    assert 0 <= int(real.headers["x-ratelimit-reset"]) <= 60
