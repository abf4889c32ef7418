"""The producer side's process-wide state: all of it lives in this module.

* the registry: one shared producer per distinct configuration (``get_producer``), and
  every producer of the process, shared or built directly (``flush_all``, ``stats_all``,
  ``close_all``);
* the exit bound (``set_exit_timeout``, ``LOGTIDE_KAFKA_EXIT_TIMEOUT``);
* the hooks that close every producer when the process ends: at interpreter exit
  (``atexit``), on SIGTERM, and at the end of a ``multiprocessing`` or ``billiard``
  (Celery) worker, which skips exit hooks;
* the at-fork hook that tells a child's inherited producers to start afresh;
* the SIGTERM handler, its at-fork hooks and the watchdog that makes sure it runs.

Producers are known here only through :class:`Managed`; ``logtide_kafka.producer``
builds them and is the public face of these functions.
"""

from __future__ import annotations

import _thread
import atexit
import contextlib
import logging
import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol, TypeVar, cast

from logtide_kafka._client_log import LIBRARY_LOGGER
from logtide_kafka.producer._counters import ProducerStats, add_up
from logtide_kafka.producer._policy import DeliveryPolicy
from logtide_kafka.producer._report import report

__all__ = [
    "DEFAULT_EXIT_TIMEOUT",
    "EXIT_TIMEOUT_ENV",
    "Managed",
    "abandon",
    "check_exit_timeout",
    "close_all",
    "exit_timeout",
    "flush_all",
    "forget",
    "hook_worker_exit",
    "registry_key",
    "registry_lock",
    "set_exit_timeout",
    "shared",
    "stats_all",
    "track",
    "watch_sigterm",
]

#: Seconds the exit hook waits, in all, for every producer to deliver what it holds: half
#: of the 10 s a container runtime grants between SIGTERM and SIGKILL.
DEFAULT_EXIT_TIMEOUT: Final = 5.0
#: Sets the exit timeout (seconds) without code: read when the library is imported.
EXIT_TIMEOUT_ENV: Final = "LOGTIDE_KAFKA_EXIT_TIMEOUT"

# A library leaves output to the application's logging configuration (logging HOWTO):
# without one, librdkafka's retries would reach stderr through logging.lastResort.
logging.getLogger(LIBRARY_LOGGER).addHandler(logging.NullHandler())


class Managed(Protocol):
    """What the process-wide functions use of a producer (a ``LogProducer``)."""

    @property
    def closed(self) -> bool: ...

    def flush(self, timeout: float | None = None) -> int: ...

    def close(self, timeout: float | None = None) -> int: ...

    def stats(self) -> ProducerStats: ...

    def _enter_forked_child(self) -> None:
        """Called in a forked child, closed or not: keep the parent's client from the
        child's garbage collector, and stop using it until restarted."""


_M = TypeVar("_M", bound=Managed)

# -- the registry: one producer per distinct configuration --------------------------------

_registry: dict[tuple[object, ...], Managed] = {}
_registry_lock = threading.RLock()
#: Clients (and spools) a forked child inherited: kept, never used nor destroyed.
_abandoned: list[Any] = []
_instances: weakref.WeakSet[Managed] = weakref.WeakSet()


def registry_key(config: Mapping[str, Any], policy: DeliveryPolicy) -> tuple[object, ...]:
    """What makes two producers the same: every setting (by its ``repr``) and the policy."""
    return (*sorted((str(k), repr(v)) for k, v in config.items()), policy)


def shared(key: tuple[object, ...], create: Callable[[], _M]) -> _M:
    """The registered producer for ``key``, or a new one from ``create()`` when there is
    none or it was closed (the first one also installs the SIGTERM handler)."""
    with _registry_lock:
        producer = _registry.get(key)
        if producer is None or producer.closed:
            producer = _registry[key] = create()
            _handle_sigterm()
        return cast(_M, producer)  # only ``create()`` fills the registry under this key


def registry_lock() -> threading.RLock:
    """The registry's lock (replaced in a forked child: a parent thread may have held it)."""
    return _registry_lock


