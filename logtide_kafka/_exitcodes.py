"""The exit codes of ``logtide-kafka`` and :func:`logtide_kafka.pipeline.shipper.run_shipper`,
defined once (``docs/cli.md``).  ``logtide-kafka lag`` exits with its grade instead
(``lag.Grade``: 0 healthy, 1 warning, 2 critical)."""

from __future__ import annotations

from typing import Final

__all__ = ["EXIT_CANNOT_RUN", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK"]

#: Done: the command did what it was asked, or the shipper was stopped cleanly.
EXIT_OK: Final = 0
#: It ran and failed: an event not delivered (``send``), an unexpected error while shipping.
EXIT_FAILED: Final = 1
#: Something no retry fixes kept it from running or going on: bad arguments or settings, an
#: unreachable cluster, a missing file or topic, or LogTide refusing the key, the quota or
#: the URL (the shipper's fatal answers).
EXIT_CANNOT_RUN: Final = 2
#: Ctrl-C (SIGINT), as shells report it.
EXIT_INTERRUPTED: Final = 130
