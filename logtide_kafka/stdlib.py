"""The standard library integration: a ``logging.Handler`` that publishes to Kafka."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from itertools import islice
from typing import Any, Final

from typing_extensions import Unpack

from logtide_kafka._client_log import LIBRARY_LOGGER, in_logger_tree
from logtide_kafka._event import (
    HOSTNAME,
    describe_exception,
    level_name,
    make_event,
    normalize_service,
    safe_repr,
    safe_str,
)
from logtide_kafka._routing import DEFAULT_TOPIC
from logtide_kafka.producer import LogProducer, ProducerStats, get_producer
from logtide_kafka.producer._publish import Publisher, PublishOptions

__all__ = ["KafkaHandler"]

_PROBE = logging.LogRecord("", 0, "", 0, "", None, None)
#: Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS: Final = frozenset(_PROBE.__dict__) | {"message", "asctime"}
#: A record with exactly this many attributes cannot carry ``extra`` fields.
_PLAIN_RECORD_LEN: Final = len(_PROBE.__dict__)
_DEFAULT_FORMATTER: Final = logging.Formatter()


class KafkaHandler(logging.Handler):
    """Publish each record as a LogTide-native JSON event to a ``logs.{category}`` topic.

    ``emit`` only encodes the event and hands it to librdkafka's local queue; it never
    waits on the network and never raises (failures go to :meth:`handleError` or are
    counted in :meth:`stats`).  All handlers and :func:`logtide_kafka.send_log` calls
    with the same producer configuration share one :class:`LogProducer`.

    Usable from :func:`logging.config.dictConfig`::

        "kafka": {
            "class": "logtide_kafka.KafkaHandler",
            "service": "checkout",
            "bootstrap_servers": "kafka-1:9092,kafka-2:9092",
            "producer_config": {"linger.ms": 20},
            "logger_categories": {"sqlalchemy": "infrastructure", "shop.auth": "security"},
            "fields": {"environment": "production", "version": "1.4.2"},
        }

    ``topic`` is the default topic (``logs.{service}`` gives the service its own); an
    ``extra={"category": "security"}``, ``logger_categories`` (logger-name prefixes) and
    ``level_categories`` route records elsewhere, in that order of precedence.  ``fields``
    are added to every event, the active OpenTelemetry span's ids too (``trace_context``),
    and the values of ``redact`` keys are replaced by ``"[REDACTED]"`` at any depth.

    The message is ``record.getMessage()``, or the output of the handler's formatter when
    one is set, unless ``ignore_formatter=True`` (for a formatter that ``basicConfig`` or
    an INI file gave it).  ``extra=`` fields go to ``metadata`` (they win over the
    built-in keys), as does an exception's type, message and formatted stack.  Records
    from the library's own loggers (``logtide_kafka.*``, which carry librdkafka's
    messages), and records logged while this handler is emitting on the same thread, are
    never sent.
    """

    #: Records of the library's own loggers are never sent (see _client_log.handled).
    skips_library_records = True

    def __init__(
        self,
        service: str,
        topic: str = DEFAULT_TOPIC,
        bootstrap_servers: str | None = None,
        producer_config: Mapping[str, Any] | None = None,
        level: int | str = logging.NOTSET,
        *,
        ignore_formatter: bool = False,
        **options: Unpack[PublishOptions],
    ) -> None:
        if not isinstance(ignore_formatter, bool):
            raise TypeError(f"ignore_formatter must be true or false, not {ignore_formatter!r}")
        #: Whether the message is always ``record.getMessage()``, whatever formatter
        #: ``basicConfig``, an INI file or a framework gave the handler.
        self.ignore_formatter = ignore_formatter
        self.service = normalize_service(service)
        self._key = self.service.encode()
        self._publisher = Publisher(
            lambda policy: get_producer(bootstrap_servers, producer_config, policy),
            topic,
            **options,
        )
        self._producer = self._publisher.producer
        self._producer.add_service(self.service)  # named in its stderr lines
        super().__init__(level)  # registers the handler: only once nothing can fail
        self._local = threading.local()
        #: Records skipped because they were logged from inside this handler's own emit.
        self.recursion_skipped = 0

    @property
    def topic(self) -> str:
        """The default topic: where records go that no routing rule claims."""
        return self._publisher.topic

    @property
    def producer(self) -> LogProducer:
        """The shared producer this handler sends through."""
        return self._producer

    def stats(self) -> ProducerStats:
        """Counters of the (shared) producer: see :class:`ProducerStats`."""
        return self._producer.stats()

    def handle(self, record: logging.LogRecord) -> bool:
        """Filter, then emit, without taking the handler's lock: :meth:`emit` is
        thread-safe on its own, and the lock would serialise every logging thread."""
        if not self.filters:  # the usual case: no filter to ask, no call to pay for
            self.emit(record)
            return True
        result = self.filter(record)
        if result:  # since 3.12 a filter may return a replacement record
            self.emit(result if isinstance(result, logging.LogRecord) else record)
        return bool(result)

    def emit(self, record: logging.LogRecord) -> None:
        """Build the event and enqueue it; never raises.

        An event that cannot be built (the handler's formatter raised, a filter left a
        record the stdlib could not format either) is counted as ``failed`` and passed to
        :meth:`handleError`, which prints ``--- Logging error ---`` and a traceback to
        stderr when :data:`logging.raiseExceptions` is true, as every stdlib handler does.
        """
        local = self._local
        if getattr(local, "busy", False):
            self.recursion_skipped += 1
            return
        local.busy = True
        try:
            name = record.name  # a filter may have set anything here
            if not in_logger_tree(name, LIBRARY_LOGGER):
                self._publisher.publish(self.to_event(record), self._key)
        except Exception as exc:
            self._producer.count_failure(exc)
            self.handleError(record)
        finally:
            local.busy = False

    def to_event(self, record: logging.LogRecord) -> dict[str, Any]:
        """Build the LogTide event for ``record`` as it would be sent: with static fields,
        trace ids and redaction applied (but not routed or sent)."""
        metadata: dict[str, Any] = {
            "hostname": HOSTNAME,
            "logger": record.name,
            "function": record.funcName,
            "line": record.lineno,
            "thread": record.threadName,
            "process": record.process,
        }
        formatter = None if self.ignore_formatter else self.formatter
        try:
            if formatter is None:
                message = record.getMessage()
            else:
                message = self.format(record)
                if type(message) is not str:  # a custom formatter's odd return value
                    message = safe_str(message)
        except Exception as exc:
            if formatter is not None and _message_works(record):
                raise  # the formatter itself is broken: emit() counts it, handleError()
            # ``logger.info("%s %s", x)``, or an argument whose __str__ raises: keep the
            # event, say what went wrong.
            message = safe_str(record.msg)
            metadata["format_error"] = f"{type(exc).__name__}: {safe_str(exc)}"
            metadata["format_args"] = safe_repr(record.args)
        attrs = record.__dict__
        if len(attrs) != _PLAIN_RECORD_LEN:
            # ``extra=`` fields follow the attributes LogRecord.__init__ sets, starting
            # with ``name``; a record built some other way is scanned in full.
            keys = iter(attrs)  # keys, then one lookup per extra: cheaper than items()
            keys = (
                islice(keys, _PLAIN_RECORD_LEN - 1, None) if next(keys) == "name" else iter(attrs)
            )
            for key in keys:
                if key not in _RECORD_ATTRS:
                    metadata[key] = attrs[key]
        if record.exc_info and record.exc_info[0] is not None:
            if not record.exc_text:
                record.exc_text = (formatter or _DEFAULT_FORMATTER).formatException(record.exc_info)
            metadata["exception"] = describe_exception(record.exc_info, record.exc_text)
        if record.stack_info:
            metadata["stack_info"] = record.stack_info
        return self._publisher.complete(
            make_event(record.created, self.service, level_name(record.levelno), message, metadata)
        )

    def flush(self) -> None:
        """Wait, at most the exit timeout (``configure(exit_timeout=...)``, 10 s by
        default), until the shared producer's queue drains."""
        self._producer.flush()

    def close(self) -> None:
        """Flush and detach.  The shared producer stays open for other users and is
        closed, within its bound, at interpreter exit."""
        try:
            self.flush()
        finally:
            super().close()

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        return f"<KafkaHandler service={self.service!r} topic={self.topic!r} ({level})>"


def _message_works(record: logging.LogRecord) -> bool:
    """Whether ``record.getMessage()`` succeeds: tells a %-format mismatch, which the
    formatter only passed on, from a formatter that fails on its own."""
    try:
        record.getMessage()
    except Exception:
        return False
    return True
