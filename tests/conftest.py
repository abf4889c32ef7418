"""Fixtures: a real Apache Kafka (local subprocess brokers, or LOGTIDE_KAFKA_BOOTSTRAP) and
the real LogTide server when one is reachable (LOGTIDE_API_URL and LOGTIDE_API_KEY)."""

from __future__ import annotations

import logging
import os
import socket
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import NamedTuple

import pytest

from logtide_kafka import close_all
from logtide_kafka._routing import TOPICS
from logtide_kafka.producer import _lifecycle
from logtide_kafka.testing import LocalKafka, create_topics

KAFKA_FIXTURES = {"kafka_bootstrap", "topic", "kafka3", "layout"}
#: Set (by ``.ci/run``) when a real LogTide was started: then it must be reachable.
LOGTIDE_REQUIRED_ENV = "LOGTIDE_REQUIRED"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Mark by fixture use, so `-m "not kafka"` selects exactly the tests that need no broker.
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & KAFKA_FIXTURES:
            item.add_marker(pytest.mark.kafka)
        if "kafka3" in used:
            item.add_marker(pytest.mark.cluster3)
        if "logtide" in used:
            item.add_marker(pytest.mark.logtide)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a real cluster: ``LOGTIDE_KAFKA_BOOTSTRAP``, else a local node."""
    external = os.environ.get("LOGTIDE_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    with LocalKafka(1) as kafka:
        yield kafka.bootstrap_servers


@pytest.fixture(scope="session")
def kafka3() -> Iterator[LocalKafka]:
    """A local three-broker cluster whose brokers tests may stop and restart.

    Always local, even with ``LOGTIDE_KAFKA_BOOTSTRAP``: tests stop its brokers."""
    with LocalKafka(3) as kafka:
        yield kafka


@pytest.fixture
def topic(kafka_bootstrap: str) -> str:
    """A fresh three-partition topic, so no test reads another's events."""
    name = f"logs.test-{uuid.uuid4().hex[:12]}"
    create_topics(kafka_bootstrap, [name], partitions=3)
    return name


@pytest.fixture(scope="session")
def layout(kafka_bootstrap: str) -> str:
    """The documented topics (``logs.application``, ``.infrastructure``, ``.security``)
    exist; returns the bootstrap servers.  Tests tell their events apart by service."""
    create_topics(kafka_bootstrap, TOPICS, partitions=3)
    return kafka_bootstrap


@pytest.fixture
def logger(request: pytest.FixtureRequest) -> Iterator[logging.Logger]:
    """A logger of its own for the test, at level 1, not propagating to the root."""
    logger = logging.getLogger(f"it.{request.node.name}")
    logger.setLevel(1)
    logger.propagate = False
    yield logger
    for handler in list(logger.handlers):
        logger.removeHandler(handler)


@pytest.fixture
def service() -> str:
    """A service name unique to the test (it is also the message key)."""
    return f"svc-{uuid.uuid4().hex[:10]}"


@pytest.fixture(autouse=True)
def _fresh_producers() -> Iterator[None]:
    """Every test starts with new shared producers (and counters at zero)."""
    close_all(5)
    _lifecycle._instances.clear()  # closed producers would add to stats() otherwise
    enabled = _enabled_loggers()
    yield
    close_all(5)
    # A test's dictConfig/fileConfig (disable_existing_loggers, true by default) disables
    # every logger that existed, the library's own included: later tests would see none of
    # their records.
    for logger in enabled:
        logger.disabled = False


def _enabled_loggers() -> list[logging.Logger]:
    loggers = logging.root.manager.loggerDict.values()
    return [lg for lg in loggers if isinstance(lg, logging.Logger) and not lg.disabled]


@pytest.fixture
def dead_bootstrap() -> str:
    """An address where nothing listens: a broker that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"127.0.0.1:{port}"


class LogTide(NamedTuple):
    """A running LogTide server: its base URL and an API key of one of its projects."""

    api_url: str
    api_key: str


@pytest.fixture(scope="session")
def logtide() -> LogTide:
    """The real LogTide (``LOGTIDE_API_URL``, ``LOGTIDE_API_KEY``, as printed by
    ``../shared/logtide/up.sh``), checked with one authenticated read.

    Without it the test is skipped, the reason printed (``-ra``); with
    ``LOGTIDE_REQUIRED=1`` (CI, which starts the server) it fails instead, so a broken
    server can never turn into skips.
    """
    url = os.environ.get("LOGTIDE_API_URL", "").rstrip("/")
    key = os.environ.get("LOGTIDE_API_KEY", "")
    problem: str | None = "LOGTIDE_API_URL and LOGTIDE_API_KEY are not set"
    if url and key:
        problem = _logtide_problem(url, key)
    if problem is None:
        return LogTide(url, key)
    reason = f"no real LogTide: {problem} (start one: docs/testing.md#the-real-logtide)"
    if os.environ.get(LOGTIDE_REQUIRED_ENV) == "1":
        pytest.fail(f"{LOGTIDE_REQUIRED_ENV}=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _logtide_problem(url: str, key: str) -> str | None:
    """Why ``url`` is not a LogTide that takes ``key``, or None."""
    request = urllib.request.Request(f"{url}/api/v1/logs?limit=1", headers={"X-API-Key": key})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 429:  # rate limited: LogTide checks the key first, so it is good
            return None
        return f"{url} answered {exc.code} to an authenticated read"
    except (OSError, ValueError) as exc:
        return f"{url} is unreachable ({exc})"
    return None
