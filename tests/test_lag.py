"""Lag and health: the grading table at its boundaries, and lag measured on a real broker."""

from __future__ import annotations

import http.server
import json
import math
import re
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from logtide_kafka.pipeline._prometheus import labels, number
from logtide_kafka.pipeline.lag import (
    Grade,
    GroupHealth,
    HealthReport,
    LagError,
    PartitionLag,
    fetch_error_rate,
    grade_error_rate,
    grade_lag,
    grade_skew,
    grade_throughput,
    lag_skew,
    measure,
    render_json,
    render_prometheus,
    render_table,
)
from logtide_kafka.pipeline.topics import admin_client

H, W, C = Grade.HEALTHY, Grade.WARNING, Grade.CRITICAL
BEHIND = 5_000  # a lag at which throughput and skew are graded

# -- grading (no broker) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lag", "grade"), [(0, H), (999, H), (1_000, W), (10_000, W), (10_001, C), (10**9, C)]
)
def test_lag_grades(lag: int, grade: Grade) -> None:
    assert grade_lag(lag) is grade


@pytest.mark.parametrize(
    ("rate", "grade"),
    [(5_000.0, H), (1_000.01, H), (1_000.0, W), (500.0, W), (100.0, W), (99.99, C), (0.0, C)],
)
def test_throughput_grades_while_behind(rate: float, grade: Grade) -> None:
    assert grade_throughput(rate, BEHIND) is grade


@pytest.mark.parametrize(("rate", "lag"), [(0.0, 0), (0.0, 999), (5.0, 999), (None, BEHIND)])
def test_throughput_is_not_graded_for_a_group_keeping_up_or_unmeasured(
    rate: float | None, lag: int
) -> None:
    assert grade_throughput(rate, lag) is None


@pytest.mark.parametrize(
    ("skew", "grade"), [(1.0, H), (1.99, H), (2.0, W), (4.99, W), (5.0, C), (12.0, C)]
)
def test_skew_grades_while_behind(skew: float, grade: Grade) -> None:
    assert grade_skew(skew, BEHIND) is grade


def test_skew_is_not_graded_without_a_backlog() -> None:
    assert grade_skew(12.0, 999) is None
    assert grade_skew(None, BEHIND) is None
    assert grade_skew(12.0, 1_000) is C


@pytest.mark.parametrize(
    ("rate", "grade"),
    [(0.0, H), (0.000099, H), (0.0001, W), (0.005, W), (0.01, W), (0.0101, C), (1.0, C)],
)
def test_error_rate_grades(rate: float, grade: Grade) -> None:
    assert grade_error_rate(rate) is grade


def test_unknown_error_rate_is_not_graded() -> None:
    assert grade_error_rate(None) is None


@pytest.mark.parametrize(
    ("lags", "skew"),
    [([], None), ([0, 0, 0], None), ([10, 10, 10], 1.0), ([30, 0, 0], 3.0), ([5, 15], 1.5)],
)
def test_skew_is_max_over_mean_partition_lag(lags: list[int], skew: float | None) -> None:
    assert lag_skew(lags) == skew


def _group(name: str = "g", lag: int = 0, throughput: float | None = None) -> GroupHealth:
    partitions = (PartitionLag("logs.x", 0, 10, 0, 10 + lag, lag),)
    skew = lag_skew([lag])
    return GroupHealth(
        group=name,
        partitions=partitions,
        lag=lag,
        lag_grade=grade_lag(lag),
        throughput=throughput,
        throughput_grade=grade_throughput(throughput, lag),
        consumed=None if throughput is None else int(throughput * 2),
        produced=None if throughput is None else 0,
        window=None if throughput is None else 2.0,
        skew=skew,
        skew_grade=grade_skew(skew, lag),
    )


def _report(*groups: GroupHealth, rate: float | None = None) -> HealthReport:
    return HealthReport(groups, rate, grade_error_rate(rate), "test")


def test_the_exit_code_is_the_worst_grade() -> None:
    assert _report(_group(lag=10)).exit_code == 0
    assert _report(_group(lag=10), rate=None).grade is H  # unknown is not a failure
    assert _report(_group(lag=10), rate=0.001).exit_code == 1
    assert _report(_group(lag=2_000, throughput=5_000.0)).exit_code == 1
    assert _report(_group(lag=2_000, throughput=50.0)).exit_code == 2
    assert _report(_group("a", lag=10), _group("b", lag=20_000)).exit_code == 2
    assert _report(_group(lag=10), rate=0.5).exit_code == 2


