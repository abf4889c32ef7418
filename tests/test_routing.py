"""Topic routing: explicit category > logger prefix > level > default, and missing topics."""

from __future__ import annotations

import logging
import logging.config
import time
import uuid

import pytest

import logtide_kafka
from logtide_kafka import KafkaHandler
from logtide_kafka._routing import Router
from logtide_kafka.producer import _lifecycle
from logtide_kafka.testing import create_topics, read_events

APP, INFRA, SEC = "logs.application", "logs.infrastructure", "logs.security"


def _router() -> Router:
    return Router(
        logger_categories={
            "sqlalchemy": "infrastructure",
            "app": "application",
            "app.auth": "security",
        },
        level_categories={"CRITICAL": "security", 30: "infrastructure"},
    )


@pytest.mark.parametrize(
    ("level", "metadata", "expected"),
    [
        ("info", {}, APP),  # the default
        ("info", {"logger": "other"}, APP),
        ("info", {"logger": "sqlalchemy"}, INFRA),  # the prefix itself
        ("info", {"logger": "sqlalchemy.engine.Engine"}, INFRA),  # a child
        ("info", {"logger": "sqlalchemy_utils"}, APP),  # not a child: same characters only
        ("info", {"logger": "app.auth.login"}, SEC),  # the longest prefix wins
        ("info", {"logger": "app.orders"}, APP),
        ("critical", {}, SEC),  # by level, given as a stdlib name
        ("warn", {}, INFRA),  # by level, given as a number
        ("critical", {"logger": "app.orders"}, APP),  # logger prefix beats level
        ("info", {"category": "infrastructure", "logger": "app.auth"}, INFRA),  # explicit first
        ("critical", {"category": "billing"}, "logs.billing"),  # any legal category
        ("info", {"category": "no spaces!", "logger": "sqlalchemy"}, INFRA),  # illegal: ignored
        ("info", {"category": 7}, APP),  # not a string: ignored
        ("info", {"category": "x" * 250}, APP),  # too long for a topic: ignored
        ("info", {"logger": 42}, APP),  # a logger that is not a name
    ],
)
def test_precedence(level: str, metadata: dict[str, object], expected: str) -> None:
    router = _router()
    assert router.route("svc", level, metadata) == expected
    assert router.route("svc", level, metadata) == expected  # and again, from the cache


def test_a_topic_per_service() -> None:
    router = Router("logs.{service}", level_categories={"error": "application"})
    assert router.route("checkout", "info", {}) == "logs.checkout"
    assert router.route("web shop/1", "info", {}) == "logs.web-shop-1"  # made topic-legal
    assert router.route("checkout", "error", {}) == APP
    assert router.route("checkout", "info", {"category": "security"}) == SEC


def test_routing_decisions_are_cached_within_a_bound() -> None:
    router = _router()
    for n in range(10_000):
        assert router.route("svc", "info", {"logger": f"gen.{n}"}) == APP
        assert router.route("svc", "info", {"category": f"c{n}"}) == f"logs.c{n}"
    assert len(router._cache) <= 4096
    assert len(router._explicit) <= 4096


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"topic": "logs app"}, "not a legal Kafka topic"),
        ({"topic": ""}, "not a legal Kafka topic"),
        ({"logger_categories": {"app": "sec urity"}}, "cannot name a topic"),
        ({"level_categories": {"loud": "security"}}, "unknown level"),
        ({"level_categories": {"error": None}}, "cannot name a topic"),
    ],
)
def test_invalid_routing_raises_when_configured(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Router(**kwargs)  # type: ignore[arg-type]


def test_invalid_routing_raises_from_the_handler(dead_bootstrap: str) -> None:
    with pytest.raises(ValueError, match="cannot name a topic"):
        KafkaHandler("svc", bootstrap_servers=dead_bootstrap, logger_categories={"a": "b c"})


# -- against the broker ------------------------------------------------------------------


def _topics_of(servers: str, service: str, count: int) -> dict[str, str]:
    """message -> topic, for ``count`` events of ``service`` across the layout's topics."""
    found: dict[str, str] = {}
    for topic in (APP, INFRA, SEC):
        for event in read_events(servers, topic, where=lambda e: e.get("service") == service):
            assert event.value["message"] not in found, "an event was sent twice"
            found[event.value["message"]] = topic
    assert len(found) == count, found
    return found


def test_every_rule_routes_real_events(layout: str, service: str, logger: logging.Logger) -> None:
    handler = KafkaHandler(
        service,
        bootstrap_servers=layout,
        logger_categories={"db": "infrastructure", "db.audit": "security"},
        level_categories={"critical": "security"},
    )
    logger.addHandler(handler)
    db = logging.getLogger(f"db.{uuid.uuid4().hex[:6]}")
    audit = logging.getLogger("db.audit.logins")
    for child in (db, audit):
        child.setLevel(logging.DEBUG)
        child.propagate = False
        child.addHandler(handler)
    try:
        logger.info("default")
        logger.critical("by level")
        db.info("by logger prefix")
        audit.info("by the longest prefix")
        db.critical("prefix beats level")
        db.info("explicit beats all", extra={"category": "security"})
        logger.info("illegal explicit is ignored", extra={"category": "not legal!"})
        handler.flush()
    finally:
        for child in (db, audit):
            child.removeHandler(handler)
    assert _topics_of(layout, service, 7) == {
        "default": APP,
        "by level": SEC,
        "by logger prefix": INFRA,
        "by the longest prefix": SEC,
        "prefix beats level": INFRA,
        "explicit beats all": SEC,
        "illegal explicit is ignored": APP,
    }
    assert handler.stats().failed == 0


def test_routing_from_dictconfig(layout: str, service: str) -> None:
    name = f"dictroute.{uuid.uuid4().hex[:6]}"
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "kafka": {
                    "class": "logtide_kafka.KafkaHandler",
                    "service": service,
                    "bootstrap_servers": layout,
                    "logger_categories": {name: "infrastructure"},
                    "level_categories": {"ERROR": "security"},
                }
            },
            "loggers": {name: {"handlers": ["kafka"], "level": "INFO", "propagate": False}},
        }
    )
    log = logging.getLogger(name)
    try:
        log.info("from dictConfig")
        log.error("prefix still first")
        log.warning("to security", extra={"category": "security"})
        log.handlers[0].flush()
    finally:
        for handler in list(log.handlers):
            log.removeHandler(handler)
    assert _topics_of(layout, service, 3) == {
        "from dictConfig": INFRA,
        "prefix still first": INFRA,
        "to security": SEC,
    }


