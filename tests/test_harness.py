"""The test harness itself: brokers start for real, and no JVM outlives its owner."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer

from logtide_kafka.testing import LocalKafka, _cluster, kafka_classpath, read_events

# 0xF8 puts "-" (index 62 of the URL-safe alphabet) first in the base64 form.
_DASH_FIRST = uuid.UUID(bytes=b"\xf8" + bytes(15))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): look at its state.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[1][0] != "Z"


def test_the_broker_jars_come_from_maven_central_into_the_cache() -> None:
    libs = kafka_classpath()
    names = {path.name for path in libs.glob("*.jar")}
    assert any(name.startswith("kafka_2.13-4.") for name in names), sorted(names)
    assert any(name.startswith("kafka-clients-") for name in names)
    assert any(name.startswith("log4j-slf4j-impl-") for name in names)


def test_stop_leaves_no_process_and_no_files_behind() -> None:
    kafka = LocalKafka(1).start()
    (node,) = kafka.nodes
    assert node.process is not None
    pid = node.process.pid
    assert _alive(pid)
    assert node.log_file.read_text().strip(), "the broker wrote no log"
    kafka.stop()
    assert not _alive(pid)
    assert not kafka.workdir.exists()


def test_a_killed_owner_takes_its_brokers_with_it() -> None:
    script = textwrap.dedent(
        """
        import sys, time
        from logtide_kafka.testing import LocalKafka
        kafka = LocalKafka(1).start()
        print(kafka.nodes[0].process.pid, kafka.workdir, flush=True)
        time.sleep(600)
        """
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    pid, workdir = owner.stdout.readline().split()
    jvm = int(pid)
    assert _alive(jvm)
    owner.send_signal(signal.SIGKILL)  # no teardown, no atexit: only PDEATHSIG remains
    owner.wait()
    deadline = time.monotonic() + 15
    while _alive(jvm) and time.monotonic() < deadline:
        time.sleep(0.1)
    shutil.rmtree(workdir, ignore_errors=True)
    assert not _alive(jvm), f"JVM {jvm} outlived the process that started it"


def test_cluster_ids_never_start_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    draws = iter([_DASH_FIRST, _DASH_FIRST, uuid.UUID(int=1)])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(draws))
    cluster_id = _cluster.new_cluster_id()
    assert cluster_id == "AAAAAAAAAAAAAAAAAAAAAQ"
    assert next(draws, None) is None, "both dash-first ids should have been drawn and refused"


@pytest.mark.kafka
def test_a_broker_formats_and_starts_with_a_dash_first_cluster_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What failed about once in 64 runs: `format -t -...` read the id as an option.
    dash_id = "-" + "A" * 21
    monkeypatch.setattr(_cluster, "new_cluster_id", lambda: dash_id)
    with LocalKafka(1) as kafka:
        admin = kafka.admin()
        meta = admin.describe_cluster().result(timeout=30)
        assert meta.cluster_id == dash_id


@pytest.mark.kafka
def test_a_kept_workdir_starts_again_with_its_data(tmp_path: Path) -> None:
    # `python -m logtide_kafka.testing --workdir DIR` a second time: it refused to start
    # ("Invalid cluster.id in meta.properties") because it formatted the storage again.
    with LocalKafka(1, workdir=tmp_path) as kafka:
        admin = kafka.admin()  # held: a dropped client cancels its futures
        first_id = admin.describe_cluster().result(timeout=30).cluster_id
        kafka.create_topics(["kept"])
        producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})
        producer.produce("kept", b'{"message": "still here"}')
        assert producer.flush(30) == 0
    with LocalKafka(1, workdir=tmp_path) as kafka:
        admin = kafka.admin()
        assert admin.describe_cluster().result(timeout=30).cluster_id == first_id
        events = read_events(kafka.bootstrap_servers, "kept", count=1)
        assert [e.value for e in events] == [{"message": "still here"}]


def test_partly_formatted_storage_is_refused(tmp_path: Path) -> None:
    nodes = [_cluster.BrokerNode(i, 0, 0, tmp_path / f"node-{i}") for i in (1, 2, 3)]
    assert _cluster._formatted_cluster_id(nodes) is None
    nodes[0].data_dir.mkdir(parents=True)
    (nodes[0].data_dir / "meta.properties").write_text("node.id=1\ncluster.id=abc\n")
    with pytest.raises(RuntimeError, match="partly formatted"):
        _cluster._formatted_cluster_id(nodes)
    for node in nodes[1:]:
        node.data_dir.mkdir(parents=True)
        (node.data_dir / "meta.properties").write_text("cluster.id=abc\n")
    assert _cluster._formatted_cluster_id(nodes) == "abc"
