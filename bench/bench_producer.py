"""Throughput of logtide-kafka's logging paths against a real Kafka broker.

Nine paths, each called ``--records`` times per repetition (median of ``--repeats``):

1. raw ``confluent_kafka.Producer.produce`` of pre-serialized JSON bytes (the ``send_log``
   baseline), with the library's producer settings and a background poll thread;
1b. the same raw ``produce`` with the record headers every library event carries (a new
   ``event-id``, ``content-type``, ``schema-version``), built per call as the library
   builds them: the floor of any path that sends the event id (informational);
2. a stdlib logger with a no-op handler (the floor of every stdlib handler);
3. a hand-written handler, the anchor for ``KafkaHandler``: its ``emit`` builds a 5-key
   dict, ``orjson.dumps`` it, calls ``produce()`` and ``poll(0)``;
4. ``KafkaHandler`` on the same kind of logger, with the same call;
5. ``logtide_kafka.send_log``;
6. ``logtide_kafka.send_logs``, 1,000 events per call, building its input dicts in the loop;
7. a structlog logger (``add_log_level``, ``TimeStamper(fmt="iso", utc=True)``,
   ``JSONRenderer``) wrapping a no-op logger (the floor for ``KafkaProcessor``);
8. the same structlog chain with ``KafkaProcessor`` just before ``JSONRenderer``.

The targets of issue 13 are printed as ratios of medians with MET or MISSED.

``--breakdown`` instead times, on the application thread (CPU µs per call, median of
``--repeats``), each step of ``KafkaHandler.emit`` and ``send_log`` in isolation: building
the event, completing it (static fields, trace ids, redaction), encoding, the event id and
headers, the rest of ``LogProducer.send``, and ``produce()`` with and without the headers.

The timed part is the application thread calling the path N times (produce is
asynchronous); the flush that follows (delivery to the broker) is timed separately.  Every
Kafka path uses the same producer settings, including a local queue large enough that
nothing is dropped; a repetition that drops or fails any event is reported as INVALID.

Usage::

    python bench/bench_producer.py [--records N] [--repeats R] [--bootstrap HOST:PORT]
                                   [--profile handler|handwritten|send_log|send_logs|raw|
                                              raw-headers|noop|structlog|structlog-noop]
                                   [--breakdown]

Without ``--bootstrap`` (or ``LOGTIDE_KAFKA_BOOTSTRAP``) a local Kafka broker is started.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import logging
import os
import platform
import pstats
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import version as metadata_version
from typing import Any, Final

import confluent_kafka
import orjson
import structlog
from _common import NoopHandler, bench_logger
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from structlog.typing import Processor

import logtide_kafka
from logtide_kafka import KafkaHandler
from logtide_kafka._encode import encode_default
from logtide_kafka._event import HOSTNAME, format_time, make_event
from logtide_kafka._headers import event_headers, new_event_id
from logtide_kafka.producer import resolve_config
from logtide_kafka.structlog import KafkaProcessor
from logtide_kafka.testing import KAFKA_VERSION, LocalKafka, create_topics

#: Applied to every Kafka path alike, so no run drops events on a full local queue.
PRODUCER_OVERRIDES: Final[dict[str, Any]] = {"queue.buffering.max.messages": 1_000_000}
SERVICE: Final = "bench-svc"
FLUSH_TIMEOUT: Final = 120.0
#: (label, path, baseline, minimum ratio of their rates); issue 13's targets.
TARGETS: Final = (
    ("KafkaHandler / hand-written handler", "handler", "handwritten", 0.90),
    ("KafkaProcessor / structlog no-op", "structlog", "structlog-noop", 0.60),
    ("send_log / raw produce", "send_log", "raw", 0.55),
    ("send_logs / raw produce (per event)", "send_logs", "raw", 0.60),
)
#: Printed for context, without a verdict.
INFORMATIONAL: Final = (
    ("KafkaHandler / no-op floor", "handler", "noop"),
    ("hand-written / no-op floor", "handwritten", "noop"),
    ("KafkaHandler / raw produce", "handler", "raw"),
    ("raw produce + headers / raw produce", "raw-headers", "raw"),
    ("send_log / raw produce + headers", "send_log", "raw-headers"),
    ("send_logs / raw produce + headers", "send_logs", "raw-headers"),
)
_QUIET = logging.getLogger("bench.client")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


@dataclass(frozen=True)
class Counters:
    """What a path's producer reports; all zero for the no-op path."""

    enqueued: int = 0
    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    queue_length: int = 0


