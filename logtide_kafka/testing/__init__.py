"""Test helpers users can rely on: a real local Apache Kafka and a way to read events back.

* :class:`LocalKafka` starts 1 or 3 real brokers (KRaft) as JVM subprocesses, resolving
  the official ``org.apache.kafka`` jars with Maven into a cache on first use.
* :func:`create_topics` creates topics on any cluster and waits for their leaders.
* :class:`SecurityConfig` opens TLS (``SSL``, ``MTLS``) and SASL (``SASL_SSL``,
  ``SASL_PLAINTEXT``) listeners on a :class:`LocalKafka`, with certificates made by
  :func:`make_tls_files`; ``kafka.client_config(listener)`` gives a client's settings.
* :func:`kafka_or_local` yields ``KAFKA_BROKERS``, or a local broker for a ``with`` block.
* :func:`read_events` reads a topic back from the beginning, decoded.
* :func:`event_problems` checks an event against the LogTide-native schema.

``python -m logtide_kafka.testing`` runs a local broker until interrupted.
"""

from __future__ import annotations

from logtide_kafka.testing._cluster import (
    FAST_FAILOVER,
    BrokerNode,
    LocalKafka,
    create_topics,
    kafka_or_local,
)
from logtide_kafka.testing._consume import ConsumedEvent, read_events
from logtide_kafka.testing._dist import KAFKA_VERSION, cache_dir, kafka_classpath
from logtide_kafka.testing._schema import LEVELS, event_problems
from logtide_kafka.testing._security import (
    Listener,
    Mechanism,
    SecurityConfig,
    TlsFiles,
    make_tls_files,
)

__all__ = [
    "FAST_FAILOVER",
    "KAFKA_VERSION",
    "LEVELS",
    "BrokerNode",
    "ConsumedEvent",
    "Listener",
    "LocalKafka",
    "Mechanism",
    "SecurityConfig",
    "TlsFiles",
    "cache_dir",
    "create_topics",
    "event_problems",
    "kafka_classpath",
    "kafka_or_local",
    "make_tls_files",
    "read_events",
]
