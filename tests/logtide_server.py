"""A LogTide-compatible ingest server for tests: ``POST /api/v1/ingest`` with fault injection.

It answers as LogTide v0.5.0 does (``../shared/logtide/README.md`` lists the real answers;
``tests/test_logtide_contract.py`` sends the same requests to both and compares): the API
key first (401, before rate limiting), then ``x-ratelimit-*`` headers on every answer and a
429 with ``retry-after`` in seconds past the limit, 415 without a JSON ``Content-Type``,
413 decided from ``Content-Length`` (the body is not read, the connection is closed), 400
for a body that is not JSON, Fastify's shape checks, then zod's: one bad entry makes the
whole batch a 400 with zod's ``details`` (there is no partial acceptance), and U+0000
anywhere makes it a 500, as PostgreSQL refuses it.  The rules come from
``logtide_kafka._contract``; the parity test is what keeps them honest.  Every accepted entry
is recorded, so tests can count losses and duplicates by the Kafka coordinates the shipper
adds (``metadata.kafka``).

>>> with LogTideServer(api_key="k") as server:            # doctest: +SKIP
...     server.script(Scripted(500), times=3)             # next 3 requests fail
...     server.script(rate_limited(retry_after=1), times=2)
...     ...                                               # then the normal behaviour
"""

from __future__ import annotations

import collections
import json
import math
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final

from logtide_kafka._contract import (
    FORBIDDEN_CHARS,
    INGEST_PATH,
    MAX_BATCH,
    MAX_BODY_BYTES,
    QUOTA_CODE,
    entry_errors,
)

__all__ = [
    "QUOTA_CODE",
    "LogTideServer",
    "RequestLog",
    "Scripted",
    "entry_problem",
    "quota_exceeded",
    "rate_limited",
    "server_error",
]

#: LogTide's defaults: 1000 requests per minute per client (``x-ratelimit-limit``).
RATE_LIMIT: Final = 1000
RATE_WINDOW: Final = 60.0
# What PostgreSQL answers (through LogTide's 500) for U+0000 in a text or a jsonb column.
_NUL_TEXT: Final = ("22021", 'invalid byte sequence for encoding "UTF8": 0x00')
_NUL_JSONB: Final = ("22P05", "unsupported Unicode escape sequence")

Check = Callable[[dict[str, Any]], str | None]


@dataclass(frozen=True)
class Scripted:
    """A response the server gives instead of processing the request."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)
    retry_after: str | None = None
    #: Seconds to wait before answering.
    delay: float = 0.0
    #: Close the connection after answering (``connection: close``), as for a 413.
    close: bool = False


def server_error(status: int = 500, error: str = "Internal Server Error") -> Scripted:
    """A 5xx in Fastify's error shape (``error`` is the text the shipper reports)."""
    return Scripted(status, _fastify_error(status, error, error))


def rate_limited(retry_after: float | None = 1) -> Scripted:
    """A rate-limit 429 (@fastify/rate-limit's body), with ``retry-after`` seconds unless
    None."""
    header = None if retry_after is None else f"{retry_after:g}"
    message = "Rate limit exceeded, retry in 1 minute"
    return Scripted(429, _fastify_error(429, "Too Many Requests", message), retry_after=header)


def quota_exceeded() -> Scripted:
    """The monthly-quota 429 of LogTide Cloud: a ``code``, no ``retry-after`` (v0.5.0
    itself has no quota)."""
    return Scripted(429, {"error": "Monthly event quota exceeded", "code": QUOTA_CODE})


def _fastify_error(
    status: int, error: str, message: str, code: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"statusCode": status}
    if code is not None:
        body["code"] = code
    body.update(error=error, message=message)
    return body


@dataclass(frozen=True)
class RequestLog:
    """One request the server answered."""

    status: int
    #: Entries in the body (0 when it was not parsed).
    entries: int
    size: int
    at: float


