"""Ship log events from Kafka into LogTide, at least once (``logtide-kafka ship``).

A consumer group reads the log topics, turns every message into a LogTide entry
(``_ingest.normalize``), posts batches to ``POST {api_url}/api/v1/ingest`` and commits a
partition's offsets only once every message up to them was accepted by LogTide or written to
the dead-letter topic.  A crash therefore re-sends, never loses: see ``docs/shipper.md``.

Needs the ``ship`` extra (httpx); nothing else in ``logtide_kafka`` imports this module.
"""

from __future__ import annotations

import collections
import email.utils
import logging
import random
import re
import signal
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any, Final

import httpx
import orjson
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from logtide_kafka._dedupe import RecentIds
from logtide_kafka._ingest import (
    MAX_BATCH,
    Source,
    Unshippable,
    body_size,
    encode_body,
    encode_entry,
    normalize,
)
from logtide_kafka._metrics import MetricsServer, ShipperMetrics

__all__ = [
    "EXIT_ERROR",
    "EXIT_FATAL",
    "EXIT_OK",
    "QUOTA_CODE",
    "Shipper",
    "ShipperConfig",
    "run_shipper",
]

#: ``run`` return codes: stopped cleanly; failed unexpectedly; stopped by a fatal answer
#: from LogTide (bad key, exhausted quota, wrong URL) that retrying cannot fix.
EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_FATAL: Final = 2
#: The ``code`` of LogTide's monthly-quota 429, which waiting does not cure.
QUOTA_CODE: Final = "capability.ingestion.max_events_monthly.exceeded"
INGEST_PATH: Final = "/api/v1/ingest"
#: LogTide's own body limit.
MAX_BODY_BYTES: Final = 50 * 1024 * 1024

_log = logging.getLogger("logtide_kafka.shipper")
_kafka_log = logging.getLogger("logtide_kafka.shipper.kafka")

# The longest the main loop blocks in librdkafka, so stop() takes effect promptly.
_POLL_SLICE: Final = 0.2
# A batch that has kept the consumer from polling this long polls it (paused) to stay in
# the group: one request can take request_timeout, a bisected batch many requests.
_KEEPALIVE: Final = 2.0
_BASE_BACKOFF: Final = 0.5
_MAX_RETRY_AFTER: Final = 3600.0
# A dead-lettered value is cut to this size, so the envelope fits Kafka's default 1 MB.
_MAX_DLQ_VALUE: Final = 512 * 1024
_REDACTED: Final = "[REDACTED]"
# Keys that only make sense for a consumer; the rest of consumer_config (security,
# addresses…) is given to the dead-letter producer and the admin client too.
_CONSUMER_ONLY: Final = re.compile(
    r"group\..*|auto\.offset\.reset|enable\.auto\..*|auto\.commit\..*|partition\.assignment\."
    r"strategy|session\.timeout\.ms|heartbeat\.interval\.ms|max\.poll\.interval\.ms|fetch\..*|"
    r"isolation\.level|enable\.partition\.eof|queued\..*|check\.crcs|allow\.auto\.create\.topics|"
    r"consume\..*|coordinator\..*"
)
_RESERVED: Final = frozenset({"bootstrap.servers", "group.id", "enable.auto.commit"})


@dataclass(frozen=True)
class ShipperConfig:
    """What the shipper reads, where it posts, and how it batches.

    ``topics``: names, or regular expressions when they start with ``^`` (``^logs\\.``).
    ``consumer_config``: extra librdkafka settings (security…), for the consumer and,
    minus consumer-only keys, the dead-letter producer.  ``metrics_port``: serve
    ``/metrics`` and ``/metrics.json`` there (0: any free port).
    """

    brokers: str
    api_url: str
    api_key: str = field(repr=False)
    group: str = "logtide-ingest"
    topics: tuple[str, ...] = ("logs.application", "logs.infrastructure", "logs.security")
    dlq_topic: str = "logs.dlq"
    batch_max_events: int = 1000
    batch_max_bytes: int = 5_000_000
    batch_max_wait: float = 1.0
    request_timeout: float = 30.0
    max_backoff: float = 30.0
    metrics_port: int | None = None
    # Hidden from repr: it may hold sasl.password and other credentials.
    consumer_config: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        problems = _config_problems(self)
        if problems:
            raise ValueError("invalid shipper configuration: " + "; ".join(problems))


