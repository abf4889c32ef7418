"""A LogTide-compatible ingest server for tests: ``POST /api/v1/ingest`` with fault injection.

It implements the API as LogTide does (see ``docs/shipper.md``) with its own copy of the
validation rules, on purpose independent of ``logtide_kafka._ingest``: an entry the shipper
validated wrongly is caught here.  Every accepted entry is recorded, so tests can count
losses and duplicates by the Kafka coordinates the shipper adds (``metadata.kafka``).

>>> with LogTideServer(api_key="k") as server:            # doctest: +SKIP
...     server.script(Scripted(500), times=3)             # next 3 requests fail
...     server.script(rate_limited(retry_after=1), times=2)
...     ...                                               # then the normal behaviour
"""

from __future__ import annotations

import collections
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final

__all__ = [
    "QUOTA_CODE",
    "LogTideServer",
    "RequestLog",
    "Scripted",
    "quota_exceeded",
    "rate_limited",
    "server_error",
]

QUOTA_CODE: Final = "capability.ingestion.max_events_monthly.exceeded"
INGEST_PATH: Final = "/api/v1/ingest"
_LEVELS: Final = {"debug", "info", "warn", "error", "critical"}
_TIME: Final = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
_SPAN: Final = re.compile(r"^[a-fA-F0-9]{16}$")

Check = Callable[[dict[str, Any]], str | None]


