"""``send_logs``: many events in one call, through :func:`send_log`'s publisher."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from time import time
from typing import Any, Final

from logtide_kafka._event import HOSTNAME, make_event, normalize_level, safe_str
from logtide_kafka.producer._direct import _default_publisher, _service_key

__all__ = ["send_logs"]

#: The item keys that are not metadata.  Any other (``trace_id``, ``span_id``,
#: ``category``) goes into the event's metadata, as ``send_log``'s keywords do: there
#: ``make_event`` lifts valid trace ids to the top level and the router reads the category.
_OWN_KEYS: Final = frozenset({"level", "message", "service", "metadata", "time"})
_REQUIRED: Final = 3


def send_logs(events: Iterable[Mapping[str, Any]], /) -> int:
    """Publish many events; return how many were enqueued.  Never blocks, never raises.

    Each item is a mapping with ``level``, ``message`` and ``service`` (as the positional
    arguments of :func:`send_log`), and optionally ``metadata`` (a mapping, copied, never
    changed), ``time`` (a UNIX time or ``2025-11-25T08:30:03.214Z``; default: the time of
    this call), ``trace_id``, ``span_id`` and ``category``, which mean what they mean as
    ``send_log`` keywords (any other key goes into metadata too).  Configuration, routing,
    redaction and counting are ``send_log``'s (:func:`configure`, :func:`stats`).  An item
    that cannot be read (not a mapping, a required key missing, metadata that is not a
    mapping) is counted as ``failed`` and skipped; should iterating ``events`` itself
    raise, what came before is sent and the error counted once.
    """
    publisher = _default_publisher()
    complete, publish = publisher.complete, publisher.publish
    now = time()  # one clock reading for the items without a time of their own
    sent = 0
    # Items of a batch mostly repeat the level and service of the one before: the same
    # string object is normalized once (strings only: they cannot change in between).
    last_level: object = None
    last_service: object = None
    level, known, name, key = "", False, "", b""
    try:
        for item in events:
            try:
                raw_level = item["level"]
                if raw_level is not last_level or type(raw_level) is not str:
                    level, known = normalize_level(raw_level)
                    last_level = raw_level
                message = item["message"]
                service = item["service"]
                if service is not last_service or type(service) is not str:
                    name, key = _service_key(service, publisher.producer)
                    last_service = service
                extra = item.get("metadata")
                metadata = (
                    {"hostname": HOSTNAME} if extra is None else {"hostname": HOSTNAME, **extra}
                )
                created = now
                if len(item) > _REQUIRED + (extra is not None):  # more than the usual keys
                    created = item.get("time", now)
                    for field, value in item.items():
                        if field not in _OWN_KEYS:
                            metadata[field] = value
                if not known:
                    metadata["level_name"] = safe_str(raw_level)
                if type(message) is not str:
                    message = safe_str(message)
                if publish(complete(make_event(created, name, level, message, metadata)), key):
                    sent += 1
            except Exception as exc:  # a bad item: counted, never raised
                publisher.producer.count_failure(exc)
    except Exception as exc:  # iterating ``events`` raised: the rest cannot be known
        publisher.producer.count_failure(exc)
    return sent
