"""Real Apache Kafka brokers (KRaft) as local subprocesses, for tests and the quick start."""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final, Literal

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from logtide_kafka.testing._dist import KAFKA_VERSION, kafka_classpath
from logtide_kafka.testing._security import (
    Listener,
    Mechanism,
    SecurityConfig,
    TlsFiles,
    add_secure_listeners,
    client_settings,
    make_tls_files,
    scram_format_args,
)

__all__ = ["FAST_FAILOVER", "BrokerNode", "LocalKafka", "create_topics", "kafka_or_local"]

_LOG4J2: Final = """status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {path}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
"""
_PR_SET_PDEATHSIG: Final = 1
#: Broker settings for a cluster that notices a killed broker in about 3 s instead of
#: Kafka's 9 s (``broker.session.timeout.ms``): fault tests that need not run at the
#: defaults pass it as ``LocalKafka(3, broker_config=FAST_FAILOVER)``.
FAST_FAILOVER: Final[Mapping[str, object]] = {
    "broker.session.timeout.ms": 3000,
    "broker.heartbeat.interval.ms": 500,
}
# librdkafka reports every refused connection; while a broker starts those are expected.
_QUIET: Final = logging.getLogger("logtide_kafka.testing.client")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def _formatted_cluster_id(nodes: Sequence[BrokerNode]) -> str | None:
    """The cluster id every node's storage was formatted with, or None if none was.

    Storage formatted for only some nodes, or for different clusters, is an error to show,
    not something to repair: the user's ``workdir`` holds it.
    """
    ids: set[str | None] = set()
    for node in nodes:
        meta = node.data_dir / "meta.properties"
        if not meta.exists():
            ids.add(None)
            continue
        lines = meta.read_text().splitlines()
        ids.add(next((ln.split("=", 1)[1] for ln in lines if ln.startswith("cluster.id=")), ""))
    if ids == {None}:
        return None
    if len(ids) != 1 or "" in ids:
        raise RuntimeError(f"the storage under {nodes[0].directory.parent} is partly formatted")
    return ids.pop()


