"""A FastAPI app whose ``logging`` and structlog events, and uvicorn's access lines, all go
to Kafka through the one ``KafkaHandler`` of uvicorn's ``--log-config``.

    cd examples/fastapi_app
    KAFKA_BROKERS=127.0.0.1:9092 uvicorn main:app --workers 2 --log-config logging.json

* A middleware binds a request id with ``structlog.contextvars``.
* ``StructlogContextFilter`` (in ``logging.json``) copies it onto every ``logging``
  record, including uvicorn's access lines; ``UvicornAccessFilter`` gives those lines
  ``method``, ``path``, ``status`` and ``client`` fields.
* structlog is configured to hand its events to ``logging`` (``render_to_log_kwargs``), so
  they reach the same handler with their key-value pairs as fields.

See ``docs/fastapi.md``.
"""

from __future__ import annotations

import logging
import os
import uuid

import structlog
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

structlog.configure(
    processors=[
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.render_to_log_kwargs,  # event -> msg, other keys -> extra=
    ],
    logger_factory=structlog.stdlib.LoggerFactory(),
    wrapper_class=structlog.stdlib.BoundLogger,
    cache_logger_on_first_use=True,
)

log = logging.getLogger("shop.api")
slog = structlog.get_logger("shop.pricing")


class RequestId:
    """Bind ``request_id`` (the ``X-Request-ID`` header, else a new id) for the request:
    every event logged while it is served carries it, uvicorn's access line included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1") or uuid.uuid4().hex
        # Each request runs in a task of its own, with its own copy of the context.
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        await self.app(scope, receive, send)


app = FastAPI()
app.add_middleware(RequestId)


@app.get("/orders/{order_id}")
async def order(order_id: str) -> dict[str, object]:
    log.info("order viewed", extra={"order_id": order_id})  # plain logging
    slog.info("order priced", order_id=order_id, total_eur=54.2)  # structlog
    return {"order_id": order_id, "pid": os.getpid()}


@app.get("/health")
async def health() -> dict[str, int]:
    return {"pid": os.getpid()}
