"""TLS and SASL against a real broker, and credentials that never leak.

One secured single-broker ``LocalKafka`` serves the module: ``SSL``, ``MTLS`` (client
certificates required) and ``SASL_SSL`` (SCRAM-SHA-256/512 and PLAIN) listeners next to
PLAINTEXT.  Every password a test hands the library is a distinctive string that is then
searched for in everything the library shows: reprs, counters, stderr, logs, exceptions.
"""

from __future__ import annotations

import logging
import secrets
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

import logtide_kafka
from logtide_kafka import KafkaHandler
from logtide_kafka.testing import (
    Listener,
    LocalKafka,
    Mechanism,
    SecurityConfig,
    TlsFiles,
    event_problems,
    make_tls_files,
    read_events,
)

USER = "alice"
PASSWORD = f"alice-{secrets.token_hex(8)}"
# The wrong password a misconfigured app holds: searched for wherever the library speaks.
CANARY = f"Zq9-LEAK-CANARY-{secrets.token_hex(6)}"
# Events that cannot be delivered fail after this long instead of five minutes.
FAIL_FAST = {"message.timeout.ms": 2000}

broker = pytest.mark.kafka  # conftest marks by fixture name; this module's fixture is its own


@pytest.fixture(scope="module")
def secure_kafka() -> Iterator[LocalKafka]:
    security = SecurityConfig(("SSL", "MTLS", "SASL_SSL"), users={USER: PASSWORD})
    with LocalKafka(1, security=security) as kafka:
        yield kafka


@pytest.fixture
def secure_topic(secure_kafka: LocalKafka) -> str:
    name = f"logs.secure-{uuid.uuid4().hex[:12]}"
    secure_kafka.create_topics([name], partitions=3)
    return name


