"""Topic bootstrap: the ``logs.*`` layout, declared once and applied idempotently.

:data:`DEFAULT_LAYOUT` is the pipeline's layout; :func:`load_layout` reads a replacement
from a small TOML file.  :func:`plan` compares a layout with a cluster and lists the
changes it needs, :func:`apply` makes them.  Nothing is ever removed: topics, partitions and
configuration keys the layout does not mention are left alone, and a topic's replication
factor is reported, never changed.

>>> admin = AdminClient({"bootstrap.servers": "kafka-1:9092"})   # doctest: +SKIP
>>> for change in apply(admin, plan(admin, DEFAULT_LAYOUT)):      # doctest: +SKIP
...     print(change)
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from logtide_kafka._client_log import CLIENT_LOGGER
from logtide_kafka._topic_name import LEGAL_TOPIC, MAX_TOPIC_LENGTH

__all__ = [
    "DEFAULT_LAYOUT",
    "DLQ_TOPIC",
    "Change",
    "Layout",
    "LayoutError",
    "Plan",
    "TopicSpec",
    "TopicsError",
    "admin_client",
    "apply",
    "load_layout",
    "plan",
]

#: Where the shipper writes the events LogTide refused.
DLQ_TOPIC: Final = "logs.dlq"
HOUR_MS: Final = 3_600_000
DAY_MS: Final = 24 * HOUR_MS
GIB: Final = 1024**3
MIN_INSYNC: Final = "min.insync.replicas"

_DURATION: Final = re.compile(r"\s*(\d+)\s*(ms|s|m|h|d|w)\s*")
_DURATION_MS: Final = {"ms": 1, "s": 1000, "m": 60_000, "h": HOUR_MS, "d": DAY_MS, "w": 7 * DAY_MS}
_SIZE: Final = re.compile(r"\s*(\d+)\s*(B|KiB|MiB|GiB|TiB)\s*")
_SIZE_BYTES: Final = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": GIB, "TiB": 1024**4}
_TOPIC_KEYS: Final = frozenset(
    {"partitions", "replication_factor", "retention", "retention_bytes", "config"}
)
# librdkafka reports every refused connection; the caller's errors say it once.
_QUIET: Final = logging.getLogger(CLIENT_LOGGER)


def _int_or_none(text: str | None) -> int | None:
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


class LayoutError(ValueError):
    """A layout (or layout file) that cannot describe topics."""


class TopicsError(RuntimeError):
    """The cluster cannot hold the layout, or refused a change.

    ``applied`` lists the changes that did succeed before or beside the failure."""

    def __init__(self, message: str, applied: Iterable[Change] = ()) -> None:
        super().__init__(message)
        self.applied: tuple[Change, ...] = tuple(applied)


@dataclass(frozen=True)
class TopicSpec:
    """One topic as the layout wants it: ``config`` holds Kafka topic configs, as text."""

    name: str
    partitions: int
    replication_factor: int = 3
    config: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not LEGAL_TOPIC.fullmatch(self.name) or len(self.name) > MAX_TOPIC_LENGTH:
            raise LayoutError(f"{self.name!r} is not a legal topic name")
        counts = (("partitions", self.partitions), ("replication_factor", self.replication_factor))
        for what, count in counts:
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise LayoutError(f"{self.name}: {what} must be a positive integer, not {count!r}")
        config = dict(self.config)
        for key, value in config.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise LayoutError(f"{self.name}: config {key!r} must map text to text")
        insync = _int_or_none(config.get(MIN_INSYNC))
        if insync is not None and insync > self.replication_factor:
            raise LayoutError(
                f"{self.name}: {MIN_INSYNC}={insync} exceeds the replication factor "
                f"{self.replication_factor}"
            )
        # Frozen all the way down: a layout is shared, e.g. DEFAULT_LAYOUT.
        object.__setattr__(self, "config", MappingProxyType(config))


@dataclass(frozen=True)
class Layout:
    """The topics a cluster should have; any others are not this layout's business."""

    topics: tuple[TopicSpec, ...]

    def __post_init__(self) -> None:
        names = [spec.name for spec in self.topics]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise LayoutError(f"topics declared twice: {', '.join(duplicates)}")
        if not names:
            raise LayoutError("a layout needs at least one topic")

    def __getitem__(self, name: str) -> TopicSpec:
        for spec in self.topics:
            if spec.name == name:
                return spec
        raise KeyError(name)