def test_json_rendering_parses_back() -> None:
    document = json.loads(render_json(_report(_group(lag=2_000, throughput=50.0), rate=0.001)))
    assert document["grade"] == "critical"
    [group] = document["groups"]
    assert (group["lag"], group["lag_grade"]) == (2_000, "warning")
    assert (group["throughput"], group["throughput_grade"]) == (50.0, "critical")
    assert group["partitions"] == [
        {"topic": "logs.x", "partition": 0, "committed": 10, "start": 0, "end": 2_010, "lag": 2_000}
    ]
    assert (document["error_rate"], document["error_rate_grade"]) == (0.001, "warning")


_SAMPLE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?P<labels>([a-zA-Z_]\w*="(\\.|[^"\\])*",?)*)\})?'
    r" (?P<value>-?[0-9.e+]+|[+-]Inf|NaN)$"
)


def test_prometheus_rendering_is_the_text_format() -> None:
    text = render_prometheus(_report(_group('odd "name"\\', lag=2_000, throughput=1_500.5)))
    assert text.endswith("\n")
    typed: set[str] = set()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name = line.split()[2]
            assert name not in typed, f"{name} typed twice"
            typed.add(name)
            assert line.endswith(" gauge")
        elif not line.startswith("# HELP "):
            match = _SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            assert match["name"] in typed, f"{match['name']} sampled before its TYPE"
            samples[line.rsplit(" ", 1)[0]] = float(match["value"])
    group = r'group="odd \"name\"\\"'
    assert samples[f'logtide_kafka_partition_lag{{{group},topic="logs.x",partition="0"}}'] == 2000
    assert samples[f"logtide_kafka_group_lag{{{group}}}"] == 2000
    assert samples[f"logtide_kafka_group_throughput{{{group}}}"] == 1500.5
    assert samples[f'logtide_kafka_health_grade{{{group},check="lag"}}'] == 1
    assert samples['logtide_kafka_health_grade{check="overall"}'] == 1
    assert not any("error_rate" in key for key in samples)  # unknown: no sample at all


def test_the_table_names_every_check() -> None:
    table = render_table(_report(_group(lag=2_000, throughput=50.0)))
    assert "group g: critical" in table
    assert re.search(r"\n  lag +2,000 messages +warning\n", table)
    assert re.search(r"\n  throughput +50\.0 msg/s +critical +\(100 committed", table)
    assert re.search(r"\n  skew +1\.00 x +healthy +\(max/mean partition lag\)\n", table)
    assert re.search(r"\nerror rate +unknown +not graded +\(test\)\n", table)
    assert table.splitlines()[-1] == "overall     critical"


# -- the shipper's error rate over HTTP --------------------------------------------------------