@dataclass(frozen=True)
class Scripted:
    """A response the server gives instead of processing the request."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)
    retry_after: str | None = None
    #: Seconds to wait before answering.
    delay: float = 0.0


def server_error(status: int = 500) -> Scripted:
    return Scripted(status, {"error": "Internal Server Error"})


def rate_limited(retry_after: float | None = 1) -> Scripted:
    """A rate-limit 429, with ``Retry-After`` seconds unless None."""
    header = None if retry_after is None else f"{retry_after:g}"
    return Scripted(429, {"error": "Too Many Requests"}, retry_after=header)


def quota_exceeded() -> Scripted:
    """The monthly-quota 429: a ``code``, no ``Retry-After``."""
    return Scripted(429, {"error": "Monthly event quota exceeded", "code": QUOTA_CODE})


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

    ``api_key``: the only key accepted (others get 401).  ``body_limit``: larger bodies get
    413.  ``delay``: seconds to wait after accepting a batch and before answering (the
    entries are already recorded: a client killed meanwhile makes duplicates).
    ``reject(entry)``: a reason makes the entry one of the ``rejected`` of a 200.
    ``strict(entry)``: a reason makes the whole request a 400, like a validation rule the
    client does not know.  ``record=False`` keeps only :attr:`accepted_count` (benchmarks).
    ``fault(entries)``: a response (say a 500) given instead of processing a valid batch,
    for poison-entry tests.  ``down``: when set, the answer to every request (an outage).
    """

    def __init__(
        self,
        api_key: str = "test-key",
        *,
        body_limit: int = 50 * 1024 * 1024,
        delay: float = 0.0,
        reject: Check | None = None,
        strict: Check | None = None,
        record: bool = True,
        fault: Callable[[list[dict[str, Any]]], Scripted | None] | None = None,
    ) -> None:
        self.api_key = api_key
        self.body_limit = body_limit
        self.delay = delay
        self.reject = reject
        self.strict = strict
        self.record = record
        self.fault = fault
        self.down: Scripted | None = None
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

    def _respond(
        self, api_key: str | None, body: bytes
    ) -> tuple[Scripted, int, list[dict[str, Any]]]:
        """The response for one request, the number of entries, and those to record."""
        with self._lock:
            scripted = self._script.popleft() if self._script else None
        if scripted is None:
            scripted = self.down
        if scripted is not None:
            return scripted, 0, []
        if api_key != self.api_key:
            return Scripted(401, {"error": "Invalid API key"}), 0, []
        if len(body) > self.body_limit:
            return Scripted(413, {"error": "Request body is too large"}), 0, []
        try:
            document = json.loads(body)
        except ValueError as exc:
            return Scripted(400, {"error": "Bad Request", "message": str(exc)}), 0, []
        logs = document.get("logs") if isinstance(document, dict) else None
        if not isinstance(logs, list) or not 1 <= len(logs) <= 1000:
            details = {"logs": "must be an array of 1-1000 entries"}
            return Scripted(400, {"error": "Validation error", "details": details}), 0, []
        problems = {}
        for index, entry in enumerate(logs):
            problem = entry_problem(entry)
            if problem is None and self.strict is not None:
                problem = self.strict(entry)
            if problem is not None:
                problems[str(index)] = problem
        if problems:  # all or nothing, as LogTide does
            body_out = {"error": "Validation error", "details": {"logs": problems}}
            return Scripted(400, body_out), len(logs), []
        faulty = self.fault(logs) if self.fault is not None else None
        if faulty is not None:
            return faulty, len(logs), []
        accepted, rejected = [], []
        for index, entry in enumerate(logs):
            reason = self.reject(entry) if self.reject is not None else None
            if reason is None:
                accepted.append(entry)
            else:
                rejected.append({"index": index, "reason": reason})
        answer: dict[str, Any] = {
            "received": len(accepted),
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        if rejected:
            answer["rejected"] = rejected
        return Scripted(200, answer, delay=self.delay), len(logs), accepted

    def _record(self, status: int, count: int, size: int, accepted: list[dict[str, Any]]) -> None:
        with self._changed:
            self._accepted_count += len(accepted)
            if self.record:
                self._entries.extend(accepted)
                self._requests.append(RequestLog(status, count, size, time.monotonic()))
            self._changed.notify_all()


def entry_problem(entry: Any) -> str | None:
    """LogTide's entry schema: why ``entry`` is invalid, or None."""
    if not isinstance(entry, dict):
        return "Expected object"
    time_ = entry.get("time")
    if not isinstance(time_, str) or not _TIME.match(time_):
        return "time: Invalid datetime"
    try:
        datetime.fromisoformat(time_)
    except ValueError:
        return "time: Invalid datetime"
    service = entry.get("service")
    # zod counts UTF-16 code units, as JavaScript does.
    if not isinstance(service, str) or not 1 <= len(service.encode("utf-16-le")) // 2 <= 100:
        return "service: String must contain between 1 and 100 character(s)"
    if entry.get("level") not in _LEVELS:
        return "level: Invalid enum value"
    message = entry.get("message")
    if not isinstance(message, str) or message == "":
        return "message: String must contain at least 1 character(s)"
    if "metadata" in entry and not isinstance(entry["metadata"], dict):
        return "metadata: Expected object"
    if "trace_id" in entry and not isinstance(entry["trace_id"], str):
        return "trace_id: Expected string"
    if "span_id" in entry and not (
        isinstance(entry["span_id"], str) and _SPAN.match(entry["span_id"])
    ):
        return "span_id: Invalid"
    return None


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
            body = self.rfile.read(length)
            if self.path != INGEST_PATH:
                self._send(Scripted(404, {"error": "Not Found"}))
                return
            response, count, accepted = server._respond(self.headers.get("X-API-Key"), body)
            if response.status == 200:
                server._record(200, count, len(body), accepted)
                time.sleep(response.delay)  # after recording: a lost answer makes duplicates
            else:
                time.sleep(response.delay)
                server._record(response.status, count, len(body), [])
            self._send(response)

        def _send(self, response: Scripted) -> None:
            payload = json.dumps(response.body).encode()
            try:
                self.send_response(response.status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                if response.retry_after is not None:
                    self.send_header("Retry-After", response.retry_after)
                self.end_headers()
                self.wfile.write(payload)
            except OSError:  # the client went away (a killed shipper): nothing to answer
                self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: tests read the request log instead

    return Handler
