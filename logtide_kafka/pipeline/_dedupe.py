"""The shipper's memory of recent event ids: a repeat is dropped before LogTide.

An event whose acknowledgement never came is written to the spool at exit and replayed by
the next process; if the first copy reached Kafka after all, the topic holds it twice,
with the same ``event-id`` header.  :class:`RecentIds` remembers the last ``window`` ids
read, per partition (a key always maps to one partition, so both copies of an event land
in the same one), and says whether a message repeats one of them.

The same id at the *same* offset is not a repeat: that is the message itself read again
(a rebalance, a retried batch), and it must be shipped.  Memory is bounded: ``window`` ids in
all, the oldest forgotten first.  A repeat farther apart than the window, or read by another shipper
process, is shipped (at-least-once, as before).
"""

from __future__ import annotations

from collections import deque
from typing import Final

from logtide_kafka._headers import EVENT_ID, event_id_of

__all__ = ["DEFAULT_WINDOW", "RecentIds"]

#: Ids remembered, over all partitions (about 25 MB).  A replay comes right after the exit
#: that spooled it, so its repeats are a few thousand events (what was in flight) from the
#: first copies, plus what other producers wrote to those partitions meanwhile.
DEFAULT_WINDOW: Final = 100_000


class RecentIds:
    """The last ``window`` event ids read, each with its partition and offset."""

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self._window = window
        self._seen: dict[tuple[str, int], dict[bytes, int]] = {}
        # The order ids were remembered in: two deques, not one of pairs (no tuple per id).
        self._order_keys: deque[tuple[str, int]] = deque()
        self._order_ids: deque[bytes] = deque()

    def repeats(self, key: tuple[str, int], offset: int, headers: object) -> bool:
        """Remember this message's id; True when the id was read before at another
        offset of partition ``key`` (``(topic, partition)``) within the window.  Messages
        without an id never repeat."""
        # The producer writes the id first: one look before the general search.
        event_id = None
        if headers.__class__ is list and headers:
            first_name, first_value = headers[0]
            if first_name == EVENT_ID and first_value.__class__ is bytes:
                event_id = first_value
            else:
                event_id = event_id_of(headers)
        if event_id is None:
            return False
        ids = self._seen.get(key)
        if ids is None:
            ids = self._seen[key] = {}
        first = ids.get(event_id)
        if first is not None:
            return first != offset
        ids[event_id] = offset
        self._order_keys.append(key)
        self._order_ids.append(event_id)
        if len(self._order_ids) > self._window:
            old_key = self._order_keys.popleft()
            old = self._seen[old_key]
            del old[self._order_ids.popleft()]
            if not old:
                del self._seen[old_key]
        return False

    def __len__(self) -> int:
        """Ids remembered."""
        return len(self._order_ids)