def new_cluster_id() -> str:
    """A random KRaft cluster id, as Kafka's own ``Uuid.randomUuid`` makes it.

    Kafka's ids are 22 characters of URL-safe base64 and never start with ``-`` (a tool
    would read such an id as an option); about 1 in 64 random UUIDs would, so draw again.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


@dataclass
class BrokerNode:
    """One combined broker/controller process of a :class:`LocalKafka` cluster."""

    node_id: int
    port: int
    controller_port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    #: Ports of the secured listeners (:class:`SecurityConfig`), by listener name.
    listener_ports: dict[Listener, int] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        """The node's log directory (``log.dirs``): its partitions and ``meta.properties``."""
        return self.directory / "data"

    @property
    def log_file(self) -> Path:
        """The broker's own log (log4j2), kept after the broker stops."""
        return self.directory / "server.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def _free_ports(count: int) -> list[int]:
    # Hold every socket open until all are chosen, so no port is handed out twice.
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: the JVM gets SIGKILL if the test process
    # dies without tearing down (a crash, a SIGKILL from CI), so no stray JVM survives it.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class LocalKafka:
    """A 1- or 3-node Apache Kafka cluster in KRaft mode, started as JVM subprocesses.

    Each node is a combined broker and controller listening on free loopback ports; all
    nodes are controller-quorum voters.  Broker logs stay in ``<workdir>/node-<id>/``.

    >>> with LocalKafka() as kafka:                      # doctest: +SKIP
    ...     kafka.create_topics(["logs.application"])
    ...     print(kafka.bootstrap_servers)

    ``start()`` returns only once a client really receives metadata listing every broker.

    ``security`` opens TLS and SASL listeners next to PLAINTEXT (which the brokers, the
    admin client and ``bootstrap_servers`` keep using); :meth:`client_config` returns the
    librdkafka settings for each:

    >>> with LocalKafka(security=SecurityConfig(("SSL", "SASL_SSL"))) as kafka:  # doctest: +SKIP
    ...     producer = Producer(kafka.client_config("SASL_SSL", mechanism="PLAIN"))
    """

    def __init__(
        self,
        brokers: int = 1,
        *,
        workdir: str | os.PathLike[str] | None = None,
        version: str = KAFKA_VERSION,
        heap: str = "512m",
        startup_timeout: float = 120.0,
        security: SecurityConfig | None = None,
        broker_config: Mapping[str, object] | None = None,
    ) -> None:
        if brokers not in (1, 3):
            raise ValueError("LocalKafka runs 1 or 3 brokers")
        self.version = version
        self.heap = heap
        self.startup_timeout = startup_timeout
        #: The secured listeners and SASL users, if any.
        self.security = security
        #: Broker settings over the harness's own (e.g. :data:`FAST_FAILOVER`).
        self.broker_config = dict(broker_config or {})
        #: The generated CA, keystore and client certificate (once started with ``security``).
        self.tls: TlsFiles | None = None
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="logtide-kafka-"))
        secured = security.listeners if security else ()
        per_node = 2 + len(secured)
        ports = _free_ports(per_node * brokers)
        self.nodes = []
        for i in range(brokers):
            mine = ports[per_node * i : per_node * (i + 1)]
            node = BrokerNode(i + 1, mine[0], mine[1], self.workdir / f"node-{i + 1}")
            node.listener_ports = dict(zip(secured, mine[2:], strict=True))
            self.nodes.append(node)
        self._classpath: Path | None = None
        self._started = False
        _live.add(self)

    # -- public surface -------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.address for node in self.nodes)

    def start(self) -> LocalKafka:
        """Resolve the broker (cached), format storage, start every node, wait for metadata."""
        if self._started:
            return self
        self._classpath = kafka_classpath(self.version)
        if self.security is not None and self.tls is None:
            self.tls = make_tls_files(self.workdir / "tls")
        # A workdir kept from an earlier run keeps its cluster (and its data): formatting it
        # again under a new id would be refused.
        formatted = _formatted_cluster_id(self.nodes)
        cluster_id = formatted or new_cluster_id()
        for node in self.nodes:
            self._write_config(node)
            if formatted is None:
                self._format(node, cluster_id)
        self._started = True
        try:
            for node in self.nodes:
                self._launch(node)
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL after 15 s); idempotent."""
        for node in self.nodes:
            self._terminate(node, kill=False, wait=False)
        for node in self.nodes:
            self._terminate(node, kill=False, wait=True)
        if self._own_workdir and os.environ.get("LOGTIDE_KAFKA_KEEP_LOGS") is None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        _live.discard(self)

    def stop_broker(self, node_id: int, *, kill: bool = False) -> None:
        """Stop one node: a clean shutdown, or ``kill=True`` for SIGKILL (a crash)."""
        self._terminate(self._node(node_id), kill=kill, wait=True)

    def start_broker(self, node_id: int, *, wait: bool = True) -> None:
        """Restart a stopped node; with ``wait``, return once it is back in the metadata."""
        node = self._node(node_id)
        if node.running:
            return
        self._launch(node)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until every running node answers a metadata request itself and lists
        every running node as a broker.

        Asking each node directly matters after a restart: the cluster keeps a killed
        broker's registration until its session times out, so the metadata alone would
        report it back before the new process serves anything.
        """
        limit = self.startup_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        running = [node for node in self.nodes if node.process is not None]
        expected = {node.node_id for node in running}
        admins = {
            node.node_id: AdminClient({"bootstrap.servers": node.address}, logger=_QUIET)
            for node in running
        }
        answered: set[int] = set()
        while time.monotonic() < deadline:
            for node in running:
                if node.process is not None and node.process.poll() is not None:
                    raise RuntimeError(
                        f"Kafka node {node.node_id} exited with {node.process.returncode} "
                        f"while starting:\n{self.log_tail(node.node_id)}"
                    )
            for node_id in expected - answered:
                # Until it first answers, a client knows no broker but its bootstrap
                # address, so an answer here comes from this node.
                try:
                    brokers = admins[node_id].list_topics(timeout=2).brokers
                except KafkaException:
                    continue
                if expected <= set(brokers):
                    answered.add(node_id)
            if answered == expected:
                return
            time.sleep(0.2)
        raise TimeoutError(
            f"Kafka brokers {sorted(expected - answered)} not answering after "
            f"{limit:g}s:\n" + "\n".join(self.log_tail(node.node_id) for node in self.nodes)
        )

    def listener_servers(self, listener: Listener | Literal["PLAINTEXT"] = "PLAINTEXT") -> str:
        """The bootstrap servers of one listener (``PLAINTEXT``: :attr:`bootstrap_servers`)."""
        if listener == "PLAINTEXT":
            return self.bootstrap_servers
        if self.security is None or listener not in self.security.listeners:
            raise ValueError(f"listener {listener!r} is not open on {self!r}")
        return ",".join(f"127.0.0.1:{node.listener_ports[listener]}" for node in self.nodes)

    def client_config(
        self,
        listener: Listener | Literal["PLAINTEXT"] = "PLAINTEXT",
        *,
        mechanism: Mechanism = "SCRAM-SHA-512",
        user: str | None = None,
        password: str | None = None,
    ) -> dict[str, str]:
        """librdkafka settings (``bootstrap.servers``, ``security.protocol``, ``ssl.*``,
        ``sasl.*``) for a client of ``listener``, e.g. a ``producer_config``.

        SASL listeners log in with ``mechanism`` as ``user`` (default: the first of
        :attr:`SecurityConfig.users`), with ``password`` (default: that user's own).
        """
        servers = self.listener_servers(listener)
        if listener == "PLAINTEXT":
            return {"bootstrap.servers": servers}
        assert self.security is not None
        if self.tls is None:
            raise RuntimeError("start the cluster first: its certificates do not exist yet")
        return client_settings(
            self.security,
            self.tls,
            listener,
            servers,
            mechanism=mechanism,
            user=user,
            password=password,
        )

    def admin(self) -> AdminClient:
        """An admin client for this cluster, with librdkafka's connection noise silenced."""
        return AdminClient({"bootstrap.servers": self.bootstrap_servers}, logger=_QUIET)

    def create_topics(
        self,
        names: Iterable[str],
        *,
        partitions: int = 3,
        replication_factor: int | None = None,
        config: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        """Create topics (existing ones are left alone) and wait until they are usable."""
        create_topics(
            self.bootstrap_servers,
            names,
            partitions=partitions,
            replication_factor=replication_factor or len(self.nodes),
            config=config,
            timeout=timeout,
        )

    def log_tail(self, node_id: int, lines: int = 40) -> str:
        """The last lines of a node's log, for error messages."""
        node = self._node(node_id)
        text = ""
        for path in (node.log_file, node.directory / "stdout.log"):
            with contextlib.suppress(OSError):
                text += "".join(path.read_text(errors="replace").splitlines(True)[-lines:])
        return f"--- node {node_id} ({node.directory}) ---\n{text}"

    def __enter__(self) -> LocalKafka:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        running = sum(node.running for node in self.nodes)
        return f"<LocalKafka {self.bootstrap_servers} {running}/{len(self.nodes)} running>"

    # -- internals --------------------------------------------------------------------------

    def _node(self, node_id: int) -> BrokerNode:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(f"no node {node_id} (nodes are 1..{len(self.nodes)})")

    def _write_config(self, node: BrokerNode) -> None:
        node.directory.mkdir(parents=True, exist_ok=True)
        count = len(self.nodes)
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        settings = {
            "process.roles": "broker,controller",
            "node.id": node.node_id,
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{node.port},"
            f"CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": node.data_dir,
            "num.partitions": 3,
            "default.replication.factor": count,
            "min.insync.replicas": min(count, 2),
            "offsets.topic.replication.factor": count,
            "offsets.topic.num.partitions": 3,
            "transaction.state.log.replication.factor": count,
            "transaction.state.log.min.isr": min(count, 2),
            "share.coordinator.state.topic.replication.factor": count,
            "share.coordinator.state.topic.min.isr": min(count, 2),
            "group.initial.rebalance.delay.ms": 0,
            # broker.session.timeout.ms stays Kafka's (9 s): failures are tested at the
            # timeouts real clusters use.  FAST_FAILOVER shortens it where that is not
            # the point.
            "auto.create.topics.enable": "false",
            **self.broker_config,
        }
        if self.security is not None:
            assert self.tls is not None
            add_secure_listeners(settings, self.security, node.listener_ports, self.tls)
        (node.directory / "server.properties").write_text(
            "".join(f"{key}={value}\n" for key, value in settings.items())
        )
        (node.directory / "log4j2.properties").write_text(_LOG4J2.format(path=node.log_file))

    def _java(self, node: BrokerNode, main: str, *args: str) -> list[str]:
        assert self._classpath is not None
        java = shutil.which("java") or "java"
        if os.environ.get("JAVA_HOME"):
            java = str(Path(os.environ["JAVA_HOME"], "bin", "java"))
        return [
            java,
            f"-Xmx{self.heap}",
            "-Xms64m",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={node.directory / 'log4j2.properties'}",
            "-cp",
            f"{self._classpath}/*",
            main,
            *args,
        ]

    def _format(self, node: BrokerNode, cluster_id: str) -> None:
        command = self._java(
            node,
            "kafka.tools.StorageTool",
            "format",
            # One argument, so an id that starts with "-" can never be read as an option.
            f"--cluster-id={cluster_id}",
            "-c",
            str(node.directory / "server.properties"),
            *(scram_format_args(self.security) if self.security else ()),
        )
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"formatting Kafka storage for node {node.node_id} failed:\n"
                f"{result.stdout}{result.stderr}"
            )

    def _launch(self, node: BrokerNode) -> None:
        command = self._java(node, "kafka.Kafka", str(node.directory / "server.properties"))
        # Only the main thread may own the children: PDEATHSIG fires when the spawning
        # *thread* ends, which for a worker thread is long before the process does.
        in_main = threading.current_thread() is threading.main_thread()
        with open(node.directory / "stdout.log", "ab") as out:
            node.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if in_main else None,  # noqa: PLW1509
            )

    def _terminate(self, node: BrokerNode, *, kill: bool, wait: bool) -> None:
        process = node.process
        if process is None:
            return
        if process.poll() is None and not wait:
            process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            return
        if process.poll() is None:
            process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        node.process = None


