"""Consumer-group lag and pipeline health, graded with the design's table.

:func:`measure` samples a group's committed offsets and the partitions' end offsets twice,
``window`` seconds apart, and grades four checks:

==============  ===================  =====================  ==================
check           healthy              warning                critical
==============  ===================  =====================  ==================
lag (total)     < 1,000              1,000 to 10,000        > 10,000
throughput      > 1,000 msg/s        100 to 1,000 msg/s     < 100 msg/s
skew            < 2x                 2x to < 5x             >= 5x
error rate      < 0.01 %             0.01 % to 1 %          > 1 %
==============  ===================  =====================  ==================

Throughput and skew are graded only while the group is behind (total lag >= 1,000): a
group that keeps up with a quiet topic consumes only what arrives, so a low rate or an
uneven spread of a handful of messages says nothing about the consumer.  A consumer that
stalls is caught by the lag itself.
"""

from __future__ import annotations

import enum
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from logtide_kafka.pipeline import _prometheus as prometheus

__all__ = [
    "DEFAULT_GROUP",
    "ERROR_RATE_CRITICAL",
    "ERROR_RATE_HEALTHY",
    "LAG_CRITICAL",
    "LAG_WARNING",
    "SKEW_CRITICAL",
    "SKEW_WARNING",
    "THROUGHPUT_CRITICAL",
    "THROUGHPUT_HEALTHY",
    "Grade",
    "GroupHealth",
    "HealthReport",
    "LagError",
    "PartitionLag",
    "fetch_error_rate",
    "grade_error_rate",
    "grade_lag",
    "grade_skew",
    "grade_throughput",
    "measure",
    "render_json",
    "render_prometheus",
    "render_table",
]

#: The shipper's consumer group.
DEFAULT_GROUP: Final = "logtide-ingest"
#: Total lag from which a group is in warning (below: healthy).
LAG_WARNING: Final = 1_000
#: Total lag above which a group is critical.
LAG_CRITICAL: Final = 10_000
#: Messages per second above which throughput is healthy.
THROUGHPUT_HEALTHY: Final = 1_000.0
#: Messages per second below which throughput is critical.
THROUGHPUT_CRITICAL: Final = 100.0
#: Max partition lag / mean partition lag from which the spread is a warning.
SKEW_WARNING: Final = 2.0
#: ... and from which it is critical.
SKEW_CRITICAL: Final = 5.0
#: Error rates (fractions of events) below this are healthy.
ERROR_RATE_HEALTHY: Final = 0.0001
#: Error rates above this are critical.
ERROR_RATE_CRITICAL: Final = 0.01

_NO_OFFSET: Final = 0  # a committed offset below 0 means "none" (OFFSET_INVALID is -1001)
# confluent_kafka leaves these two classmethods unannotated.
_EARLIEST: Final[OffsetSpec] = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
_LATEST: Final[OffsetSpec] = OffsetSpec.latest()  # type: ignore[no-untyped-call]


class Grade(enum.IntEnum):
    """A check's grade; its value is the ``logtide-kafka lag`` exit code."""

    HEALTHY = 0
    WARNING = 1
    CRITICAL = 2

    def __str__(self) -> str:
        return self.name.lower()


class LagError(RuntimeError):
    """The lag cannot be measured: an unknown group, a missing topic."""


# -- grading (pure) -------------------------------------------------------------------------


def grade_lag(lag: int) -> Grade:
    """< 1,000 healthy, 1,000 to 10,000 warning, > 10,000 critical."""
    if lag < LAG_WARNING:
        return Grade.HEALTHY
    return Grade.WARNING if lag <= LAG_CRITICAL else Grade.CRITICAL


def grade_throughput(per_second: float | None, lag: int) -> Grade | None:
    """> 1,000 msg/s healthy, < 100 critical, else warning; None (not graded) when not
    measured or while the group is not behind (``lag`` < 1,000)."""
    if per_second is None or lag < LAG_WARNING:
        return None
    if per_second > THROUGHPUT_HEALTHY:
        return Grade.HEALTHY
    return Grade.CRITICAL if per_second < THROUGHPUT_CRITICAL else Grade.WARNING


def grade_skew(skew: float | None, lag: int) -> Grade | None:
    """< 2x healthy, 2x to < 5x warning, >= 5x critical; None while the group is not behind."""
    if skew is None or lag < LAG_WARNING:
        return None
    if skew < SKEW_WARNING:
        return Grade.HEALTHY
    return Grade.WARNING if skew < SKEW_CRITICAL else Grade.CRITICAL


