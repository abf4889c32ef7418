"""Topic bootstrap: the layout file, and plan/apply against real brokers."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from logtide_kafka.cli import main
from logtide_kafka.pipeline.topics import (
    DEFAULT_LAYOUT,
    GIB,
    Layout,
    LayoutError,
    TopicsError,
    TopicSpec,
    _describe_configs,
    admin_client,
    apply,
    load_layout,
    plan,
)
from logtide_kafka.testing import LocalKafka

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "topics.toml"
DAY_MS = 86_400_000


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / f"layout-{uuid.uuid4().hex[:6]}.toml"
    path.write_text(text)
    return path


def _prefix() -> str:
    return f"logs.t{uuid.uuid4().hex[:10]}"


def _configs(admin: AdminClient, topic: str) -> dict[str, str | None]:
    # The library's reader: it waits out brokers that have not heard of a new topic yet.
    return _describe_configs(admin, [topic], 10.0)[topic]


def _known_everywhere(kafka: LocalKafka, names: dict[str, int], timeout: float = 30) -> None:
    """Wait until every broker knows these topics with (at least) these partition counts.

    A change reaches each broker on its own; a fresh client bootstrapped to one broker
    asks that broker, so a test can read any broker's view right after."""
    deadline = time.monotonic() + timeout
    for node in (node for node in kafka.nodes if node.running):
        admin = admin_client(node.address)
        while True:
            topics = admin.list_topics(timeout=5).topics
            if all(n in topics and len(topics[n].partitions) >= c for n, c in names.items()):
                break
            assert time.monotonic() < deadline, f"broker {node.node_id} does not know {names}"
            time.sleep(0.1)


def _config_everywhere(
    kafka: LocalKafka, topic: str, expected: dict[str, str], timeout: float = 30
) -> None:
    """Wait until every broker reports these config values: a change, like a new topic,
    reaches each broker on its own."""
    deadline = time.monotonic() + timeout
    for node in (node for node in kafka.nodes if node.running):
        admin = admin_client(node.address)
        while True:
            configs = _configs(admin, topic)
            if all(configs.get(key) == value for key, value in expected.items()):
                break
            assert time.monotonic() < deadline, f"broker {node.node_id}: {configs}"
            time.sleep(0.1)


def _shape(admin: AdminClient, topic: str) -> tuple[int, int]:
    """(partitions, replication factor) as the cluster reports them."""
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
    return len(partitions), max(len(p.replicas) for p in partitions.values())


# -- the layout (no broker) ------------------------------------------------------------------


def test_default_layout_is_the_designed_one() -> None:
    shapes = {s.name: (s.partitions, s.replication_factor) for s in DEFAULT_LAYOUT.topics}
    assert shapes == {
        "logs.application": (12, 3),
        "logs.infrastructure": (6, 3),
        "logs.security": (6, 3),
        "logs.dlq": (3, 3),
    }
    app = DEFAULT_LAYOUT["logs.application"].config
    assert dict(app) == {
        "retention.ms": str(DAY_MS),
        "retention.bytes": str(10 * GIB),
        "compression.type": "lz4",
        "min.insync.replicas": "2",
    }
    assert DEFAULT_LAYOUT["logs.infrastructure"].config["retention.ms"] == str(DAY_MS)
    assert DEFAULT_LAYOUT["logs.security"].config["retention.ms"] == str(7 * DAY_MS)
    for spec in DEFAULT_LAYOUT.topics:
        assert spec.config["compression.type"] == "lz4"
        assert spec.config["min.insync.replicas"] == "2"


def test_the_example_file_declares_the_default_layout() -> None:
    assert load_layout(EXAMPLE) == DEFAULT_LAYOUT


