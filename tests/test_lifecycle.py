"""A producer's life in real processes: recycled pool workers, the module-level functions
that cover every producer, and the exit timeout set without code."""

from __future__ import annotations

import logging
import logging.config
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import logtide_kafka
from logtide_kafka import producer as producer_module
from logtide_kafka.producer import _lifecycle
from logtide_kafka.testing import read_events

APPS = Path(__file__).resolve().parent / "apps"
EVENTS = 200  # tests/apps/recycled_workers.py logs this many in all


def _run(args: list[str], env: dict[str, str] | None = None, timeout: float = 120) -> str:
    result = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
        cwd=APPS,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


# -- recycled workers ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["pool-fork", "pool-forkserver", "pool-spawn", "executor-spawn"])
def test_recycled_workers_deliver_every_event(
    mode: str, kafka_bootstrap: str, topic: str, service: str
) -> None:
    """Workers end through the runtime's os._exit, no atexit: the Finalize hook flushes."""
    out = _run(["recycled_workers.py", mode, kafka_bootstrap, topic, service])
    pids = out.split()
    assert len(pids) > 2  # workers were recycled
    events = read_events(
        kafka_bootstrap, topic, count=EVENTS, timeout=60, where=lambda e: e["service"] == service
    )
    # Read to the end as well: no duplicates beyond the count.
    everything = read_events(kafka_bootstrap, topic, where=lambda e: e["service"] == service)
    keys = {(e.value["metadata"]["task"], e.value["metadata"]["index"]) for e in everything}
    assert len(events) == EVENTS
    assert len(everything) == len(keys) == EVENTS


# -- module-level functions ------------------------------------------------------------------


def test_module_functions_create_no_producer() -> None:
    assert _lifecycle._open_producers() == []
    assert logtide_kafka.flush(0) == 0
    stats = logtide_kafka.stats()
    assert (stats.enqueued, stats.failed, stats.dropped, stats.queue_length) == (0, 0, 0, 0)
    assert logtide_kafka.close_all(0) == 0
    before = producer_module.exit_timeout()
    try:
        logtide_kafka.configure(exit_timeout=3)  # sets the bound, starts no client
        assert producer_module.exit_timeout() == 3.0
        with pytest.raises(TypeError):
            logtide_kafka.configure(topc="logs.application")  # type: ignore[call-arg]
        with pytest.raises(ValueError, match="exit_timeout"):
            logtide_kafka.configure(exit_timeout=-1)
        assert _lifecycle._open_producers() == []
        assert _lifecycle._registry == {}
    finally:
        logtide_kafka.set_exit_timeout(before)


def test_flush_and_stats_cover_every_producer(
    kafka_bootstrap: str, dead_bootstrap: str, topic: str, service: str
) -> None:
    """A handler-only app: flush() waits for the handler's producer (not send_log's, which
    would be a new client for localhost:9092) and counts what a dead broker holds."""
    live = logtide_kafka.KafkaHandler(service, topic, kafka_bootstrap)
    dead = logtide_kafka.KafkaHandler(service, topic, dead_bootstrap)
    dead_too = logtide_kafka.KafkaHandler(
        service, topic, dead_bootstrap, producer_config={"linger.ms": 5}
    )
    logger = logging.getLogger(f"lifecycle.{service}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    for handler in (live, dead, dead_too):
        logger.addHandler(handler)
    try:
        for index in range(10):
            logger.info("event", extra={"index": index})
    finally:
        for handler in (live, dead, dead_too):
            logger.removeHandler(handler)
    assert len(_lifecycle._open_producers()) == 3
    left = logtide_kafka.flush(3)
    assert left >= 20  # both dead producers' events, still queued
    assert live.producer.stats().queue_length == 0  # the live one was flushed
    stats = logtide_kafka.stats()
    assert stats.enqueued == 30
    assert stats.queue_length >= 20
    assert len(_lifecycle._open_producers()) == 3  # none created
    assert len(read_events(kafka_bootstrap, topic, count=10)) == 10


def test_stats_count_events_sent_after_close(dead_bootstrap: str) -> None:
    handler = logtide_kafka.KafkaHandler("closed-svc", bootstrap_servers=dead_bootstrap)
    logtide_kafka.close_all(0)
    handler.handle(logging.makeLogRecord({"name": "app", "msg": "late", "levelno": 20}))
    assert logtide_kafka.stats().dropped_by == {"closed": 1}


# -- the exit timeout without code -----------------------------------------------------------


def _exit_script(dead_bootstrap: str, setup: str) -> str:
    body = textwrap.dedent(
        """
        log = logging.getLogger("app")
        for i in range(20):
            log.warning("never delivered %d", i)
        """
    )
    return f"import logging, logging.config\n{setup}\n{body}".replace("BOOTSTRAP", dead_bootstrap)


_DICT_CONFIG = (
    "logging.config.dictConfig({'version': 1, 'handlers': {'kafka': {"
    "'class': 'logtide_kafka.KafkaHandler', 'service': 'exit-svc', "
    "'bootstrap_servers': 'BOOTSTRAP', 'exit_timeout': 0.5}}, "
    "'root': {'handlers': ['kafka'], 'level': 'INFO'}})"
)
_INI = """
[loggers]
keys=root
[handlers]
keys=kafka
[formatters]
keys=
[logger_root]
level=INFO
handlers=kafka
[handler_kafka]
class=logtide_kafka.KafkaHandler
args=('exit-svc',)
kwargs={'bootstrap_servers': 'BOOTSTRAP', 'exit_timeout': 0.5}
"""


@pytest.mark.parametrize("how", ["environment", "dictConfig", "fileConfig"])
def test_the_exit_timeout_is_set_without_code(
    how: str, dead_bootstrap: str, tmp_path: Path
) -> None:
    env: dict[str, str] = {}
    if how == "environment":
        env["LOGTIDE_KAFKA_EXIT_TIMEOUT"] = "0.5"
        setup = (
            "import logtide_kafka\n"
            "logging.getLogger().addHandler(logtide_kafka.KafkaHandler('exit-svc', "
            "bootstrap_servers='BOOTSTRAP'))"
        )
    elif how == "dictConfig":
        setup = _DICT_CONFIG
    else:
        ini = tmp_path / "logging.ini"
        ini.write_text(_INI.replace("BOOTSTRAP", dead_bootstrap))
        setup = f"logging.config.fileConfig({str(ini)!r})"
    script = _exit_script(dead_bootstrap, setup)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **env},
    )
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "20 log event(s) not delivered" in result.stderr
    assert "within 0.5s at close" in result.stderr
    assert took < 4.0, took  # interpreter start and imports included


def test_an_invalid_environment_value_is_named_and_ignored(dead_bootstrap: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import logtide_kafka.producer as p; print(p.exit_timeout())"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "LOGTIDE_KAFKA_EXIT_TIMEOUT": "soon"},
    )
    assert result.stdout.strip() == str(producer_module.DEFAULT_EXIT_TIMEOUT)
    assert "ignoring LOGTIDE_KAFKA_EXIT_TIMEOUT='soon'" in result.stderr
    assert result.stderr.count("\n") == 1


# -- the shutdown budget -----------------------------------------------------------------------


def _stop_group(args: list[str]) -> tuple[float, str]:
    """Start ``args`` in a process group of its own, wait for ``ready``, send SIGTERM to
    the group (as a container runtime does); return the seconds to exit and stderr."""
    process = subprocess.Popen(
        [sys.executable, *args],
        cwd=APPS,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        started = time.monotonic()
        os.killpg(process.pid, signal.SIGTERM)
        _, err = process.communicate(timeout=60)
        took = time.monotonic() - started
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return took, err


def _reports(err: str) -> list[str]:
    return [line for line in err.splitlines() if "logtide-kafka" in line]


def test_broker_down_a_parent_and_its_workers_exit_within_the_budget(dead_bootstrap: str) -> None:
    took, err = _stop_group(["exit_budget.py", dead_bootstrap, "logs.application"])
    # The bound counts from SIGTERM in every process; a second for interpreter teardown.
    assert took < producer_module.DEFAULT_EXIT_TIMEOUT + 1.0, (took, err)
    reports = [line for line in _reports(err) if "not delivered" in line]
    # One whole line per process (one write each): none run together, each names its pid.
    assert len(reports) == 3, err
    pids = set()
    for line in reports:
        assert line.startswith("logtide-kafka: 20 log event(s) not delivered"), line
        assert "no broker reachable" in line
        found = re.search(r"\(pid (\d+), service budget-svc\)$", line)
        assert found, line
        pids.add(found.group(1))
    assert len(pids) == 3


def test_a_missing_topic_is_named_early_and_not_waited_for(kafka_bootstrap: str) -> None:
    topic = f"logs.missing-{os.getpid()}-{int(time.time())}"
    took, err = _stop_group(["exit_budget.py", kafka_bootstrap, topic])
    assert took < 2 * producer_module.STALL_SECONDS + 1.5, (took, err)
    reports = _reports(err)
    early = [line for line in reports if "does not exist on" in line]
    at_close = [line for line in reports if "not delivered" in line]
    assert len(early) == 3, err  # once per process, before the close
    assert len(at_close) == 3, err
    for line in at_close:
        assert f"for topics that do not exist, not waited for: {topic!r}: 20" in line


# -- failures you can see, without floods --------------------------------------------------


_NOISE = """
import logging, sys, time
import logtide_kafka
if sys.argv[2] == "handled":
    logging.basicConfig(level=logging.INFO)
handler = logtide_kafka.KafkaHandler(
    "noise-svc", bootstrap_servers=sys.argv[1], warn_interval=1.0, exit_timeout=0.2
)
log = logging.getLogger("app")
if sys.argv[2] == "kafka-root":  # the root's only handler ships nothing of the library
    logging.getLogger().addHandler(handler)
else:
    log.addHandler(handler)
    log.propagate = False
for i in range(35):
    log.warning("event %d", i)
    time.sleep(0.1)
"""


def _noise(dead_bootstrap: str, mode: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", _NOISE, dead_bootstrap, mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stderr.splitlines()


@pytest.mark.parametrize("mode", ["unhandled", "kafka-root"])
def test_without_logging_configured_one_stderr_line_per_interval(
    mode: str, dead_bootstrap: str
) -> None:
    lines = _noise(dead_bootstrap, mode)
    cannot = [line for line in lines if "cannot reach" in line]
    assert 2 <= len(cannot) <= 5, lines  # 3.5 s at one line a second at most
    for line in lines:  # nothing else: no librdkafka line, no line run into another
        assert line.startswith("logtide-kafka: "), lines
        assert re.search(r"\(pid \d+, service noise-svc\)$", line), line
    assert re.match(
        rf"logtide-kafka: cannot reach {re.escape(dead_bootstrap)}: \d+ event\(s\) queued, "
        r"0 dropped \(last error: ",
        cannot[0],
    )
    assert "35 log event(s) not delivered" in lines[-1]


_DICTCONFIG_NOISE = """
import logging.config, sys, time
# The defaults of a typical settings module: a console on the root logger, and
# disable_existing_loggers left true, which disables the library's own loggers too (they
# exist once the configuration has built the KafkaHandler).
logging.config.dictConfig({
    "version": 1,
    "handlers": {
        "console": {"class": "logging.StreamHandler"},
        "kafka": {
            "class": "logtide_kafka.KafkaHandler", "service": "noise-svc",
            "bootstrap_servers": sys.argv[1], "warn_interval": 1.0, "exit_timeout": 0.2,
        },
    },
    "loggers": {"app": {"handlers": ["kafka"], "propagate": False}},
    "root": {"level": "INFO", "handlers": ["console"]},
})
assert logging.getLogger("logtide_kafka.client").disabled
log = logging.getLogger("app")
for i in range(35):
    log.warning("event %d", i)
    time.sleep(0.1)
"""


def test_a_dictconfig_that_disables_the_librarys_loggers_is_not_silent(
    dead_bootstrap: str,
) -> None:
    # The console on the root logger would show librdkafka's lines, but the library's
    # loggers are disabled: nothing was said during the outage, only at exit.
    result = subprocess.run(
        [sys.executable, "-c", _DICTCONFIG_NOISE, dead_bootstrap],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    cannot = [line for line in lines if "cannot reach" in line]
    assert 2 <= len(cannot) <= 5, lines
    assert "35 log event(s) not delivered" in lines[-1]


def test_librdkafka_lines_are_collapsed_per_kind_and_interval(dead_bootstrap: str) -> None:
    lines = _noise(dead_bootstrap, "handled")
    client = [line for line in lines if line.startswith("ERROR:logtide_kafka.client:")]
    # _NOISE logs for 3.5 s with warn_interval=1.0: per kind of line, the first at once,
    # then at most one summary per interval, and one more at close.
    run_seconds, interval = 3.5, 1.0
    assert 1 <= len(client) <= run_seconds / interval + 2, client
    assert any(re.search(r"\(\d+ more like it in the last 1s\)$", line) for line in client)
    assert not [line for line in lines if "cannot reach" in line]  # logging shows it
