"""What the benchmarks share: the stdlib floor and a logger wired to one handler."""

from __future__ import annotations

import logging


class NoopHandler(logging.Handler):
    """The floor: a stdlib handler whose emit does nothing."""

    def emit(self, record: logging.LogRecord) -> None:
        pass


def bench_logger(name: str, handler: logging.Handler) -> logging.Logger:
    """``name``'s logger with ``handler`` as its only handler, at INFO, not propagating."""
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger
