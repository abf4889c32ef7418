"""A WSGI app for ``tests/test_fork.py``, served by ``gunicorn --preload -w 2``.

With ``--preload`` the master imports this module, so the handler is created and the
``master before fork`` events are logged in the master; the workers are forked from it
with those events still queued (``linger.ms`` is long).  Configured by environment:

* ``LOGTIDE_TEST_BOOTSTRAP``, ``LOGTIDE_TEST_TOPIC``, ``LOGTIDE_TEST_SERVICE``;
* ``LOGTIDE_TEST_MASTER_EVENTS``: how many events the master logs at import (default 20).

``GET /log?id=<id>`` logs one ``request handled`` event with ``request_id`` and answers
with the worker's pid; ``GET /health`` answers with the pid and logs nothing.  Before each
fork the master prints ``queued-at-fork <n>`` on stderr: what its producer still held.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from logtide_kafka import KafkaHandler

log = logging.getLogger("gunicorn_app")
log.setLevel(logging.INFO)
log.propagate = False  # gunicorn's own loggers never reach Kafka, nor ours its stderr
handler = KafkaHandler(
    os.environ["LOGTIDE_TEST_SERVICE"],
    topic=os.environ["LOGTIDE_TEST_TOPIC"],
    bootstrap_servers=os.environ["LOGTIDE_TEST_BOOTSTRAP"],
    # Long enough that the master's events are still queued when gunicorn forks.
    producer_config={"linger.ms": 3000},
)
log.addHandler(handler)


def _report_queue_at_fork() -> None:
    print(f"queued-at-fork {handler.stats().queue_length}", file=sys.stderr, flush=True)


os.register_at_fork(before=_report_queue_at_fork)

for _seq in range(int(os.environ.get("LOGTIDE_TEST_MASTER_EVENTS", "20"))):
    log.info("master before fork", extra={"master_seq": _seq})

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Log one event per ``/log`` request; answer every request with this process's pid."""
    path = environ.get("PATH_INFO", "")
    if path == "/log":
        request_id = parse_qs(environ.get("QUERY_STRING", "")).get("id", [""])[0]
        log.info("request handled", extra={"request_id": request_id})
        # Keep a worker busy a moment, so concurrent requests reach both workers.
        time.sleep(0.002)
    elif path != "/health":
        start_response("404 Not Found", [("Content-Length", "0")])
        return [b""]
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