class _Fatal(Exception):
    """LogTide gave an answer that retrying cannot fix: stop without committing."""


@dataclass(slots=True, eq=False)
class _Item:
    """One consumed message on its way to LogTide or the dead-letter topic."""

    source: Source
    raw: bytes | None
    #: The encoded LogTide entry; None when the message cannot be shipped.
    payload: bytes | None
    #: Why it goes to the dead-letter topic (set before sending, or by LogTide's answer).
    reason: str | None = None
    #: Shipped or dead-lettered: its offset may be committed.
    done: bool = False
    #: Its partition was revoked before it was done: the new owner reads it again.
    abandoned: bool = False

    @property
    def partition(self) -> tuple[str, int]:
        return (self.source.topic, self.source.partition)


@dataclass(frozen=True, slots=True)
class _Answer:
    """What one batch's POST came to."""

    kind: str  # "ok" | "invalid" (400) | "too_large" (413) | "abandoned"
    detail: str = ""
    rejected: Mapping[int, str] = field(default_factory=dict)


class Shipper:
    """Consumes the log topics and posts every event to LogTide (at least once).

    ``run()`` blocks until ``stop()`` or a fatal error.  One instance runs once.
    """

    def __init__(self, config: ShipperConfig) -> None:
        self.config = config
        self._url = _ingest_url(config.api_url)
        self._secret = config.api_key
        self._metrics = ShipperMetrics(redact=self._redact)
        self._stopping = False
        self._started = False
        self._fatal_error: str | None = None
        self._consumer: Any = None
        self._producer: Any = None
        self._client: httpx.Client | None = None
        self._server: MetricsServer | None = None
        # Consumed, not yet in a batch (read ahead, or polled while a batch was retried).
        self._pending: collections.deque[_Item] = collections.deque()
        self._batch: list[_Item] = []
        self._owned: set[tuple[str, int]] = set()
        self._committed: dict[tuple[str, int], int] = {}
        self._paused = False
        self._repause = False
        self._last_poll = time.monotonic()
        self._warned: set[str] = set()
        self._random = random.Random()
        self._recent = RecentIds()  # event ids read lately: a replayed repeat is dropped

    # -- public surface ---------------------------------------------------------------------

    def run(self) -> int:
        """Ship until :meth:`stop`; return :data:`EXIT_OK`, :data:`EXIT_FATAL` or
        :data:`EXIT_ERROR`.  Offsets are committed only for delivered messages."""
        if self._started:
            raise RuntimeError("a Shipper runs only once; create a new one")
        self._started = True
        try:
            self._open()
            _log.info(
                "shipping %s (group %s) to %s",
                ", ".join(self.config.topics),
                self.config.group,
                self._url,
            )
            while not self._stopping:
                self._collect()
                if self._batch:
                    self._ship_batch()
            return EXIT_OK
        except _Fatal as exc:
            self._fatal_error = self._redact(str(exc))
            self._metrics.error(self._fatal_error)
            _log.error("stopped shipping: %s", self._fatal_error)
            return EXIT_FATAL
        except Exception as exc:
            text = self._redact(f"{type(exc).__name__}: {exc}")
            self._fatal_error = text
            self._metrics.error(text)
            _log.error("stopped shipping after an unexpected error: %s", text)
            return EXIT_ERROR
        finally:
            self._close()

    def stop(self) -> None:
        """Ask :meth:`run` to finish: safe from any thread and from a signal handler.

        No message is read after this.  A batch not yet sent is sent once, a batch waiting
        to retry is abandoned; only what LogTide accepted is committed.
        """
        self._stopping = True  # a plain store: no lock, so a signal handler cannot deadlock

    def metrics(self) -> dict[str, Any]:
        """The counters as a JSON-ready dict (see ``docs/shipper.md``)."""
        return self._metrics.snapshot()

    def prometheus(self) -> str:
        """The counters in Prometheus text exposition format."""
        return self._metrics.prometheus()

    @property
    def fatal_error(self) -> str | None:
        """Why :meth:`run` stopped on its own, or None."""
        return self._fatal_error

    @property
    def metrics_port(self) -> int | None:
        """The port of the metrics endpoint, once running (None when there is none)."""
        return self._server.port if self._server is not None else None

    def __repr__(self) -> str:
        return f"Shipper(url={self._url!r}, group={self.config.group!r})"

    # -- setup and teardown -----------------------------------------------------------------

    def _open(self) -> None:
        config = self.config
        if config.metrics_port is not None:
            self._server = MetricsServer(self._metrics, config.metrics_port)
        shared = {
            key: value
            for key, value in config.consumer_config.items()
            if not _CONSUMER_ONLY.fullmatch(key)
        }
        shared["bootstrap.servers"] = config.brokers
        self._ensure_dlq_topic(shared)
        self._producer = Producer(
            {
                "client.id": "logtide-shipper-dlq",
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": 30_000,
                **shared,
                "logger": _kafka_log,
            }
        )
        self._client = httpx.Client(
            timeout=httpx.Timeout(
                config.request_timeout, connect=min(10.0, config.request_timeout)
            ),
            headers={"Content-Type": "application/json", "User-Agent": "logtide-kafka-shipper"},
            follow_redirects=False,
        )
        self._consumer = Consumer(
            {
                "client.id": "logtide-shipper",
                "auto.offset.reset": "earliest",
                "enable.auto.offset.store": False,
                **config.consumer_config,
                "bootstrap.servers": config.brokers,
                "group.id": config.group,
                "enable.auto.commit": False,
                "logger": _kafka_log,
            }
        )
        self._consumer.subscribe(
            list(config.topics),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    def _ensure_dlq_topic(self, settings: Mapping[str, Any]) -> None:
        """Create the dead-letter topic with the cluster's defaults when it is missing."""
        admin = AdminClient(dict(settings), logger=_kafka_log)
        topic = self.config.dlq_topic
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

    def _close(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close()  # runs on_revoke: commits what the last batch delivered
            except Exception as exc:  # closing must not hide the run's own outcome
                _log.warning("closing the consumer failed: %s", self._redact(str(exc)))
        if self._producer is not None:
            self._producer.flush(10)
        if self._client is not None:
            self._client.close()
        if self._server is not None:
            self._server.close()

    # -- reading ---------------------------------------------------------------------------

    def _collect(self) -> None:
        """Fill ``_batch`` until it has enough events or bytes, its time is up, or stop."""
        config = self.config
        batch = self._batch
        size = entries = 0
        deadline: float | None = None
        while not self._stopping:
            while self._pending and len(batch) < config.batch_max_events:
                item = self._pending[0]
                if item.payload is not None:
                    grown = body_size(size + len(item.payload), entries + 1)
                    if entries and grown > config.batch_max_bytes:
                        return  # full by size; the item starts the next batch
                    size += len(item.payload)
                    entries += 1
                batch.append(self._pending.popleft())
                if deadline is None:
                    deadline = time.monotonic() + config.batch_max_wait
            now = time.monotonic()
            if len(batch) >= config.batch_max_events or (deadline is not None and now >= deadline):
                return
            timeout = _POLL_SLICE if deadline is None else min(_POLL_SLICE, deadline - now)
            wanted = min(500, config.batch_max_events - len(batch))
            messages = self._consumer.consume(num_messages=wanted, timeout=timeout)
            self._last_poll = time.monotonic()
            for message in messages:
                self._accept(message)

    def _accept(self, message: Message) -> None:
        """Turn a consumed message into a pending item (or report a consumer error)."""
        error = message.error()
        if error is not None:
            if error.fatal():
                raise KafkaException(error)
            if error.code() != KafkaError._PARTITION_EOF:
                self._warn_once(error.str(), f"Kafka consumer: {error.str()}")
            return
        # Never None on a message without an error.
        topic, partition, offset = message.topic() or "", message.partition(), message.offset()
        kind, stamp = message.timestamp()
        source = Source(topic, partition or 0, offset or 0, message.key(), stamp if kind else None)
        raw = message.value()
        if topic == self.config.dlq_topic:
            # A pattern subscription matched the dead-letter topic itself: shipping its
            # envelopes would dead-letter them again, forever.  Skipped, and committed.
            self._warn_once("dlq", f"not shipping the dead-letter topic {topic}")
            self._pending.append(_Item(source, raw, None, done=True))
            return
        self._metrics.add("messages_consumed")
        if self._recent.repeats(topic, source.partition, source.offset, message.headers()):
            self._metrics.add("duplicates_dropped")  # done: its first copy is shipped
            self._pending.append(_Item(source, raw, None, done=True))
            return
        try:
            entry, converted = normalize(raw, source)
        except Unshippable as exc:
            self._pending.append(_Item(source, raw, None, exc.reason))
            return
        if converted:
            self._metrics.add("normalized")
        self._pending.append(_Item(source, raw, encode_entry(entry)))

    # -- shipping a batch ------------------------------------------------------------------

    def _ship_batch(self) -> None:
        batch = self._batch
        try:
            sendable = [item for item in batch if item.payload is not None and not item.done]
            if sendable:
                self._deliver(sendable)
            dead = [item for item in batch if item.reason is not None and not item.done]
            if dead:
                self._dead_letter(dead)
            self._commit(batch)
            if all(item.done for item in batch):
                self._metrics.add("batches")
        finally:
            self._batch = []
            if self._paused:
                self._resume()

    def _deliver(self, items: list[_Item]) -> None:
        """Post ``items`` (split as LogTide's answers require); mark what it accepted."""
        stack = [items[i : i + MAX_BATCH] for i in range(0, len(items), MAX_BATCH)][::-1]
        while stack:
            chunk = [item for item in stack.pop() if not item.abandoned]
            if not chunk:
                continue
            sent, answer = self._post(chunk)
            if answer.kind == "abandoned":
                return
            if answer.kind == "ok":
                for index, item in enumerate(sent):
                    reason = answer.rejected.get(index)
                    if reason is None:
                        item.done = True
                    else:
                        item.reason = f"rejected by LogTide: {reason}"
                self._metrics.add("events_shipped", len(sent) - len(answer.rejected))
            elif len(sent) == 1:
                sent[0].reason = answer.detail
            else:
                half = len(sent) // 2
                self._metrics.add("splits")
                stack += [sent[half:], sent[:half]]  # the first half is posted first
            self._keepalive()

    def _post(self, chunk: list[_Item]) -> tuple[list[_Item], _Answer]:
        """POST one chunk until LogTide gives a final answer; retry what may pass later."""
        attempt = 0
        assert self._client is not None
        while True:
            chunk = [item for item in chunk if not item.abandoned]
            if not chunk:
                return chunk, _Answer("abandoned")
            body = encode_body([item.payload for item in chunk if item.payload is not None])
            self._metrics.add("requests")
            try:
                response = self._client.post(
                    self._url, content=body, headers={"X-API-Key": self._secret}
                )
            except httpx.HTTPError as exc:
                problem = f"request to LogTide failed: {type(exc).__name__}: {exc}"
                delay = self._backoff(attempt)
            else:
                if not response.is_success:
                    self._metrics.add("request_errors")
                answer = self._answer(response, len(chunk))
                if answer is not None:
                    return chunk, answer
                problem = f"LogTide answered {response.status_code}{_error_text(response)}"
                delay = self._retry_delay(response, attempt)
            if problem.startswith("request"):
                self._metrics.add("request_errors")
            problem = self._redact(problem)
            self._metrics.error(problem)
            if self._stopping:
                _log.warning("%s; stopping, the batch is left for the next run", problem)
                return chunk, _Answer("abandoned")
            _log.warning("%s; retry %d in %.1f s", problem, attempt + 1, delay)
            self._metrics.add("retries")
            self._wait(delay)
            if self._stopping:
                return chunk, _Answer("abandoned")
            attempt += 1

    def _answer(self, response: httpx.Response, count: int) -> _Answer | None:
        """The final answer in ``response``, None when it is worth retrying; raises
        :class:`_Fatal` when nothing will help."""
        status = response.status_code
        if 200 <= status < 300:
            return _Answer("ok", rejected=self._rejected(response, count))
        if status in (400, 422):
            return _Answer("invalid", f"LogTide answered {status}{_error_text(response)}")
        if status == 413:
            return _Answer("too_large", "LogTide answered 413: the entry is too large")
        if status in (401, 403):
            raise _Fatal(
                f"LogTide refused the API key ({status}{_error_text(response)}); "
                "nothing was committed"
            )
        if status == 429 and _json(response).get("code") == QUOTA_CODE:
            raise _Fatal(
                f"LogTide's monthly event quota is exhausted (429, {QUOTA_CODE}); "
                "nothing was committed"
            )
        if status in (408, 429) or status >= 500:
            return None
        raise _Fatal(
            f"unexpected answer {status}{_error_text(response)} from {self._url}; check the API URL"
        )

    def _rejected(self, response: httpx.Response, count: int) -> dict[int, str]:
        """``rejected`` entries of a 200, by index into the request."""
        items = _json(response).get("rejected")
        found: dict[int, str] = {}
        if not isinstance(items, list):
            return found
        for item in items:
            index = item.get("index") if isinstance(item, dict) else None
            if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < count:
                reason = item.get("reason")
                found[index] = reason if isinstance(reason, str) else orjson.dumps(reason).decode()
        return found

    def _retry_delay(self, response: httpx.Response, attempt: int) -> float:
        if response.status_code == 429:
            after = _retry_after(response.headers.get("Retry-After"))
            if after is not None:
                return min(after, _MAX_RETRY_AFTER)
        return self._backoff(attempt)

    def _backoff(self, attempt: int) -> float:
        """Exponential, capped at ``max_backoff``, with jitter (half to all of the step)."""
        step = min(self.config.max_backoff, _BASE_BACKOFF * 2 ** min(attempt, 30))
        return self._random.uniform(step / 2, step)

    # -- the dead-letter topic -------------------------------------------------------------

    def _dead_letter(self, items: list[_Item]) -> None:
        """Write ``items`` to the dead-letter topic, retrying until Kafka has them all."""
        attempt = 0
        while True:
            items = [item for item in items if not item.abandoned and not item.done]
            if not items:
                return
            failures: list[str] = []
            for item in items:
                self._produce_dead(item, failures)
            left = self._producer.flush(self.config.request_timeout + 35)
            if left:
                failures.append(f"{left} message(s) still queued")
            if not failures:
                return
            problem = self._redact(f"writing to {self.config.dlq_topic} failed: {failures[0]}")
            self._metrics.error(problem)
            if self._stopping:
                _log.error("%s; stopping, those messages are left for the next run", problem)
                return
            delay = self._backoff(attempt)
            _log.error("%s; retry in %.1f s", problem, delay)
            self._metrics.add("retries")
            self._wait(delay)
            attempt += 1

    def _produce_dead(self, item: _Item, failures: list[str]) -> None:
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
            ("logtide.dlq.group", self.config.group.encode()),
        ]
        try:
            self._producer.produce(
                self.config.dlq_topic,
                value=self._envelope(item),
                key=source.key,
                headers=headers,
                on_delivery=delivered,
            )
        except (BufferError, KafkaException) as exc:
            failures.append(str(exc))
        self._producer.poll(0)

    def _envelope(self, item: _Item) -> bytes:
        source = item.source
        raw = item.raw
        document: dict[str, Any] = {
            "reason": item.reason,
            "source": {
                **source.coordinates(),
                "timestamp": source.timestamp_ms,
                "key": source.key.decode("utf-8", "backslashreplace") if source.key else None,
            },
            "group": self.config.group,
            "failed_at": datetime.now(UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
            "value": None,
        }
        if raw is not None:
            document["value_size"] = len(raw)
            cut = raw[:_MAX_DLQ_VALUE]
            if len(cut) < len(raw):
                document["value_truncated"] = True
            try:
                document["value"] = cut.decode()
            except UnicodeDecodeError:
                document["value"] = cut.decode("utf-8", "backslashreplace")
                document["value_encoding"] = "backslashreplace"
        if item.payload is not None and len(item.payload) <= _MAX_DLQ_VALUE:
            document["entry"] = orjson.Fragment(item.payload)  # what LogTide was sent
        return orjson.dumps(document)

    # -- offsets ---------------------------------------------------------------------------

    def _done_offsets(
        self, items: Iterable[_Item], only: set[tuple[str, int]]
    ) -> list[TopicPartition]:
        """For each partition in ``only``: the offset after the unbroken run of done
        messages at the start of ``items`` (one not done stops its partition there).

        Abandoned items are skipped: they belong to an earlier ownership of their
        partition, whose messages the consumer reads again from the committed offset."""
        ends: dict[tuple[str, int], int] = {}
        stopped: set[tuple[str, int]] = set()
        for item in items:  # a partition's items are in offset order, as consumed
            key = item.partition
            if item.abandoned or key not in only or key in stopped:
                continue
            if item.done:
                ends[key] = item.source.offset + 1
            else:
                stopped.add(key)
        return [
            TopicPartition(topic, partition, end)
            for (topic, partition), end in ends.items()
            if end > self._committed.get((topic, partition), -1)
        ]

    def _commit(self, batch: list[_Item]) -> None:
        # Partitions revoked meanwhile were committed by _on_revoke, while still ours.
        self._commit_offsets(self._done_offsets(batch, self._owned))

    def _commit_offsets(self, offsets: list[TopicPartition]) -> None:
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # Not fatal: those messages are shipped again by whoever owns them next.
            self._metrics.add("commit_errors")
            problem = self._redact(f"committing offsets failed: {exc}")
            self._metrics.error(problem)
            _log.warning("%s (the messages may be shipped again)", problem)
            return
        self._metrics.add("commits")
        for tp in offsets:
            self._committed[(tp.topic, tp.partition)] = tp.offset

    # -- rebalances ------------------------------------------------------------------------

    def _on_assign(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        self._owned |= {(tp.topic, tp.partition) for tp in partitions}
        for tp in partitions:
            self._committed.pop((tp.topic, tp.partition), None)
        self._repause = True

    def _on_revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        # Still ours for the length of this callback: commit what was delivered.
        self._commit_offsets(self._done_offsets(self._batch, revoked))
        self._release(revoked)

    def _on_lost(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        self._release({(tp.topic, tp.partition) for tp in partitions})

    def _release(self, partitions: set[tuple[str, int]]) -> None:
        """Forget partitions that are no longer ours: their unfinished messages belong to
        the next owner, which reads them again from the committed offset."""
        self._metrics.add("rebalances")
        for item in self._batch:
            if item.partition in partitions and not item.done:
                item.abandoned = True
        self._pending = collections.deque(
            item for item in self._pending if item.partition not in partitions
        )
        self._owned -= partitions
        for key in partitions:
            self._committed.pop(key, None)

    # -- keeping the consumer alive while a batch waits ------------------------------------

    def _wait(self, delay: float) -> None:
        """Sleep ``delay`` seconds with every partition paused, polling the consumer so it
        stays in the group (max.poll.interval.ms) and handles rebalances."""
        self._pause()
        end = time.monotonic() + delay
        while not self._stopping:
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            self._poll(min(remaining, _POLL_SLICE))

    def _keepalive(self) -> None:
        if time.monotonic() - self._last_poll > _KEEPALIVE:
            self._pause()
            self._poll(0)

    def _poll(self, timeout: float) -> None:
        message = self._consumer.poll(timeout)
        self._last_poll = time.monotonic()
        if message is not None:
            # From a partition assigned since the pause: kept, for the next batch.
            self._accept(message)
        if self._repause:
            self._pause()

    def _pause(self) -> None:
        self._repause = False
        assignment = self._consumer.assignment()
        if assignment:
            self._consumer.pause(assignment)
        self._paused = True

    def _resume(self) -> None:
        assignment = self._consumer.assignment()
        if assignment:
            self._consumer.resume(assignment)
        self._paused = False

    # -- helpers ---------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, _REDACTED) if self._secret else text

    def _warn_once(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            _log.warning("%s", self._redact(text))
            self._metrics.error(self._redact(text))


def run_shipper(config: ShipperConfig, *, handle_signals: bool = True) -> int:
    """Run a :class:`Shipper` until SIGTERM or SIGINT (when ``handle_signals`` and called
    from the main thread) or a fatal error; return its exit code."""
    shipper = Shipper(config)
    previous: dict[signal.Signals, Any] = {}
    if handle_signals and threading.current_thread() is threading.main_thread():

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            shipper.stop()

        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        return shipper.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# -- module helpers ----------------------------------------------------------------------


def _config_problems(config: ShipperConfig) -> list[str]:
    problems = []
    if not config.brokers.strip():
        problems.append("brokers is empty")
    if not re.match(r"https?://[^/]", config.api_url):
        problems.append("api_url must start with http:// or https://")
    if not config.api_key:
        problems.append("api_key is empty")
    if not config.group.strip():
        problems.append("group is empty")
    if not config.topics or not all(config.topics):
        problems.append("topics must name at least one topic, none empty")
    for topic in config.topics:
        if topic.startswith("^"):
            try:
                re.compile(topic)
            except re.error as exc:
                problems.append(f"topic pattern {topic!r} is not a regular expression: {exc}")
    if not config.dlq_topic:
        problems.append("dlq_topic is empty")
    elif config.dlq_topic in config.topics:
        problems.append("dlq_topic must not be one of the topics shipped")
    if not 1 <= config.batch_max_events <= MAX_BATCH:
        problems.append(f"batch_max_events must be 1-{MAX_BATCH}")
    if not 1 <= config.batch_max_bytes <= MAX_BODY_BYTES:
        problems.append(f"batch_max_bytes must be 1-{MAX_BODY_BYTES}")
    if not config.batch_max_wait >= 0:
        problems.append("batch_max_wait must be >= 0")
    if not config.request_timeout > 0:
        problems.append("request_timeout must be > 0")
    if not config.max_backoff > 0:
        problems.append("max_backoff must be > 0")
    if config.metrics_port is not None and not 0 <= config.metrics_port <= 65535:
        problems.append("metrics_port must be 0-65535")
    max_poll = config.consumer_config.get("max.poll.interval.ms")
    if max_poll is not None and config.request_timeout * 1000 >= float(max_poll):
        # The consumer is not polled during a request: it would be dropped from the group.
        problems.append("request_timeout must be shorter than max.poll.interval.ms")
    reserved = sorted(_RESERVED & set(config.consumer_config))
    if reserved:
        problems.append(
            f"consumer_config must not set {', '.join(reserved)} (use brokers and group; "
            "offsets are always committed by the shipper)"
        )
    return problems


def _ingest_url(api_url: str) -> str:
    base = api_url.rstrip("/")
    return base if base.endswith(INGEST_PATH) else base + INGEST_PATH


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        document = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return {}
    return document if isinstance(document, dict) else {}


def _error_text(response: httpx.Response) -> str:
    """``": <error>"`` from a LogTide error body, or nothing."""
    document = _json(response)
    error = document.get("error") or document.get("message")
    if not isinstance(error, str):
        return ""
    details = document.get("details")
    if details is not None:
        error += " " + orjson.dumps(details).decode()[:300]
    return f": {error}"


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
