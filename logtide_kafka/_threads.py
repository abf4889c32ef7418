"""Background threads that leave signals to the application's own threads."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

# Faults are delivered to the thread that caused them whatever its mask; blocking them
# would only stop faulthandler from reporting one.
_SYNCHRONOUS = {
    getattr(signal, name)
    for name in ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGTRAP", "SIGSYS", "SIGABRT")
    if hasattr(signal, name)
}


def start_daemon(target: Callable[[], object], name: str) -> threading.Thread:
    """Start ``target`` in a daemon thread that blocks asynchronous signals.

    The kernel may hand a process-wide signal (SIGTERM, SIGINT…) to any thread that does
    not block it.  Python runs handlers on the main thread only, so when one of our
    threads takes the signal, a main thread waiting in a lock or a ``read()`` is never
    woken: a ``multiprocessing`` pool terminating its workers hung that way.  librdkafka
    blocks every signal in its own threads for the same reason.  Threads started from
    this one inherit its mask.
    """

    def run() -> None:
        if hasattr(signal, "pthread_sigmask"):  # POSIX
            signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals() - _SYNCHRONOUS)
        target()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread
