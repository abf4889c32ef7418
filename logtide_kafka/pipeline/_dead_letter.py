"""The dead-letter topic: where the shipper writes each message LogTide refused (or that
cannot be shipped), with the reason and where it came from, retrying until Kafka has it.

The envelope's fields are documented in ``docs/shipper.md`` ("The dead-letter topic").
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from logtide_kafka.pipeline._delivery import Item
from logtide_kafka.pipeline._logtide_client import backoff
from logtide_kafka.pipeline._metrics import ShipperMetrics
from logtide_kafka.pipeline._shipper_log import SHIPPER_LOG as _log

__all__ = ["MAX_DLQ_VALUE", "DeadLetters", "ensure_topic", "envelope"]

#: A dead-lettered value is cut to this size, so the envelope fits Kafka's default 1 MB.
MAX_DLQ_VALUE: Final = 512 * 1024
# How much longer than a request a flush of the dead-letter producer may take.
_FLUSH_MARGIN: Final = 35.0


class DeadLetters:
    """Writes items to ``topic`` with an idempotent producer; thread-safe (the posting
    threads call :meth:`write`).  :meth:`open` creates the producer from ``settings``
    (the consumer's, minus consumer-only keys); ``stopping()`` ends the retries,
    ``sleep(seconds)`` waits between them (waking early on stop)."""

    def __init__(
        self,
        topic: str,
        group: str,
        metrics: ShipperMetrics,
        *,
        redact: Callable[[str], str],
        max_backoff: float,
        flush_timeout: float,
        stopping: Callable[[], bool],
        sleep: Callable[[float], None],
    ) -> None:
        self.topic = topic
        self._group = group
        self._metrics = metrics
        self._redact = redact
        self._max_backoff = max_backoff
        self._flush_timeout = flush_timeout + _FLUSH_MARGIN
        self._stopping = stopping
        self._sleep = sleep
        self._random = random.Random()
        self._producer: Any = None

    def open(self, settings: Mapping[str, Any], logger: logging.Logger) -> None:
        self._producer = Producer(
            {
                "client.id": "logtide-shipper-dlq",
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": 30_000,
                **settings,
                "logger": logger,
            }
        )

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)

    def backoff(self, attempt: int) -> float:
        return backoff(attempt, self._max_backoff, self._random)

    def write(self, items: list[Item]) -> None:
        """Write ``items`` to the dead-letter topic, retrying until Kafka has them all (or
        the shipper stops: they are left uncommitted for the next run)."""
        attempt = 0
        while True:
            items = [item for item in items if not item.abandoned and not item.done]
            if not items:
                return
            failures: list[str] = []
            for item in items:
                self._produce(item, failures)
            left = self._producer.flush(self._flush_timeout)
            if left:
                failures.append(f"{left} message(s) still queued")
            if not failures:
                return
            problem = self._redact(f"writing to {self.topic} failed: {failures[0]}")
            self._metrics.error(problem)
            if self._stopping():
                _log.error("%s; stopping, those messages are left for the next run", problem)
                return
            delay = self.backoff(attempt)
            _log.error("%s; retry in %.1f s", problem, delay)
            self._metrics.add("retries")
            self._sleep(delay)
            attempt += 1

    def _produce(self, item: Item, failures: list[str]) -> None:
        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is None:
                item.done = True
                self._metrics.add("dead_lettered")
            else:
                failures.append(error.str())

        source = item.source
        headers = [
            ("logtide.dlq.reason", (item.reason or "")[:1000].encode()),
            ("logtide.source.topic", source.topic.encode()),
            ("logtide.source.partition", str(source.partition).encode()),
            ("logtide.source.offset", str(source.offset).encode()),
            ("logtide.dlq.group", self._group.encode()),
        ]
        try:
            self._producer.produce(
                self.topic,
                value=envelope(item, self._group),
                key=source.key,
                headers=headers,
                on_delivery=delivered,
            )
        except (BufferError, KafkaException) as exc:
            failures.append(str(exc))
        self._producer.poll(0)


def envelope(item: Item, group: str) -> bytes:
    """The dead-letter message for ``item``: the reason, the source coordinates, the value
    (cut to :data:`MAX_DLQ_VALUE`) and the entry LogTide was sent."""
    source = item.source
    raw = item.raw
    document: dict[str, Any] = {
        "reason": item.reason,
        "source": {
            **source.coordinates(),
            "timestamp": source.timestamp_ms,
            "key": source.key.decode("utf-8", "backslashreplace") if source.key else None,
        },
        "group": group,
        "failed_at": datetime.now(UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
        "value": None,
    }
    if raw is not None:
        document["value_size"] = len(raw)
        cut = raw[:MAX_DLQ_VALUE]
        if len(cut) < len(raw):
            document["value_truncated"] = True
        try:
            document["value"] = cut.decode()
        except UnicodeDecodeError:
            document["value"] = cut.decode("utf-8", "backslashreplace")
            document["value_encoding"] = "backslashreplace"
    if item.payload is not None and len(item.payload) <= MAX_DLQ_VALUE:
        document["entry"] = orjson.Fragment(item.payload)  # what LogTide was sent
    return orjson.dumps(document)


def ensure_topic(settings: Mapping[str, Any], topic: str, logger: logging.Logger) -> None:
    """Create the dead-letter topic with the cluster's defaults when it is missing."""
    admin = AdminClient(dict(settings), logger=logger)
    try:
        if topic in admin.list_topics(timeout=10).topics:
            return
        future = admin.create_topics([NewTopic(topic, -1, -1)], request_timeout=15)[topic]
        future.result(timeout=20)
        _log.info("created the dead-letter topic %s", topic)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return
        _log.warning("could not create the dead-letter topic %s: %s", topic, exc)
