"""The library's own lines on stderr: one write each, naming the process."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Final

__all__ = ["PREFIX", "report"]

PREFIX: Final = "logtide-kafka: "
#: At most this many service names are listed in one line.
_MAX_NAMED: Final = 3


def report(text: str, services: Iterable[str] = ()) -> None:
    """Write ``logtide-kafka: {text} (pid N, service S)`` and its newline to stderr in one
    write call, so lines from a parent and its workers never run together; never raises."""
    names = sorted(set(services))
    where = f"pid {os.getpid()}"
    if names:
        shown = ", ".join(names[:_MAX_NAMED])
        more = f" and {len(names) - _MAX_NAMED} more" if len(names) > _MAX_NAMED else ""
        where += f", service {shown}{more}"
    try:
        sys.stderr.write(f"{PREFIX}{text} ({where})\n")
        sys.stderr.flush()
    except Exception:  # no stderr (pythonw, closed at exit): nowhere to say it
        pass