def test_send_log_routes_by_category_logger_and_level(layout: str, service: str) -> None:
    logtide_kafka.configure(
        layout,
        logger_categories={"kafka": "infrastructure"},
        level_categories={"critical": "security"},
    )
    assert logtide_kafka.send_log("info", "default", service)
    assert logtide_kafka.send_log("critical", "by level", service)
    assert logtide_kafka.send_log("info", "by logger", service, logger="kafka.client")
    assert logtide_kafka.send_log("critical", "explicit", service, category="application")
    assert logtide_kafka.flush(10) == 0
    assert _topics_of(layout, service, 4) == {
        "default": APP,
        "by level": SEC,
        "by logger": INFRA,
        "explicit": APP,
    }


def test_a_topic_per_service_delivers(kafka_bootstrap: str, service: str) -> None:
    create_topics(kafka_bootstrap, [f"logs.{service}"], partitions=1)
    handler = KafkaHandler(service, topic="logs.{service}", bootstrap_servers=kafka_bootstrap)
    handler.handle(logging.makeLogRecord({"msg": "own topic", "levelno": 20, "name": "x"}))
    handler.flush()
    events = read_events(kafka_bootstrap, f"logs.{service}", count=1)
    assert events[0].value["message"] == "own topic"
    assert handler.topic == "logs.{service}"


def test_a_missing_topic_is_a_counted_failure_with_one_warning(
    kafka_bootstrap: str, service: str, capfd: pytest.CaptureFixture[str]
) -> None:
    missing = f"logs.missing-{uuid.uuid4().hex[:8]}"
    handler = KafkaHandler(
        service,
        topic=missing,
        bootstrap_servers=kafka_bootstrap,
        # How long librdkafka waits for a topic to appear before failing its events
        # (30 s by default); shortened so the test is quick.
        producer_config={"topic.metadata.propagation.max.ms": 1000},
    )
    record = logging.makeLogRecord({"msg": "lost", "levelno": 40, "name": "app"})
    started = time.monotonic()
    handler.handle(record)
    assert time.monotonic() - started < 0.5  # enqueued, not waited for
    deadline = time.monotonic() + 20
    while handler.stats().failed < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    for _ in range(5):  # now known missing: refused at once, still counted
        started = time.monotonic()
        handler.handle(record)
        assert time.monotonic() - started < 0.5
    stats = handler.stats()
    assert (stats.failed, stats.enqueued, stats.delivered) == (6, 1, 0)
    assert handler.producer.missing_topics() == {missing: 6}
    assert missing in (stats.last_error or "")
    time.sleep(0.6)  # the poller warns within one pass
    warnings = [line for line in capfd.readouterr().err.splitlines() if missing in line]
    assert len(warnings) == 1, warnings  # rate-limited: once a minute per topic
    assert "does not exist" in warnings[0]
    assert handler.producer.close(5) == 0  # nothing left to hang on


def test_closing_with_events_for_a_missing_topic_is_bounded(
    kafka_bootstrap: str, service: str, capfd: pytest.CaptureFixture[str]
) -> None:
    missing = f"logs.missing-{uuid.uuid4().hex[:8]}"
    handler = KafkaHandler(service, topic=missing, bootstrap_servers=kafka_bootstrap)
    for n in range(50):  # librdkafka's default: 30 s before it fails them on its own
        handler.handle(logging.makeLogRecord({"msg": f"m{n}", "levelno": 20, "name": "a"}))
    started = time.monotonic()
    assert handler.producer.close(2) == 50
    assert time.monotonic() - started < 5
    assert handler.stats().failed == 50
    assert "50 log event(s) not delivered" in capfd.readouterr().err


def test_a_misspelt_option_is_named_before_any_client_exists(dead_bootstrap: str) -> None:
    before = dict(_lifecycle._registry)
    with pytest.raises(TypeError, match="redcat"):
        KafkaHandler("svc", bootstrap_servers=dead_bootstrap, redcat=["pin"])  # type: ignore[call-arg]
    assert _lifecycle._registry == before