class _Metrics(http.server.BaseHTTPRequestHandler):
    body = b"{}"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(type(self).body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean


@pytest.fixture
def metrics_server() -> Iterator[tuple[str, type[_Metrics]]]:
    """A local HTTP server serving ``handler.body`` as the metrics JSON."""
    handler = type("Metrics", (_Metrics,), {"body": b"{}"})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics.json", handler
    finally:
        server.shutdown()
        server.server_close()


def test_the_error_rate_is_read_from_the_metrics_json(
    metrics_server: tuple[str, type[_Metrics]],
) -> None:
    url, handler = metrics_server
    handler.body = json.dumps({"error_rate": 0.0042, "delivered": 10}).encode()
    assert fetch_error_rate(url) == (0.0042, url)
    for body in (b"not json", b'{"delivered": 1}', b'{"error_rate": "high"}', b"[1]"):
        handler.body = body
        rate, reason = fetch_error_rate(url)
        assert rate is None
        assert url in reason


def test_an_unreachable_metrics_url_leaves_the_rate_unknown(dead_bootstrap: str) -> None:
    rate, reason = fetch_error_rate(f"http://{dead_bootstrap}/metrics.json", timeout=2)
    assert rate is None
    assert "not readable" in reason


# -- against a real broker --------------------------------------------------------------------


def _produce(bootstrap: str, topic: str, counts: dict[int, int]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for partition, count in counts.items():
        for seq in range(count):
            producer.produce(topic, b"{}", partition=partition)
            if seq % 5_000 == 0:
                producer.poll(0)
    assert producer.flush(30) == 0


def _commit(bootstrap: str, group: str, offsets: dict[tuple[str, int], int]) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        consumer.commit(
            offsets=[TopicPartition(t, p, off) for (t, p), off in offsets.items()],
            asynchronous=False,
        )
    finally:
        consumer.close()


def test_lag_per_partition_is_exact(kafka_bootstrap: str, topic: str) -> None:
    _produce(kafka_bootstrap, topic, {0: 10, 1: 20, 2: 1_200})
    group = f"lag-{uuid.uuid4().hex[:8]}"
    _commit(kafka_bootstrap, group, {(topic, 0): 4, (topic, 1): 20})
    admin = admin_client(kafka_bootstrap)

    # By default: the partitions the group committed.
    [health] = measure(admin, [group], window=0).groups
    assert [(p.partition, p.committed, p.end, p.lag) for p in health.partitions] == [
        (0, 4, 10, 6),
        (1, 20, 20, 0),
    ]
    assert (health.lag, health.lag_grade, health.throughput) == (6, H, None)
    assert health.skew == 2.0  # [6, 0]: max 6 / mean 3
    assert health.skew_grade is None  # 6 messages behind is no backlog

    # With the topic: every partition, the uncommitted one counting all it holds.
    report = measure(admin, [group], topics=[topic], window=0)
    [health] = report.groups
    assert [(p.partition, p.committed, p.lag) for p in health.partitions] == [
        (0, 4, 6),
        (1, 20, 0),
        (2, None, 1_200),
    ]
    assert (health.lag, health.lag_grade) == (1_206, W)
    assert health.skew == pytest.approx(1_200 / (1_206 / 3))  # ~2.99: all but 6 in one of 3
    assert health.skew_grade is W
    assert report.exit_code == 1


def test_an_unknown_group_or_topic_is_an_error(kafka_bootstrap: str) -> None:
    admin = admin_client(kafka_bootstrap)
    with pytest.raises(LagError, match="has no committed offsets"):
        measure(admin, [f"nobody-{uuid.uuid4().hex[:8]}"], window=0)
    with pytest.raises(LagError, match="no such topic"):
        measure(admin, ["g"], topics=[f"logs.none-{uuid.uuid4().hex[:8]}"], window=0)


def test_throughput_is_committed_progress_over_the_window(
    kafka_bootstrap: str, topic: str, metrics_server: tuple[str, type[_Metrics]]
) -> None:
    _produce(kafka_bootstrap, topic, {0: 12_000})
    group = f"tput-{uuid.uuid4().hex[:8]}"
    _commit(kafka_bootstrap, group, {(topic, 0): 0})
    url, handler = metrics_server
    handler.body = b'{"error_rate": 0.0}'

    def window(seconds: float) -> None:
        # While the window is open, the consumer commits progress and new events arrive.
        _commit(kafka_bootstrap, group, {(topic, 0): 700})
        _produce(kafka_bootstrap, topic, {0: 200})
        _commit(kafka_bootstrap, group, {(topic, 0): 1_500})
        threading.Event().wait(seconds)

    admin = admin_client(kafka_bootstrap)
    report = measure(admin, [group], window=2.0, metrics_url=url, sleep=window)
    [health] = report.groups
    assert (health.consumed, health.produced) == (1_500, 200)
    assert health.window is not None
    assert health.window >= 2.0
    assert health.throughput == pytest.approx(1_500 / health.window)
    assert (health.lag, health.lag_grade) == (12_200 - 1_500, C)
    # ~700 msg/s while 10,700 behind: graded, a warning.
    assert health.throughput_grade is W
    assert (report.error_rate, report.error_rate_grade) == (0.0, H)
    assert report.exit_code == 2


def test_prometheus_numbers_and_labels_are_written_one_way() -> None:
    assert [number(v) for v in (0, 1_100, Grade.WARNING, 0.0, 1_500.5, 0.01)] == [
        "0",
        "1100",
        "1",
        "0.0",
        "1500.5",
        "0.01",
    ]
    assert [number(v) for v in (math.inf, -math.inf, math.nan)] == ["+Inf", "-Inf", "NaN"]
    assert labels({"group": 'a"b\\c\nd', "check": "lag"}) == r'{group="a\"b\\c\nd",check="lag"}'
