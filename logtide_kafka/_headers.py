"""The Kafka record headers every event carries, and its unique event id.

Consumers trace and route by these without parsing the JSON value:

* ``event-id``: a compact id unique to the event, the same on every copy of it (a replay
  of an event whose acknowledgement never came sends it again with its id): a per-process
  random prefix plus a counter, ``<16 hex>.<counter hex>``.  A forked child draws a new
  prefix.  The shipper drops copies with an id it has seen (see ``_dedupe``).
* ``content-type``: ``application/json``.
* ``schema-version``: the version of the event schema (docs/event-schema.md).
* ``traceparent`` (W3C Trace Context), when the event has a valid ``trace_id`` *and*
  ``span_id``: ``00-<trace_id>-<span_id>-01``.  W3C requires a non-zero parent id, so
  an event with a trace id but no span id gets no ``traceparent`` (its trace id is in the
  JSON value).

The spool stores ``(topic, key, value)`` only.  An event librdkafka hands back (purged at
close, timed out) may already be in Kafka, so its id must survive the spool: such records
are spooled with the id folded into the key (:func:`wrap_key`), and unfolded on replay.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from typing import Any, Final

from logtide_kafka._contract import OTEL_SPAN_ID, OTEL_TRACE_ID

__all__ = [
    "CONTENT_TYPE",
    "EVENT_ID",
    "EVENT_SCHEMA_VERSION",
    "SCHEMA_VERSION",
    "TRACEPARENT",
    "Headers",
    "event_headers",
    "event_id_of",
    "new_event_id",
    "unwrap_key",
    "wrap_key",
]

#: Record headers as confluent-kafka takes them.
Headers = list[tuple[str, str | bytes | None]]

#: Header names.
EVENT_ID: Final = "event-id"
CONTENT_TYPE: Final = "content-type"
SCHEMA_VERSION: Final = "schema-version"
TRACEPARENT: Final = "traceparent"
#: The event schema's version (docs/event-schema.md), sent in ``schema-version``.
EVENT_SCHEMA_VERSION: Final = b"1"
_JSON: Final = (CONTENT_TYPE, b"application/json")
_SCHEMA: Final = (SCHEMA_VERSION, EVENT_SCHEMA_VERSION)
#: (trace_id, span_id) -> the traceparent header, or None when they make none.  The events
#: of one request share both, so most traced events cost a dict lookup; bounded.
_parents: dict[tuple[object, object], tuple[str, bytes] | None] = {}
_MAX_PARENTS: Final = 4096
_ZERO32: Final = "0" * 32
_ZERO16: Final = "0" * 16

_prefix: bytes = b""
_counter: itertools.count[int] = itertools.count()


def _reseed() -> None:
    """A new random prefix and counter: at import, and in every forked child."""
    global _prefix, _counter
    _prefix = os.urandom(8).hex().encode() + b"."
    _counter = itertools.count(1)


_reseed()
os.register_at_fork(after_in_child=_reseed)


def new_event_id() -> bytes:
    """A new id, unique to this process (``next()`` on a count is atomic)."""
    return _prefix + b"%x" % next(_counter)


def event_headers(event: Mapping[str, Any], event_id: bytes) -> Headers:
    """The headers of one event (see the module docstring)."""
    trace_id = event.get("trace_id")
    if trace_id is None:
        return [(EVENT_ID, event_id), _JSON, _SCHEMA]
    ids = (trace_id, event.get("span_id"))
    try:
        parent = _parents[ids]
    except KeyError:
        parent = _parents[ids] = _traceparent(*ids)
        if len(_parents) > _MAX_PARENTS:
            _parents.clear()
    except TypeError:  # an unhashable value: no valid id anyway
        parent = None
    if parent is None:
        return [(EVENT_ID, event_id), _JSON, _SCHEMA]
    return [(EVENT_ID, event_id), _JSON, _SCHEMA, parent]


def _traceparent(trace_id: object, span_id: object) -> tuple[str, bytes] | None:
    if (
        trace_id.__class__ is str
        and span_id.__class__ is str
        and OTEL_TRACE_ID.fullmatch(trace_id)
        and OTEL_SPAN_ID.fullmatch(span_id)
        and trace_id != _ZERO32
        and span_id != _ZERO16
    ):
        return (TRACEPARENT, f"00-{trace_id}-{span_id}-01".encode())
    return None


def event_id_of(headers: object) -> bytes | None:
    """The ``event-id`` of a record's headers (a list of ``(name, value)``), if any."""
    if not headers or not isinstance(headers, list):
        return None
    for name, value in headers:
        if name == EVENT_ID and isinstance(value, bytes):
            return value
    return None


# A spool key that carries an event id: MARK, id length (1 byte), id, then 0x01 and the
# real key, or nothing for a None key.  Service names never start with a NUL byte.
_MARK: Final = b"\x00logtide-id\x00"
_MAX_ID: Final = 255


def wrap_key(key: bytes | None, event_id: bytes | None) -> bytes | None:
    """The key to spool for a record whose event id must survive the spool."""
    if event_id is None or len(event_id) > _MAX_ID:
        return key
    tail = b"" if key is None else b"\x01" + key
    return b"%s%c%s%s" % (_MARK, len(event_id), event_id, tail)


def unwrap_key(stored: bytes | None) -> tuple[bytes | None, bytes | None]:
    """``(key, event id)`` of a spooled key (the id is None for an ordinary key)."""
    if stored is None or not stored.startswith(_MARK):
        return stored, None
    start = len(_MARK) + 1
    if len(stored) < start:
        return stored, None
    end = start + stored[len(_MARK)]
    event_id, tail = stored[start:end], stored[end:]
    if len(event_id) != end - start or (tail and tail[:1] != b"\x01"):
        return stored, None  # not one of ours after all
    return (tail[1:] if tail else None), event_id
