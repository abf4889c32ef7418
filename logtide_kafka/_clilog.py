"""The command line's log output: the ``logtide_kafka`` logger tree to stderr.

The library itself only has a ``NullHandler`` (an application decides where its logs go);
the ``logtide-kafka`` commands are the application, so they attach one stderr handler to
the ``logtide_kafka`` logger for the duration of a command.  The root logger is left alone,
so code that calls :func:`logtide_kafka.cli.main` keeps its own logging as it was.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Final

import orjson

from logtide_kafka._client_log import CLIENT_LOGGER, LIBRARY_LOGGER, in_logger_tree
from logtide_kafka._redact import REDACTED

__all__ = ["LOG_FORMATS", "LOG_LEVELS", "cli_logging"]

LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS: Final = ("text", "json")


def _iso(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class _Formatter(logging.Formatter):
    """``time LEVEL logger: message`` or one JSON object, with ``secrets`` scrubbed."""

    def __init__(self, fmt: str, scrub: Callable[[str], str]) -> None:
        super().__init__()
        self._json = fmt == "json"
        self._scrub = scrub

    def format(self, record: logging.LogRecord) -> str:
        message = self._scrub(record.getMessage())
        error = self._scrub(self.formatException(record.exc_info)) if record.exc_info else None
        if self._json:
            document = {
                "time": _iso(record.created),
                "level": record.levelname,
                "logger": record.name,
                "message": message,
            }
            if error:
                document["exception"] = error
            return orjson.dumps(document).decode()
        line = f"{_iso(record.created)} {record.levelname} {record.name}: {message}"
        return f"{line}\n{error}" if error else line


def scrubber(secrets: Sequence[str]) -> Callable[[str], str]:
    """A function replacing each of ``secrets`` (non-empty strings) in a text."""
    ordered = sorted({s for s in secrets if s}, key=len, reverse=True)

    def scrub(text: str) -> str:
        for secret in ordered:
            text = text.replace(secret, REDACTED)
        return text

    return scrub


@contextmanager
def cli_logging(
    level: str = "info", fmt: str = "text", secrets: Sequence[str] = ()
) -> Iterator[logging.Handler]:
    """Send the ``logtide_kafka`` loggers' records at ``level`` and above to stderr.

    ``secrets`` (API key, passwords) are replaced by ``[REDACTED]`` in every line.  The
    handler and the logger's level are removed and restored on exit.
    """
    if level not in LOG_LEVELS or fmt not in LOG_FORMATS:
        raise ValueError(f"level must be one of {LOG_LEVELS}, fmt one of {LOG_FORMATS}")
    threshold = logging.getLevelNamesMapping()[level.upper()]
    logger = logging.getLogger(LIBRARY_LOGGER)
    # sys.stderr as it is now (a test may have replaced it), not as it was at import.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(fmt, scrubber(secrets)))
    if threshold > logging.DEBUG:
        handler.addFilter(_not_client_chatter)
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(threshold)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
        handler.flush()


def _not_client_chatter(record: logging.LogRecord) -> bool:
    """librdkafka's own lines (connection attempts, retries) for the short commands: shown
    only at ``--log-level debug``, since they would bury the one-line error those commands
    print.  The shipper's client lines (``logtide_kafka.shipper.kafka``) always show."""
    return not in_logger_tree(record.name, CLIENT_LOGGER)