def _read_over(config: dict[str, str], topic: str, count: int) -> list[dict[str, Any]]:
    """Read ``count`` events from the start of ``topic`` with ``config``'s security."""
    consumer = Consumer(
        {
            **config,
            "group.id": f"security-test-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "logger": logging.getLogger("security-test-consumer"),
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=15).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        events: list[dict[str, Any]] = []
        for message in iter(lambda: consumer.poll(20), None):
            assert message.error() is None, message.error()
            events.append(orjson.loads(message.value() or b""))
            if len(events) == count:
                return events
        raise AssertionError(
            f"read {len(events)} of {count} events from {config['bootstrap.servers']}"
        )
    finally:
        consumer.close()


def _searchable(*items: object) -> str:
    return "\n".join(repr(item) for item in items)


# -- delivery over every secured listener ---------------------------------------------------

DELIVERY_CASES: list[tuple[Listener, Mechanism]] = [
    ("SSL", "SCRAM-SHA-512"),  # the mechanism only matters for SASL listeners
    ("MTLS", "SCRAM-SHA-512"),
    ("SASL_SSL", "SCRAM-SHA-512"),
    ("SASL_SSL", "SCRAM-SHA-256"),
    ("SASL_SSL", "PLAIN"),
]


@broker
@pytest.mark.parametrize(
    ("listener", "mechanism"),
    DELIVERY_CASES,
    ids=["ssl", "mtls", "sasl_ssl-scram-sha-512", "sasl_ssl-scram-sha-256", "sasl_ssl-plain"],
)
def test_handler_delivers_over_secured_listener(  # noqa: PLR0917
    secure_kafka: LocalKafka,
    secure_topic: str,
    logger: logging.Logger,
    service: str,
    listener: Listener,
    mechanism: Mechanism,
) -> None:
    config = secure_kafka.client_config(listener, mechanism=mechanism)
    assert config["bootstrap.servers"] != secure_kafka.bootstrap_servers  # not PLAINTEXT
    handler = KafkaHandler(service, topic=secure_topic, producer_config=config)
    logger.addHandler(handler)
    for seq in range(20):
        logger.info("secured %d", seq, extra={"seq": seq})
    assert handler.producer.flush(15) == 0
    stats = handler.stats()
    assert (stats.enqueued, stats.delivered, stats.failed, stats.dropped) == (20, 20, 0, 0)

    # Read back over the same secured listener, and over PLAINTEXT with read_events.
    secured = _read_over(config, secure_topic, 20)
    plain = read_events(secure_kafka.bootstrap_servers, secure_topic, count=20)
    for events in (secured, [e.value for e in plain]):
        assert sorted(e["metadata"]["seq"] for e in events) == list(range(20))
        assert all(e["service"] == service and event_problems(e) == [] for e in events)
    assert secure_kafka.tls is not None
    shown = _searchable(handler, handler.producer, stats)
    assert PASSWORD not in shown
    assert secure_kafka.tls.client_key_password not in shown


@broker
def test_send_log_delivers_over_sasl_ssl(secure_kafka: LocalKafka, secure_topic: str) -> None:
    config = secure_kafka.client_config("SASL_SSL", mechanism="SCRAM-SHA-512")
    logtide_kafka.configure(topic=secure_topic, producer_config=config)
    for seq in range(10):
        assert logtide_kafka.send_log("warn", "over sasl", "sasl-svc", seq=seq)
    assert logtide_kafka.flush(15) == 0
    stats = logtide_kafka.stats()
    assert (stats.delivered, stats.failed) == (10, 0)
    events = read_events(secure_kafka.bootstrap_servers, secure_topic, count=10)
    assert sorted(e.value["metadata"]["seq"] for e in events) == list(range(10))


# -- failures: counted, never raised, never leaking ----------------------------------------


@broker
@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN"])
def test_wrong_password_fails_closed_and_never_shows_the_password(  # noqa: PLR0917
    secure_kafka: LocalKafka,
    secure_topic: str,
    logger: logging.Logger,
    service: str,
    mechanism: Mechanism,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="logtide_kafka")
    errors: list[str] = []
    # ``stats().last_error`` as it stood at each client error (later ones overwrite it).
    last_errors: list[str | None] = []
    holder: list[KafkaHandler] = []

    def on_error(err: KafkaError) -> None:
        errors.append(err.str())
        if holder:
            last_errors.append(holder[0].stats().last_error)

    config: dict[str, Any] = {
        **secure_kafka.client_config("SASL_SSL", mechanism=mechanism, password=CANARY),
        **FAIL_FAST,
        # librdkafka's own debug output (its configuration dump included) reaches the
        # library's client logger, so it is searched too.
        "debug": "conf,security,broker",
        "statistics.interval.ms": 500,
        "error_cb": on_error,
    }
    handler = KafkaHandler(service, topic=secure_topic, producer_config=config)
    holder.append(handler)
    logger.addHandler(handler)
    for seq in range(5):
        logger.error("payment %d refused", seq)  # must not raise
    assert handler.producer.flush(20) == 0  # every event has timed out by now
    stats = handler.stats()
    assert (stats.enqueued, stats.delivered, stats.failed) == (5, 0, 5)
    assert stats.last_error is not None
    assert any("authentication" in str(error).lower() for error in last_errors), last_errors

    # Events still queued at close are purged, counted and reported on stderr.
    for seq in range(3):
        logger.error("after %d", seq)
    # close() counts what librdkafka still holds, which includes pending debug lines and
    # error reports; ``failed`` counts the purged events exactly.
    assert handler.producer.close(0.5) >= 3
    final = handler.stats()
    assert final.failed == 8

    captured = capfd.readouterr()
    assert "not delivered" in captured.err  # the close-time report was captured
    # librdkafka's debug lines reached the captured client logger: the search covers them.
    assert any(r.name.startswith("logtide_kafka.client") for r in caplog.records)
    searched = _searchable(
        handler, handler.producer, stats, final, last_errors, captured, caplog.text, errors
    )
    assert CANARY not in searched
    assert not read_events(secure_kafka.bootstrap_servers, secure_topic)


@broker
def test_send_log_with_wrong_password_counts_failures_without_leaking(
    secure_kafka: LocalKafka, secure_topic: str, capfd: pytest.CaptureFixture[str]
) -> None:
    config = {
        **secure_kafka.client_config("SASL_SSL", mechanism="PLAIN", password=CANARY),
        **FAIL_FAST,
    }
    logtide_kafka.configure(topic=secure_topic, producer_config=config)
    for seq in range(4):
        assert logtide_kafka.send_log("error", "refused", "plain-svc", seq=seq)
    assert logtide_kafka.flush(20) == 0
    stats = logtide_kafka.stats()
    assert (stats.enqueued, stats.delivered, stats.failed) == (4, 0, 4)
    assert CANARY not in _searchable(stats, capfd.readouterr())


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A second, unrelated CA: the broker's certificate does not chain to it."""
    return make_tls_files(tmp_path_factory.mktemp("other-ca"))


BAD_TLS = ["wrong-ca", "mtls-without-client-certificate", "plaintext-client-on-tls-port"]


@broker
@pytest.mark.parametrize("case", BAD_TLS)
def test_bad_tls_setup_fails_closed(  # noqa: PLR0917
    secure_kafka: LocalKafka,
    secure_topic: str,
    logger: logging.Logger,
    service: str,
    other_ca: TlsFiles,
    case: str,
) -> None:
    if case == "wrong-ca":
        config = secure_kafka.client_config("SSL") | {"ssl.ca.location": str(other_ca.ca_location)}
        expected = "certificate verify failed"
    elif case == "mtls-without-client-certificate":
        config = secure_kafka.client_config("MTLS")
        for key in ("ssl.certificate.location", "ssl.key.location", "ssl.key.password"):
            del config[key]
        expected = "certificate"  # the broker's TLS alert: bad_certificate (42)
    else:
        config = secure_kafka.client_config("SSL") | {"security.protocol": "PLAINTEXT"}
        expected = "brokers are down"  # the broker hangs up on what is not a TLS handshake
    errors: list[str] = []
    handler = KafkaHandler(
        service,
        topic=secure_topic,
        producer_config={**config, **FAIL_FAST, "error_cb": lambda e: errors.append(e.str())},
    )
    logger.addHandler(handler)
    for seq in range(5):
        logger.warning("over a bad tls setup %d", seq)
    assert handler.producer.flush(20) == 0
    stats = handler.stats()
    assert (stats.enqueued, stats.delivered, stats.failed) == (5, 0, 5)
    assert errors, "librdkafka reported no connection error"
    assert any(expected in error for error in errors), errors
    assert not read_events(secure_kafka.bootstrap_servers, secure_topic)


# -- no broker needed ------------------------------------------------------------------------

BAD_CONFIGS: list[dict[str, Any]] = [
    # A mechanism librdkafka does not know.
    {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-1", "sasl.password": CANARY},
    # A misspelt key holding the password.
    {"security.protocol": "SASL_SSL", "sasl.username": USER, "sasl.pasword": CANARY},
    # The password without a user name.
    {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN", "sasl.password": CANARY},
    # A Java client's JAAS line copied over, password inside.
    {
        "security.protocol": "SASL_SSL",
        "sasl.jaas.config": "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{USER}" password="{CANARY}";',
    },
    # A client key that does not exist, with its password.
    {
        "security.protocol": "SSL",
        "ssl.key.location": "/nonexistent/client.key",
        "ssl.key.password": CANARY,
        "ssl.certificate.location": "/nonexistent/client.pem",
    },
    # An invalid protocol next to valid credentials.
    {"security.protocol": "SASL_TLS", "sasl.username": USER, "sasl.password": CANARY},
]


@pytest.mark.parametrize(
    "bad", BAD_CONFIGS, ids=lambda c: next(k for k in c if k != "security.protocol")
)
def test_bad_security_config_raises_without_the_password(
    bad: dict[str, Any],
    dead_bootstrap: str,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="logtide_kafka")
    with pytest.raises((KafkaException, ValueError, TypeError)) as info:
        KafkaHandler("bad-config", bootstrap_servers=dead_bootstrap, producer_config=bad)
    text = "".join(traceback.format_exception(info.value))
    assert text.strip()
    if isinstance(info.value, KafkaException):
        assert info.value.args[0].code() == KafkaError._INVALID_ARG
    assert CANARY not in _searchable(text, info.value.args, capfd.readouterr(), caplog.text)


def test_security_config_hides_passwords_and_checks_them(tmp_path: Path) -> None:
    security = SecurityConfig(("SASL_SSL",), users={USER: CANARY})
    assert CANARY not in repr(security)
    assert security.sasl
    assert not SecurityConfig(("SSL",)).sasl
    tls = make_tls_files(tmp_path)
    assert tls.keystore_password not in repr(tls)
    assert tls.client_key_password not in repr(tls)
    assert tls.ca_location.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert "ENCRYPTED PRIVATE KEY" in tls.client_key.read_text()

    bad_password = 'pw"; user_mallory="x'  # would inject a PLAIN user into the JAAS line
    with pytest.raises(ValueError, match="password of user 'alice'") as info:
        SecurityConfig(users={USER: bad_password})
    assert bad_password not in str(info.value)
    with pytest.raises(ValueError, match="listeners"):
        SecurityConfig(("SSL", "SSL"))
    with pytest.raises(ValueError, match="listeners"):
        SecurityConfig(("TLS",))  # type: ignore[arg-type]


def test_local_kafka_plans_secured_listeners_before_start() -> None:
    security = SecurityConfig(("SSL", "SASL_SSL"), users={USER: PASSWORD})
    kafka = LocalKafka(1, security=security)
    try:
        node = kafka.nodes[0]
        assert set(node.listener_ports) == {"SSL", "SASL_SSL"}
        ports = {node.port, node.controller_port, *node.listener_ports.values()}
        assert len(ports) == 4
        assert kafka.listener_servers("SSL") == f"127.0.0.1:{node.listener_ports['SSL']}"
        assert kafka.client_config() == {"bootstrap.servers": kafka.bootstrap_servers}
        with pytest.raises(RuntimeError, match="start the cluster first"):
            kafka.client_config("SSL")
        with pytest.raises(ValueError, match="not open"):
            kafka.listener_servers("MTLS")
        assert PASSWORD not in repr(kafka)
        plain = LocalKafka(1)
        assert plain.nodes[0].listener_ports == {}  # unsecured: as before
        assert plain.security is None
        plain.stop()
    finally:
        kafka.stop()