def create_topics(
    bootstrap_servers: str,
    names: Iterable[str],
    *,
    partitions: int = 3,
    replication_factor: int = -1,
    config: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> None:
    """Create topics on any cluster (existing ones are left alone); wait until each has
    a leader for every partition, so the first produce does not race the creation.

    ``replication_factor=-1`` takes the cluster's ``default.replication.factor``."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers}, logger=_QUIET)
    wanted = list(dict.fromkeys(names))
    topics = [
        NewTopic(name, partitions, replication_factor, config=dict(config or {})) for name in wanted
    ]
    for name, future in admin.create_topics(topics, request_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise RuntimeError(f"creating topic {name!r} failed: {exc}") from exc
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metadata = admin.list_topics(timeout=5)
        ready = [
            name
            for name in wanted
            if name in metadata.topics
            and metadata.topics[name].error is None
            and metadata.topics[name].partitions
            and all(p.leader >= 0 for p in metadata.topics[name].partitions.values())
        ]
        if len(ready) == len(wanted):
            return
        time.sleep(0.1)
    raise TimeoutError(f"topics {wanted} have no leaders after {timeout:g}s")


# Every cluster still running at interpreter exit is stopped, whatever the caller forgot.
_live: set[LocalKafka] = set()


@atexit.register
def _stop_all() -> None:
    for cluster in list(_live):
        cluster.stop()


@contextlib.contextmanager
def kafka_or_local(topics: Iterable[str] = ()) -> Iterator[str]:
    """Yield bootstrap servers: those of ``KAFKA_BROKERS`` when it is set, else of a local
    single broker that runs for the ``with`` block.  ``topics`` are created on it when
    missing (existing ones are left alone)."""
    wanted = list(topics)
    servers = os.environ.get("KAFKA_BROKERS")
    if servers:
        if wanted:
            create_topics(servers, wanted)
        yield servers
        return
    with LocalKafka() as kafka:
        if wanted:
            kafka.create_topics(wanted)
        yield kafka.bootstrap_servers