class BenchPath:
    """One way of logging an event, called ``n`` times by :meth:`loop`."""

    name: str = ""
    label: str = ""
    #: The Kafka topic it publishes to; None for the no-op floor.
    topic: str | None = None

    def loop(self, n: int) -> None:
        raise NotImplementedError

    def flush(self) -> int:
        """Wait for delivery; return how many events are still undelivered."""
        return 0

    def counters(self) -> Counters:
        return Counters()


class NoopPath(BenchPath):
    name, label = "noop", "stdlib logger, no-op handler"

    def __init__(self) -> None:
        self.logger = bench_logger("bench.noop", NoopHandler())

    def loop(self, n: int) -> None:
        info = self.logger.info
        for i in range(n):
            info("order %s placed", i, extra={"order_id": i, "user": "u1"})


class HandWrittenHandler(logging.Handler):
    """What a user writes in ten lines: a 5-key dict, orjson, produce(), poll(0)."""

    def __init__(self, producer: Producer, topic: str) -> None:
        super().__init__()
        self.producer, self.topic = producer, topic
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        event = {
            "time": record.created,
            "service": SERVICE,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        try:
            self.producer.produce(self.topic, orjson.dumps(event))
        except BufferError:
            self.dropped += 1
        self.producer.poll(0)


class HandWrittenPath(BenchPath):
    name, label = "handwritten", "hand-written handler"

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        config = resolve_config(bootstrap, PRODUCER_OVERRIDES)
        config.update(on_delivery=self._on_delivery, logger=_QUIET)
        self.producer = Producer(config)
        self.handler = HandWrittenHandler(self.producer, topic)
        self.logger = bench_logger("bench.handwritten", self.handler)
        self.calls = self.failed = 0

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.failed += 1

    def loop(self, n: int) -> None:
        info = self.logger.info
        for i in range(n):
            info("order %s placed", i, extra={"order_id": i, "user": "u1"})
        self.calls += n

    def flush(self) -> int:
        remaining: int = self.producer.flush(FLUSH_TIMEOUT)
        return remaining

    def counters(self) -> Counters:
        pending = len(self.producer)
        enqueued = self.calls - self.handler.dropped
        delivered = enqueued - self.failed - pending
        return Counters(enqueued, delivered, self.failed, self.handler.dropped, pending)


class HandlerPath(BenchPath):
    name, label = "handler", "KafkaHandler"

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.handler = KafkaHandler(
            SERVICE, topic=topic, bootstrap_servers=bootstrap, producer_config=PRODUCER_OVERRIDES
        )
        self.logger = bench_logger("bench.kafka", self.handler)

    def loop(self, n: int) -> None:
        info = self.logger.info
        for i in range(n):
            info("order %s placed", i, extra={"order_id": i, "user": "u1"})

    def flush(self) -> int:
        return self.handler.producer.flush(FLUSH_TIMEOUT)

    def counters(self) -> Counters:
        s = self.handler.stats()
        return Counters(s.enqueued, s.delivered, s.failed, s.dropped, s.queue_length)

    def sample_payload(self) -> bytes:
        """One event exactly as this path encodes it: the raw path sends these bytes."""
        record = self.logger.makeRecord(
            self.logger.name,
            logging.INFO,
            __file__,
            1,
            "order %s placed",
            (42,),
            None,
            func="loop",
            extra={"order_id": 42, "user": "u1"},
        )
        return orjson.dumps(self.handler.to_event(record))


class SendLogPath(BenchPath):
    name, label = "send_log", "send_log()"

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic, self.bootstrap = topic, bootstrap

    def _configure(self) -> None:
        """send_log and send_logs share one configuration: each takes its topic back
        (the producer is the same; this costs well under a millisecond per loop)."""
        assert self.topic is not None
        logtide_kafka.configure(
            self.bootstrap, topic=self.topic, producer_config=PRODUCER_OVERRIDES
        )

    def loop(self, n: int) -> None:
        self._configure()
        send = logtide_kafka.send_log
        for i in range(n):
            send("info", "order placed", SERVICE, order_id=i, user="u1")

    def flush(self) -> int:
        return logtide_kafka.flush(FLUSH_TIMEOUT)

    def counters(self) -> Counters:
        s = logtide_kafka.stats()
        return Counters(s.enqueued, s.delivered, s.failed, s.dropped, s.queue_length)


class RawPath(BenchPath):
    name, label = "raw", "raw Producer.produce (bytes)"

    def __init__(self, bootstrap: str, topic: str, payload: bytes) -> None:
        self.topic = self.raw_topic = topic
        self.payload, self.key = payload, SERVICE.encode()
        config = resolve_config(bootstrap, PRODUCER_OVERRIDES)
        config.update(on_delivery=self._on_delivery, logger=_QUIET)
        self.producer = Producer(config)
        self.produced = self.dropped = self.failed = 0
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="raw-poller", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.2)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:  # only errors are reported (delivery.report.only.error)
            self.failed += 1

    def loop(self, n: int) -> None:
        produce, topic, value, key = self.producer.produce, self.raw_topic, self.payload, self.key
        dropped = 0
        for _ in range(n):
            try:
                produce(topic, value, key)
            except BufferError:
                dropped += 1
        self.produced += n - dropped
        self.dropped += dropped

    def flush(self) -> int:
        remaining: int = self.producer.flush(FLUSH_TIMEOUT)
        return remaining

    def counters(self) -> Counters:
        pending = len(self.producer)
        delivered = self.produced - self.failed - pending
        return Counters(self.produced, delivered, self.failed, self.dropped, pending)

    def close(self) -> None:
        self.producer.flush(FLUSH_TIMEOUT)
        self._stop.set()
        self._poller.join(2.0)


