"""Publish Python logs to Apache Kafka as LogTide-native JSON events, never blocking the app.

Three ways in, one shared non-blocking producer per configuration:

* :class:`KafkaHandler`, a :class:`logging.Handler` (also from ``dictConfig``);
* :class:`logtide_kafka.structlog.KafkaProcessor`, a structlog processor;
* :func:`send_log`, a direct call (:func:`send_logs` for many events at once).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from logtide_kafka._redact import DEFAULT_REDACT_KEYS, REDACTED
from logtide_kafka._routing import CATEGORIES, DEFAULT_TOPIC, TOPICS
from logtide_kafka.producer import (
    DeliveryPolicy,
    LogProducer,
    ProducerStats,
    close_all,
    get_producer,
    set_exit_timeout,
)
from logtide_kafka.producer._batch import send_logs
from logtide_kafka.producer._direct import configure, flush, send_log, stats
from logtide_kafka.producer._policy import FsyncPolicy, OnFull
from logtide_kafka.producer._publish import PublishOptions
from logtide_kafka.stdlib import KafkaHandler

try:
    __version__ = version("logtide-kafka")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "CATEGORIES",
    "DEFAULT_REDACT_KEYS",
    "DEFAULT_TOPIC",
    "REDACTED",
    "TOPICS",
    "DeliveryPolicy",
    "FsyncPolicy",
    "KafkaHandler",
    "LogProducer",
    "OnFull",
    "ProducerStats",
    "PublishOptions",
    "__version__",
    "close_all",
    "configure",
    "flush",
    "get_producer",
    "send_log",
    "send_logs",
    "set_exit_timeout",
    "stats",
]