def grade_error_rate(rate: float | None) -> Grade | None:
    """< 0.01 % healthy, up to 1 % warning, above critical; None when unknown."""
    if rate is None:
        return None
    if rate < ERROR_RATE_HEALTHY:
        return Grade.HEALTHY
    return Grade.WARNING if rate <= ERROR_RATE_CRITICAL else Grade.CRITICAL


def lag_skew(lags: Sequence[int]) -> float | None:
    """Max partition lag / mean partition lag (1.0 = even, N = all in one of N partitions);
    None when there is no lag to spread."""
    total = sum(lags)
    if not lags or total <= 0:
        return None
    return max(lags) / (total / len(lags))


def _worst(grades: Iterable[Grade | None]) -> Grade:
    return max((g for g in grades if g is not None), default=Grade.HEALTHY)


# -- the report -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PartitionLag:
    """One partition as the group sees it.

    ``committed`` is None when the group never committed there; ``lag`` then counts every
    retained message (``end - start``), as a group starting from the earliest offset would.
    """

    topic: str
    partition: int
    committed: int | None
    start: int
    end: int
    lag: int


@dataclass(frozen=True)
class GroupHealth:
    """One consumer group: its partitions, totals and grades (None = not graded)."""

    group: str
    partitions: tuple[PartitionLag, ...]
    lag: int
    lag_grade: Grade
    #: Committed-offset progress per second over the window; None with a window of 0.
    throughput: float | None
    throughput_grade: Grade | None
    #: Messages committed, and messages newly written, during the window.
    consumed: int | None
    produced: int | None
    #: Seconds between the two samples.
    window: float | None
    #: Max partition lag / mean partition lag; None without lag.
    skew: float | None
    skew_grade: Grade | None

    @property
    def grade(self) -> Grade:
        return _worst((self.lag_grade, self.throughput_grade, self.skew_grade))


