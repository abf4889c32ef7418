"""The ``logtide-kafka`` commands against secured listeners: SASL_SSL and mTLS.

One secured single-broker ``LocalKafka`` serves the module.  The commands get their
security settings the way Kafka's own tools do, from a properties file
(``--command-config``), or as ``-X key=value``, and are never given the PLAINTEXT address:
the file's ``bootstrap.servers`` names the secured listener.  Every password is searched
for in everything the commands print.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from logtide_server import LogTideServer

import logtide_kafka
from logtide_kafka.testing import LocalKafka, SecurityConfig, event_problems, read_events

USER = "shipper"
PASSWORD = f"pw-{secrets.token_hex(10)}"
CANARY = f"WRONG-pw-{secrets.token_hex(6)}"
API_KEY = f"lt-{secrets.token_hex(8)}"

broker = pytest.mark.kafka  # conftest marks by fixture name; this module's fixture is its own


@pytest.fixture(scope="module")
def secure_kafka() -> Iterator[LocalKafka]:
    security = SecurityConfig(("SASL_SSL", "MTLS"), users={USER: PASSWORD})
    with LocalKafka(1, security=security) as kafka:
        yield kafka


@pytest.fixture
def secure_topic(secure_kafka: LocalKafka) -> str:
    name = f"logs.cli-secure-{uuid.uuid4().hex[:10]}"
    secure_kafka.create_topics([name], partitions=2)
    return name


def _properties(path: Path, settings: Mapping[str, str]) -> Path:
    """``settings`` as the ``client.properties`` a Kafka user keeps."""
    lines = ["# written by test_cli_security", *(f"{k}={v}" for k, v in settings.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def _env(**extra: str) -> dict[str, str]:
    hidden = {"KAFKA_BROKERS", "LOGTIDE_API_URL", "LOGTIDE_API_KEY", "LOGTIDE_KAFKA_BOOTSTRAP"}
    return {**{k: v for k, v in os.environ.items() if k not in hidden}, **extra}


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "logtide_kafka.cli", *args]


def _cli(*args: str, timeout: float = 90, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(**env),
        check=False,
    )


def _secrets_of(kafka: LocalKafka) -> list[str]:
    assert kafka.tls is not None
    return [PASSWORD, CANARY, API_KEY, kafka.tls.client_key_password]


def _assert_nothing_leaks(kafka: LocalKafka, *outputs: str) -> None:
    text = "\n".join(outputs)
    for secret in _secrets_of(kafka):
        assert secret not in text


def _produce(kafka: LocalKafka, topic: str, service: str, count: int) -> None:
    logtide_kafka.configure(kafka.bootstrap_servers, topic=topic)
    for seq in range(count):
        assert logtide_kafka.send_log("info", f"secured {seq}", service, seq=seq)
    assert logtide_kafka.flush(30) == 0


@broker
def test_ship_then_lag_over_sasl_ssl_from_a_properties_file(
    secure_kafka: LocalKafka, secure_topic: str, service: str, tmp_path: Path
) -> None:
    settings = secure_kafka.client_config("SASL_SSL", mechanism="SCRAM-SHA-512")
    assert settings["bootstrap.servers"] != secure_kafka.bootstrap_servers  # not PLAINTEXT
    config = _properties(tmp_path / "client.properties", settings)
    _produce(secure_kafka, secure_topic, service, 40)
    group = f"cli-secure-{uuid.uuid4().hex[:8]}"

    with LogTideServer(api_key=API_KEY) as server:
        ship = subprocess.Popen(
            _command(
                *("ship", "--command-config", str(config), "--topic", secure_topic),
                *("--group", group, "--dlq-topic", f"{secure_topic}.dlq"),
                # A restarted shipper rejoins sooner: a consumer-only setting passes through.
                *("-X", "session.timeout.ms=10000", "--api-url", server.url),
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(LOGTIDE_API_KEY=API_KEY),
        )
        try:
            shipped = server.wait_for(lambda s: s.accepted_count >= 40, timeout=90)
        finally:
            ship.send_signal(signal.SIGTERM)
            out, err = ship.communicate(timeout=60)
        assert shipped, err
        assert ship.returncode == 0, err
        assert sorted(server.messages()) == sorted(f"secured {seq}" for seq in range(40))
        assert all(e["service"] == service for e in server.entries)
    _assert_nothing_leaks(secure_kafka, out, err)
    assert f"shipping {secure_topic} (group {group})" in err

    # The shipper committed everything over SASL_SSL; lag reads it over SASL_SSL too.
    lag = _cli("lag", "--command-config", str(config), "--group", group, "--window", "0", "--json")
    assert lag.returncode == 0, lag.stderr
    [health] = json.loads(lag.stdout)["groups"]
    assert (health["group"], health["lag"]) == (group, 0)
    partitions = health["partitions"]
    assert [(p["topic"], p["committed"]) for p in partitions] == [
        (secure_topic, p["end"]) for p in partitions
    ]
    assert sum(p["end"] for p in partitions) == 40
    _assert_nothing_leaks(secure_kafka, lag.stdout, lag.stderr)


@broker
def test_tail_over_sasl_ssl_with_dash_x_settings(
    secure_kafka: LocalKafka, secure_topic: str, service: str
) -> None:
    settings = secure_kafka.client_config("SASL_SSL", mechanism="PLAIN")
    _produce(secure_kafka, secure_topic, service, 6)
    dash_x = [part for key, value in settings.items() for part in ("-X", f"{key}={value}")]
    tail = _cli(
        "tail", *dash_x, "--topic", secure_topic, "--from-beginning", "--max", "6", "--json"
    )
    assert tail.returncode == 0, tail.stderr
    events = [json.loads(line) for line in tail.stdout.splitlines()]
    assert sorted(e["metadata"]["seq"] for e in events) == list(range(6))
    assert all(event_problems(e) == [] for e in events)
    _assert_nothing_leaks(secure_kafka, tail.stdout, tail.stderr)


@broker
def test_topics_apply_over_sasl_ssl(secure_kafka: LocalKafka, tmp_path: Path) -> None:
    settings = secure_kafka.client_config("SASL_SSL", mechanism="SCRAM-SHA-256")
    config = _properties(tmp_path / "admin.properties", settings)
    name = f"logs.cli-secure-{uuid.uuid4().hex[:10]}"
    layout = tmp_path / "layout.toml"
    layout.write_text(f'[topics."{name}"]\npartitions = 2\nreplication_factor = 1\n')
    applied = _cli("topics", "apply", "--command-config", str(config), "--file", str(layout))
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.startswith(f"{settings['bootstrap.servers']} (1 broker(s))")
    assert f"  create {name}: 2 partitions, replication factor 1" in applied.stdout
    assert name in secure_kafka.admin().list_topics(timeout=10).topics
    _assert_nothing_leaks(secure_kafka, applied.stdout, applied.stderr)


@broker
def test_send_and_tail_over_mtls_from_a_properties_file(
    secure_kafka: LocalKafka, secure_topic: str, service: str, tmp_path: Path
) -> None:
    settings = secure_kafka.client_config("MTLS")
    assert "ssl.key.password" in settings  # the client key is encrypted
    config = _properties(tmp_path / "mtls.properties", settings)
    sent = _cli(
        *("send", "--command-config", str(config), "--topic", secure_topic),
        *("--service", service, "--message", "over mtls", "--field", "n=7"),
    )
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith(f"delivered 1 event to {secure_topic}")
    [event] = read_events(secure_kafka.bootstrap_servers, secure_topic, count=1)
    assert (event.value["service"], event.value["metadata"]["n"]) == (service, 7)

    tail = _cli(
        *("tail", "--command-config", str(config), "--topic", secure_topic),
        *("--from-beginning", "--max", "1"),
    )
    assert tail.returncode == 0, tail.stderr
    assert f" {service}: over mtls n=7 " in tail.stdout
    _assert_nothing_leaks(secure_kafka, sent.stdout, sent.stderr, tail.stdout, tail.stderr)


@broker
def test_a_wrong_password_fails_in_one_line_without_showing_it(
    secure_kafka: LocalKafka, secure_topic: str, tmp_path: Path
) -> None:
    settings = secure_kafka.client_config("SASL_SSL", mechanism="SCRAM-SHA-256")
    config = _properties(tmp_path / "client.properties", settings)
    # -X overrides the file's (right) password with a wrong one.
    wrong = ["--command-config", str(config), "-X", f"sasl.password={CANARY}", "--timeout", "5"]
    for command in (
        ["lag", "--topic", secure_topic, "--window", "0"],
        ["tail", "--topic", secure_topic, "--max", "1"],
        ["topics", "apply", "--dry-run"],
    ):
        result = _cli(*command, *wrong)
        assert result.returncode == 2, result.stderr
        name = " ".join(command[:2] if command[0] == "topics" else command[:1])
        line = result.stderr.strip()
        assert "\n" not in line, result.stderr
        assert line.startswith(f"logtide-kafka {name}: error: cannot reach Kafka at "), line
        assert "SASL authentication error" in line
        assert "invalid credentials with SASL mechanism SCRAM-SHA-256" in line
        _assert_nothing_leaks(secure_kafka, result.stdout, result.stderr)


@broker
def test_ship_with_a_wrong_password_says_so_and_never_shows_it(
    secure_kafka: LocalKafka, secure_topic: str, tmp_path: Path
) -> None:
    settings = secure_kafka.client_config("SASL_SSL", mechanism="SCRAM-SHA-512", password=CANARY)
    config = _properties(tmp_path / "client.properties", settings)
    ship = subprocess.Popen(
        _command(
            *("ship", "--command-config", str(config), "--topic", secure_topic),
            *("--dlq-topic", f"{secure_topic}.dlq", "--api-url", "http://127.0.0.1:9"),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(LOGTIDE_API_KEY=API_KEY),
    )
    lines: list[str] = []
    refused = threading.Event()

    def read() -> None:
        assert ship.stderr is not None
        for line in ship.stderr:
            lines.append(line)
            if "SASL authentication error" in line:
                refused.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        said = refused.wait(60)
    finally:
        ship.send_signal(signal.SIGTERM)
        ship.wait(60)
        reader.join(10)
    err = "".join(lines)
    assert said, err
    assert ship.returncode == 0, err  # stopped by SIGTERM, as asked
    logged = [line for line in lines if "SASL authentication error" in line]
    assert all(" ERROR logtide_kafka.shipper.kafka: " in line for line in logged), logged
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in logged[0]
    _assert_nothing_leaks(secure_kafka, err)
