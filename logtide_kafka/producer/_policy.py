"""What a producer does with an event its local queue has no room for."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final, Literal, get_args

__all__ = ["DEFAULT_POLICY", "FSYNC_POLICIES", "DeliveryPolicy", "FsyncPolicy", "OnFull"]

#: ``drop`` the newest event, ``block`` the caller for up to ``block_timeout`` seconds, or
#: ``spool`` the event to disk and replay it once Kafka accepts again.
OnFull = Literal["drop", "block", "spool"]
#: When the spool calls ``fsync``: see :mod:`logtide_kafka.producer._spool`.
FsyncPolicy = Literal["never", "interval", "always"]

_ON_FULL: Final = frozenset(get_args(OnFull))
#: Every :data:`FsyncPolicy`, for checking one given at run time.
FSYNC_POLICIES: Final = frozenset(get_args(FsyncPolicy))


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """A producer's backpressure policy; part of what makes producers distinct.

    Built from the ``on_full``, ``block_timeout``, ``spool_dir``, ``spool_max_bytes``,
    ``spool_fsync`` and ``warn_interval`` options every integration accepts.
    """

    on_full: OnFull = "drop"
    #: Seconds ``block`` waits for room before dropping (and counting) the event.
    block_timeout: float = 0.1
    #: The spool directory; required by, and only used with, ``spool``.
    spool_dir: str | None = None
    #: The spool's bound on disk; beyond it the newest event is dropped and counted.
    spool_max_bytes: int = 256 * 2**20
    spool_fsync: FsyncPolicy = "interval"
    #: Seconds between two stderr lines about dropped events.
    warn_interval: float = 10.0

    def __post_init__(self) -> None:
        if self.on_full not in _ON_FULL:
            raise ValueError(f"on_full must be one of {sorted(_ON_FULL)}, not {self.on_full!r}")
        if self.spool_fsync not in FSYNC_POLICIES:
            raise ValueError(f"spool_fsync must be one of {sorted(FSYNC_POLICIES)}")
        if not self.block_timeout >= 0 or not self.warn_interval >= 0:
            raise ValueError("block_timeout and warn_interval must be >= 0")
        if self.spool_max_bytes <= 0:
            raise ValueError("spool_max_bytes must be > 0")
        if self.on_full == "spool":
            if not self.spool_dir:
                raise ValueError('on_full="spool" needs spool_dir')
            # A relative directory would move with the process's working directory.
            object.__setattr__(self, "spool_dir", os.path.abspath(self.spool_dir))


DEFAULT_POLICY: Final = DeliveryPolicy()
