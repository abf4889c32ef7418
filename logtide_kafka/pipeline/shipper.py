"""Ship log events from Kafka into LogTide, at least once (``logtide-kafka ship``).

:class:`Shipper` runs the rooms below on a consumer group and owns their lifecycle: the
main loop hands each batch from ``_reader.Reader`` (consuming, converting with
``_ingest.normalize``, batching) to a few posting threads, where ``_delivery.Poster`` posts
it through ``_logtide_client`` (retries, bisection, poison entries) and
``_dead_letter.DeadLetters`` writes what LogTide refused; ``_offsets.Offsets`` commits a
partition only up to its first message not yet accepted or dead-lettered, and keeps that
straight across rebalances.  A crash therefore re-sends, never loses: see
``docs/shipper.md``.

Needs the ``ship`` extra (httpx); nothing else in ``logtide_kafka`` imports this module.
"""

from __future__ import annotations

import concurrent.futures
import gc
import re
import signal
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Final

import httpx
from confluent_kafka import Consumer, TopicPartition

from logtide_kafka import _exitcodes
from logtide_kafka._contract import MAX_BATCH, MAX_BODY_BYTES, QUOTA_CODE
from logtide_kafka._redact import REDACTED
from logtide_kafka._routing import TOPICS
from logtide_kafka.pipeline._dead_letter import DeadLetters, ensure_topic
from logtide_kafka.pipeline._delivery import Fatal, Health, Poster
from logtide_kafka.pipeline._delivery import Item as _Item
from logtide_kafka.pipeline._logtide_client import LogTideClient, ingest_url
from logtide_kafka.pipeline._metrics import DEFAULT_METRICS_HOST, MetricsServer, ShipperMetrics
from logtide_kafka.pipeline._offsets import Offsets
from logtide_kafka.pipeline._reader import POLL_SLICE, Reader
from logtide_kafka.pipeline._shipper_log import KAFKA_LOG
from logtide_kafka.pipeline._shipper_log import SHIPPER_LOG as _log
from logtide_kafka.pipeline.lag import DEFAULT_GROUP
from logtide_kafka.pipeline.topics import DLQ_TOPIC

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


