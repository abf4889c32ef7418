"""Resolve the official Apache Kafka broker jars from Maven Central into a local cache.

No Docker, no tarball mirror: Maven fetches ``org.apache.kafka:kafka_2.13`` and its runtime
dependencies once; every later start reuses the cached directory.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Final

__all__ = ["KAFKA_VERSION", "cache_dir", "kafka_classpath"]

#: The Apache Kafka release the harness runs (KRaft only, as every 4.x release).
KAFKA_VERSION: Final = "4.1.1"
_SCALA: Final = "2.13"
# Kafka's POM leaves slf4j without a binding; without one the broker logs nothing at all.
_LOG4J_VERSION: Final = "2.24.3"
_DEPENDENCY_PLUGIN: Final = "3.8.1"
_DONE: Final = ".complete"

_POM: Final = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.logtide</groupId>
  <artifactId>logtide-kafka-test-broker</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{scala}</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-dependency-plugin</artifactId>
        <version>{plugin}</version>
      </plugin>
    </plugins>
  </build>
</project>
"""


def cache_dir() -> Path:
    """``$LOGTIDE_KAFKA_CACHE``, else ``$XDG_CACHE_HOME/logtide-kafka``, else ``~/.cache/…``."""
    explicit = os.environ.get("LOGTIDE_KAFKA_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "logtide-kafka"


def kafka_classpath(version: str = KAFKA_VERSION) -> Path:
    """Return a directory holding every jar the broker needs, resolving it on first use.

    Safe to call from several processes at once (a file lock serialises the download), and
    an interrupted download never leaves a half-filled directory behind.
    """
    root = cache_dir()
    target = root / f"kafka-{version}"
    if (target / _DONE).exists():
        return target
    if shutil.which("mvn") is None:
        raise RuntimeError(
            "Maven ('mvn') is needed to fetch the Apache Kafka broker for tests; install it, "
            "or point the tests at a running cluster with LOGTIDE_KAFKA_BOOTSTRAP"
        )
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"kafka-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / _DONE).exists():  # another process finished while we waited
            return target
        with tempfile.TemporaryDirectory(dir=root, prefix=".resolve-") as tmp:
            work = Path(tmp)
            (work / "pom.xml").write_text(
                _POM.format(
                    scala=_SCALA, kafka=version, log4j=_LOG4J_VERSION, plugin=_DEPENDENCY_PLUGIN
                )
            )
            libs = work / "libs"
            result = subprocess.run(
                [
                    "mvn", "-q", "-B", "-f", str(work / "pom.xml"),
                    "dependency:copy-dependencies",
                    "-DincludeScope=runtime", f"-DoutputDirectory={libs}",
                ],
                capture_output=True,
                text=True,
                check=False,
            )  # fmt: skip
            jars = list(libs.glob("*.jar")) if libs.is_dir() else []
            if result.returncode != 0 or not jars:
                raise RuntimeError(
                    f"resolving org.apache.kafka:kafka_{_SCALA}:{version} with Maven failed "
                    f"(exit {result.returncode}):\n{result.stdout[-4000:]}{result.stderr[-4000:]}"
                )
            (libs / _DONE).write_text(f"{len(jars)} jars\n")
            if target.exists():  # a leftover without the marker: replace it
                shutil.rmtree(target)
            libs.rename(target)
    return target
