"""The SIGTERM watchdog's wakeup fd: set only where nobody else has one (an asyncio loop's
is left alone), a forked child has SIGTERM's default and no wakeup fd until its first
send, then a handler and a pipe of its own; an application's own handler is never
touched, in the parent or in a child.  Each case runs in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

PRELUDE = """
import asyncio, os, signal, sys, threading, time
from logtide_kafka import get_producer
from logtide_kafka.producer import _lifecycle

def wakeup_fd():
    fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(fd, warn_on_full_buffer=False)
    return fd
"""


def _run(code: str, bootstrap: str) -> tuple[int, str, str, float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code), bootstrap],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.returncode, result.stdout.strip(), result.stderr, time.monotonic() - started


def test_the_library_sets_a_wakeup_pipe_with_its_handler(dead_bootstrap: str) -> None:
    code, out, err, _ = _run(
        """
        assert wakeup_fd() == -1
        get_producer(sys.argv[1])
        fd = wakeup_fd()
        print(signal.getsignal(signal.SIGTERM) is _lifecycle._exit_on_sigterm, fd != -1)
        os._exit(0)
        """,
        dead_bootstrap,
    )
    assert (code, out) == (0, "True True"), err


def test_an_asyncio_loops_wakeup_fd_is_left_alone(dead_bootstrap: str) -> None:
    code, out, err, _ = _run(
        """
        async def main():
            loop = asyncio.get_running_loop()
            got = asyncio.Event()
            loop.add_signal_handler(signal.SIGUSR1, got.set)
            theirs = wakeup_fd()
            get_producer(sys.argv[1])
            kept = wakeup_fd() == theirs
            os.kill(os.getpid(), signal.SIGUSR1)
            await asyncio.wait_for(got.wait(), 5)  # the loop still hears its signals
            print(theirs != -1, kept)

        asyncio.run(main())
        os._exit(0)
        """,
        dead_bootstrap,
    )
    assert (code, out) == (0, "True True"), err


def test_an_applications_handler_is_kept_in_the_parent_and_in_a_child(
    dead_bootstrap: str,
) -> None:
    code, out, err, _ = _run(
        """
        def own(signum, frame):
            pass

        signal.signal(signal.SIGTERM, own)
        producer = get_producer(sys.argv[1])
        producer.send("logs.application", None, {"message": "parent"})
        print(signal.getsignal(signal.SIGTERM) is own, wakeup_fd() == -1)
        pid = os.fork()
        if pid == 0:
            producer.send("logs.application", None, {"message": "child"})
            os._exit(0 if signal.getsignal(signal.SIGTERM) is own and wakeup_fd() == -1 else 1)
        print(os.waitpid(pid, 0)[1] == 0, flush=True)
        os._exit(0)
        """,
        dead_bootstrap,
    )
    assert (code, out) == (0, "True True\nTrue"), err


def test_a_child_has_the_default_until_its_first_send_then_its_own_pipe(
    dead_bootstrap: str,
) -> None:
    code, out, err, _ = _run(
        """
        producer = get_producer(sys.argv[1])
        parents = os.fstat(wakeup_fd()).st_ino
        pid = os.fork()
        if pid == 0:
            default = signal.getsignal(signal.SIGTERM) is signal.SIG_DFL and wakeup_fd() == -1
            producer.send("logs.application", None, {"message": "child"})
            ours = signal.getsignal(signal.SIGTERM) is _lifecycle._exit_on_sigterm
            fd = wakeup_fd()
            own_pipe = fd != -1 and os.fstat(fd).st_ino != parents
            os._exit(default | ours << 1 | own_pipe << 2)
        print(os.waitpid(pid, 0)[1] >> 8, flush=True)
        os._exit(0)
        """,
        dead_bootstrap,
    )
    assert (code, out) == (0, "7"), err  # all three: default, handler back, own pipe


def test_a_sigterm_the_main_thread_sleeps_through_ends_the_process(dead_bootstrap: str) -> None:
    # Another thread takes the SIGTERM while the main thread waits in a lock, as when it
    # lands just before the main thread blocks: nothing wakes the main thread but the
    # poller's second SIGTERM.
    code, _, err, took = _run(
        """
        get_producer(sys.argv[1])

        def take():
            time.sleep(0.5)
            signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

        threading.Thread(target=take, daemon=True).start()
        lock = threading.Lock()
        lock.acquire()
        lock.acquire()
        """,
        dead_bootstrap,
    )
    assert code == 143, err
    assert took < 10, took
