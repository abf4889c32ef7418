"""The library's loggers: their names, which records are theirs, and librdkafka's lines
collapsed to one per kind per interval, with a count."""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any, Final

from logtide_kafka._event import is_a

__all__ = [
    "CLIENT_LOGGER",
    "LIBRARY_LOGGER",
    "SKIPS_LIBRARY_RECORDS",
    "CollapsedLog",
    "handled",
    "in_logger_tree",
]

#: The root of the library's own loggers.  The logging integrations never ship records of
#: these to Kafka: librdkafka's lines about a failing send would feed on themselves.
LIBRARY_LOGGER: Final = "logtide_kafka"
#: librdkafka's lines and the library's own about its Kafka clients.
CLIENT_LOGGER: Final = LIBRARY_LOGGER + ".client"

# Numbers (ports, milliseconds, counts) make lines of one kind differ: not the kind.
_NUMBERS: Final = re.compile(r"\d+")
#: Kinds remembered at most; lines of further kinds are passed on as they come.
_MAX_KINDS: Final = 256


class _Kind:
    __slots__ = ("args", "level", "since", "suppressed")

    def __init__(self, level: int, args: tuple[Any, ...], since: float) -> None:
        self.level, self.args, self.since, self.suppressed = level, args, since, 0


class CollapsedLog:
    """What librdkafka is given as its ``logger``: passes the first line of each kind
    (level, facility and text with the numbers taken out) to ``logger``, counts the
    repeats for ``interval`` seconds, then passes the latest with the count.

    A broker that is down makes librdkafka log a failed connection several times a
    second per process; this keeps it to one line per kind per interval."""

    def __init__(self, logger: logging.Logger, interval: float) -> None:
        self.logger = logger
        self.interval = interval
        self._kinds: dict[tuple[object, ...], _Kind] = {}
        self._lock = threading.Lock()

    def log(self, level: int, msg: str, *args: Any, **kwargs: Any) -> None:
        """Called by librdkafka's client (on whichever thread serves its queue)."""
        key = (level, msg, *(_NUMBERS.sub("N", a) if isinstance(a, str) else a for a in args))
        now = time.monotonic()
        with self._lock:
            kind = self._kinds.get(key)
            if kind is not None and now - kind.since < self.interval:
                kind.suppressed += 1
                kind.args = args  # the latest of its kind is the one shown
                return
            suppressed = kind.suppressed if kind is not None else 0
            if kind is not None or len(self._kinds) < _MAX_KINDS:
                self._kinds[key] = _Kind(level, args, now)
        self._emit(level, msg, args, suppressed)

    def flush_due(self) -> None:
        """Pass on the counts of kinds whose interval ended (called by the poller)."""
        now = time.monotonic()
        due: list[tuple[int, tuple[Any, ...], int]] = []
        with self._lock:
            for kind in self._kinds.values():
                if kind.suppressed and now - kind.since >= self.interval:
                    due.append((kind.level, kind.args, kind.suppressed))
                    kind.since, kind.suppressed = now, 0
        for level, args, suppressed in due:
            self._emit(level, "%s [%s] %s" if len(args) == 3 else "%s", args, suppressed)

    def _emit(self, level: int, msg: str, args: tuple[Any, ...], suppressed: int) -> None:
        if suppressed:
            msg += f" ({suppressed} more like it in the last {self.interval:g}s)"
        self.logger.log(level, msg, *args)


def in_logger_tree(name: object, root: str) -> bool:
    """Whether ``name`` (whatever a filter may have set) names the logger ``root`` or one
    below it (``root.child``, not ``rootless``)."""
    return (
        is_a(name, str)
        and name.startswith(root)
        and (len(name) == len(root) or name[len(root)] == ".")
    )


#: Set true on a handler class that never shows the library's own records (KafkaHandler).
SKIPS_LIBRARY_RECORDS: Final = "skips_library_records"


def handled(logger: logging.Logger) -> bool:
    """Whether a record of ``logger`` reaches a handler that shows it: not a
    ``NullHandler``, nor a handler that skips the library's records (``KafkaHandler``).

    The library's own ``NullHandler`` on ``logtide_kafka`` keeps ``logging.lastResort``
    away, so an application without logging configuration sees nothing from these
    loggers: the producer then says what matters on stderr itself.  Neither does a
    disabled logger: ``dictConfig`` and ``fileConfig`` disable every logger that exists
    when they run (``disable_existing_loggers``, true by default), the library's included
    when the configuration builds a ``KafkaHandler``."""
    if logger.disabled:  # its records go nowhere, whatever handlers its ancestors have
        return False
    node: logging.Logger | None = logger
    while node is not None:
        for handler in node.handlers:
            if not isinstance(handler, logging.NullHandler) and not getattr(
                handler, SKIPS_LIBRARY_RECORDS, False
            ):
                return True
        if not node.propagate:
            return False
        node = node.parent
    return False
