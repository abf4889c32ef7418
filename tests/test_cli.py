"""The ``logtide-kafka`` command line: help, errors, and real round trips through Kafka."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from logtide_server import LogTideServer, quota_exceeded, server_error

import logtide_kafka
from logtide_kafka.cli import _format_event, main
from logtide_kafka.pipeline import shipper
from logtide_kafka.pipeline._metrics import MetricsServer, ShipperMetrics
from logtide_kafka.pipeline.topics import admin_client
from logtide_kafka.testing import create_topics, event_problems

SECRET = "lt-key-DO-NOT-PRINT-7f3a9c"
_TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"KAFKA_BROKERS", "LOGTIDE_API_URL", "LOGTIDE_API_KEY"}
    }
    return {**env, **extra}


def _cli(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "logtide_kafka.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(**env),
        check=False,
    )


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# -- no broker ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [[], ["topics"], ["topics", "apply"], ["ship"], ["lag"], ["send"], ["tail"]]
)
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: logtide-kafka {' '.join(command)}".rstrip())
    if command not in ([], ["topics"]):
        assert "--brokers" in out


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "logtide_kafka", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert "topics" in result.stdout
    assert "tail" in result.stdout


def test_ship_without_an_api_key_is_a_clear_error() -> None:
    result = _cli("ship", LOGTIDE_API_URL="http://127.0.0.1:1")
    assert result.returncode == 2
    assert "no LogTide API key: set LOGTIDE_API_KEY" in _one_error_line(result.stderr)


def test_ship_without_an_api_url_is_a_clear_error_and_keeps_the_key_secret() -> None:
    result = _cli("ship", LOGTIDE_API_KEY=SECRET)
    assert result.returncode == 2
    assert "no LogTide API URL: set LOGTIDE_API_URL" in _one_error_line(result.stderr)
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--api-url", "ftp://logtide.example", "--api-key", SECRET],
        ["--api-url", f"logtide.example/?key={SECRET}", "--api-key", SECRET],
        ["--api-url", "http://127.0.0.1:1", "--api-key", SECRET, "--batch-max-events", "0"],
        ["--api-key", SECRET, "--metrics-port", "not-a-port"],
    ],
)
def test_ship_argument_errors_never_echo_the_key(
    args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOGTIDE_API_URL", raising=False)
    monkeypatch.delenv("LOGTIDE_API_KEY", raising=False)
    try:
        code = main(["ship", *args])
    except SystemExit as exited:  # argparse's own usage errors
        code = int(exited.code or 0)
    captured = capsys.readouterr()
    assert code == 2
    assert SECRET not in captured.out + captured.err
    assert "error:" in captured.err


def test_ship_hands_flags_and_environment_to_the_shipper(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[Any] = []

    def fake_run(config: Any, *, handle_signals: bool = True) -> int:
        seen.append(config)
        if config.group == "explode":  # the shipper's own error, naming the key
            raise ValueError(f"LogTide refused key {config.api_key}")
        return 0

    monkeypatch.setattr(shipper, "run_shipper", fake_run)
    monkeypatch.setenv("KAFKA_BROKERS", "kafka-9:9092")
    monkeypatch.setenv("LOGTIDE_API_URL", "https://logtide.example")
    monkeypatch.setenv("LOGTIDE_API_KEY", SECRET)
    args = ["ship", "--topic", "^logs\\.", "--topic", "logs.extra", "--batch-max-wait", "0.5"]
    assert main(args) == 0
    [config] = seen
    assert (config.brokers, config.api_url, config.api_key) == (
        "kafka-9:9092",
        "https://logtide.example",
        SECRET,
    )
    assert (config.topics, config.batch_max_wait) == (("^logs\\.", "logs.extra"), 0.5)
    assert (config.group, config.dlq_topic) == ("logtide-ingest", "logs.dlq")  # its defaults

    assert main(["ship", "--group", "explode", "--api-url", "http://127.0.0.1:1"]) == 2
    captured = capsys.readouterr()
    assert SECRET not in captured.out + captured.err
    assert "LogTide refused key [REDACTED]" in _one_error_line(captured.err)


def test_a_missing_layout_file_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.toml"
    assert main(["topics", "apply", "--file", str(missing)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("logtide-kafka topics apply: error: cannot read layout")
    assert str(missing) in line

    broken = tmp_path / "broken.toml"
    broken.write_text('[topics."x"]\nreplicas = 3\n')
    assert main(["topics", "apply", "--file", str(broken)]) == 2
    assert "invalid layout: x: unknown key(s) replicas" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    [
        ["topics", "apply", "--dry-run"],
        ["lag", "--window", "0"],
        ["send"],
        ["tail", "--max", "1"],
    ],
)
def test_an_unreachable_broker_is_one_line_exit_2(
    command: list[str], dead_bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*command, "--brokers", dead_bootstrap, "--timeout", "1"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"cannot reach Kafka at {dead_bootstrap}" in line


def test_the_readable_line_of_an_event() -> None:
    event = {
        "time": "2025-11-25T08:30:03.214Z",
        "service": "checkout",
        "level": "error",
        "message": "payment\nfailed",
        "metadata": {
            "order_id": 42,
            "note": "two words",
            "exception": {"type": "ValueError", "message": "bad", "stack": "Traceback..."},
            "blob": "x" * 200,
        },
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    }
    line = _format_event(event)
    assert "\n" not in line
    assert line.startswith("2025-11-25T08:30:03.214Z ERROR    checkout: payment failed ")
    assert ' order_id=42 note="two words" exception=ValueError: bad ' in line
    assert "Traceback" not in line
    assert re.search(r" blob=x{79}… ", line)
    assert line.endswith(" trace_id=4bf92f3577b34da6a3ce929d0e0e4736")


# -- against a real broker ---------------------------------------------------------------------


def test_send_then_tail_through_kafka(kafka_bootstrap: str, topic: str, service: str) -> None:
    # Noise the filters must drop: another service, and this service below the level.
    logtide_kafka.configure(kafka_bootstrap, topic=topic)
    logtide_kafka.send_log("critical", "someone else", f"{service}-other")
    logtide_kafka.send_log("info", "too quiet", service)
    assert logtide_kafka.flush(30) == 0

    sent = _cli(
        "send",
        "--brokers",
        kafka_bootstrap,
        "--topic",
        topic,
        "--service",
        service,
        "--level",
        "warning",
        "--message",
        "disk almost full",
        "--field",
        "disk=/var",
        "--field",
        "free_pct=4.5",
    )
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith(f"delivered 1 event to {topic} (service {service}, level warn)")

    common = ["tail", "--brokers", kafka_bootstrap, "--topic", topic, "--from-beginning"]
    tailed = _cli(*common, "--service", service, "--level", "warn", "--max", "1")
    assert tailed.returncode == 0, tailed.stderr
    [line] = tailed.stdout.splitlines()
    assert re.fullmatch(
        _TIME + rf" WARN     {service}: disk almost full disk=/var free_pct=4\.5 hostname=\S+",
        line,
    ), line

    raw = _cli(*common, "--json", "--max", "3")
    assert raw.returncode == 0, raw.stderr
    events = [json.loads(text) for text in raw.stdout.splitlines()]
    assert [event_problems(e) for e in events] == [[], [], []]
    # Partitions interleave in any order; one service's events (one key) keep theirs.
    assert sorted((e["service"], e["level"]) for e in events) == [
        (service, "info"),
        (service, "warn"),
        (f"{service}-other", "critical"),
    ]
    mine = [e for e in events if e["service"] == service]
    assert [e["level"] for e in mine] == ["info", "warn"]
    assert mine[1]["metadata"]["free_pct"] == 4.5


def test_tail_follows_events_sent_after_it_started(
    kafka_bootstrap: str, topic: str, service: str
) -> None:
    tail = subprocess.Popen(
        [
            *(sys.executable, "-m", "logtide_kafka.cli", "tail", "--brokers", kafka_bootstrap),
            *("--topic", topic, "--service", service, "--max", "1"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    logtide_kafka.configure(kafka_bootstrap, topic=topic)
    done = threading.Event()

    def keep_sending() -> None:
        # Without --from-beginning tail starts at the end: send until it has caught one.
        seq = 0
        while not done.wait(0.3):
            logtide_kafka.send_log("error", "live event", service, seq=seq)
            logtide_kafka.flush(5)
            seq += 1

    sender = threading.Thread(target=keep_sending, daemon=True)
    sender.start()
    try:
        out, err = tail.communicate(timeout=60)
    finally:
        done.set()
        sender.join(10)
        tail.kill()
    assert tail.returncode == 0, err
    [line] = out.splitlines()
    assert re.fullmatch(_TIME + rf" ERROR    {service}: live event seq=\d+ hostname=\S+", line)


def test_send_to_a_missing_topic_is_one_line_exit_2(
    kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = f"logs.missing-{uuid.uuid4().hex[:8]}"
    assert main(["send", "--brokers", kafka_bootstrap, "--topic", missing]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"topic {missing!r} does not exist" in line


def test_send_reports_an_undelivered_event_with_exit_1(
    kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The broker refuses any record batch larger than 64 bytes on this topic.
    name = f"logs.unwritable-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_bootstrap, [name], partitions=1, config={"max.message.bytes": "64"})
    args = ["send", "--brokers", kafka_bootstrap, "--topic", name, "--timeout", "2"]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    line = _one_error_line(captured.err)
    assert line.startswith(f"logtide-kafka send: not delivered to {name}")
    assert "delivered=0 failed=1" in line


def test_topics_apply_dry_run_prints_the_plan(kafka_bootstrap: str, tmp_path: Path) -> None:
    name = f"logs.cli-{uuid.uuid4().hex[:10]}"
    path = tmp_path / "layout.toml"
    path.write_text(
        f'[topics."{name}"]\npartitions = 2\nreplication_factor = 1\nretention = "1h"\n'
    )
    args = ["topics", "apply", "--brokers", kafka_bootstrap, "--file", str(path)]
    dry = _cli(*args, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert (
        f"  would create {name}: 2 partitions, replication factor 1, retention.ms=3600000\n"
        in dry.stdout
    )
    assert dry.stdout.endswith("dry run: 1 change(s) planned, nothing changed\n")
    assert name not in admin_client(kafka_bootstrap).list_topics(timeout=10).topics

    assert _cli(*args).returncode == 0
    again = _cli(*args, "--dry-run")
    assert f"  ok {name}\n" in again.stdout
    assert again.stdout.endswith("dry run: 0 change(s) planned, nothing changed\n")


def test_lag_json_and_prometheus_and_exit_code(kafka_bootstrap: str, topic: str) -> None:
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for _ in range(1_200):
        producer.produce(topic, b"{}", partition=1)
    assert producer.flush(30) == 0
    group = f"cli-lag-{uuid.uuid4().hex[:8]}"
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    consumer.commit(offsets=[TopicPartition(topic, 1, 100)], asynchronous=False)
    consumer.close()

    args = ["lag", "--brokers", kafka_bootstrap, "--group", group, "--window", "0"]
    result = _cli(*args, "--json")
    assert result.returncode == 1, result.stderr  # 1,100 behind: a warning
    document = json.loads(result.stdout)
    assert document["grade"] == "warning"
    [health] = document["groups"]
    assert (health["group"], health["lag"], health["lag_grade"]) == (group, 1_100, "warning")
    assert health["partitions"] == [
        {"topic": topic, "partition": 1, "committed": 100, "start": 0, "end": 1_200, "lag": 1_100}
    ]
    assert document["error_rate"] is None

    prometheus = _cli(*args, "--prometheus")
    assert prometheus.returncode == 1
    lines = prometheus.stdout.splitlines()
    assert f'logtide_kafka_partition_lag{{group="{group}",topic="{topic}",partition="1"}} 1100' in (
        lines
    )
    assert "# TYPE logtide_kafka_group_lag gauge" in lines


# -- client settings, logging and the metrics host (no broker) -------------------------------

EVERY_COMMAND = [["topics", "apply"], ["ship"], ["lag"], ["send"], ["tail"]]
KAFKA_SECRET = "sasl-pw-NEVER-SHOWN-4d1e"


@pytest.mark.parametrize("command", EVERY_COMMAND)
def test_every_command_takes_client_settings_and_log_options(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    out = capsys.readouterr().out
    for option in ("--command-config FILE", "-X KEY=VALUE", "--log-level", "--log-format"):
        assert option in out


@pytest.fixture
def fake_shipper(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """``run_shipper`` replaced: records its config, logs like the shipper, returns 0."""
    seen: list[Any] = []

    def fake_run(config: Any, *, handle_signals: bool = True) -> int:
        seen.append(config)
        log = logging.getLogger("logtide_kafka.shipper")
        log.info("shipping (fake)")
        log.warning("LogTide answered 500; retry 1 in 0.5 s")
        password = config.consumer_config.get("sasl.password", "")
        log.error("stopped shipping: key %s, password %s", config.api_key, password)
        logging.getLogger("logtide_kafka.client").error("librdkafka chatter")
        return 0

    monkeypatch.setattr(shipper, "run_shipper", fake_run)
    monkeypatch.setenv("LOGTIDE_API_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("LOGTIDE_API_KEY", SECRET)
    monkeypatch.delenv("KAFKA_BROKERS", raising=False)
    return seen


def test_ship_takes_the_properties_file_and_dash_x(
    fake_shipper: list[Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    properties = tmp_path / "client.properties"
    properties.write_text(
        "# what kafka-consumer-groups.sh --command-config reads\n"
        "bootstrap.servers=kafka-1:9093\n"
        "security.protocol=SASL_SSL\n"
        "sasl.mechanism=SCRAM-SHA-512\n"
        "sasl.username=alice\n"
        f"sasl.password={KAFKA_SECRET}\n"
        "session.timeout.ms=45000\n"
    )
    args = ["ship", "--command-config", str(properties), "-X", "session.timeout.ms=10000"]
    assert main([*args, "-X", "client.id=restarted"]) == 0
    [config] = fake_shipper
    assert config.brokers == "kafka-1:9093"  # from the file, as Kafka's tools read it
    assert dict(config.consumer_config) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "alice",
        "sasl.password": KAFKA_SECRET,
        "session.timeout.ms": "10000",  # -X wins over the file
        "client.id": "restarted",
    }
    assert config.metrics_host == "0.0.0.0"  # the documented default
    err = capsys.readouterr().err
    assert KAFKA_SECRET not in err
    assert SECRET not in err
    assert "password [REDACTED]" in err

    assert main([*args, "--brokers", "kafka-2:9093", "--metrics-host", "127.0.0.1"]) == 0
    assert (fake_shipper[1].brokers, fake_shipper[1].metrics_host) == ("kafka-2:9093", "127.0.0.1")


def test_ship_concurrency(fake_shipper: list[Any]) -> None:
    assert main(["ship", "--brokers", "k:9092"]) == 0
    assert main(["ship", "--brokers", "k:9092", "--concurrency", "8"]) == 0
    assert [config.concurrency for config in fake_shipper] == [shipper.DEFAULT_CONCURRENCY, 8]
    with pytest.raises(SystemExit):
        main(["ship", "--brokers", "k:9092", "--concurrency", "0"])


_TEXT_LINE = _TIME + r" (DEBUG|INFO|WARNING|ERROR|CRITICAL) logtide_kafka[.\w]*: .*"


def test_ship_logs_to_stderr_as_text(
    fake_shipper: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    root_handlers = list(logging.getLogger().handlers)
    package = logging.getLogger("logtide_kafka")
    handlers, level = list(package.handlers), package.level
    assert main(["ship"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert all(re.fullmatch(_TEXT_LINE, line) for line in lines), lines
    assert [line.split(" ", 1)[1] for line in lines] == [
        "INFO logtide_kafka.shipper: shipping (fake)",
        "WARNING logtide_kafka.shipper: LogTide answered 500; retry 1 in 0.5 s",
        "ERROR logtide_kafka.shipper: stopped shipping: key [REDACTED], password ",
    ]  # librdkafka's chatter on logtide_kafka.client only shows at --log-level debug
    # Only the package's logger was touched, and only while the command ran.
    assert logging.getLogger().handlers == root_handlers
    assert (package.handlers, package.level) == (handlers, level)


def test_ship_logs_json_lines_at_the_chosen_level(
    fake_shipper: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ship", "--log-format", "json", "--log-level", "WARNING"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(r["level"], r["logger"]) for r in records] == [
        ("WARNING", "logtide_kafka.shipper"),
        ("ERROR", "logtide_kafka.shipper"),
    ]
    assert all(set(r) == {"time", "level", "logger", "message"} for r in records)
    assert all(re.fullmatch(_TIME, r["time"]) for r in records)
    assert records[1]["message"] == "stopped shipping: key [REDACTED], password "

    assert main(["ship", "--log-level", "debug"]) == 0
    err = capsys.readouterr().err
    assert "ERROR logtide_kafka.client: librdkafka chatter" in err
    assert main(["ship", "--log-level", "error"]) == 0
    assert [line.split(" ")[1] for line in capsys.readouterr().err.splitlines()] == ["ERROR"]


@pytest.mark.parametrize("command", EVERY_COMMAND)
def test_a_bad_settings_file_is_one_line_naming_file_and_line(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    properties = tmp_path / "client.properties"
    properties.write_text(f"security.protocol=SASL_SSL\n\n{KAFKA_SECRET}\n")
    assert main([*command, "--command-config", str(properties)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line == (
        f"logtide-kafka {' '.join(command)}: error: {properties}, line 3: "
        "a key without a value (expected key=value)"
    )
    missing = tmp_path / "missing.properties"
    assert main([*command, "--command-config", str(missing)]) == 2
    assert f"cannot read {missing}: No such file" in _one_error_line(capsys.readouterr().err)


def test_a_bad_dash_x_never_echoes_the_value(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("sasl.password", f"={KAFKA_SECRET}"):
        with pytest.raises(SystemExit) as exited:
            main(["lag", "-X", bad])
        assert exited.value.code == 2
        err = capsys.readouterr().err
        assert "argument -X: expected KEY=VALUE" in err
        assert KAFKA_SECRET not in err
        assert "sasl.password" not in err.split("error:")[1]


@pytest.mark.parametrize(
    ("setting", "reason"),
    [
        ("no.such.property=1", 'No such configuration property: "no.such.property"'),
        ("security.protocol=SASL_TLS", 'Invalid value "SASL_TLS" for configuration property'),
    ],
)
def test_an_invalid_librdkafka_setting_is_one_line(
    setting: str, reason: str, dead_bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["lag", "--brokers", dead_bootstrap, "-X", f"sasl.password={KAFKA_SECRET}"]
    assert main([*args, "-X", setting, "--timeout", "1"]) == 2
    err = capsys.readouterr().err
    line = _one_error_line(err)
    assert line.startswith("logtide-kafka lag: error: invalid client setting: ")
    assert reason in line
    assert KAFKA_SECRET not in err


def _listening_address(server: Any) -> tuple[str, int]:
    host, port = server._httpd.socket.getsockname()[:2]
    return str(host), int(port)


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as response:
        return int(response.status)


@pytest.mark.parametrize(
    ("host", "bound"), [(None, "0.0.0.0"), ("127.0.0.1", "127.0.0.1"), ("localhost", "127.0.0.1")]
)
def test_the_metrics_endpoint_binds_where_asked(host: str | None, bound: str) -> None:
    metrics = ShipperMetrics()
    server = MetricsServer(metrics, 0) if host is None else MetricsServer(metrics, 0, host)
    try:
        # What the kernel bound, not what was asked for.
        assert _listening_address(server) == (bound, server.port)
        assert server.host == bound
        assert _get(f"http://127.0.0.1:{server.port}/metrics") == 200
    finally:
        server.close()


def test_the_metrics_endpoint_listens_on_ipv6_when_asked() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    try:
        server = MetricsServer(ShipperMetrics(), 0, "::1")
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        assert _listening_address(server) == ("::1", server.port)
        assert _get(f"http://[::1]:{server.port}/metrics.json") == 200
        with pytest.raises(ConnectionRefusedError):  # IPv6 only: the IPv4 loopback is not served
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    finally:
        server.close()


# -- ship speaks: a subprocess against a real broker and a LogTide ---------------------------


def _events_on(kafka_bootstrap: str, topic: str, service: str, count: int) -> None:
    logtide_kafka.configure(kafka_bootstrap, topic=topic)
    for seq in range(count):
        assert logtide_kafka.send_log("info", f"event {seq}", service, seq=seq)
    assert logtide_kafka.flush(30) == 0


def _ship_args(kafka_bootstrap: str, topic: str, url: str) -> list[str]:
    group = f"cli-ship-{uuid.uuid4().hex[:8]}"
    return ["ship", "--brokers", kafka_bootstrap, "--topic", topic, "--group", group,
            "--dlq-topic", f"{topic}.dlq", "--api-url", url]  # fmt: skip


@pytest.mark.parametrize("sink", ["real-logtide", "test-server"])
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_ship_with_a_wrong_key_says_so_on_stderr(  # noqa: PLR0917
    request: pytest.FixtureRequest,
    kafka_bootstrap: str,
    topic: str,
    service: str,
    sink: str,
    log_format: str,
) -> None:
    # The shared fixture: skipped without a LogTide, a failure under LOGTIDE_REQUIRED=1.
    real = request.getfixturevalue("logtide") if sink == "real-logtide" else None
    _events_on(kafka_bootstrap, topic, service, 3)
    wrong = f"lp_wrong_{uuid.uuid4().hex}"
    with LogTideServer(api_key="the-right-key") as server:
        url = real.api_url if real is not None else server.url
        args = _ship_args(kafka_bootstrap, topic, url)
        result = _cli(*args, "--log-format", log_format, LOGTIDE_API_KEY=wrong)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert wrong not in result.stderr
    assert "Traceback" not in result.stderr
    if log_format == "json":
        records = [json.loads(line) for line in result.stderr.splitlines()]
        errors = [r["message"] for r in records if r["level"] == "ERROR"]
    else:
        errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    # One line, naming the cause.
    assert len(errors) == 1, result.stderr
    assert "stopped shipping: LogTide refused the API key (401" in errors[0]
    assert "nothing was committed" in errors[0]


def test_ship_stopped_by_the_quota_says_so_in_one_line(
    kafka_bootstrap: str, topic: str, service: str
) -> None:
    _events_on(kafka_bootstrap, topic, service, 3)
    with LogTideServer(api_key=SECRET) as server:
        server.script(quota_exceeded(), times=5)
        result = _cli(*_ship_args(kafka_bootstrap, topic, server.url), LOGTIDE_API_KEY=SECRET)
    assert result.returncode == 2, result.stderr
    assert SECRET not in result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, result.stderr
    assert "stopped shipping: LogTide's monthly event quota is exhausted (429" in errors[0]


def test_ship_logs_its_retries_to_stderr(kafka_bootstrap: str, topic: str, service: str) -> None:
    _events_on(kafka_bootstrap, topic, service, 5)
    with LogTideServer(api_key=SECRET) as server:
        server.script(server_error(503), times=2)
        ship = subprocess.Popen(
            [sys.executable, "-m", "logtide_kafka.cli",
             *_ship_args(kafka_bootstrap, topic, server.url), "--max-backoff", "0.2"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=_env(LOGTIDE_API_KEY=SECRET),
        )  # fmt: skip
        try:
            shipped = server.wait_for(lambda s: s.accepted_count >= 5, timeout=60)
        finally:
            ship.send_signal(signal.SIGTERM)
            out, err = ship.communicate(timeout=60)
    assert shipped, err
    assert ship.returncode == 0, err
    assert SECRET not in out + err
    lines = err.splitlines()
    assert all(re.fullmatch(_TEXT_LINE, line) for line in lines), err
    retries = [line for line in lines if " WARNING logtide_kafka.shipper: " in line]
    assert retries, err
    assert any("503" in line for line in retries), retries
    assert any(" INFO logtide_kafka.shipper: shipping " in line for line in lines), err
