"""The shipper's counters: a JSON snapshot, Prometheus text, and an optional HTTP endpoint."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from logtide_kafka._threads import start_daemon
from logtide_kafka.pipeline import _prometheus as prometheus

__all__ = ["COUNTERS", "DEFAULT_METRICS_HOST", "GAUGES", "MetricsServer", "ShipperMetrics"]

#: Where the metrics endpoint listens by default: every IPv4 interface, so Prometheus can
#: scrape a shipper in a container (whose loopback it cannot reach).  The endpoint serves
#: counters and redacted error texts only.
DEFAULT_METRICS_HOST: Final = "0.0.0.0"

#: Counter name -> Prometheus help text.  Names are the keys of the JSON snapshot.
COUNTERS: Final = {
    "messages_consumed": "Kafka messages read from the log topics.",
    "events_shipped": "Events LogTide accepted.",
    "batches": "Batches handed to LogTide in full (every event shipped or dead-lettered).",
    "requests": "HTTP requests sent to LogTide.",
    "request_errors": "Requests that failed: transport errors and non-2xx answers.",
    "retries": "Requests repeated after a retryable failure (5xx, 429, connection error).",
    "splits": "Batches split in two (after a 400, a 413, or repeated 5xx/transport errors).",
    "poison_dead_lettered": "Entries dead-lettered because LogTide failed them alone (5xx) "
    "while accepting others.",
    "probes": "One-entry requests of an already accepted entry, sent to learn whether "
    "LogTide works at all.",
    "normalized": "Messages that were not LogTide-native and were converted.",
    "dead_lettered": "Messages written to the dead-letter topic.",
    "commits": "Offset commits that succeeded.",
    "commit_errors": "Offset commits that failed (those messages may be shipped again).",
    "rebalances": "Partition revocations handled.",
    "duplicates_dropped": "Repeats of an event already read (same event-id header), not shipped.",
}

#: State set by the shipper (``set_state``) -> Prometheus help text; also JSON snapshot keys.
GAUGES: Final = {
    "retry_streak_active": "1 while some batch waits to retry (a retry streak), else 0.",
    "retry_streak_attempts": "Failed attempts in the current retry streak.",
    "in_flight": "Batches being posted to LogTide right now.",
}


class ShipperMetrics:
    """Thread-safe counters plus the last error, read by :meth:`snapshot`.

    ``redact`` is applied to every error text before it is stored, so a secret that made
    its way into an exception message never reaches the metrics.
    """

    def __init__(self, redact: Callable[[str], str] = str) -> None:
        self._lock = threading.Lock()
        self._redact = redact
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._last_error: str | None = None
        self._last_error_at: float | None = None
        self._state: dict[str, Any] = {**dict.fromkeys(GAUGES, 0), "last_retry_cause": None}
        self._started_wall = time.time()
        self._started = time.monotonic()

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def set_state(self, **values: Any) -> None:
        """Set gauges (:data:`GAUGES`) or ``last_retry_cause`` (redacted)."""
        if isinstance(values.get("last_retry_cause"), str):
            values["last_retry_cause"] = self._redact(values["last_retry_cause"])
        with self._lock:
            self._state.update(values)

    def error(self, text: str) -> None:
        """Remember ``text`` as the last error (redacted)."""
        clean = self._redact(text)
        with self._lock:
            self._last_error = clean
            self._last_error_at = time.time()

    def snapshot(self) -> dict[str, Any]:
        """Every counter, ``error_rate``, ``last_error``, ``started_at`` and ``uptime_s``.

        ``error_rate`` is ``dead_lettered / max(1, events_shipped + dead_lettered)``: the
        fraction of messages that did not reach LogTide.
        """
        with self._lock:
            data: dict[str, Any] = dict(self._counts)
            data.update(self._state)
            last_error, last_error_at = self._last_error, self._last_error_at
        total = data["events_shipped"] + data["dead_lettered"]
        data["error_rate"] = data["dead_lettered"] / max(1, total)
        data["last_error"] = last_error
        data["last_error_at"] = _iso(last_error_at) if last_error_at is not None else None
        data["started_at"] = _iso(self._started_wall)
        data["uptime_s"] = round(time.monotonic() - self._started, 3)
        return data

    def prometheus(self) -> str:
        """The snapshot in Prometheus text exposition format (version 0.0.4)."""
        data = self.snapshot()
        lines: list[str] = []
        for name, help_text in COUNTERS.items():
            metric = f"logtide_shipper_{name}_total"
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter"]
            lines.append(f"{metric} {data[name]}")
        with self._lock:
            last_error_at = self._last_error_at
        gauges = (
            *((name, help_text, data[name]) for name, help_text in GAUGES.items()),
            (
                "error_rate",
                "Fraction of messages dead-lettered instead of shipped.",
                data["error_rate"],
            ),
            ("uptime_seconds", "Seconds since the shipper started.", data["uptime_s"]),
            ("started_timestamp_seconds", "When the shipper started.", self._started_wall),
            (
                "last_error_timestamp_seconds",
                "When the last error happened (0: never).",
                last_error_at or 0,
            ),
        )
        for name, help_text, value in gauges:
            metric = f"logtide_shipper_{name}"
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
            lines.append(f"{metric} {prometheus.number(value)}")
        return "\n".join(lines) + "\n"


class MetricsServer:
    """``/metrics`` (Prometheus text) and ``/metrics.json`` on a port, in a daemon thread.

    ``host`` is an address or name to listen on (``::`` or another IPv6 address works too).
    Port 0 picks a free port; :attr:`port` tells which.
    """

    def __init__(
        self, metrics: ShipperMetrics, port: int, host: str = DEFAULT_METRICS_HOST
    ) -> None:
        server = _Server6 if ":" in host else http.server.ThreadingHTTPServer
        self._httpd = server((host, port), _handler(metrics))
        self._httpd.daemon_threads = True
        self._thread = start_daemon(self._httpd.serve_forever, "logtide-shipper-metrics")

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def host(self) -> str:
        """The address it listens on."""
        return str(self._httpd.server_address[0])

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class _Server6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _handler(metrics: ShipperMetrics) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms stall

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body = metrics.prometheus().encode()
                kind = "text/plain; version=0.0.4; charset=utf-8"
            elif path == "/metrics.json":
                body = orjson.dumps(metrics.snapshot())
                kind = "application/json"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # scrapes every few seconds would flood stderr

    return Handler


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
