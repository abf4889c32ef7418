"""A Celery app whose task logs go to Kafka, with prefork children recycled after
``worker_max_tasks_per_child`` tasks.

No broker service is needed: Celery's filesystem transport keeps the task queue in a
directory (``CELERY_DATA_DIR``, default ``./celery-data``).

    cd examples/celery_app
    KAFKA_BROKERS=127.0.0.1:9092 celery -A tasks worker --concurrency 2   # the worker
    KAFKA_BROKERS=127.0.0.1:9092 python tasks.py 20                     # send 20 tasks

Two signal handlers are the whole recipe:

* ``setup_logging``: configure ``logging`` yourself (here with ``dictConfig``), so Celery
  leaves the root logger alone; the pool's children inherit the handler.
* ``worker_process_shutdown`` (optional): a pool child ends with ``os._exit``, which
  skips every exit hook; Celery sends this signal in the child just before. The library
  connects its own receiver (``close_all`` within the exit timeout); this one only picks
  another ``timeout``.

See ``docs/celery.md``.
"""

from __future__ import annotations

import logging
import logging.config
import os
import sys
from pathlib import Path
from typing import Any

from celery import Celery, signals

import logtide_kafka

DATA_DIR = Path(os.environ.get("CELERY_DATA_DIR", "celery-data")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

app = Celery("tasks")
app.conf.update(
    broker_url="filesystem://",
    broker_transport_options={
        "data_folder_in": str(DATA_DIR),
        "data_folder_out": str(DATA_DIR),
        "polling_interval": 0.1,
    },
    task_ignore_result=True,  # no result backend
    worker_max_tasks_per_child=5,  # recycle each pool child after 5 tasks
    worker_prefetch_multiplier=1,
    worker_enable_remote_control=False,  # the filesystem transport has no broadcast
    broker_connection_retry_on_startup=True,
)

LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"console": {"format": "%(levelname)s %(processName)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "console", "level": "WARNING"},
        "kafka": {
            "class": "logtide_kafka.KafkaHandler",
            "level": "INFO",
            "service": os.environ.get("LOGTIDE_SERVICE", "celery-shop"),
            "topic": os.environ.get("LOGTIDE_TOPIC", "logs.application"),
            "fields": {"framework": "celery"},
        },
    },
    "root": {"level": "INFO", "handlers": ["console", "kafka"]},
}


@signals.setup_logging.connect
def configure_logging(**_: object) -> None:
    logging.config.dictConfig(LOGGING)


@signals.worker_process_shutdown.connect
def deliver_logs(**_: object) -> None:
    logtide_kafka.close_all(timeout=5)


log = logging.getLogger("shop.tasks")


@app.task(name="shop.log_batch")
def log_batch(batch: int, count: int) -> None:
    for seq in range(count):
        log.info("task event", extra={"batch": batch, "seq": seq})


if __name__ == "__main__":
    batches = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    for batch in range(batches):
        log_batch.delay(batch, 10)
    print(f"sent {batches} tasks to {DATA_DIR}")