@dataclass(frozen=True)
class HealthReport:
    """Every group measured, plus the shipper's error rate when its metrics were reachable."""

    groups: tuple[GroupHealth, ...]
    error_rate: float | None
    error_rate_grade: Grade | None
    #: The metrics URL read, or why the rate is unknown.
    error_rate_source: str

    @property
    def grade(self) -> Grade:
        return _worst([g.grade for g in self.groups] + [self.error_rate_grade])

    @property
    def exit_code(self) -> int:
        return int(self.grade)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data: grades as names, unknown values as None."""

        def name(grade: Grade | None) -> str | None:
            return None if grade is None else str(grade)

        return {
            "grade": name(self.grade),
            "groups": [
                {
                    "group": g.group,
                    "grade": name(g.grade),
                    "lag": g.lag,
                    "lag_grade": name(g.lag_grade),
                    "throughput": g.throughput,
                    "throughput_grade": name(g.throughput_grade),
                    "consumed": g.consumed,
                    "produced": g.produced,
                    "window": g.window,
                    "skew": g.skew,
                    "skew_grade": name(g.skew_grade),
                    "partitions": [
                        {
                            "topic": p.topic,
                            "partition": p.partition,
                            "committed": p.committed,
                            "start": p.start,
                            "end": p.end,
                            "lag": p.lag,
                        }
                        for p in g.partitions
                    ],
                }
                for g in self.groups
            ],
            "error_rate": self.error_rate,
            "error_rate_grade": name(self.error_rate_grade),
            "error_rate_source": self.error_rate_source,
        }


# -- sampling -------------------------------------------------------------------------------

_Key = tuple[str, int]


@dataclass(frozen=True)
class _Sample:
    at: float
    committed: dict[_Key, int | None]
    start: dict[_Key, int]
    end: dict[_Key, int]


def _committed(
    admin: AdminClient, group: str, topics: Sequence[str], timeout: float
) -> dict[_Key, int | None]:
    request = ConsumerGroupTopicPartitions(group)
    if topics:  # every partition of the named topics, committed or not
        metadata = admin.list_topics(timeout=timeout).topics
        missing = [t for t in topics if t not in metadata or metadata[t].error is not None]
        if missing:
            raise LagError(f"no such topic: {', '.join(missing)}")
        request = ConsumerGroupTopicPartitions(
            group, [TopicPartition(t, p) for t in topics for p in sorted(metadata[t].partitions)]
        )
    future = admin.list_consumer_group_offsets([request], request_timeout=timeout)[group]
    result = future.result(timeout=timeout)
    offsets: dict[_Key, int | None] = {}
    for tp in result.topic_partitions:
        if tp.error is not None:
            raise LagError(f"group {group!r}, {tp.topic}[{tp.partition}]: {tp.error.str()}")
        offsets[(tp.topic, tp.partition)] = tp.offset if tp.offset >= _NO_OFFSET else None
    if not topics and not offsets:
        raise LagError(
            f"group {group!r} has no committed offsets (is the name right? "
            "name its topics to measure it anyway)"
        )
    return offsets


def _watermarks(
    admin: AdminClient, keys: Iterable[_Key], spec: OffsetSpec, timeout: float
) -> dict[_Key, int]:
    request = {TopicPartition(t, p): spec for t, p in keys}
    if not request:
        return {}
    futures = admin.list_offsets(request, request_timeout=timeout)
    return {(tp.topic, tp.partition): f.result(timeout=timeout).offset for tp, f in futures.items()}


def _sample(admin: AdminClient, group: str, topics: Sequence[str], timeout: float) -> _Sample:
    committed = _committed(admin, group, topics, timeout)
    at = time.monotonic()
    # End offsets after the committed ones, so a consumer racing ahead can never make a
    # committed offset look past the end (a negative lag).
    end = _watermarks(admin, committed, _LATEST, timeout)
    start = _watermarks(admin, committed, _EARLIEST, timeout)
    return _Sample(at, committed, start, end)


def _partition(key: _Key, sample: _Sample) -> PartitionLag:
    committed, start, end = sample.committed[key], sample.start[key], sample.end[key]
    # Messages deleted by retention before the group read them are no longer to be read.
    position = start if committed is None else max(committed, start)
    return PartitionLag(key[0], key[1], committed, start, end, max(end - position, 0))


def _progress(before: _Sample, after: _Sample) -> tuple[int, int]:
    """(messages committed, messages written) between two samples."""
    consumed = produced = 0
    for key, now in after.committed.items():
        if key in before.end:
            produced += max(after.end[key] - before.end[key], 0)
        if now is None:
            continue
        then = before.committed.get(key)
        # A first commit in the window: the group started from the log's start.
        base = before.start.get(key, after.start[key]) if then is None else then
        consumed += max(now - base, 0)
    return consumed, produced


def _group_health(group: str, before: _Sample | None, after: _Sample) -> GroupHealth:
    partitions = tuple(_partition(key, after) for key in sorted(after.committed))
    lag = sum(p.lag for p in partitions)
    throughput = consumed = produced = elapsed = None
    if before is not None:
        consumed, produced = _progress(before, after)
        elapsed = after.at - before.at
        throughput = consumed / elapsed if elapsed > 0 else 0.0
    skew = lag_skew([p.lag for p in partitions])
    return GroupHealth(
        group=group,
        partitions=partitions,
        lag=lag,
        lag_grade=grade_lag(lag),
        throughput=throughput,
        throughput_grade=grade_throughput(throughput, lag),
        consumed=consumed,
        produced=produced,
        window=elapsed,
        skew=skew,
        skew_grade=grade_skew(skew, lag),
    )


def fetch_error_rate(url: str, timeout: float = 5.0) -> tuple[float | None, str]:
    """Read ``error_rate`` (a fraction) from the shipper's metrics JSON at ``url``.

    Returns ``(rate, url)``, or ``(None, reason)`` when it cannot be read: nothing here
    raises, an unreachable shipper only makes the rate unknown.
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            document = json.loads(response.read(1_000_000))
    except (OSError, ValueError) as exc:  # URLError, timeouts, refused, not JSON
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return None, f"{url} not readable: {reason}"
    rate = document.get("error_rate") if isinstance(document, dict) else None
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
        return None, f"{url} has no error_rate fraction (got {rate!r})"
    return float(rate), url


