"""Between one producer and its spool (policy ``spool``): events go to disk while
librdkafka's queue has no room, come back in order once it has, and what librdkafka hands
back (purged at close) returns to the front of the spool."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

import orjson
from confluent_kafka import KafkaError

from logtide_kafka._headers import Headers, event_headers, new_event_id, unwrap_key
from logtide_kafka.producer._counters import UNCONFIRMED, Counters
from logtide_kafka.producer._policy import DeliveryPolicy
from logtide_kafka.producer._spool import Spool, SpoolLocked

__all__ = ["ADOPT_INTERVAL", "REPLAY_CHUNK", "RETURN_TO_SPOOL", "SpoolBridge", "open_spool"]

#: Seconds between two looks for spool directories that exited children left behind.
ADOPT_INTERVAL: Final = 60.0
#: Records moved from the spool into librdkafka's queue per pass of the poller.
REPLAY_CHUNK: Final = 1000
# Delivery errors after which, under the ``spool`` policy, the event goes back to disk:
# it never reached a broker for good, and may well reach one later.
RETURN_TO_SPOOL: Final = frozenset(
    {KafkaError._MSG_TIMED_OUT, KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT}
)

#: ``produce(topic, value, key, headers, event_id)``: enqueue one replayed record (counted
#: as enqueued, or as failed when refused); False when the queue has no room for it.
Produce = Callable[[str, bytes, bytes | None, Headers, bytes], bool]


class _Queue(Protocol):
    """What the bridge uses of the producer's ``confluent_kafka.Producer``."""

    def __len__(self) -> int: ...

    def flush(self, timeout: float) -> int: ...


def open_spool(policy: DeliveryPolicy, forked_child: bool) -> Spool | None:
    """Open the policy's spool directory (a forked child gets a directory of its own)."""
    if policy.on_full != "spool" or policy.spool_dir is None:
        return None
    size, fsync = policy.spool_max_bytes, policy.spool_fsync
    if not forked_child:
        try:
            return Spool(policy.spool_dir, max_bytes=size, fsync=fsync)
        except SpoolLocked:  # another live process (a spawned worker's parent) owns it
            pass
    return Spool.for_child(policy.spool_dir, max_bytes=size, fsync=fsync)


def _trace_ids(value: bytes) -> dict[str, Any]:
    """The ``trace_id`` and ``span_id`` of an encoded event (for a replayed record's
    headers); empty when there are none or it does not parse."""
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(event, dict):
        return {}
    return {k: event[k] for k in ("trace_id", "span_id") if k in event}


class SpoolBridge:
    """Moves events between one producer's librdkafka queue and its :class:`Spool`."""

    def __init__(
        self, spool: Spool, counts: Counters, queue: _Queue, room: int, produce: Produce
    ) -> None:
        self.spool = spool
        self._counts = counts
        self._queue = queue
        #: Replay moves records while the queue holds fewer than this many.
        self._room = room
        self._produce = produce
        self._lock = threading.Lock()  # between appends and the end of a replay
        self._replay_lock = threading.Lock()
        self._next_adopt = time.monotonic() + ADOPT_INTERVAL
        #: True while the spool holds events: new ones queue up behind them, in order.
        self.spooling = spool.pending > 0
        # Events librdkafka handed back (purged at close, timed out), under counts.lock.
        self._returned: list[tuple[str, bytes | None, bytes]] = []

    def append(self, topic: str, key: bytes | None, payload: bytes) -> bool:
        """Write an event to the end of the spool (counted as spooled, or dropped as
        ``spool_full``); return whether it was written."""
        with self._lock:
            if not self.spool.append(topic, key, payload):
                return self._counts.drop("spool_full")
            self.spooling = True
        with self._counts.lock:
            self._counts.spooled += 1
        return True

    def hand_back(self, topic: str, stored_key: bytes | None, value: bytes, code: int) -> None:
        """Keep an event librdkafka handed back (a delivery report with an error in
        :data:`RETURN_TO_SPOOL`), for :meth:`return_handed_back`."""
        counts = self._counts
        with counts.lock:
            counts.delivery_failures += 1
            if code in UNCONFIRMED:
                counts.unconfirmed += 1
            self._returned.append((topic, stored_key, value))

    def return_handed_back(self) -> None:
        """Write events librdkafka handed back to the front of the spool: they are older
        than anything spooled since."""
        if not self._returned:  # the usual case, on every pass of the poller
            return
        counts = self._counts
        with counts.lock:
            returned, self._returned = self._returned, []
        with self._lock:
            kept = self.spool.prepend(returned)
            if kept:
                self.spooling = True
        with counts.lock:
            counts.spooled += kept
            # Enqueued once, so not "dropped" (never enqueued): they failed.
            counts.failed += len(returned) - kept

    def replay(self) -> int:
        """Move the oldest spooled events into librdkafka's queue, in order, while it has
        room; return how many moved.  The spool forgets them once they are queued: what is
        still queued at close goes back to its front."""
        spool = self.spool
        moved = 0
        with self._replay_lock:
            while len(self._queue) < self._room:
                records = spool.read(REPLAY_CHUNK)
                if not records:
                    break
                done = 0
                for topic, stored_key, value in records:
                    key, event_id = unwrap_key(stored_key)
                    event_id = event_id or new_event_id()
                    headers = event_headers(_trace_ids(value), event_id)
                    if not self._produce(topic, value, key, headers, event_id):
                        break  # no room
                    done += 1
                spool.commit(done)
                moved += done
                if done < len(records):
                    break
            with self._lock:
                if spool.pending == 0:
                    self.spooling = False
        if moved:
            with self._counts.lock:
                self._counts.replayed += moved
        return moved

    def replay_until(self, deadline: float) -> None:
        """Replay, on the calling thread, until the spool is empty or ``deadline``."""
        while self.spool.pending and (left := deadline - time.monotonic()) > 0:
            if not self.replay():  # no room: wait for the queue to drain a little
                self._queue.flush(min(0.2, left))

    def maintain(self) -> None:
        """The poller's periodic work: sync the spool when due, and now and then adopt
        the spools of exited children."""
        spool = self.spool
        spool.sync_if_due()
        if time.monotonic() >= self._next_adopt:
            self._next_adopt = time.monotonic() + ADOPT_INTERVAL
            if spool.adopt():  # children (prefork workers) that exited left events
                with self._lock:
                    self.spooling = True

    def kept(self) -> str:
        """What the spool keeps for the next start, for the close's stderr line."""
        return (
            f"{self.spool.pending} event(s) kept in the spool {self.spool.directory} "
            "for the next start"
        )