def _spec(
    name: str,
    partitions: int,
    replication_factor: int,
    config: Mapping[str, str],
) -> TopicSpec:
    """A spec with the layout rule applied: ``min.insync.replicas=2`` where RF >= 3."""
    merged = dict(config)
    if replication_factor >= 3:
        merged.setdefault(MIN_INSYNC, "2")
    return TopicSpec(name, partitions, replication_factor, merged)


def _lz4(retention_ms: int, **extra: str) -> dict[str, str]:
    return {"retention.ms": str(retention_ms), "compression.type": "lz4", **extra}


#: The pipeline's layout: what ``logtide-kafka topics apply`` creates without ``--file``.
DEFAULT_LAYOUT: Final = Layout(
    (
        _spec("logs.application", 12, 3, _lz4(DAY_MS, **{"retention.bytes": str(10 * GIB)})),
        _spec("logs.infrastructure", 6, 3, _lz4(DAY_MS)),
        _spec("logs.security", 6, 3, _lz4(7 * DAY_MS)),
        # Events LogTide refused: kept a week so someone can look at them and replay.
        _spec(DLQ_TOPIC, 3, 3, _lz4(7 * DAY_MS)),
    )
)


# -- the layout file ----------------------------------------------------------------------


def load_layout(path: str | Path) -> Layout:
    """Read a TOML layout file; it replaces :data:`DEFAULT_LAYOUT` as a whole.

    ``[topics."name"]`` tables take ``partitions``, ``replication_factor`` (default 3),
    ``retention`` (``"24h"``, ``"7d"``…), ``retention_bytes`` (a number or ``"10GiB"``) and
    a ``config`` table of any Kafka topic configs.  An optional ``[defaults]`` table takes
    the same keys for every topic.  ``min.insync.replicas`` defaults to 2 where the
    replication factor is 3 or more.  Raises :class:`LayoutError` (``OSError`` when the
    file cannot be read).
    """
    with open(path, "rb") as file:
        try:
            document = tomllib.load(file)
        except tomllib.TOMLDecodeError as exc:
            raise LayoutError(f"{path}: not valid TOML: {exc}") from exc
    unknown = set(document) - {"defaults", "topics"}
    if unknown:
        raise LayoutError(f"{path}: unknown table(s) {', '.join(sorted(unknown))}")
    defaults = _table(document.get("defaults", {}), "[defaults]")
    topics = _table(document.get("topics", {}), "[topics]")
    if not topics:
        raise LayoutError(f'{path}: no [topics."name"] table')
    specs = []
    for name, body in topics.items():
        specs.append(_parse_topic(name, defaults, _table(body, f"[topics.{name!r}]")))
    return Layout(tuple(specs))