def test_a_layout_file_with_defaults_and_raw_configs(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        [defaults]
        replication_factor = 2
        retention = "90m"
        config = { "compression.type" = "zstd", "cleanup.policy" = "delete" }

        [topics."a.one"]
        partitions = 4
        retention_bytes = "512MiB"
        config = { "compression.type" = "lz4", "segment.ms" = 3600000 }

        [topics."a.two"]
        partitions = 1
        replication_factor = 3
        retention = "forever"
        config = { "unclean.leader.election.enable" = false }
        """,
    )
    layout = load_layout(path)
    one, two = layout.topics
    assert (one.name, one.partitions, one.replication_factor) == ("a.one", 4, 2)
    assert dict(one.config) == {
        "compression.type": "lz4",
        "cleanup.policy": "delete",
        "segment.ms": "3600000",
        "retention.ms": str(90 * 60_000),
        "retention.bytes": str(512 * 1024**2),
    }
    assert "min.insync.replicas" not in one.config  # RF 2: the broker's default stays
    assert (two.partitions, two.replication_factor) == (1, 3)
    assert two.config["retention.ms"] == "-1"
    assert two.config["unclean.leader.election.enable"] == "false"
    assert two.config["min.insync.replicas"] == "2"


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ('[topics."x"]\npartitions = 3\nreplicas = 3\n', "unknown key(s) replicas"),
        ('[topics."x"]\nreplication_factor = 3\n', "partitions missing"),
        ('[topics."x"]\npartitions = 0\n', "partitions must be a positive integer"),
        ('[topics."x"]\npartitions = 3\nretention = "24 hours"\n', "not a duration"),
        ('[topics."x"]\npartitions = 3\nretention_bytes = "10GB"\n', "not a size"),
        (
            '[topics."x"]\npartitions = 3\nretention = "1d"\nconfig = { "retention.ms" = 5 }\n',
            "not both",
        ),
        (
            '[topics."x"]\npartitions = 3\nreplication_factor = 1\n'
            'config = { "min.insync.replicas" = 2 }\n',
            "exceeds the replication factor 1",
        ),
        ('[topics."bad name"]\npartitions = 3\n', "not a legal topic name"),
        ("[topic]\n", "unknown table(s) topic"),
        ("[defaults]\npartitions = 3\n", "no [topics"),
        ('[topics."x"\npartitions = 3\n', "not valid TOML"),
    ],
)
def test_a_bad_layout_file_is_refused_with_a_reason(
    tmp_path: Path, text: str, complaint: str
) -> None:
    with pytest.raises(LayoutError) as caught:
        load_layout(_write(tmp_path, text))
    assert complaint in str(caught.value)


def test_a_layout_names_each_topic_once() -> None:
    spec = TopicSpec("logs.x", 1, 1)
    with pytest.raises(LayoutError, match=r"declared twice: logs\.x"):
        Layout((spec, spec))


# -- against real brokers --------------------------------------------------------------------


def test_apply_creates_the_layout_and_a_second_apply_changes_nothing(
    kafka3: LocalKafka, tmp_path: Path
) -> None:
    kafka3.wait_ready()
    prefix = _prefix()
    layout = load_layout(
        _write(
            tmp_path,
            f"""
            [defaults]
            config = {{ "compression.type" = "lz4" }}
            [topics."{prefix}.app"]
            partitions = 6
            retention = "24h"
            retention_bytes = "10GiB"
            [topics."{prefix}.sec"]
            partitions = 2
            replication_factor = 2
            retention = "7d"
            """,
        )
    )
    admin = kafka3.admin()
    first = plan(admin, layout)
    assert first.brokers == 3
    assert [(c.kind, c.topic) for c in first.changes] == [
        ("create", f"{prefix}.app"),
        ("create", f"{prefix}.sec"),
    ]
    assert first.unchanged == ()
    assert apply(admin, first) == list(first.changes)
    _known_everywhere(kafka3, {f"{prefix}.app": 6, f"{prefix}.sec": 2})

    assert _shape(admin, f"{prefix}.app") == (6, 3)
    assert _shape(admin, f"{prefix}.sec") == (2, 2)
    app = _configs(admin, f"{prefix}.app")
    assert (app["retention.ms"], app["retention.bytes"]) == (str(DAY_MS), str(10 * GIB))
    assert (app["compression.type"], app["min.insync.replicas"]) == ("lz4", "2")
    assert _configs(admin, f"{prefix}.sec")["retention.ms"] == str(7 * DAY_MS)

    second = plan(admin, layout)
    assert second.changes == ()
    assert second.warnings == ()
    assert second.unchanged == (f"{prefix}.app", f"{prefix}.sec")
    assert apply(admin, second) == []


def test_drift_is_corrected_and_partitions_are_added_never_removed(
    kafka3: LocalKafka, tmp_path: Path
) -> None:
    kafka3.wait_ready()
    name = f"{_prefix()}.drift"
    body = '[topics."{name}"]\npartitions = {n}\nretention = "24h"\n'
    admin = kafka3.admin()
    apply(admin, plan(admin, load_layout(_write(tmp_path, body.format(name=name, n=3)))))
    _known_everywhere(kafka3, {name: 3})

    # By hand: retention drifts, and a key the layout does not manage is set.
    resource = ConfigResource(
        ResourceType.TOPIC,
        name,
        incremental_configs=[
            ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("segment.ms", "7200000", incremental_operation=AlterConfigOpType.SET),
        ],
    )
    admin.incremental_alter_configs([resource])[resource].result(timeout=10)
    _config_everywhere(kafka3, name, {"retention.ms": "3600000"})

    grown = load_layout(_write(tmp_path, body.format(name=name, n=5)))
    fix = plan(admin, grown)
    kinds = {c.kind: c for c in fix.changes}
    assert set(kinds) == {"alter", "add_partitions"}
    assert dict(kinds["alter"].config) == {"retention.ms": str(DAY_MS)}
    assert dict(kinds["alter"].before) == {"retention.ms": "3600000"}
    assert (kinds["add_partitions"].partitions, kinds["add_partitions"].before) == (
        5,
        {"partitions": "3"},
    )
    assert "retention.ms 3600000 -> 86400000" in str(kinds["alter"])
    apply(admin, fix)
    _known_everywhere(kafka3, {name: 5})
    _config_everywhere(kafka3, name, {"retention.ms": str(DAY_MS)})
    configs = _configs(admin, name)
    assert configs["retention.ms"] == str(DAY_MS)
    assert configs["segment.ms"] == "7200000"  # not the layout's business: left alone
    assert _shape(admin, name)[0] == 5
    assert plan(admin, grown).changes == ()

    shrunk = plan(admin, load_layout(_write(tmp_path, body.format(name=name, n=2))))
    assert shrunk.changes == ()
    assert any("has 5 partitions, the layout says 2" in w for w in shrunk.warnings)
    assert _shape(admin, name)[0] == 5


def test_an_existing_topic_with_another_replication_factor_is_reported_not_changed(
    kafka3: LocalKafka,
) -> None:
    kafka3.wait_ready()
    name = f"{_prefix()}.rf"
    kafka3.create_topics([name], partitions=2, replication_factor=1)
    _known_everywhere(kafka3, {name: 2})
    admin = kafka3.admin()
    config = {"retention.ms": str(DAY_MS), "min.insync.replicas": "2"}
    result = plan(admin, Layout((TopicSpec(name, 2, 3, config),)))
    [change] = result.changes
    assert (change.kind, dict(change.config)) == ("alter", {"retention.ms": str(DAY_MS)})
    assert any("replication factor is 1, the layout says 3" in w for w in result.warnings)
    # Two in-sync replicas of one can never be met: not set, and said so.
    assert any("min.insync.replicas=2 not set" in w for w in result.warnings)
    apply(admin, result)
    assert _shape(admin, name) == (2, 1)


def test_dry_run_shows_the_plan_and_changes_nothing(
    kafka3: LocalKafka, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kafka3.wait_ready()
    name = f"{_prefix()}.dry"
    path = _write(tmp_path, f'[topics."{name}"]\npartitions = 4\n')
    args = ["topics", "apply", "--brokers", kafka3.bootstrap_servers, "--file", str(path)]
    assert main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would create {name}: 4 partitions, replication factor 3" in out
    assert "dry run: 1 change(s) planned, nothing changed" in out
    assert name not in kafka3.admin().list_topics(timeout=10).topics

    assert main(args) == 0
    assert f"create {name}: 4 partitions" in capsys.readouterr().out
    _known_everywhere(kafka3, {name: 4})
    assert _shape(kafka3.admin(), name) == (4, 3)


def test_the_default_layout_applies_on_three_brokers(kafka3: LocalKafka) -> None:
    kafka3.wait_ready()
    admin = kafka3.admin()
    apply(admin, plan(admin, DEFAULT_LAYOUT))
    _known_everywhere(kafka3, {spec.name: spec.partitions for spec in DEFAULT_LAYOUT.topics})
    for spec in DEFAULT_LAYOUT.topics:
        assert _shape(admin, spec.name) == (spec.partitions, 3)
        configs = _configs(admin, spec.name)
        assert {k: configs[k] for k in spec.config} == dict(spec.config)
    again = plan(admin, DEFAULT_LAYOUT)
    assert (again.changes, again.warnings) == ((), ())


def _too_wide(brokers: int, name: str) -> Layout:
    config: dict[str, Any] = {"retention.ms": str(DAY_MS), "min.insync.replicas": "2"}
    return Layout((TopicSpec(name, 2, max(brokers + 1, 3), config),))


def test_a_replication_factor_above_the_brokers_is_an_error(kafka_bootstrap: str) -> None:
    admin = admin_client(kafka_bootstrap)
    brokers = len(admin.list_topics(timeout=10).brokers)
    name = f"{_prefix()}.wide"
    with pytest.raises(TopicsError) as caught:
        plan(admin, _too_wide(brokers, name))
    message = str(caught.value)
    assert f"{brokers} live broker(s)" in message
    assert name in message
    assert "--cap-replication" in message
    assert name not in admin.list_topics(timeout=10).topics


def test_cap_replication_creates_the_topic_with_what_the_cluster_has(
    kafka_bootstrap: str,
) -> None:
    admin = admin_client(kafka_bootstrap)
    brokers = len(admin.list_topics(timeout=10).brokers)
    name = f"{_prefix()}.capped"
    capped = plan(admin, _too_wide(brokers, name), cap_replication=True)
    [create] = capped.changes
    assert create.replication_factor == brokers
    # Kept below the factor so one broker may be down, and never below 1.
    assert create.config["min.insync.replicas"] == str(min(2, max(brokers - 1, 1)))
    assert any("replication factor capped" in w for w in capped.warnings)
    apply(admin, capped)
    assert _shape(admin, name) == (2, brokers)
    assert _configs(admin, name)["min.insync.replicas"] == create.config["min.insync.replicas"]
    assert plan(admin, _too_wide(brokers, name), cap_replication=True).changes == ()
