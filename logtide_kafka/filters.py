"""Two ``logging`` filters for web apps: each adds fields to a record, which
:class:`~logtide_kafka.KafkaHandler` then sends in the event's ``metadata``.

Attach them to the handler (a handler's filters see every record it handles, including
those propagated from child loggers; a logger's filters do not)::

    "filters": {
        "context": {"()": "logtide_kafka.filters.StructlogContextFilter"},
        "access": {"()": "logtide_kafka.filters.UvicornAccessFilter"},
    },
    "handlers": {"kafka": {"class": "logtide_kafka.KafkaHandler", "service": "api",
                           "filters": ["context", "access"]}},

Both only add attributes the record does not have yet (``extra=`` wins, and no field
replaces a :class:`logging.LogRecord` attribute), never drop a record and never raise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

from logtide_kafka.stdlib import _RECORD_ATTRS as RECORD_ATTRS

__all__ = ["ACCESS_FIELDS", "StructlogContextFilter", "UvicornAccessFilter"]

#: The fields :class:`UvicornAccessFilter` adds, in the order of uvicorn's access-log
#: arguments: ``'%s - "%s %s HTTP/%s" %d'``.
ACCESS_FIELDS: Final = ("client", "method", "path", "http_version", "status")
_ACCESS_LOGGER: Final = "uvicorn.access"


def _add(record: logging.LogRecord, fields: Mapping[str, Any]) -> None:
    attrs = record.__dict__
    for key, value in fields.items():
        if key not in attrs and key not in RECORD_ATTRS:
            attrs[key] = value


class StructlogContextFilter(logging.Filter):
    """Copy structlog's context variables (``structlog.contextvars.bind_contextvars``:
    request ids and the like) onto each ``logging`` record.

    Records of libraries and frameworks that log through ``logging`` then carry the same
    ``request_id`` as the application's structlog events.  Needs structlog
    (``pip install 'logtide-kafka[structlog]'``); a key the record already has (from
    ``extra=``, or a ``LogRecord`` attribute such as ``name``) is left as it is.
    """

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        from structlog.contextvars import get_contextvars  # noqa: PLC0415 (optional extra)

        self._get: Callable[[], dict[str, Any]] = get_contextvars

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            context = self._get()
        except Exception:  # a filter must not cost the record
            return True
        if context:
            _add(record, context)
        return True


class UvicornAccessFilter(logging.Filter):
    """Give ``uvicorn.access`` records structured fields: ``client`` (``"ip:port"``),
    ``method``, ``path`` (with the query string), ``http_version`` and ``status`` (an
    int), read from the record's arguments.  Other records pass unchanged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (
            record.name == _ACCESS_LOGGER
            and isinstance(args, tuple)
            and len(args) == len(ACCESS_FIELDS)
        ):
            _add(record, dict(zip(ACCESS_FIELDS, args, strict=True)))
        return True
