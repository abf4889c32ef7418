"""The framework recipes of ``examples/``, each run under its real server or worker against
a real broker: every event arrives exactly once, and the app stops within the bound.

* Django (``settings.LOGGING``) under ``gunicorn -w 3 --max-requests``: recycled workers;
* FastAPI under ``uvicorn --workers 2 --log-config`` with both ``logtide_kafka.filters``;
* Celery prefork with ``worker_max_tasks_per_child``: recycled pool children, which end
  with ``os._exit`` (the example's ``worker_process_shutdown`` handler delivers first);
* a ``fileConfig`` INI file.

The apps read their service and topic from ``LOGTIDE_SERVICE``/``LOGTIDE_TOPIC`` (the
uvicorn config file is copied with them filled in) and the brokers from
``KAFKA_BROKERS``, so each test reads only its own events.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from logtide_kafka.testing import event_problems, read_events

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
#: How long an app may take from SIGTERM (or, for a script, from start) to exit: the
#: default stop grace of Docker and Kubernetes, after which the process is killed.
SHUTDOWN_BOUND = 10.0
#: What the library prints when events could not be delivered by exit.
NOT_DELIVERED = "not delivered"

pytestmark = pytest.mark.slow


def _env(servers: str, topic: str, service: str, **more: str) -> dict[str, str]:
    return dict(
        os.environ, KAFKA_BROKERS=servers, LOGTIDE_TOPIC=topic, LOGTIDE_SERVICE=service, **more
    )


def _events(
    servers: str, topic: str, service: str, expected: int, where: Callable[[Any], bool]
) -> list[dict[str, Any]]:
    """Wait until ``expected`` events of ``service`` that ``where`` accepts have arrived,
    then read the topic to its end: every event of the service, duplicates included."""
    read_events(
        servers,
        topic,
        count=expected,
        timeout=60,
        where=lambda e: e["service"] == service and where(e),
    )
    events = read_events(servers, topic, timeout=60, where=lambda e: e["service"] == service)
    for event in events:
        assert event_problems(event.value) == [], event.value
    return [event.value for event in events]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _get(url: str, headers: Mapping[str, str] | None = None) -> bytes:
    request = urllib.request.Request(url, headers=dict(headers or {}))
    with urllib.request.urlopen(request, timeout=10) as response:
        body: bytes = response.read()
        return body


class Server:
    """A server subprocess with its output in a file."""

    def __init__(self, command: list[str], cwd: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
            )

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_serving(self, url: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"exited with {self.process.returncode}:\n{self.output}")
            with contextlib.suppress(OSError):
                _get(url)
                return
            time.sleep(0.2)
        raise AssertionError(f"not serving {url} after 60 s:\n{self.output}")

    def stop(self) -> float:
        """SIGTERM, as a container stop sends; the seconds until the process exited."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        return time.monotonic() - started

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def _serving(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> Iterator[Server]:
    server = Server(command, cwd, env, log)
    try:
        yield server
    finally:
        server.kill()


def test_django_under_gunicorn_with_recycled_workers(
    kafka_bootstrap: str, topic: str, service: str, tmp_path: Path
) -> None:
    requests, max_requests = 240, 40
    port = _free_port()
    command = [
        *(sys.executable, "-m", "gunicorn", "-w", "3", "--max-requests", str(max_requests)),
        *("-b", f"127.0.0.1:{port}", "--no-control-socket", "django_site.wsgi"),
    ]
    env = _env(kafka_bootstrap, topic, service)
    with _serving(command, EXAMPLES, env, tmp_path / "gunicorn.log") as server:
        server.wait_serving(f"http://127.0.0.1:{port}/health")
        ids = [f"o-{n:04d}" for n in range(requests)]
        with ThreadPoolExecutor(6) as pool:
            pids = list(pool.map(lambda i: int(_get(f"http://127.0.0.1:{port}/orders/{i}")), ids))
        shutdown = server.stop()
        output = server.output
    assert server.process.returncode == 0, output
    assert NOT_DELIVERED not in output, output

    events = _events(
        kafka_bootstrap, topic, service, requests, lambda e: "order_id" in e["metadata"]
    )
    orders = [e for e in events if e["message"] == "order viewed"]
    print(
        f"\ndjango/gunicorn: {len(orders)} events for {requests} requests from "
        f"{len(set(pids))} workers, {len(events)} events in all, shutdown {shutdown:.2f}s"
    )
    assert len(set(pids)) > 3  # workers were recycled (3 at a time, 40 requests each)
    assert sorted(e["metadata"]["order_id"] for e in orders) == ids  # none lost, none twice
    answered = dict(zip(ids, pids, strict=True))
    assert all(e["metadata"]["process"] == answered[e["metadata"]["order_id"]] for e in orders)
    assert all(e["metadata"]["card_number"] == "[REDACTED]" for e in orders)  # redact_extra
    assert all(e["metadata"]["framework"] == "django" for e in events)
    assert shutdown < SHUTDOWN_BOUND


def test_fastapi_under_uvicorn_workers_with_both_filters(
    kafka_bootstrap: str, topic: str, service: str, tmp_path: Path
) -> None:
    requests = 100
    app_dir = EXAMPLES / "fastapi_app"
    config = json.loads((app_dir / "logging.json").read_text())
    config["handlers"]["kafka"].update(service=service, topic=topic)
    log_config = tmp_path / "logging.json"
    log_config.write_text(json.dumps(config))
    port = _free_port()
    command = [
        *(sys.executable, "-m", "uvicorn", "main:app", "--workers", "2"),
        *("--log-config", str(log_config), "--host", "127.0.0.1", "--port", str(port)),
    ]
    env = _env(kafka_bootstrap, topic, service)
    with _serving(command, app_dir, env, tmp_path / "uvicorn.log") as server:
        server.wait_serving(f"http://127.0.0.1:{port}/health")
        ids = [f"req-{n:04d}" for n in range(requests)]

        def call(request_id: str) -> int:
            url = f"http://127.0.0.1:{port}/orders/o-{request_id}"
            pid: int = json.loads(_get(url, {"X-Request-ID": request_id}))["pid"]
            return pid

        with ThreadPoolExecutor(6) as pool:
            pids = list(pool.map(call, ids))
        parent = server.process.pid
        shutdown = server.stop()
        output = server.output
    assert server.process.returncode == 0, output
    assert NOT_DELIVERED not in output, output

    events = _events(
        kafka_bootstrap, topic, service, 3 * requests, lambda e: "request_id" in e["metadata"]
    )
    by_request: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if "request_id" in event["metadata"]:
            by_request.setdefault(event["metadata"]["request_id"], []).append(event)
    # The readiness probes got a new id each (no header): one access line apiece.
    for request_id in set(by_request) - set(ids):
        (probe,) = by_request.pop(request_id)
        assert probe["metadata"]["path"] == "/health", probe
    messages = Counter(e["message"] for e in events)
    print(
        f"\nfastapi/uvicorn: {sum(map(len, by_request.values()))} request events for "
        f"{requests} requests, {len(events)} in all, workers {sorted(set(pids))}, "
        f"shutdown {shutdown:.2f}s"
    )
    assert sorted(by_request) == ids
    for request_id, found in by_request.items():
        # One plain logging event, one structlog event, one access line: each once.
        app_events = {e["metadata"]["logger"]: e for e in found}
        assert len(found) == 3 == len(app_events), found
        order = f"o-{request_id}"
        assert app_events["shop.api"]["metadata"]["order_id"] == order
        priced = app_events["shop.pricing"]
        assert (priced["message"], priced["metadata"]["order_id"]) == ("order priced", order)
        access = app_events["uvicorn.access"]["metadata"]  # both filters at work
        assert (access["method"], access["path"], access["status"]) == (
            "GET",
            f"/orders/{order}",
            200,
        )
        assert access["client"].startswith("127.0.0.1:")
        assert access["http_version"] == "1.1"
        assert {e["metadata"]["process"] for e in found} <= set(pids)
    # What the workers and the parent logged while stopping arrived too, once each.
    workers = {int(m.rsplit("[", 1)[1].rstrip("]")) for m in messages if "server process [" in m}
    assert len(workers) == 2, messages
    for pid in workers:
        assert messages[f"Finished server process [{pid}]"] == 1, messages
    assert messages[f"Stopping parent process [{parent}]"] == 1, messages
    assert shutdown < SHUTDOWN_BOUND


def _succeeded(event: dict[str, Any]) -> bool:
    """Celery's line after each task: ``Task shop.log_batch[<id>] succeeded in 0.01s``."""
    message: str = event["message"]
    return message.startswith("Task shop.log_batch[") and " succeeded in " in message


@pytest.mark.parametrize(
    "app",
    [
        "tasks",  # the example, with its worker_process_shutdown handler
        # The same without the handler: the library's own hook must deliver a recycled
        # child's events (a billiard finalizer, run before the child's os._exit).
        "apps.celery_no_hook",
    ],
)
def test_celery_prefork_with_recycled_children(
    kafka_bootstrap: str, topic: str, service: str, tmp_path: Path, app: str
) -> None:
    tasks, per_task, per_child = 20, 10, 5  # per_child: the example's max_tasks_per_child
    app_dir = EXAMPLES / "celery_app"
    env = _env(kafka_bootstrap, topic, service, CELERY_DATA_DIR=str(tmp_path / "queue"))
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).resolve().parent), env.get("PYTHONPATH")])
    )
    subprocess.run(
        [sys.executable, "tasks.py", str(tasks)], cwd=app_dir, env=env, check=True, timeout=60
    )
    command = [
        *(sys.executable, "-m", "celery", "-A", app, "worker", "--concurrency", "2"),
        *("--without-gossip", "--without-mingle", "--without-heartbeat"),
    ]
    with _serving(command, app_dir, env, tmp_path / "celery.log") as worker:

        def counted(event: dict[str, Any]) -> bool:
            return event["message"] == "task event" or _succeeded(event)

        # Every task's events, and Celery's "succeeded" line that the child logs right
        # after each task (the last thing a recycled child logs), before the stop.
        _events(kafka_bootstrap, topic, service, tasks * (per_task + 1), counted)
        shutdown = worker.stop()
        output = worker.output
    assert worker.process.returncode == 0, output
    assert NOT_DELIVERED not in output, output
    events = read_events(
        kafka_bootstrap, topic, timeout=60, where=lambda e: e["service"] == service
    )
    values = [e.value for e in events]
    task_events = [e for e in values if e["message"] == "task event"]
    succeeded = [e for e in values if _succeeded(e)]
    children = {e["metadata"]["process"] for e in task_events}
    print(
        f"\ncelery prefork ({app}): {len(task_events)} task events of {tasks * per_task}, "
        f"{len(succeeded)} 'succeeded' lines, {len(children)} pool children, "
        f"{len(values)} events in all, shutdown {shutdown:.2f}s"
    )
    assert sorted((e["metadata"]["batch"], e["metadata"]["seq"]) for e in task_events) == [
        (batch, seq) for batch in range(tasks) for seq in range(per_task)
    ]
    assert len(succeeded) == tasks
    assert len(children) >= tasks // per_child  # the children were recycled
    assert all(e["metadata"]["framework"] == "celery" for e in values)
    assert shutdown < SHUTDOWN_BOUND