class LogTideServer:
    """A threaded HTTP server on ``127.0.0.1`` speaking LogTide's ingest API.

    ``api_key``: the only key accepted (others get 401).  ``body_limit``: a larger
    ``Content-Length`` gets 413.  ``delay``: seconds to wait after accepting a batch and
    before answering (the entries are already recorded: a client killed meanwhile makes
    duplicates).  ``strict(entry)``: a reason makes the whole request a 400 in zod's shape,
    like a validation rule the client does not know.  ``rate_limit`` requests per
    ``rate_window`` seconds, then 429 (LogTide's default is 1000 a minute; here it is
    unlimited unless given, so benchmarks are not throttled, but the headers are always
    sent).  Scripted answers (:meth:`script`) come after the key check, as faults would.
    ``fault(entries)``: a response (say a 500) given instead of processing a valid batch,
    for poison-entry tests (a U+0000 gets LogTide's real 500 without it).  ``down``: when
    set, the answer to every request, before anything else (an outage).
    ``record=False`` keeps only :attr:`accepted_count` (benchmarks).

    There is no partial acceptance: a 200 stores every entry of the batch, and its body is
    ``{"received", "timestamp"}`` only.
    """

    def __init__(
        self,
        api_key: str = "test-key",
        *,
        body_limit: int = MAX_BODY_BYTES,
        delay: float = 0.0,
        strict: Check | None = None,
        rate_limit: int | None = None,
        rate_window: float = RATE_WINDOW,
        record: bool = True,
        fault: Callable[[list[dict[str, Any]]], Scripted | None] | None = None,
    ) -> None:
        self.api_key = api_key
        self.body_limit = body_limit
        self.delay = delay
        self.strict = strict
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self.record = record
        self.fault = fault
        self.down: Scripted | None = None
        self._window_start = time.monotonic()
        self._window_count = 0
        self._accepted_count = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._script: collections.deque[Scripted] = collections.deque()
        self._entries: list[dict[str, Any]] = []
        self._requests: list[RequestLog] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="logtide-test-server", daemon=True
        )

    # -- control ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> LogTideServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> LogTideServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def script(self, response: Scripted, *, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``response`` (after those queued)."""
        with self._lock:
            self._script.extend([response] * times)

    # -- what was received ------------------------------------------------------------

    @property
    def entries(self) -> list[dict[str, Any]]:
        """Every accepted entry, in arrival order (duplicates included)."""
        with self._lock:
            return list(self._entries)

    @property
    def accepted_count(self) -> int:
        """How many entries were accepted, duplicates included (kept even without record)."""
        with self._lock:
            return self._accepted_count

    @property
    def requests(self) -> list[RequestLog]:
        with self._lock:
            return list(self._requests)

    def coordinates(self) -> collections.Counter[tuple[str, int, int]]:
        """How many times each Kafka message (``metadata.kafka``) was accepted."""
        return collections.Counter(_coordinates(entry) for entry in self.entries)

    def messages(self) -> collections.Counter[str]:
        """How many times each message text was accepted."""
        return collections.Counter(entry["message"] for entry in self.entries)

    def wait_for(self, condition: Callable[[LogTideServer], bool], timeout: float) -> bool:
        """Wait until ``condition(self)`` holds (checked after every request)."""
        deadline = time.monotonic() + timeout
        while not condition(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._changed:  # a missed notification costs at most 0.2 s
                self._changed.wait(min(remaining, 0.2))
        return True

    # -- the API ------------------------------------------------------------------------

    def _rate(self) -> tuple[dict[str, str], bool]:
        """The ``x-ratelimit-*`` headers for one more request, and whether it is over."""
        limit = self.rate_limit if self.rate_limit is not None else RATE_LIMIT
        with self._lock:
            now = time.monotonic()
            if now - self._window_start >= self.rate_window:
                self._window_start, self._window_count = now, 0
            self._window_count += 1
            count = self._window_count
            reset = math.ceil(self._window_start + self.rate_window - now)
        over = self.rate_limit is not None and count > self.rate_limit
        remaining = max(0, limit - count) if self.rate_limit is not None else limit - 1
        headers = {
            "x-ratelimit-limit": str(limit),
            "x-ratelimit-remaining": str(remaining),
            "x-ratelimit-reset": str(reset),
        }
        if over:
            headers["retry-after"] = str(reset)
        return headers, over

    def _scripted(self) -> Scripted | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    def _respond(self, body: bytes) -> tuple[Scripted, int, list[dict[str, Any]]]:
        """The answer to a body that passed the key, rate-limit and size checks: the
        response, the number of entries, and those to record."""
        try:
            document = json.loads(body)
        except ValueError as exc:  # Fastify's JSON parser
            return Scripted(400, _fastify_error(400, "Bad Request", str(exc))), 0, []
        shape = _shape_problem(document)
        if shape is not None:  # Fastify's route schema, before LogTide's zod schema
            error = _fastify_error(400, "Bad Request", shape, "FST_ERR_VALIDATION")
            return Scripted(400, error), 0, []
        logs = document.get("logs", ...)
        details = _zod_details(logs, self.strict)
        if details is not None:  # all or nothing, as LogTide does
            count = len(logs) if isinstance(logs, list) else 0
            return Scripted(400, {"error": "Validation error", "details": details}), count, []
        faulty = self.fault(logs) if self.fault is not None else None
        if faulty is not None:
            return faulty, len(logs), []
        # JSON carries U+0000 only as the escape \u0000 (the parser refuses a raw one):
        # without it in the body, no need to walk every entry (the benchmark's fast sink).
        nul = _nul_error(logs) if b"\\u0000" in body else None
        if nul is not None:  # the batch reached PostgreSQL, which refused it whole
            code, message = nul
            error = _fastify_error(500, "Internal Server Error", message, code)
            return Scripted(500, error), len(logs), []
        answer = {"received": len(logs), "timestamp": _now()}
        return Scripted(200, answer, delay=self.delay), len(logs), logs

    def _record(self, status: int, count: int, size: int, accepted: list[dict[str, Any]]) -> None:
        with self._changed:
            self._accepted_count += len(accepted)
            if self.record:
                self._entries.extend(accepted)
                self._requests.append(RequestLog(status, count, size, time.monotonic()))
            self._changed.notify_all()


def entry_problem(entry: Any) -> str | None:
    """Why LogTide's schema refuses ``entry`` (zod's messages), or None."""
    if not isinstance(entry, dict):
        return "must be object"
    errors = entry_errors(entry)
    if not errors:
        return None
    return "; ".join(f"{name}: {', '.join(messages)}" for name, messages in errors.items())


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _shape_problem(document: Any) -> str | None:
    """Fastify's check of the route's JSON schema (with its coercion of scalars to arrays)."""
    if not isinstance(document, dict):
        return "body must be object"
    if "logs" not in document:
        return None
    logs = document["logs"]
    if isinstance(logs, dict):
        return "body/logs must be array"
    items = logs if isinstance(logs, list) else [logs]
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            return f"body/logs/{index} must be object"
    return None


def _zod_details(logs: Any, strict: Check | None) -> dict[str, Any] | None:
    """zod's ``error.format()`` of the request, or None when it is valid."""
    if logs is ...:
        return {"_errors": [], "logs": {"_errors": ["Required"]}}
    formatted: dict[str, Any] = {}
    for index, entry in enumerate(logs):
        errors = entry_errors(entry)
        reason = strict(entry) if strict is not None and not errors else None
        if errors or reason is not None:
            fields: dict[str, Any] = {"_errors": [] if reason is None else [reason]}
            fields.update((name, {"_errors": messages}) for name, messages in errors.items())
            formatted[str(index)] = fields
    count_errors = []
    if len(logs) < 1:
        count_errors.append("Array must contain at least 1 element(s)")
    elif len(logs) > MAX_BATCH:
        count_errors.append(f"Array must contain at most {MAX_BATCH} element(s)")
    if not formatted and not count_errors:
        return None
    formatted["_errors"] = count_errors
    return {"_errors": [], "logs": formatted}


def _nul_error(logs: list[dict[str, Any]]) -> tuple[str, str] | None:
    """PostgreSQL's error for U+0000 in a batch (text columns first), or None."""
    in_jsonb = False
    for entry in logs:
        for name, value in entry.items():
            if name == "metadata":
                in_jsonb = in_jsonb or _has_nul(value)
            elif isinstance(value, str) and FORBIDDEN_CHARS in value:
                return _NUL_TEXT
    return _NUL_JSONB if in_jsonb else None


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return FORBIDDEN_CHARS in value
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def _coordinates(entry: dict[str, Any]) -> tuple[str, int, int]:
    kafka = entry.get("metadata", {}).get("kafka", {})
    return (kafka.get("topic", "?"), kafka.get("partition", -1), kafka.get("offset", -1))


def _handler_for(server: LogTideServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects
        # Headers and body are separate writes: with Nagle's algorithm on, each answer
        # waits ~40 ms for the client's delayed ACK (Node, like LogTide, turns it off too).
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            early, headers = self._before_body(length, kind)
            if early is not None:
                if not early.close:  # a 413 leaves the body unread
                    self.rfile.read(length)
                time.sleep(early.delay)
                server._record(early.status, 0, length, [])
                self._send(early, headers)
                return
            raw = self.rfile.read(length)
            response, count, accepted = _parse(kind, raw, server)
            if response.status == 200:
                server._record(200, count, len(raw), accepted)
                time.sleep(response.delay)  # after recording: a lost answer makes duplicates
            else:
                time.sleep(response.delay)
                server._record(response.status, count, len(raw), [])
            self._send(response, headers)

        def _before_body(self, length: int, kind: str) -> tuple[Scripted | None, dict[str, str]]:
            """What is answered before the body is parsed, in LogTide's order."""
            down = server.down
            if down is not None:  # an outage answers everything alike
                return down, {}
            if self.path != INGEST_PATH:
                return Scripted(404, {"error": "Not Found"}), {}
            key = self.headers.get("X-API-Key")
            if key != server.api_key:  # auth comes first, without rate-limit headers
                message = "Invalid API key"
                if key is None:
                    message = "Missing X-API-Key header or Authorization token"
                return Scripted(401, {"error": "Unauthorized", "message": message}), {}
            headers, over = server._rate()
            if over:
                return rate_limited(None), headers
            scripted = server._scripted()
            if scripted is not None:
                return scripted, headers
            if kind not in ("application/json", "text/plain"):
                message = f"Unsupported Media Type: {kind or 'undefined'}"
                code = "FST_ERR_CTP_INVALID_MEDIA_TYPE"
                body = _fastify_error(415, "Unsupported Media Type", message, code)
                return Scripted(415, body), headers
            if length > server.body_limit:  # from the header: the body is never read
                code = "FST_ERR_CTP_BODY_TOO_LARGE"
                body = _fastify_error(413, "Payload Too Large", "Request body is too large", code)
                return Scripted(413, body, close=True), headers
            return None, headers

        def _send(self, response: Scripted, headers: dict[str, str]) -> None:
            payload = json.dumps(response.body).encode()
            try:
                self.send_response(response.status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-type", "application/json; charset=utf-8")
                self.send_header("content-length", str(len(payload)))
                if response.retry_after is not None:
                    self.send_header("retry-after", response.retry_after)
                if response.close:
                    self.send_header("connection", "close")
                self.end_headers()
                self.wfile.write(payload)
                self.wfile.flush()
            except OSError:  # the client went away (a killed shipper): nothing to answer
                self.close_connection = True
                return
            if response.close:
                self.close_connection = True
                _linger(self.connection)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: tests read the request log instead

    return Handler


def _parse(
    kind: str, raw: bytes, server: LogTideServer
) -> tuple[Scripted, int, list[dict[str, Any]]]:
    if kind == "text/plain":  # Fastify parses it as a string: not an object
        error = _fastify_error(400, "Bad Request", "body must be object", "FST_ERR_VALIDATION")
        return Scripted(400, error), 0, []
    if not raw:
        message = "Body cannot be empty when content-type is set to 'application/json'"
        error = _fastify_error(400, "Bad Request", message, "FST_ERR_CTP_EMPTY_JSON_BODY")
        return Scripted(400, error), 0, []
    return server._respond(raw)


def _linger(sock: socket.socket) -> None:
    """Half-close after the answer, then drop what the client still sends for a moment.

    Closing with unread data makes the kernel send a reset, which can destroy the answer
    before the client reads it; a client that keeps writing a large body still fails."""
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(0.2)
        received = 0
        while received < 1 << 20 and sock.recv(65536):
            received += 65536
    except OSError:
        pass
