"""A parent and its forked workers, all logging to a KafkaHandler, stopped by SIGTERM.

``python exit_budget.py BOOTSTRAP TOPIC``: prints ``ready`` once every process logged
its events, then waits for SIGTERM (sent to the whole process group, as a container
runtime does).  The parent and the workers exit on their own flush, within the budget.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
import time

from logtide_kafka import KafkaHandler

WORKERS = 2
EVENTS = 20


def work(ready: multiprocessing.synchronize.Event) -> None:
    log = logging.getLogger("app")
    for index in range(EVENTS):
        log.warning("worker event %d", index)
    ready.set()
    while True:  # serving requests until SIGTERM
        time.sleep(0.05)


def main() -> None:
    bootstrap, topic = sys.argv[1:3]
    logging.getLogger().addHandler(KafkaHandler("budget-svc", topic, bootstrap))
    context = multiprocessing.get_context("fork")
    workers = []
    for _ in range(WORKERS):
        ready = context.Event()
        worker = context.Process(target=work, args=(ready,))
        worker.start()
        workers.append((worker, ready))
    log = logging.getLogger("app")
    for index in range(EVENTS):
        log.warning("parent event %d", index)
    for _, ready in workers:
        ready.wait(30)
    print("ready", flush=True)
    for worker, _ in workers:
        worker.join()


if __name__ == "__main__":
    main()