class RawHeadersPath(RawPath):
    name, label = "raw-headers", "raw produce + headers"

    def __init__(self, bootstrap: str, topic: str, payload: bytes) -> None:
        super().__init__(bootstrap, topic, payload)
        self.event = orjson.loads(payload)

    def loop(self, n: int) -> None:
        produce, topic, value, key = self.producer.produce, self.raw_topic, self.payload, self.key
        event = self.event
        dropped = 0
        for _ in range(n):
            try:  # the headers as LogProducer.send builds them, per call
                produce(topic, value, key, headers=event_headers(event, new_event_id()))
            except BufferError:
                dropped += 1
        self.produced += n - dropped
        self.dropped += dropped


class SendLogsPath(SendLogPath):
    name, label = "send_logs", "send_logs() (1,000 per call)"
    #: Events per send_logs call; building their input dicts is timed too.
    batch = 1000

    def loop(self, n: int) -> None:
        self._configure()
        send, batch = logtide_kafka.send_logs, self.batch
        for start in range(0, n, batch):
            send(
                [
                    {
                        "level": "info",
                        "message": "order placed",
                        "service": SERVICE,
                        "metadata": {"order_id": i, "user": "u1"},
                    }
                    for i in range(start, min(start + batch, n))
                ]
            )


class NoopStructlogLogger:
    """A structlog wrapped logger that discards the rendered event."""

    def msg(self, message: str) -> None:
        pass

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def _structlog_logger(kafka: KafkaProcessor | None) -> Any:
    """The bench's structlog chain, with ``kafka`` just before the renderer if given."""
    processors: list[Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if kafka is not None:
        processors.append(kafka)
    processors.append(structlog.processors.JSONRenderer())
    return structlog.wrap_logger(
        NoopStructlogLogger(), processors=processors, cache_logger_on_first_use=True
    )


class StructlogNoopPath(BenchPath):
    name, label = "structlog-noop", "structlog, no-op logger (JSON)"

    def __init__(self) -> None:
        self.log = _structlog_logger(None)

    def loop(self, n: int) -> None:
        info = self.log.info
        for i in range(n):
            info("order placed", order_id=i, user="u1")


class StructlogPath(BenchPath):
    name, label = "structlog", "structlog + KafkaProcessor"

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.processor = KafkaProcessor(
            service=SERVICE,
            topic=topic,
            bootstrap_servers=bootstrap,
            producer_config=PRODUCER_OVERRIDES,
        )
        self.log = _structlog_logger(self.processor)

    def loop(self, n: int) -> None:
        info = self.log.info
        for i in range(n):
            info("order placed", order_id=i, user="u1")

    def flush(self) -> int:
        return self.processor.producer.flush(FLUSH_TIMEOUT)

    def counters(self) -> Counters:
        s = self.processor.stats()
        return Counters(s.enqueued, s.delivered, s.failed, s.dropped, s.queue_length)


@dataclass
class Sample:
    loop_s: float
    cpu_s: float
    flush_s: float
    problems: list[str] = field(default_factory=list)


def run_once(path: BenchPath, n: int) -> Sample:
    """Call the path n times (timed), then flush (timed apart) and check every delivery."""
    before = path.counters()
    gc.collect()
    cpu0, t0 = time.thread_time(), time.perf_counter()
    path.loop(n)
    t1, cpu1 = time.perf_counter(), time.thread_time()
    remaining = path.flush()
    t2 = time.perf_counter()
    after = path.counters()
    problems = []
    if path.topic is not None:
        if remaining:
            problems.append(f"{remaining} undelivered after flush")
        if after.enqueued - before.enqueued != n:
            problems.append(f"enqueued {after.enqueued - before.enqueued} != {n}")
        if after.dropped != before.dropped:
            problems.append(f"dropped {after.dropped - before.dropped}")
        if after.failed != before.failed:
            problems.append(f"failed {after.failed - before.failed}")
        if after.queue_length or after.delivered != after.enqueued:
            problems.append(f"delivered {after.delivered} != enqueued {after.enqueued}")
    return Sample(t1 - t0, cpu1 - cpu0, t2 - t1, problems)


def topic_message_count(bootstrap: str, topic: str) -> int:
    """Messages in a topic according to its partitions' watermarks (independent check)."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": f"bench-{uuid.uuid4().hex}",
        "logger": _QUIET,
    }
    consumer = Consumer(config)
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        total = 0
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


@contextlib.contextmanager
def kafka_cluster(bootstrap: str | None) -> Iterator[tuple[str, str, bool]]:
    """Yield ``(bootstrap, kafka_version_text, local)``: the given cluster or a local one."""
    if bootstrap:
        yield bootstrap, "external cluster (version not queried)", False
        return
    with LocalKafka(1) as kafka:
        yield kafka.bootstrap_servers, f"Apache Kafka {KAFKA_VERSION} (LocalKafka, 1 node)", True


def _profile(path: BenchPath, n: int) -> None:
    path.loop(min(n, 10_000))  # warm-up
    path.flush()
    profiler = cProfile.Profile()
    profiler.runcall(path.loop, n)
    path.flush()
    print(f"\ncProfile of {path.label}, {n:,} calls (top 25 by own time):")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(25)


def _cpu_us(step: Callable[[], object], n: int) -> float:
    """Application-thread CPU µs per call of ``step``, over ``n`` calls."""
    gc.collect()
    started = time.thread_time()
    for _ in range(n):
        step()
    return (time.thread_time() - started) / n * 1e6


def breakdown(handler: HandlerPath, send_log_path: SendLogPath, n: int, repeats: int) -> None:
    """Time each step of ``KafkaHandler.emit`` and ``send_log`` in isolation (CPU µs)."""
    kafka = handler.handler
    record = handler.logger.makeRecord(
        handler.logger.name, logging.INFO, __file__, 1, "order %s placed", (42,), None,
        func="loop", extra={"order_id": 42, "user": "u1"},
    )  # fmt: skip
    publisher = kafka._publisher
    producer = kafka.producer
    event = kafka.to_event(record)
    metadata = event["metadata"]
    payload = orjson.dumps(event)
    key, topic = SERVICE.encode(), handler.topic
    assert topic is not None
    produce = producer._producer.produce
    real_produce = producer._produce
    send_log = logtide_kafka.send_log
    send_log_path._configure()  # send_log's producer is the handler's (same settings)

    def no_produce(*args: object, **kwargs: object) -> None:
        pass

    def send_without_produce() -> None:
        producer.send(topic, key, event)  # timed with no_produce in place of produce()

    # (label, step, whether it enqueues: the producer is flushed after it)
    steps: list[tuple[str, Callable[[], object], bool]] = [
        ("KafkaHandler.emit(record), all of it", lambda: kafka.emit(record), True),
        ("  to_event: record -> completed event", lambda: kafka.to_event(record), False),
        ("    record.getMessage()", record.getMessage, False),
        ("    make_event (a metadata copy included)", lambda: make_event(
            record.created, SERVICE, "info", "order 42 placed", dict(metadata)), False),
        ("      format_time", lambda: format_time(record.created), False),
        ("    complete: fields, trace ids, redaction", lambda: publisher.complete(event), False),
        ("  LogProducer.send without produce()", send_without_produce, False),
        ("    orjson.dumps", lambda: orjson.dumps(event, default=encode_default), False),
        ("    event id + headers", lambda: event_headers(event, new_event_id()), False),
        ("  produce() with the headers", lambda: produce(
            topic, payload, key, headers=event_headers(event, new_event_id())), True),
        ("  produce() bare (the raw baseline)", lambda: produce(topic, payload, key), True),
        ("send_log(...), all of it", lambda: send_log(
            "info", "order placed", SERVICE, order_id=42, user="u1"), True),
        ("  metadata dict + make_event", lambda: make_event(
            record.created, SERVICE, "info", "order placed",
            {"order_id": 42, "user": "u1", "hostname": HOSTNAME}), False),
    ]  # fmt: skip
    results: dict[str, list[float]] = {label: [] for label, _, _ in steps}
    for _ in range(repeats):  # interleaved, so a busy moment hits every step
        for label, step, enqueues in steps:
            if step is send_without_produce:
                producer._produce = no_produce
            try:
                results[label].append(_cpu_us(step, n))
            finally:
                producer._produce = real_produce
            if enqueues:
                logtide_kafka.flush(FLUSH_TIMEOUT)
    print(f"\nstep by step, application-thread CPU µs per call (median of {repeats} x {n:,}):")
    for label, values in results.items():
        print(f"  {label:<46} {statistics.median(values):6.2f}")
    print("(steps are timed alone, so the indented ones add up only roughly to their parent)")


def _rate(n: int, seconds: list[float]) -> float:
    return n / statistics.median(seconds)


def report(paths: list[BenchPath], samples: dict[str, list[Sample]], n: int) -> bool:
    """Print the results table, the ratios and the delivery checks; return validity."""
    print(
        f"\n{'path':<30} {'records/s':>11} {'min..max records/s':>21} {'us/call':>8} "
        f"{'app CPU us':>10} {'flush ms':>9} {'+flush rec/s':>13}"
    )
    rates: dict[str, float] = {}
    cpu_rates: dict[str, float] = {}
    for path in paths:
        runs = samples[path.name]
        loops = [s.loop_s for s in runs]
        rates[path.name] = rate = _rate(n, loops)
        cpu_rates[path.name] = _rate(n, [s.cpu_s for s in runs])
        spread = f"{n / max(loops):,.0f}..{n / min(loops):,.0f}"
        cpu_us = statistics.median(s.cpu_s for s in runs) / n * 1e6
        flush = "      n/a           n/a"
        if path.topic:
            flush_ms = statistics.median(s.flush_s for s in runs) * 1e3
            flush = f"{flush_ms:9.1f} {_rate(n, [s.loop_s + s.flush_s for s in runs]):13,.0f}"
        print(
            f"{path.label:<30} {rate:>11,.0f} {spread:>21} {1e6 / rate:>8.2f} "
            f"{cpu_us:>10.2f} {flush}"
        )
    print(
        "(records/s: N / median wall time of the N calls on the app thread; app CPU us: that\n"
        " thread's CPU time per call; +flush rec/s: N / median time of the calls plus flush)\n"
    )
    for label, num, den in INFORMATIONAL:
        print(f"{label:<40} {rates[num] / rates[den]:5.2f}  (informational)")
    print("issue 13's targets (ratios of median rates, this run; in brackets the same ratio")
    print("of app-thread CPU time, less sensitive to a loaded machine's scheduling):")
    for label, num, den, target in TARGETS:
        if num in rates and den in rates:
            ratio = rates[num] / rates[den]
            verdict = "MET" if ratio >= target else "MISSED"
            cpu = cpu_rates[num] / cpu_rates[den]
            print(
                f"{label:<40} {ratio:5.2f}  target >= {target:.2f}  {verdict:<6}  [CPU {cpu:.2f}]"
            )
    valid = True
    print("\ndelivery checks after each repetition's flush (KafkaHandler, send_log, send_logs")
    print("and KafkaProcessor share one producer, so their counters are shared), then topic")
    print("watermarks:")
    for path in paths:
        if path.topic is None:
            continue
        problems = [p for s in samples[path.name] for p in s.problems]
        valid = valid and not problems
        c = path.counters()
        print(
            f"  {path.label:<30} enqueued={c.enqueued:,} delivered={c.delivered:,} "
            f"failed={c.failed} dropped={c.dropped} queue={c.queue_length}  "
            f"{'OK' if not problems else 'INVALID: ' + '; '.join(problems)}"
        )
    return valid


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=100_000, help="calls per repetition")
    parser.add_argument("--repeats", type=int, default=5, help="repetitions (median reported)")
    parser.add_argument("--bootstrap", default=os.environ.get("LOGTIDE_KAFKA_BOOTSTRAP"))
    parser.add_argument(
        "--profile",
        choices=[
            "raw",
            "raw-headers",
            "noop",
            "handwritten",
            "handler",
            "send_log",
            "send_logs",
            "structlog-noop",
            "structlog",
        ],
        help="instead of the benchmark, cProfile one path over --records calls",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="instead of the benchmark, time each step of the hot path in isolation",
    )
    return parser.parse_args()


def main() -> int:
    args = _arguments()
    n, repeats = args.records, args.repeats
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    with kafka_cluster(args.bootstrap) as (bootstrap, kafka_text, local):
        suffix = uuid.uuid4().hex[:8]
        topics = {
            name: f"bench.{name}.{suffix}"
            for name in (
                "raw",
                "raw-headers",
                "handwritten",
                "handler",
                "send_log",
                "send_logs",
                "structlog",
            )
        }
        create_topics(bootstrap, topics.values(), partitions=3, replication_factor=1)
        handler = HandlerPath(bootstrap, topics["handler"])
        payload = handler.sample_payload()
        raw = RawPath(bootstrap, topics["raw"], payload)
        raw_headers = RawHeadersPath(bootstrap, topics["raw-headers"], payload)
        paths: list[BenchPath] = [
            raw,
            raw_headers,
            NoopPath(),
            HandWrittenPath(bootstrap, topics["handwritten"]),
            handler,
            SendLogPath(bootstrap, topics["send_log"]),
            SendLogsPath(bootstrap, topics["send_logs"]),
            StructlogNoopPath(),
            StructlogPath(bootstrap, topics["structlog"]),
        ]
        print(f"Kafka:            {kafka_text} at {bootstrap}")
        print(
            f"confluent-kafka:  {metadata_version('confluent-kafka')}, "
            f"librdkafka {confluent_kafka.libversion()[0]}"
        )
        print(
            f"Python:           {platform.python_implementation()} {platform.python_version()} "
            f"on {platform.machine()}, {cpus} usable CPU(s), cpu_count={os.cpu_count()}"
        )
        print(f"producer config:  library defaults + {PRODUCER_OVERRIDES} (all Kafka paths)")
        print(f"raw payload:      {len(payload)} bytes, e.g. {payload[:100].decode()}...")
        print(f"records:          {n:,} per repetition, {repeats} repetitions, median reported")

        try:
            if args.profile:
                _profile(next(p for p in paths if p.name == args.profile), n)
                return 0
            if args.breakdown:
                send_log_path = next(p for p in paths if isinstance(p, SendLogPath))
                breakdown(handler, send_log_path, n, repeats)
                return 0
            warmup = min(n, 10_000)
            for path in paths:  # warm-up: connections, metadata, producer ids, caches
                run_once(path, warmup)
            samples: dict[str, list[Sample]] = {p.name: [] for p in paths}
            for rep in range(repeats):  # rotate the order so no path always goes first
                for path in paths[rep % len(paths) :] + paths[: rep % len(paths)]:
                    samples[path.name].append(run_once(path, n))
                print(f"  repetition {rep + 1}/{repeats} done", flush=True)
            valid = report(paths, samples, n)
            for path in paths:
                if path.topic is not None:
                    expected = warmup + repeats * n
                    found = topic_message_count(bootstrap, path.topic)
                    ok = found == expected
                    valid = valid and ok
                    print(
                        f"  topic {path.topic:<28} {found:,} messages, expected {expected:,}: "
                        f"{'OK' if ok else 'MISMATCH'}"
                    )
            print(f"\nrun {'VALID: every event delivered' if valid else 'INVALID'}")
            return 0 if valid else 1
        finally:
            raw.close()
            raw_headers.close()
            handler.logger.removeHandler(handler.handler)
            logtide_kafka.close_all(30)
            if not local:
                admin_config: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": _QUIET}
                admin = AdminClient(admin_config)  # must outlive the futures
                for future in admin.delete_topics(list(topics.values())).values():
                    with contextlib.suppress(KafkaException):
                        future.result(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
