"""Recycled pool workers logging through a KafkaHandler, with no flush or close anywhere.

``python recycled_workers.py MODE BOOTSTRAP TOPIC SERVICE``: MODE is ``pool-fork``,
``pool-forkserver``, ``pool-spawn``, ``executor-fork`` or ``executor-spawn``.  Every
worker ends through the runtime's ``os._exit`` after a few tasks; prints the worker pids.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

from logtide_kafka import KafkaHandler

EVENTS = 200
TASKS = 40
WORKERS = 2
TASKS_PER_CHILD = 5
# ProcessPoolExecutor deadlocks with 1 < max_tasks_per_child once a worker is replaced
# while tasks are queued (CPython gh-115634, 3.11 to 3.14): each of its workers runs one.
EXECUTOR_TASKS_PER_CHILD = 1
LOGGER = "recycled"


def setup(bootstrap: str, topic: str, service: str) -> None:
    """The application's logging configuration (a fresh interpreter runs it again)."""
    logger = logging.getLogger(LOGGER)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not logger.handlers:
        logger.addHandler(KafkaHandler(service, topic, bootstrap))


def task(job: tuple[int, int]) -> int:
    number, events = job
    log = logging.getLogger(LOGGER)
    for index in range(events):
        log.info("recycled event", extra={"task": number, "index": index})
    return os.getpid()


def main() -> None:
    mode, bootstrap, topic, service = sys.argv[1:5]
    kind, _, method = mode.partition("-")
    context = multiprocessing.get_context(method)
    config = (bootstrap, topic, service)
    initializer: Callable[..., None] | None
    initargs: tuple[str, ...]
    if method == "fork":  # configured once in the parent; children inherit it
        setup(*config)
        initializer, initargs = None, ()
    else:  # a fresh interpreter per worker: configured there, as an application would
        initializer, initargs = setup, config
    if kind == "pool":
        pool = context.Pool(WORKERS, initializer, initargs, maxtasksperchild=TASKS_PER_CHILD)
        jobs = [(number, EVENTS // TASKS) for number in range(TASKS)]
        pids = pool.map(task, jobs, chunksize=1)
        pool.close()
        pool.join()
    else:
        with ProcessPoolExecutor(
            WORKERS,
            mp_context=context,
            initializer=setup,  # spawn only: max_tasks_per_child refuses fork
            initargs=config,
            max_tasks_per_child=EXECUTOR_TASKS_PER_CHILD,
        ) as executor:
            # A fresh interpreter per task is slow to start: fewer, bigger tasks.
            tasks = TASKS // 4
            pids = list(executor.map(task, [(n, EVENTS // tasks) for n in range(tasks)]))
    print(" ".join(str(pid) for pid in sorted(set(pids))))


if __name__ == "__main__":
    main()