def track(producer: Managed) -> None:
    """Count ``producer`` among the process's producers (held weakly)."""
    _instances.add(producer)


def forget(producer: Managed) -> None:
    """Take a closed ``producer`` out of the registry (it stays counted by ``stats_all``)."""
    with _registry_lock:
        for key, value in list(_registry.items()):
            if value is producer:
                del _registry[key]


def abandon(*inherited: object) -> None:
    """Keep what a forked child inherited (the parent's client, its spool) alive and
    untouched: destroying the client would wait on threads that are gone, closing the
    spool would release the parent's lock."""
    _abandoned.append(inherited)


def _open_producers() -> list[Managed]:
    """Every producer of this process that is not closed: shared or built directly."""
    with _registry_lock:
        return [producer for producer in list(_instances) if not producer.closed]


# -- the exit bound ---------------------------------------------------------------------------


def check_exit_timeout(seconds: float) -> float:
    """``seconds`` as a float, or ValueError naming the option when it is not >= 0."""
    value = float(seconds)
    if not value >= 0:  # NaN too
        raise ValueError(f"exit_timeout must be a number of seconds >= 0, not {seconds!r}")
    return value


def _exit_timeout_from_env() -> float:
    raw = os.environ.get(EXIT_TIMEOUT_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_EXIT_TIMEOUT
    try:
        return check_exit_timeout(float(raw))
    except ValueError:
        report(f"ignoring {EXIT_TIMEOUT_ENV}={raw!r}: not a number of seconds >= 0")
        return DEFAULT_EXIT_TIMEOUT


_exit_timeout = _exit_timeout_from_env()


def set_exit_timeout(seconds: float) -> None:
    """Set the total bound on flushing every producer at interpreter exit (also the
    default of ``flush()``).  Creates no producer; the last value set wins, and
    ``LOGTIDE_KAFKA_EXIT_TIMEOUT`` gives the value before any is set."""
    global _exit_timeout
    _exit_timeout = check_exit_timeout(seconds)


def exit_timeout() -> float:
    """The bound set by :func:`set_exit_timeout` (or the environment, or the default)."""
    return _exit_timeout


# -- every producer at once ---------------------------------------------------------------


def flush_all(timeout: float | None = None) -> int:
    """Wait for every producer of the process, sharing one deadline (default: the exit
    timeout); return how many events are still undelivered (queued or spooled) in all.
    Creates no producer."""
    deadline = time.monotonic() + max(_exit_timeout if timeout is None else timeout, 0.0)
    return sum(p.flush(max(deadline - time.monotonic(), 0.0)) for p in _open_producers())


def stats_all() -> ProducerStats:
    """The counters of every producer of the process, added up: closed ones too, whose
    ``dropped_by["closed"]`` counts what was sent after the close (``last_error`` and
    ``librdkafka`` come from one producer only when there is only one).  All zero when
    there is none; creates no producer."""
    with _registry_lock:
        producers = list(_instances)
    return add_up([producer.stats() for producer in producers])


def close_all(timeout: float | None = None) -> int:
    """Close every producer of the process, sharing one deadline; return the events left
    undelivered.  Creates no producer.  Without ``timeout``, the exit timeout counts from
    the first SIGTERM the library's handler took, when there was one: the time the
    process spent ending (joining workers that flush on their own) is part of the bound."""
    start = time.monotonic()
    if timeout is None and _sigterm_at is not None:
        start = min(start, _sigterm_at)
    deadline = start + max(_exit_timeout if timeout is None else timeout, 0.0)
    left = 0
    for producer in _open_producers():
        left += producer.close(max(deadline - time.monotonic(), 0.0))
    return left


# -- the end of a worker process --------------------------------------------------------------

#: The pid whose worker-exit hooks are registered (a forked child registers its own).
_hooked_pid: int | None = None
#: Runtimes whose worker processes end with ``os._exit`` after running these finalizers.
_WORKER_RUNTIMES: Final = ("multiprocessing.util", "billiard.util")
#: Billiard's pool workers (Celery prefork) call ``os._exit`` from inside their target, so
#: no finalizer runs there; Celery sends this signal in the child just before.
_CELERY_SIGNALS: Final = "celery.signals"
# Below the default priorities of the runtimes' own finalizers (queues, managers): a
# finalizer that still logs is flushed too.
_FINALIZE_PRIORITY: Final = 0


def hook_worker_exit() -> None:
    """Close every producer when a ``multiprocessing`` or ``billiard`` (Celery) worker ends.

    Their workers end with ``os._exit`` (a pool recycling a child after
    ``maxtasksperchild``, ``ProcessPoolExecutor(max_tasks_per_child=...)``, Celery's
    ``worker_max_tasks_per_child``), so exit hooks never run; but ``Process._bootstrap``
    first runs the finalizers registered with ``util.Finalize``.  Registered once per
    process, when its first producer starts (a fork child's on its first send: the
    runtime clears the inherited ones), and only for runtimes already imported: never
    imported here.  A forked child gets the library's SIGTERM handler back here too (it
    had the default since the fork: see ``_sigterm_in_child``).
    """
    global _hooked_pid, _sigterm_deferred
    pid = os.getpid()
    if _hooked_pid == pid:
        return
    _hooked_pid = pid
    if _sigterm_deferred:  # a forked child's first client: it has events of its own now
        _sigterm_deferred = False
        _handle_sigterm()
    for name in _WORKER_RUNTIMES:
        util = sys.modules.get(name)
        if util is None:
            continue
        try:
            util.Finalize(None, _close_at_worker_exit, exitpriority=_FINALIZE_PRIORITY)
        except Exception as exc:  # a runtime version we do not know: exit hooks only
            report(f"cannot hook the exit of {name.partition('.')[0]} workers: {exc!r}")
    celery = sys.modules.get(_CELERY_SIGNALS)
    if celery is not None:
        try:  # a dispatch_uid: connected once, however often a process gets here
            celery.worker_process_shutdown.connect(
                _close_at_celery_worker_exit, weak=False, dispatch_uid=__name__
            )
        except Exception as exc:
            report(f"cannot hook the exit of celery workers: {exc!r}")


def _close_at_worker_exit() -> None:
    close_all()


def _close_at_celery_worker_exit(**_: object) -> None:
    close_all()


# -- SIGTERM --------------------------------------------------------------------------------

_sigterm_installed = False
#: When the library's SIGTERM handler first ran (monotonic), in this process.
_sigterm_at: float | None = None
#: Whether the at-fork hooks below are registered (once: a forked child inherits them).
_fork_hooks_registered = False
#: In a forked child: the handler was the library's at the fork and was set back to the
#: default; the child's first client installs it again (see ``hook_worker_exit``).
_sigterm_deferred = False


def _handle_sigterm() -> None:
    """Make SIGTERM (what containers and process managers send) flush like a normal exit.

    Python's default for SIGTERM ends the process without running exit hooks, so queued
    logs would be lost.  Only when nobody handles SIGTERM yet, and only from the main
    thread, a handler is set that raises ``SystemExit(128 + SIGTERM)``: the stack unwinds
    and the exit hook flushes, within the exit bound.  An application's own handler, set
    before or after, is left alone (and wins).  ``LOGTIDE_KAFKA_SIGTERM=0`` turns this off.
    """
    global _sigterm_installed, _fork_hooks_registered
    if _sigterm_installed or os.environ.get("LOGTIDE_KAFKA_SIGTERM") == "0":
        return
    _sigterm_installed = True
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
            if not _fork_hooks_registered:
                _fork_hooks_registered = True
                # Registered last, so the child's hook runs after every at-fork hook of
                # import.
                os.register_at_fork(
                    before=_block_sigterm_for_fork,
                    after_in_parent=_unblock_sigterm_in_parent,
                    after_in_child=_sigterm_in_child,
                )
            _open_wakeup()
    except (ValueError, OSError):  # not the main interpreter, or no signals here
        pass


def _exit_on_sigterm(signum: int, frame: object) -> None:
    global _sigterm_at, _sigterm_seen_at
    with _watch_lock:  # the watchdog never sends SIGTERM again once this has run
        _sigterm_at = time.monotonic()
        _sigterm_seen_at = None
        # Raised rather than flushing here: the interrupted code may hold a producer's lock.
        signal.signal(signum, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise SystemExit(128 + signum)


# -- a SIGTERM the handler missed ---------------------------------------------------------------
# The C-level handler can take SIGTERM after the main thread's last check for signals and
# just before it blocks (in a lock, ``sem_wait`` or ``read``): the Python handler is then
# due but the main thread sleeps on, and the process ignores SIGTERM (the default would
# have ended it).  A signal taken by another thread does not wake the main thread either.
# So, when the library installs its handler and no wakeup fd is set, it sets a pipe of its
# own: the C handler writes each signal's number there.  Every producer's poller reads it
# (``watch_sigterm``); a SIGTERM the handler has not taken within SIGTERM_WATCH_SECONDS
# is sent again to the main thread, which interrupts its blocking call.  An event loop's
# wakeup fd (asyncio sets one for ``add_signal_handler``) is never taken: with one in
# place the library sets none, and a loop set later replaces the library's.

#: Seconds a SIGTERM may wait for the handler before the poller sends it to the main
#: thread again (and between two such sends).
SIGTERM_WATCH_SECONDS: Final = 0.5
#: Bytes read from the wakeup pipe per poller pass at most (one per signal taken).
_WAKEUP_READ: Final = 4096
#: The wakeup pipe the library set in this process (read end, write end), or None.
_wakeup: tuple[int, int] | None = None
#: When a poller found a SIGTERM in the pipe that the handler has not taken yet.
_sigterm_seen_at: float | None = None
#: When the poller last sent SIGTERM to the main thread.
_sigterm_sent_at: float = 0.0
#: Held by the handler and by the poller around the send: a SIGTERM sent after the handler
#: ran would meet the default disposition and end the process before its flush.
_watch_lock = threading.Lock()


def _open_wakeup() -> None:
    """Set a pipe of the library's as the wakeup fd, unless one is set (main thread)."""
    global _wakeup
    if _wakeup is not None:
        return
    try:
        read_end, write_end = os.pipe()
    except OSError:
        return
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)
    # Signals wait while the wakeup fd is probed: none may be written to the wrong one.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        if previous != -1:  # an event loop's: put back, the library sets none
            signal.set_wakeup_fd(previous)
        else:
            _wakeup = (read_end, write_end)
    except (ValueError, OSError):
        pass
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    if _wakeup is None:
        os.close(read_end)
        os.close(write_end)


def _close_wakeup() -> None:
    """In a forked child: unset the parent's pipe (the child's signals are its own) and
    close the child's copy of it."""
    global _wakeup
    if _wakeup is None:
        return
    read_end, write_end = _wakeup
    _wakeup = None
    try:
        current = signal.set_wakeup_fd(-1)
        if current not in (-1, write_end):  # set by someone else since: theirs
            signal.set_wakeup_fd(current)
    except (ValueError, OSError):
        pass
    for end in (read_end, write_end):
        with contextlib.suppress(OSError):
            os.close(end)


def watch_sigterm() -> None:
    """Read the signals the C handler took (pollers call this on each pass); send SIGTERM
    to the main thread again when the handler has not taken one within
    SIGTERM_WATCH_SECONDS.  Never blocks: a read of a non-blocking pipe, one syscall."""
    global _sigterm_seen_at, _sigterm_sent_at
    wakeup = _wakeup
    if wakeup is None:
        return
    try:
        taken = os.read(wakeup[0], _WAKEUP_READ)
    except OSError:  # empty (EAGAIN)
        taken = b""
    now = time.monotonic()
    if signal.SIGTERM in taken and _sigterm_seen_at is None:
        _sigterm_seen_at = now
    seen = _sigterm_seen_at
    if seen is None or now - max(seen, _sigterm_sent_at) < SIGTERM_WATCH_SECONDS:
        return
    with _watch_lock:
        if signal.getsignal(signal.SIGTERM) is not _exit_on_sigterm:
            _sigterm_seen_at = None  # taken (the default is back) or not ours to handle
            return
        if _sigterm_seen_at is None:  # the handler ran meanwhile
            return
        _sigterm_sent_at = now
        main = threading.main_thread().ident
        if main is not None:
            with contextlib.suppress(OSError):  # never raised into the poller
                signal.pthread_kill(main, signal.SIGTERM)


# -- SIGTERM across fork() --------------------------------------------------------------------
# A child inherits the handler above, but until the interpreter has run its after-fork
# steps a SIGTERM sent to it is lost: one that arrives before them is cleared, and one
# taken inside an at-fork hook has its SystemExit swallowed.  ``Pool.terminate()`` sends
# SIGTERM to a worker it may have forked a moment before (replacing one that died), then
# waits for it forever.  So the forking thread blocks SIGTERM across fork(): in the child
# it stays pending until the last at-fork hook.  There the child gets SIGTERM's default
# back: a child that has sent nothing has no events of its own to flush, and the default
# has none of the handler's races (see above).  The pending SIGTERM then ends it.  The
# child's first client installs the handler again (``hook_worker_exit``).

#: Threads (by ident) that blocked SIGTERM for a fork in progress.
_sigterm_blocked_for_fork: set[int] = set()


def _block_sigterm_for_fork() -> None:
    if signal.getsignal(signal.SIGTERM) is not _exit_on_sigterm:
        return  # the application's own handler (or none): not ours to protect
    try:
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    except SystemExit:  # a SIGTERM taken here, inside the hook, would be swallowed
        _sigterm_again()
        blocked = set()
    if signal.SIGTERM not in blocked:
        _sigterm_blocked_for_fork.add(threading.get_ident())


def _unblock_sigterm_in_parent() -> None:
    if threading.get_ident() not in _sigterm_blocked_for_fork:
        return
    _sigterm_blocked_for_fork.discard(threading.get_ident())
    try:  # a SIGTERM that came during the fork is handled in this call
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    except SystemExit:
        _sigterm_again()


def _sigterm_again() -> None:
    """Hand a SIGTERM the handler took inside an at-fork hook (which swallows its
    SystemExit) back to the main thread, which takes it once the hooks have returned."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # only the main thread runs handlers
    _thread.interrupt_main(signal.SIGTERM)


def _sigterm_in_child() -> None:
    global _sigterm_installed, _sigterm_deferred
    blocked_here = threading.get_ident() in _sigterm_blocked_for_fork
    _sigterm_blocked_for_fork.clear()  # the parent's other forking threads are not here
    try:
        if signal.getsignal(signal.SIGTERM) is _exit_on_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            _sigterm_installed, _sigterm_deferred = False, True
    except (ValueError, OSError):  # not the main interpreter
        pass
    _close_wakeup()
    if not blocked_here:
        return
    try:  # a SIGTERM pending since the fork ends the child here
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    except SystemExit:  # the handler was still in place and ran: it restored the default
        os.kill(os.getpid(), signal.SIGTERM)


def _in_forked_child() -> None:
    global _registry_lock, _hooked_pid, _sigterm_at, _sigterm_seen_at, _watch_lock
    _hooked_pid = None  # the runtime may have cleared the parent's finalizers
    _sigterm_at = _sigterm_seen_at = None
    # A parent thread may have held these at the fork.
    _registry_lock = threading.RLock()
    _watch_lock = threading.Lock()
    for producer in list(_instances):
        producer._enter_forked_child()  # closed ones too: see LogProducer's


os.register_at_fork(after_in_child=_in_forked_child)
# Registered at import, after ``logging`` (imported above) registered its own hook: exit
# hooks run last-in first-out, so producers are flushed before logging.shutdown() closes
# the handlers, and after any exit hook the application registers later than this import.
atexit.register(close_all)
