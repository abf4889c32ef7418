"""Ship log events from Kafka into LogTide, at least once (``logtide-kafka ship``).

A consumer group reads the log topics, turns every message into a LogTide entry
(``_ingest.normalize``), hands batches to a few posting threads (``_delivery.Poster``: retries,
bisection, poison entries, through ``_logtide_client``) and commits a partition's offsets
only up to its first message not yet accepted by LogTide or written to the dead-letter
topic.  A crash therefore re-sends, never loses: see ``docs/shipper.md``.

Needs the ``ship`` extra (httpx); nothing else in ``logtide_kafka`` imports this module.
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import logging
import random
import re
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
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
from confluent_kafka.admin import AdminClient, NewTopic

from logtide_kafka import _exitcodes
from logtide_kafka._contract import MAX_BATCH, MAX_BODY_BYTES, QUOTA_CODE
from logtide_kafka._dedupe import RecentIds
from logtide_kafka._delivery import Fatal, Health, Poster
from logtide_kafka._delivery import Item as _Item
from logtide_kafka._ingest import (
    Source,
    Unshippable,
    body_size,
    encode_entry,
    normalize,
)
from logtide_kafka._logtide_client import (
    LogTideClient,
    backoff,
    ingest_url,
)
from logtide_kafka._metrics import DEFAULT_METRICS_HOST, MetricsServer, ShipperMetrics
from logtide_kafka._redact import REDACTED
from logtide_kafka.lag import DEFAULT_GROUP
from logtide_kafka.topics import DLQ_TOPIC

__all__ = [
    "EXIT_ERROR",
    "EXIT_FATAL",
    "EXIT_OK",
    "QUOTA_CODE",
    "Shipper",
    "ShipperConfig",
    "run_shipper",
]

#: ``run`` return codes (the CLI's, from ``_exitcodes``): stopped cleanly; failed
#: unexpectedly; stopped by a fatal answer from LogTide (bad key, exhausted quota, wrong URL)
#: that retrying cannot fix.
EXIT_OK: Final = _exitcodes.EXIT_OK
EXIT_ERROR: Final = _exitcodes.EXIT_FAILED
EXIT_FATAL: Final = _exitcodes.EXIT_CANNOT_RUN

#: Batches in flight at once by default: measured in docs/benchmarks.md.
DEFAULT_CONCURRENCY: Final = 4

_log = logging.getLogger("logtide_kafka.shipper")
_kafka_log = logging.getLogger("logtide_kafka.shipper.kafka")

# The longest the main loop blocks in librdkafka, so stop() takes effect promptly.
_POLL_SLICE: Final = 0.2
# Every posting thread busy this long: the consumer is polled (paused) to stay in its
# group; one request can take request_timeout, a retried batch much longer.
_KEEPALIVE: Final = 2.0
# A dead-lettered value is cut to this size, so the envelope fits Kafka's default 1 MB.
_MAX_DLQ_VALUE: Final = 512 * 1024
# Keys that only make sense for a consumer; the rest of consumer_config (security,
# addresses…) is given to the dead-letter producer and the admin client too.
_CONSUMER_ONLY: Final = re.compile(
    r"group\..*|auto\.offset\.reset|enable\.auto\..*|auto\.commit\..*|partition\.assignment\."
    r"strategy|session\.timeout\.ms|heartbeat\.interval\.ms|max\.poll\.interval\.ms|fetch\..*|"
    r"isolation\.level|enable\.partition\.eof|queued\..*|check\.crcs|allow\.auto\.create\.topics|"
    r"consume\..*|coordinator\..*"
)
_MAX_CONCURRENCY: Final = 64
# Source(...) without the named tuple's own __new__ (a Python function): one per message.
_new_source: Final = functools.partial(tuple.__new__, Source)
_RESERVED: Final = frozenset({"bootstrap.servers", "group.id", "enable.auto.commit"})


@dataclass(frozen=True)
class ShipperConfig:
    """What the shipper reads, where it posts, and how it batches.

    ``topics``: names, or regular expressions when they start with ``^`` (``^logs\\.``).
    ``consumer_config``: extra librdkafka settings (security…), for the consumer and,
    minus consumer-only keys, the dead-letter producer.  ``metrics_port``: serve
    ``/metrics`` and ``/metrics.json`` there (0: any free port), on ``metrics_host``.
    ``concurrency``: batches in flight to LogTide at once; offsets still advance only past
    accepted batches.
    """

    brokers: str
    api_url: str
    api_key: str = field(repr=False)
    group: str = DEFAULT_GROUP
    topics: tuple[str, ...] = ("logs.application", "logs.infrastructure", "logs.security")
    dlq_topic: str = DLQ_TOPIC
    batch_max_events: int = 1000
    batch_max_bytes: int = 5_000_000
    batch_max_wait: float = 1.0
    request_timeout: float = 30.0
    max_backoff: float = 30.0
    #: Batches posted to LogTide at once (see ``docs/shipper.md``, "Concurrency").
    concurrency: int = DEFAULT_CONCURRENCY
    metrics_port: int | None = None
    metrics_host: str = DEFAULT_METRICS_HOST
    # Hidden from repr: it may hold sasl.password and other credentials.
    consumer_config: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        problems = _config_problems(self)
        if problems:
            raise ValueError("invalid shipper configuration: " + "; ".join(problems))


class Shipper:
    """Consumes the log topics and posts every event to LogTide (at least once).

    ``run()`` blocks until ``stop()`` or a fatal error.  One instance runs once.
    """

    def __init__(
        self, config: ShipperConfig, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.config = config
        self._transport = transport
        self._url = ingest_url(config.api_url)
        self._secret = config.api_key
        self._metrics = ShipperMetrics(redact=self._redact)
        self._stopping = False
        self._started = False
        self._fatal_error: str | None = None
        self._consumer: Any = None
        self._producer: Any = None
        self._client: LogTideClient | None = None
        self._poster: Poster | None = None
        self._server: MetricsServer | None = None
        # Consumed, not yet in a batch (read ahead, or polled while a batch was retried).
        self._pending: collections.deque[_Item] = collections.deque()
        self._batch: list[_Item] = []
        # Batches handed to the posting threads, in submission order.
        self._inflight: dict[Future[None], list[_Item]] = {}
        self._pool: ThreadPoolExecutor | None = None
        # Every consumed item of an owned partition not yet committed, in offset order.
        self._track: dict[tuple[str, int], collections.deque[_Item]] = {}
        self._commit_nothing = False
        self._owned: set[tuple[str, int]] = set()
        self._committed: dict[tuple[str, int], int] = {}
        self._paused = False
        self._repause = False
        self._last_poll = time.monotonic()
        self._warned: set[str] = set()
        self._random = random.Random()
        self._dlq_topic = config.dlq_topic
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
            self._loop()
            return EXIT_OK
        except Fatal as exc:
            self._commit_nothing = True
            self._fatal_error = self._redact(f"{exc}; nothing was committed")
            self._metrics.error(self._fatal_error)
            _log.error("stopped shipping: %s", self._fatal_error)
            return EXIT_FATAL
        except Exception as exc:
            self._commit_nothing = True
            text = self._redact(f"{type(exc).__name__}: {exc}")
            self._fatal_error = text
            self._metrics.error(text)
            _log.error("stopped shipping after an unexpected error: %s", text)
            return EXIT_ERROR
        finally:
            self._close()

    def stop(self) -> None:
        """Ask :meth:`run` to finish: safe from any thread and from a signal handler.

        No message is read after this.  Requests under way get their answer, batches waiting
        to retry are abandoned; only what LogTide accepted is committed.
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
            self._server = MetricsServer(self._metrics, config.metrics_port, config.metrics_host)
            _log.info("metrics on %s port %d", config.metrics_host, self._server.port)
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
        self._client = LogTideClient(
            config.api_url,
            config.api_key,
            timeout=config.request_timeout,
            pool_size=config.concurrency,
            transport=self._transport,
        )
        self._poster = Poster(
            self._client,
            Health(self._metrics),
            self._metrics,
            max_backoff=config.max_backoff,
            stopping=lambda: self._stopping,
            wait=self._sleep,
        )
        self._pool = ThreadPoolExecutor(config.concurrency, thread_name_prefix="logtide-post")
        self._consumer = Consumer(
            {
                "client.id": "logtide-shipper",
                "auto.offset.reset": "earliest",
                "enable.auto.offset.store": False,
                **config.consumer_config,
                "bootstrap.servers": config.brokers,
                "group.id": config.group,
                "enable.auto.commit": False,
                "on_commit": self._on_commit,
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
        self._stopping = True  # the posting threads give up waiting
        if self._pool is not None:
            self._pool.shutdown(wait=True)  # requests under way get their answer
            for batch in self._inflight.values():
                if all(item.done for item in batch):
                    self._metrics.add("batches")
            self._inflight.clear()
            self._metrics.set_state(in_flight=0)
        if self._consumer is not None and not self._commit_nothing:
            self._commit_offsets(self._done_offsets(self._owned), asynchronous=False)
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

    # -- the main loop: the consumer's thread ------------------------------------------------

    def _loop(self) -> None:
        """Read batches and hand them to the posting threads, at most ``concurrency`` at once;
        commit each partition up to its first message not yet done."""
        assert self._pool is not None
        while not self._stopping:
            self._reap()
            if len(self._inflight) >= self.config.concurrency:
                self._await_slot()
                continue
            if self._paused:
                self._resume()
            self._collect()
            batch, self._batch = self._batch, []
            if batch and not self._stopping:
                self._inflight[self._pool.submit(self._work, batch)] = batch
                self._metrics.set_state(in_flight=len(self._inflight))

    def _await_slot(self) -> None:
        """Wait for a posting thread to finish, keeping the consumer in its group (paused)."""
        concurrent.futures.wait(
            self._inflight, timeout=_POLL_SLICE, return_when=concurrent.futures.FIRST_COMPLETED
        )
        if time.monotonic() - self._last_poll > _KEEPALIVE:
            if not self._paused:
                self._pause()
            self._poll(0)

    def _reap(self) -> None:
        """Take in finished batches: raise a posting thread's error; commit what is done."""
        finished = [future for future in self._inflight if future.done()]
        for future in finished:
            batch = self._inflight.pop(future)
            error = future.exception()
            if error is not None:
                raise error
            if all(item.done for item in batch):
                self._metrics.add("batches")
        if finished:
            self._metrics.set_state(in_flight=len(self._inflight))
            self._commit_offsets(self._done_offsets(self._owned), asynchronous=True)

    def _work(self, batch: list[_Item]) -> None:
        """One batch, on a posting thread: post it, then dead-letter what LogTide refused."""
        assert self._poster is not None
        sendable = [item for item in batch if item.payload is not None and not item.done]
        if sendable:
            self._poster.deliver(sendable)
        dead = [item for item in batch if item.reason is not None and not item.done]
        if dead and not self._stopping:
            self._dead_letter(dead)

    def _sleep(self, delay: float) -> None:
        """Sleep ``delay`` seconds on a posting thread, waking early on :meth:`stop`."""
        end = time.monotonic() + delay
        while not self._stopping:
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(remaining, 0.05))

    # -- reading ---------------------------------------------------------------------------

    def _collect(self) -> None:
        """Fill ``_batch`` until it has enough events or bytes, its time is up, or stop."""
        config = self.config
        batch = self._batch
        size = entries = 0
        deadline: float | None = None
        pending = self._pending
        max_events, max_bytes = config.batch_max_events, config.batch_max_bytes
        while not self._stopping:
            if pending and deadline is None:
                deadline = time.monotonic() + config.batch_max_wait
            while pending and len(batch) < max_events:
                payload = pending[0].payload
                if payload is not None:
                    grown = body_size(size + len(payload), entries + 1)
                    if entries and grown > max_bytes:
                        return  # full by size; the item starts the next batch
                    size += len(payload)
                    entries += 1
                batch.append(pending.popleft())
            now = time.monotonic()
            if len(batch) >= config.batch_max_events or (deadline is not None and now >= deadline):
                return
            timeout = _POLL_SLICE if deadline is None else min(_POLL_SLICE, deadline - now)
            wanted = min(500, config.batch_max_events - len(batch))
            messages = self._consumer.consume(num_messages=wanted, timeout=timeout)
            self._last_poll = time.monotonic()
            self._accept(messages)
            if not batch and not self._pending:
                return  # nothing to read: let the main loop take in finished batches

    def _accept(self, messages: Sequence[Message]) -> None:
        """Turn consumed messages into pending items (or report consumer errors).

        Runs for every message consumed, so the common case is one loop with its lookups
        hoisted, and the counters reach the metrics (a lock) once per call."""
        pending = self._pending
        tracks = self._track
        dlq_topic = self._dlq_topic
        repeats = self._recent.repeats
        consumed = normalized = 0
        try:
            for message in messages:
                error = message.error()
                if error is not None:
                    self._consumer_error(error)
                    continue
                # Never None on a message without an error.
                topic = message.topic() or ""
                partition = message.partition() or 0
                offset = message.offset() or 0
                kind, stamp = message.timestamp()
                source = _new_source(
                    (topic, partition, offset, message.key(), stamp if kind else None)
                )
                raw = message.value()
                if topic == dlq_topic:
                    # A pattern subscription matched the dead-letter topic itself: shipping
                    # its envelopes would dead-letter them again, forever.  Skipped, and
                    # committed.
                    self._warn_once("dlq", f"not shipping the dead-letter topic {topic}")
                    item = _Item(source, raw, None, done=True)
                else:
                    consumed += 1
                    if repeats(topic, partition, offset, message.headers()):
                        self._metrics.add("duplicates_dropped")  # its first copy is shipped
                        item = _Item(source, raw, None, done=True)
                    else:
                        try:
                            entry, converted = normalize(raw, source)
                        except Unshippable as exc:
                            item = _Item(source, raw, None, exc.reason)
                        else:
                            normalized += converted
                            item = _Item(source, raw, encode_entry(entry))
                pending.append(item)
                track = tracks.get((topic, partition))
                if track is None:
                    track = tracks[(topic, partition)] = collections.deque()
                track.append(item)
        finally:
            if consumed:
                self._metrics.add("messages_consumed", consumed)
            if normalized:
                self._metrics.add("normalized", normalized)

    def _consumer_error(self, error: KafkaError) -> None:
        if error.fatal():
            raise KafkaException(error)
        if error.code() != KafkaError._PARTITION_EOF:
            self._warn_once(error.str(), f"Kafka consumer: {error.str()}")

    # -- shipping a batch ------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        return backoff(attempt, self.config.max_backoff, self._random)

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
            self._sleep(delay)
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

    def _done_offsets(self, only: set[tuple[str, int]]) -> list[TopicPartition]:
        """For each partition in ``only``: the offset after its unbroken run of done
        messages (the first one not done stops it there), when that is new."""
        offsets = []
        for key in only:
            track = self._track.get(key)
            end = None
            while track and track[0].done:
                end = track.popleft().source.offset + 1
            if end is not None and end > self._committed.get(key, -1):
                offsets.append(TopicPartition(key[0], key[1], end))
        return offsets

    def _commit_offsets(self, offsets: list[TopicPartition], *, asynchronous: bool) -> None:
        """Commit ``offsets``: asynchronously while shipping (the result comes to
        :meth:`_on_commit`), synchronously at revocation and shutdown."""
        if not offsets:
            return
        for tp in offsets:  # committed or not, never asked again: a later offset follows
            self._committed[(tp.topic, tp.partition)] = tp.offset
        try:
            self._consumer.commit(offsets=offsets, asynchronous=asynchronous)
        except KafkaException as exc:
            self._commit_failed(exc)
            return
        if not asynchronous:
            self._metrics.add("commits")

    def _on_commit(self, error: KafkaError | None, _partitions: list[TopicPartition]) -> None:
        """The result of an asynchronous commit (served by the consumer's poll)."""
        if error is None:
            self._metrics.add("commits")
        elif error.code() != KafkaError._NO_OFFSET:
            self._commit_failed(error.str())

    def _commit_failed(self, error: object) -> None:
        # Not fatal: those messages are shipped again by whoever owns them next.
        self._metrics.add("commit_errors")
        problem = self._redact(f"committing offsets failed: {error}")
        self._metrics.error(problem)
        _log.warning("%s (the messages may be shipped again)", problem)

    # -- rebalances ------------------------------------------------------------------------

    def _on_assign(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        self._owned |= {(tp.topic, tp.partition) for tp in partitions}
        for tp in partitions:
            self._committed.pop((tp.topic, tp.partition), None)
        self._repause = True

    def _on_revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        # Still ours for the length of this callback: commit what was delivered.  Batches
        # of these partitions still in flight are abandoned: the next owner reads them again.
        if not self._commit_nothing:
            self._commit_offsets(self._done_offsets(revoked), asynchronous=False)
        self._release(revoked)

    def _on_lost(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        self._release({(tp.topic, tp.partition) for tp in partitions})

    def _release(self, partitions: set[tuple[str, int]]) -> None:
        """Forget partitions that are no longer ours: their unfinished messages belong to
        the next owner, which reads them again from the committed offset."""
        self._metrics.add("rebalances")
        for key in partitions:
            for item in self._track.pop(key, ()):
                if not item.done:
                    item.abandoned = True
        # In place: _collect holds on to the deque across the consume call that runs this.
        kept = [item for item in self._pending if item.partition not in partitions]
        self._pending.clear()
        self._pending.extend(kept)
        self._owned -= partitions
        for key in partitions:
            self._committed.pop(key, None)

    # -- keeping the consumer alive while a batch waits ------------------------------------

    def _poll(self, timeout: float) -> None:
        message = self._consumer.poll(timeout)
        self._last_poll = time.monotonic()
        if message is not None:
            # From a partition assigned since the pause: kept, for the next batch.
            self._accept((message,))
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
        return text.replace(self._secret, REDACTED) if self._secret else text

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
    if not 1 <= config.concurrency <= _MAX_CONCURRENCY:
        problems.append(f"concurrency must be 1-{_MAX_CONCURRENCY}")
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