# Keys that only make sense for a consumer; the rest of consumer_config (security,
# addresses…) is given to the dead-letter producer and the admin client too.
_CONSUMER_ONLY: Final = re.compile(
    r"group\..*|auto\.offset\.reset|enable\.auto\..*|auto\.commit\..*|partition\.assignment\."
    r"strategy|session\.timeout\.ms|heartbeat\.interval\.ms|max\.poll\.interval\.ms|fetch\..*|"
    r"isolation\.level|enable\.partition\.eof|queued\..*|check\.crcs|allow\.auto\.create\.topics|"
    r"consume\..*|coordinator\..*"
)
_MAX_CONCURRENCY: Final = 64
# The youngest generation's collection threshold in a process that only ships (CPython's
# default is 700): see _freeze_start_up_heap.
_GEN0_THRESHOLD: Final = 10_000
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
    topics: tuple[str, ...] = TOPICS
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
        self._client: LogTideClient | None = None
        self._poster: Poster | None = None
        self._server: MetricsServer | None = None
        self._offsets = Offsets(self._metrics, self._redact)
        self._reader = Reader(
            self._offsets,
            self._metrics,
            dlq_topic=config.dlq_topic,
            batch_max_events=config.batch_max_events,
            batch_max_bytes=config.batch_max_bytes,
            batch_max_wait=config.batch_max_wait,
            stopping=lambda: self._stopping,
            redact=self._redact,
        )
        self._dead_letters = DeadLetters(
            config.dlq_topic,
            config.group,
            self._metrics,
            redact=self._redact,
            max_backoff=config.max_backoff,
            flush_timeout=config.request_timeout,
            stopping=lambda: self._stopping,
            sleep=self._sleep,
        )
        # Batches handed to the posting threads, in submission order.
        self._inflight: dict[Future[None], list[_Item]] = {}
        self._pool: ThreadPoolExecutor | None = None

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
            self._offsets.freeze()
            self._fatal_error = self._redact(f"{exc}; nothing was committed")
            self._metrics.error(self._fatal_error)
            _log.error("stopped shipping: %s", self._fatal_error)
            return EXIT_FATAL
        except Exception as exc:
            self._offsets.freeze()
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
        ensure_topic(shared, config.dlq_topic, KAFKA_LOG)
        self._dead_letters.open(shared, KAFKA_LOG)
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
                "on_commit": self._offsets.on_commit,
                "logger": KAFKA_LOG,
            }
        )
        self._offsets.consumer = self._reader.consumer = self._consumer
        self._consumer.subscribe(
            list(config.topics),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    def _close(self) -> None:
        self._stopping = True  # the posting threads give up waiting
        if self._pool is not None:
            self._pool.shutdown(wait=True)  # requests under way get their answer
            for batch in self._inflight.values():
                if all(item.done for item in batch):
                    self._metrics.add("batches")
            self._inflight.clear()
            self._metrics.set_state(in_flight=0)
        if self._consumer is not None:
            self._offsets.commit(asynchronous=False)  # a no-op after a fatal error
            try:
                self._consumer.close()  # runs on_revoke: commits what the last batch delivered
            except Exception as exc:  # closing must not hide the run's own outcome
                _log.warning("closing the consumer failed: %s", self._redact(str(exc)))
        self._dead_letters.close()
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
            batch = self._reader.batch()
            if batch and not self._stopping:
                self._inflight[self._pool.submit(self._work, batch)] = batch
                self._metrics.set_state(in_flight=len(self._inflight))

    def _await_slot(self) -> None:
        """Wait for a posting thread to finish, keeping the consumer in its group (paused)."""
        concurrent.futures.wait(
            self._inflight, timeout=POLL_SLICE, return_when=concurrent.futures.FIRST_COMPLETED
        )
        self._reader.keepalive()

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
            self._offsets.commit(asynchronous=True)

    def _work(self, batch: list[_Item]) -> None:
        """One batch, on a posting thread: post it, then dead-letter what LogTide refused."""
        assert self._poster is not None
        sendable = [item for item in batch if item.payload is not None and not item.done]
        if sendable:
            self._poster.deliver(sendable)
        dead = [item for item in batch if item.reason is not None and not item.done]
        if dead and not self._stopping:
            self._dead_letters.write(dead)

    def _sleep(self, delay: float) -> None:
        """Sleep ``delay`` seconds on a posting thread, waking early on :meth:`stop`."""
        end = time.monotonic() + delay
        while not self._stopping:
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(remaining, 0.05))

    # -- rebalances (served by the consumer's poll, on its thread) ---------------------------

    def _on_assign(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        self._offsets.assigned(partitions)
        self._reader.assigned()

    def _on_revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        # Batches of these partitions still in flight are abandoned: the next owner reads
        # them again from what is committed here.
        self._reader.forget(self._offsets.revoked(partitions))

    def _on_lost(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions}
        self._offsets.release(keys)
        self._reader.forget(keys)

    # -- helpers ---------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, REDACTED) if self._secret else text


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


def _freeze_start_up_heap() -> None:
    """For a process that only ships (``logtide-kafka ship``), called once before
    :func:`run_shipper`: what start-up left alive (modules, classes, the HTTP and Kafka
    clients' objects, some 30,000 in all) moves out of the cyclic garbage collector's
    reach, so its full collections walk only what shipping creates.  The youngest
    generation is collected every :data:`_GEN0_THRESHOLD` allocations instead of 700:
    shipping allocates some ten container objects per message and keeps most of them only
    until the message's batch is posted, so a small threshold mostly walks (and promotes)
    objects that are about to die anyway.  Never called by the library itself: the
    collector is the application's.  Measured in ``docs/benchmarks.md``."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(_GEN0_THRESHOLD, older, oldest)


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