def _table(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise LayoutError(f"{where} must be a table")
    return value


def _parse_topic(name: str, defaults: Mapping[str, Any], body: Mapping[str, Any]) -> TopicSpec:
    for where, table in (("[defaults]", defaults), (name, body)):
        unknown = set(table) - _TOPIC_KEYS
        if unknown:
            raise LayoutError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    merged = {**defaults, **body}
    config = {
        **_config_table(defaults.get("config", {}), "[defaults]"),
        **_config_table(body.get("config", {}), name),
    }
    for key, setting, parse in (
        ("retention", "retention.ms", _duration_ms),
        ("retention_bytes", "retention.bytes", _size_bytes),
    ):
        if key in merged:
            if setting in config:
                raise LayoutError(f"{name}: give {key} or config.{setting!r}, not both")
            config[setting] = str(parse(merged[key], f"{name}: {key}"))
    if "partitions" not in merged:
        raise LayoutError(f"{name}: partitions missing")
    return _spec(name, merged["partitions"], merged.get("replication_factor", 3), config)


def _config_table(value: object, where: str) -> dict[str, str]:
    config: dict[str, str] = {}
    for key, item in _table(value, f"{where} config").items():
        if isinstance(item, bool):
            config[key] = "true" if item else "false"
        elif isinstance(item, int | float | str):
            config[key] = str(item)
        else:
            raise LayoutError(f"{where}: config {key!r} must be text, a number or a boolean")
    return config


def _duration_ms(value: object, where: str) -> int:
    if isinstance(value, str):
        if value.strip() == "forever":
            return -1
        match = _DURATION.fullmatch(value)
        if match:
            return int(match[1]) * _DURATION_MS[match[2]]
    raise LayoutError(f"{where}: {value!r} is not a duration like '24h', '7d' or 'forever'")


def _size_bytes(value: object, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and (value > 0 or value == -1):
        return value
    if isinstance(value, str):
        match = _SIZE.fullmatch(value)
        if match:
            return int(match[1]) * _SIZE_BYTES[match[2]]
    raise LayoutError(f"{where}: {value!r} is not a size like 10737418240 or '10GiB'")


# -- planning -----------------------------------------------------------------------------

ChangeKind = Literal["create", "alter", "add_partitions"]


@dataclass(frozen=True)
class Change:
    """One step of a :class:`Plan`.

    ``create``: ``partitions``, ``replication_factor`` and the whole ``config``.
    ``alter``: ``config`` holds the keys to set, ``before`` their current values.
    ``add_partitions``: ``partitions`` is the new total, ``before["partitions"]`` the old.
    """

    kind: ChangeKind
    topic: str
    partitions: int = 0
    replication_factor: int = 0
    config: Mapping[str, str] = field(default_factory=dict)
    before: Mapping[str, str | None] = field(default_factory=dict)

    def __str__(self) -> str:
        if self.kind == "create":
            parts = [f"{self.partitions} partitions"]
            parts.append(f"replication factor {self.replication_factor}")
            parts += [f"{k}={v}" for k, v in sorted(self.config.items())]
            return f"create {self.topic}: {', '.join(parts)}"
        if self.kind == "alter":
            diffs = ", ".join(
                f"{k} {self.before.get(k)} -> {v}" for k, v in sorted(self.config.items())
            )
            return f"alter {self.topic}: {diffs}"
        return f"add partitions {self.topic}: {self.before.get('partitions')} -> {self.partitions}"


@dataclass(frozen=True)
class Plan:
    """What :func:`apply` would do, what it leaves alone and why."""

    changes: tuple[Change, ...]
    #: Things the layout asks for that are not done: fewer partitions, another
    #: replication factor on an existing topic, a capped replication factor.
    warnings: tuple[str, ...]
    #: Topics of the layout that need no change (warnings aside).
    unchanged: tuple[str, ...]
    #: Brokers the cluster had when planning.
    brokers: int


def admin_client(bootstrap_servers: str, **config: Any) -> AdminClient:
    """An ``AdminClient`` whose connection noise goes to the ``logtide_kafka.client``
    logger rather than stderr."""
    return AdminClient({"bootstrap.servers": bootstrap_servers, **config}, logger=_QUIET)


def plan(
    admin: AdminClient,
    layout: Layout,
    *,
    cap_replication: bool = False,
    timeout: float = 10.0,
) -> Plan:
    """Compare ``layout`` with the cluster and list the changes it needs; changes nothing.

    A topic to create with a replication factor above the number of live brokers raises
    :class:`TopicsError`, unless ``cap_replication``: then the factor is capped to the
    brokers (and ``min.insync.replicas`` to at most factor - 1, at least 1), with a warning.
    Raises ``KafkaException`` when the cluster cannot be reached within ``timeout``.
    """
    metadata = admin.list_topics(timeout=timeout)
    brokers = len(metadata.brokers)
    warnings: list[str] = []
    too_wide: list[str] = []
    specs: list[TopicSpec] = []
    for declared in layout.topics:
        spec = declared
        if declared.replication_factor > brokers and cap_replication:
            spec = _capped(declared, brokers)
            insync = spec.config.get(MIN_INSYNC, "the broker default")
            warnings.append(
                f"{spec.name}: replication factor capped from {declared.replication_factor} "
                f"to {spec.replication_factor} ({brokers} broker(s)), {MIN_INSYNC} {insync}"
            )
        elif declared.replication_factor > brokers and declared.name not in metadata.topics:
            too_wide.append(f"{declared.name} (replication factor {declared.replication_factor})")
        specs.append(spec)
    if too_wide:
        raise TopicsError(
            f"the cluster has {brokers} live broker(s), too few for {', '.join(too_wide)}; "
            "add brokers, lower replication_factor in the layout, or cap it to the brokers "
            "(--cap-replication)"
        )

    existing = {
        spec.name: metadata.topics[spec.name]
        for spec in specs
        if spec.name in metadata.topics and metadata.topics[spec.name].error is None
    }
    current_configs = _describe_configs(admin, existing, timeout)
    changes: list[Change] = []
    unchanged: list[str] = []
    for spec in specs:
        if spec.name not in existing:
            config = dict(spec.config)
            changes.append(
                Change("create", spec.name, spec.partitions, spec.replication_factor, config)
            )
            continue
        topic_changes = _diff(spec, existing[spec.name], current_configs[spec.name], warnings)
        changes.extend(topic_changes)
        if not topic_changes:
            unchanged.append(spec.name)
    return Plan(tuple(changes), tuple(warnings), tuple(unchanged), brokers)


def _capped(spec: TopicSpec, brokers: int) -> TopicSpec:
    rf = max(brokers, 1)
    config = dict(spec.config)
    insync = _int_or_none(config.get(MIN_INSYNC))
    if insync is not None:
        # Below the factor, so one broker may be down; never below 1.
        config[MIN_INSYNC] = str(min(insync, max(rf - 1, 1)))
    return replace(spec, replication_factor=rf, config=config)


def _describe_configs(
    admin: AdminClient, topics: Iterable[str], timeout: float
) -> dict[str, dict[str, str | None]]:
    """Current configs of existing topics, by name.

    A topic created a moment ago may still be unknown to the broker asked (metadata
    reaches each broker on its own): such answers are retried until ``timeout``."""
    pending = list(topics)
    found: dict[str, dict[str, str | None]] = {}
    deadline = time.monotonic() + timeout
    while pending:
        resources = [ConfigResource(ResourceType.TOPIC, name) for name in pending]
        pending = []
        for resource, future in admin.describe_configs(resources, request_timeout=timeout).items():
            try:
                entries = future.result(timeout=timeout)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise
                if time.monotonic() >= deadline:
                    raise
                pending.append(resource.name)
                continue
            found[resource.name] = {key: entry.value for key, entry in entries.items()}
        if pending:
            time.sleep(0.1)
    return found


def _diff(
    spec: TopicSpec,
    metadata: Any,
    current: Mapping[str, str | None],
    warnings: list[str],
) -> list[Change]:
    """The changes one existing topic needs; what will not be changed goes to warnings."""
    changes: list[Change] = []
    partitions = len(metadata.partitions)
    rf = max((len(p.replicas) for p in metadata.partitions.values()), default=0)
    if rf != spec.replication_factor:
        warnings.append(
            f"{spec.name}: replication factor is {rf}, "
            f"the layout says {spec.replication_factor}; "
            "not changed (that needs a partition reassignment)"
        )
    wanted: dict[str, str] = {}
    for key, value in spec.config.items():
        if key not in current:
            raise TopicsError(f"{spec.name}: the broker knows no topic config {key!r}")
        insync = _int_or_none(value) if key == MIN_INSYNC else None
        if insync is not None and insync > rf:
            # Never met; depending on the Kafka version, acks=all writes are then refused.
            warnings.append(
                f"{spec.name}: {MIN_INSYNC}={value} not set, the topic has only {rf} replica(s)"
            )
            continue
        if current[key] != value:
            wanted[key] = value
    if wanted:
        before = {key: current[key] for key in wanted}
        changes.append(Change("alter", spec.name, config=wanted, before=before))
    if spec.partitions > partitions:
        changes.append(
            Change(
                "add_partitions",
                spec.name,
                partitions=spec.partitions,
                before={"partitions": str(partitions)},
            )
        )
    elif spec.partitions < partitions:
        warnings.append(
            f"{spec.name}: has {partitions} partitions, the layout says {spec.partitions}; "
            "not changed (partitions are never removed)"
        )
    return changes


# -- applying -----------------------------------------------------------------------------


def apply(admin: AdminClient, plan: Plan, *, timeout: float = 30.0) -> list[Change]:
    """Make the plan's changes; return those made, once the cluster shows them.

    Topic configs are set with ``incremental_alter_configs`` (``SET`` of the layout's keys
    only, every other key untouched).  Raises :class:`TopicsError` naming every refused
    change; its ``applied`` holds the ones that succeeded.
    """
    futures = [
        *_create(admin, [c for c in plan.changes if c.kind == "create"], timeout),
        *_alter(admin, [c for c in plan.changes if c.kind == "alter"], timeout),
        *_grow(admin, [c for c in plan.changes if c.kind == "add_partitions"], timeout),
    ]
    applied: list[Change] = []
    failures: list[str] = []
    for change, future in futures:
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            failures.append(f"{change.kind} {change.topic}: {exc.args[0].str()}")
        else:
            applied.append(change)
    _wait_for_partitions(admin, [c for c in applied if c.kind != "alter"], timeout)
    created = [c.topic for c in applied if c.kind == "create"]
    with contextlib.suppress(KafkaException):  # only waiting; the topics exist
        _describe_configs(admin, created, timeout)
    if failures:
        raise TopicsError("the cluster refused: " + "; ".join(failures), applied)
    return applied


def _create(admin: AdminClient, creates: list[Change], timeout: float) -> list[tuple[Change, Any]]:
    """Ask for the new topics, with their configs; each change with its future."""
    if not creates:
        return []
    topics = [
        NewTopic(c.topic, c.partitions, c.replication_factor, config=dict(c.config))
        for c in creates
    ]
    results = admin.create_topics(topics, operation_timeout=timeout, request_timeout=timeout)
    return [(c, results[c.topic]) for c in creates]


def _alter(admin: AdminClient, alters: list[Change], timeout: float) -> list[tuple[Change, Any]]:
    """Ask to ``SET`` the configs that differ (every other key untouched)."""
    if not alters:
        return []
    resources = [
        ConfigResource(
            ResourceType.TOPIC,
            c.topic,
            incremental_configs=[
                ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
                for key, value in c.config.items()
            ],
        )
        for c in alters
    ]
    by_name = {
        resource.name: future
        for resource, future in admin.incremental_alter_configs(
            resources, request_timeout=timeout
        ).items()
    }
    return [(c, by_name[c.topic]) for c in alters]


def _grow(admin: AdminClient, grows: list[Change], timeout: float) -> list[tuple[Change, Any]]:
    """Ask for the partitions to add."""
    if not grows:
        return []
    results = admin.create_partitions(
        [NewPartitions(c.topic, c.partitions) for c in grows],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    return [(c, results[c.topic]) for c in grows]


def _wait_for_partitions(admin: AdminClient, changes: list[Change], timeout: float) -> None:
    """Wait until new topics and partitions all have leaders, so producing right after
    ``apply`` does not race their creation; returns at ``timeout`` regardless."""
    wanted = {c.topic: c.partitions for c in changes}
    deadline = time.monotonic() + timeout
    while wanted and time.monotonic() < deadline:
        try:
            topics = admin.list_topics(timeout=5).topics
        except KafkaException:
            topics = {}
        for name, count in list(wanted.items()):
            meta = topics.get(name)
            if (
                meta is not None
                and meta.error is None
                and len(meta.partitions) >= count
                and all(p.leader >= 0 for p in meta.partitions.values())
            ):
                del wanted[name]
        if wanted:
            time.sleep(0.1)