def test_fileconfig_ini(kafka_bootstrap: str, topic: str, service: str) -> None:
    count = 300
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "run.py", str(count)],
        cwd=EXAMPLES / "fileconfig_app",
        env=_env(kafka_bootstrap, topic, service),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert NOT_DELIVERED not in done.stderr, done.stderr
    assert f"WARNING shop.orders: done: {count} orders" in done.stderr  # the console handler

    events = _events(kafka_bootstrap, topic, service, count + 1, lambda e: True)
    print(f"\nfileConfig: {len(events)} events of {count + 1}, run and exit {elapsed:.2f}s")
    paid = [e for e in events if e["message"].endswith(" paid")]
    assert [e["metadata"]["seq"] for e in paid] == list(range(count))  # one key: in order
    assert [e["message"] for e in events if e not in paid] == [f"done: {count} orders"]
    assert all(e["metadata"]["card_number"] == "[REDACTED]" for e in paid)
    assert all(e["metadata"]["config"] == "ini" for e in events)
    assert elapsed < SHUTDOWN_BOUND


def test_uvicorn_parent_and_workers_exit_within_the_budget_with_the_broker_down(
    dead_bootstrap: str, service: str, tmp_path: Path
) -> None:
    # The case that took 21.6 s: every worker waited out its exit timeout, then the parent
    # waited out its own.  With no broker answering, none of them may add up past the bound.
    app_dir = EXAMPLES / "fastapi_app"
    config = json.loads((app_dir / "logging.json").read_text())
    config["handlers"]["kafka"].update(service=service, topic="logs.application")
    log_config = tmp_path / "logging.json"
    log_config.write_text(json.dumps(config))
    port = _free_port()
    command = [
        *(sys.executable, "-m", "uvicorn", "main:app", "--workers", "2"),
        *("--log-config", str(log_config), "--host", "127.0.0.1", "--port", str(port)),
    ]
    env = _env(dead_bootstrap, "logs.application", service)
    with _serving(command, app_dir, env, tmp_path / "uvicorn.log") as server:
        server.wait_serving(f"http://127.0.0.1:{port}/health")
        for n in range(20):
            _get(f"http://127.0.0.1:{port}/orders/o-{n}", {"X-Request-ID": f"down-{n}"})
        shutdown = server.stop()
        output = server.output
    print(f"\nuvicorn, broker down: shutdown {shutdown:.2f}s\n{output[-2000:]}")
    assert server.process.returncode == 0, output
    # Nothing could be delivered, and each process says so (the parent and both workers).
    reports = [line for line in output.splitlines() if NOT_DELIVERED in line]
    assert len(reports) >= 3, output
    assert all(f"service {service}" in line for line in reports), reports
    assert shutdown < SHUTDOWN_BOUND, output