def measure(
    admin: AdminClient,
    groups: Sequence[str] = (DEFAULT_GROUP,),
    *,
    topics: Sequence[str] = (),
    window: float = 10.0,
    metrics_url: str | None = None,
    timeout: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> HealthReport:
    """Measure and grade each group's lag, throughput and skew, plus the error rate.

    Partitions are those the group committed offsets for, or, with ``topics``, every
    partition of those topics.  Throughput needs two samples ``window`` seconds apart
    (one sleep for all groups); ``window=0`` takes one sample and leaves it unmeasured.
    Raises :class:`LagError` (unknown group, missing topic) or ``KafkaException``
    (cluster unreachable within ``timeout``).
    """
    first = {g: _sample(admin, g, topics, timeout) for g in groups} if window > 0 else {}
    if window > 0:
        sleep(window)
    health = []
    for group in groups:
        health.append(
            _group_health(group, first.get(group), _sample(admin, group, topics, timeout))
        )
    rate, source = (None, "no metrics URL given")
    if metrics_url:
        rate, source = fetch_error_rate(metrics_url, timeout)
    return HealthReport(tuple(health), rate, grade_error_rate(rate), source)


# -- rendering --------------------------------------------------------------------------------


def _grade_text(grade: Grade | None) -> str:
    return "not graded" if grade is None else str(grade)


def _row(check: str, value: str, unit: str, grade: Grade | None, note: str = "") -> str:
    text = f"{check:<12}{value:>14} {unit:<9} {_grade_text(grade):<11}"
    return f"{text} {note}".rstrip()


def render_table(report: HealthReport) -> str:
    """A readable report: one block per group, then the error rate and the overall grade."""
    lines: list[str] = []
    for g in report.groups:
        lines.append(f"group {g.group}: {g.grade}")
        lines.append("  " + _row("lag", f"{g.lag:,}", "messages", g.lag_grade))
        if g.throughput is None:
            lines.append("  " + _row("throughput", "-", "msg/s", None, "(window 0)"))
        else:
            note = f"({g.consumed:,} committed, {g.produced:,} written in {g.window:.1f} s)"
            value = f"{g.throughput:,.1f}"
            lines.append("  " + _row("throughput", value, "msg/s", g.throughput_grade, note))
        skew = "-" if g.skew is None else f"{g.skew:.2f}"
        lines.append("  " + _row("skew", skew, "x", g.skew_grade, "(max/mean partition lag)"))
        width = max([len("TOPIC"), *(len(p.topic) for p in g.partitions)])
        lines.append(f"  {'TOPIC':<{width}}  PARTITION     COMMITTED           END         LAG")
        for p in g.partitions:
            committed = "-" if p.committed is None else f"{p.committed}"
            lines.append(
                f"  {p.topic:<{width}}  {p.partition:>9}  {committed:>12}  {p.end:>12}  {p.lag:>10}"
            )
    rate = "unknown" if report.error_rate is None else f"{report.error_rate:.4%}"
    source = f"({report.error_rate_source})"
    lines.append(_row("error rate", rate, "", report.error_rate_grade, source))
    lines.append(f"{'overall':<12}{report.grade}")
    return "\n".join(lines)


def render_json(report: HealthReport) -> str:
    """The report as one JSON document (see :meth:`HealthReport.to_dict`)."""
    return json.dumps(report.to_dict(), indent=2)


def render_prometheus(report: HealthReport) -> str:
    """The report in the Prometheus text exposition format (gauges only)."""
    families: dict[str, tuple[str, list[str]]] = {}

    def add(name: str, help_text: str, labels: Mapping[str, str], value: float) -> None:
        metric = f"logtide_kafka_{name}"
        families.setdefault(metric, (help_text, []))[1].append(
            f"{metric}{prometheus.labels(labels) if labels else ''} {prometheus.number(value)}"
        )

    for g in report.groups:
        for p in g.partitions:
            where = {"group": g.group, "topic": p.topic, "partition": str(p.partition)}
            if p.committed is not None:
                add("committed_offset", "Offset committed by the group.", where, p.committed)
            add("end_offset", "End offset (high watermark) of the partition.", where, p.end)
            add("partition_lag", "Messages the group has still to read.", where, p.lag)
        group = {"group": g.group}
        add("group_lag", "Messages the group has still to read, in all.", group, g.lag)
        if g.throughput is not None:
            add(
                "group_throughput",
                "Committed-offset progress of the group, messages per second.",
                group,
                g.throughput,
            )
        if g.skew is not None:
            add("group_lag_skew", "Max partition lag / mean partition lag.", group, g.skew)
        checks = (("lag", g.lag_grade), ("throughput", g.throughput_grade))
        for check, grade in (*checks, ("skew", g.skew_grade), ("group", g.grade)):
            if grade is not None:
                add(
                    "health_grade",
                    "0 healthy, 1 warning, 2 critical (graded checks only).",
                    {"group": g.group, "check": check},
                    int(grade),
                )
    if report.error_rate is not None:
        add("shipper_error_rate", "Fraction of events the shipper failed.", {}, report.error_rate)
    if report.error_rate_grade is not None:
        add(
            "health_grade",
            "0 healthy, 1 warning, 2 critical (graded checks only).",
            {"check": "error_rate"},
            int(report.error_rate_grade),
        )
    add("health_grade", "0 healthy, 1 warning, 2 critical.", {"check": "overall"}, report.grade)
    lines: list[str] = []
    for metric, (help_text, samples) in families.items():
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge", *samples]
    return "\n".join(lines) + "\n"
