"""The disk spool: FIFO order, bounds, prepend, restarts, crash recovery, locking, forks."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from logtide_kafka.producer._spool import Record, Spool, SpoolLocked

_FRAME = 14  # struct "<IIHi"


def _records(n: int, tag: str = "r", topic: str = "logs.application") -> list[Record]:
    """``n`` records of equal size (fixed-width numbers), distinct per ``tag``."""
    return [(topic, f"k{i:05d}".encode(), f"{tag}{i:05d}".encode()) for i in range(n)]


def _fill(spool: Spool, records: list[Record]) -> None:
    for record in records:
        assert spool.append(*record)


def _drain(spool: Spool, chunk: int = 7) -> list[Record]:
    out: list[Record] = []
    while batch := spool.read(chunk):
        out += batch
        spool.commit(len(batch))
    return out


def _segments(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.spool"))


def _size(record: Record) -> int:
    topic, key, value = record
    return _FRAME + len(topic.encode()) + len(key or b"") + len(value)


def test_append_read_commit_in_order(tmp_path: Path) -> None:
    records = _records(50)
    with Spool(tmp_path) as spool:
        _fill(spool, records)
        assert spool.pending == 50
        assert spool.pending_bytes == sum(map(_size, records))
        assert spool.read(20) == records[:20]
        spool.commit(20)
        assert spool.pending == 30
        assert spool.read(100) == records[20:]
        spool.commit(30)
        assert (spool.pending, spool.pending_bytes) == (0, 0)
        assert (spool.appended, spool.committed, spool.dropped) == (50, 50, 0)
        assert spool.read(10) == []


def test_read_without_commit_repeats_and_partial_commit(tmp_path: Path) -> None:
    records = _records(10)
    with Spool(tmp_path) as spool:
        _fill(spool, records)
        first = spool.read(4)
        assert spool.read(4) == first == records[:4]
        spool.commit(3)  # only the first three of the last read
        assert spool.read(4) == records[3:7]
        with pytest.raises(ValueError, match="returned 4"):
            spool.commit(5)
        spool.read(4)
        spool.commit(4)
        with pytest.raises(ValueError, match="returned 0"):  # no committing a read twice
            spool.commit(1)
        assert spool.pending == 3


def test_segment_rollover_and_consumed_segments_deleted(tmp_path: Path) -> None:
    records = _records(100)
    with Spool(tmp_path, segment_bytes=400) as spool:
        _fill(spool, records)
        spool.flush()
        names = _segments(tmp_path)
        assert len(names) >= 5
        for name in names:  # no segment beyond its size, unless one record is larger
            assert (tmp_path / name).stat().st_size <= 400
        assert names == sorted(names, key=lambda n: int(n.split(".")[0]))
        batch = spool.read(30)
        spool.commit(30)
        assert batch == records[:30]
        left = _segments(tmp_path)
        assert left[0] != names[0]
        assert set(left) < set(names)
        assert _drain(spool) == records[30:]
        assert _segments(tmp_path) == []  # the active one too, once consumed
        _fill(spool, records[:3])  # and appends go on in a fresh segment
        assert spool.read(10) == records[:3]


def test_bound_reached_drops_the_newest(tmp_path: Path) -> None:
    records = _records(40)
    size = _size(records[0])
    with Spool(tmp_path, max_bytes=size * 25 + size // 2) as spool:
        results = [spool.append(*r) for r in records]
        assert results == [True] * 25 + [False] * 15
        assert (spool.pending, spool.dropped, spool.appended) == (25, 15, 25)
        assert spool.pending_bytes <= size * 25 + size // 2
        batch = spool.read(5)
        spool.commit(len(batch))  # room again for five
        assert [spool.append(*r) for r in records[30:36]] == [True] * 5 + [False]
        assert _drain(spool) == records[5:25] + records[30:35]


def test_prepend_sorts_first_and_keeps_batch_order(tmp_path: Path) -> None:
    old, new = _records(20, "old"), _records(20, "new")
    with Spool(tmp_path, segment_bytes=300) as spool:
        _fill(spool, new)
        spool.read(3)
        spool.commit(3)  # the head segment is partly consumed
        batch = spool.read(2)
        assert batch == new[3:5]
        assert spool.prepend(old) == 20
        assert spool.pending == 37
        spool.commit(2)  # a commit after a prepend still consumes what that read returned
        assert spool.read(25) == old + new[5:10]
    # The order survives a restart, with the prepended batch split across segments.
    with Spool(tmp_path, segment_bytes=300) as spool:
        assert spool.pending == 35
        assert _drain(spool) == old + new[5:]


def test_prepend_before_existing_prepends_and_past_the_bound(tmp_path: Path) -> None:
    a, b, c = _records(3, "a"), _records(3, "b"), _records(10, "c")
    size = _size(c[0])
    with Spool(tmp_path, max_bytes=size * 4) as spool:
        _fill(spool, c[:3])
        assert spool.prepend(b) == 3  # past the bound: returned records are the oldest
        assert spool.prepend(a) == 3  # later prepends hold even older records
        assert spool.pending == 9
        assert not spool.append(*c[3])  # the bound still stops new appends
        assert spool.dropped == 1
        assert _drain(spool) == a + b + c[:3]


def test_restart_replays_exactly_the_uncommitted(tmp_path: Path) -> None:
    records = _records(300)
    with Spool(tmp_path, segment_bytes=2048) as spool:
        _fill(spool, records)
        for _ in range(11):
            spool.commit(len(spool.read(10)))
        spool.read(50)  # read but never committed: must come back
    with Spool(tmp_path, segment_bytes=2048) as spool:
        assert spool.pending == 190
        assert spool.pending_bytes == sum(map(_size, records[110:]))
        assert spool.appended == 0
        assert _drain(spool, 64) == records[110:]


def test_cursor_is_persisted_atomically(tmp_path: Path) -> None:
    records = _records(10)
    with Spool(tmp_path) as spool:
        _fill(spool, records)
        spool.commit(len(spool.read(4)))
        (segment,) = _segments(tmp_path)
        cursor = (tmp_path / "cursor").read_text().split()
        assert cursor == [str(int(segment.split(".")[0])), str(sum(map(_size, records[:4])))]
        assert not (tmp_path / "cursor.tmp").exists()
    # A cursor damaged by a machine crash means replaying more, never losing.
    (tmp_path / "cursor").write_text("garbage\n")
    with Spool(tmp_path) as spool:
        assert spool.read(100) == records


def test_cursor_mid_record_counts_only_whole_records(tmp_path: Path) -> None:
    records = _records(5)
    with Spool(tmp_path) as spool:
        _fill(spool, records)
    (segment,) = _segments(tmp_path)
    seg_id = int(segment.split(".")[0])
    (tmp_path / "cursor").write_text(f"{seg_id} {_size(records[0]) * 2 + 3}\n")
    with Spool(tmp_path) as spool:
        assert spool.read(10) == records[2:]


@pytest.mark.parametrize("cut", [1, 5, _FRAME + 3, -1])
def test_torn_tail_is_cut_and_counted(tmp_path: Path, cut: int) -> None:
    records = _records(20)
    with Spool(tmp_path) as spool:
        _fill(spool, records)
    (name,) = _segments(tmp_path)
    path = tmp_path / name
    whole = sum(map(_size, records))
    assert path.stat().st_size == whole
    keep = whole - _size(records[-1]) + (cut if cut > 0 else _size(records[-1]) - 1)
    os.truncate(path, keep)  # a crash in the middle of the last record
    with Spool(tmp_path) as spool:
        assert spool.corrupt == 1
        assert spool.pending == 19
        assert path.stat().st_size == whole - _size(records[-1])
        _fill(spool, records[:1])  # appends after the recovered tail are intact
        assert _drain(spool) == records[:19] + records[:1]


def test_corrupt_bytes_are_detected(tmp_path: Path) -> None:
    records = _records(20)
    with Spool(tmp_path, segment_bytes=10 * _size(records[0])) as spool:
        _fill(spool, records)
    first, second = _segments(tmp_path)
    path = tmp_path / second
    data = bytearray(path.read_bytes())
    offset = 3 * _size(records[0]) + _FRAME + 2  # inside the 4th record of the second one
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    with Spool(tmp_path) as spool:
        assert spool.corrupt == 1
        assert (tmp_path / first).exists()
        assert spool.read(100) == records[:13]  # the damaged record and what follows are cut


def test_a_record_larger_than_a_segment_and_a_read_chunk(tmp_path: Path) -> None:
    big = ("t", b"k", os.urandom(3 * 2**20))
    small = _records(3)
    with Spool(tmp_path, segment_bytes=2**20) as spool:
        _fill(spool, [small[0], big, small[1]])
    with Spool(tmp_path, segment_bytes=2**20) as spool:
        assert spool.corrupt == 0
        assert spool.read(1) == [small[0]]
        assert spool.read(3) == [small[0], big, small[1]]


def test_none_key_and_empty_key_are_distinct(tmp_path: Path) -> None:
    records: list[Record] = [
        ("a", None, b"v1"),
        ("a", b"", b"v2"),
        ("a", b"\x00", b""),
        ("topic.\u00e9", b"key", b"\xff" * 3),
    ]
    with Spool(tmp_path) as spool:
        _fill(spool, records)
        assert spool.read(10) == records
        assert spool.prepend(records) == 4
    with Spool(tmp_path) as spool:
        assert spool.read(10) == records + records


def test_unframable_records_are_dropped_not_raised(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        assert not spool.append("t", "str key", b"v")  # type: ignore[arg-type]
        assert not spool.append("\ud800", None, b"v")  # a lone surrogate cannot be encoded
        assert not spool.append("t" * 70000, None, b"v")
        assert spool.append("t", None, b"ok")
        assert spool.prepend([("t", None, None), ("t", None, b"p")]) == 1  # type: ignore[list-item]
        assert spool.dropped == 4
        assert spool.read(5) == [("t", None, b"p"), ("t", None, b"ok")]


def test_closed_spool_refuses_quietly(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    _fill(spool, _records(2))
    batch = spool.read(2)
    spool.close()
    spool.close()  # idempotent
    spool.commit(len(batch))  # ignored: the next process replays them
    assert not spool.append("t", None, b"late")
    assert spool.read(5) == []
    with Spool(tmp_path) as again:
        assert again.read(5) == batch


def test_second_open_in_the_same_process_is_locked(tmp_path: Path) -> None:
    with Spool(tmp_path), pytest.raises(SpoolLocked, match=f"pid {os.getpid()}"):
        Spool(tmp_path)
    with Spool(tmp_path) as spool:  # released at close
        assert spool.pending == 0


def test_another_process_is_locked_out(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from logtide_kafka.producer._spool import Spool, SpoolLocked\n"
        "try:\n"
        "    Spool(sys.argv[1]).close()\n"
        "except SpoolLocked:\n"
        "    sys.exit(3)\n"
    )
    with Spool(tmp_path):
        locked = subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=False)
        assert locked.returncode == 3
    free = subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=False)
    assert free.returncode == 0


def _fork(child: object) -> int:
    """Run ``child()`` in a forked process; return its exit status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            child()  # type: ignore[operator]
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_forked_child_spool_is_adopted_after_the_parents_records(tmp_path: Path) -> None:
    mine, theirs = _records(5, "parent"), _records(7, "child")
    spool = Spool(tmp_path)
    _fill(spool, mine[:2])  # buffered, not written yet, at the fork
    child_dir: list[Path] = []

    def child() -> None:
        own = Spool.for_child(tmp_path, segment_bytes=100)
        _fill(own, theirs)
        own.flush()
        # The parent's copy is forgotten in the child: closing it writes nothing twice.
        spool.close()

    assert _fork(child) == 0
    child_dir = list(tmp_path.glob("pid-*"))
    assert len(child_dir) == 1
    assert len(_segments(child_dir[0])) > 1
    with pytest.raises(SpoolLocked):  # the child's exit left the parent's lock alone
        Spool(tmp_path)
    _fill(spool, mine[2:])
    spool.close()
    with Spool(tmp_path) as spool:
        assert spool.pending == 12
        assert spool.read(5) == mine  # the main directory first
        spool.commit(5)
        assert spool.read(3) == theirs[:3]
        spool.commit(3)
        assert child_dir[0].exists()
        assert _drain(spool) == theirs[3:]
        assert not child_dir[0].exists()  # drained adopted directory deleted


def test_a_live_childs_spool_is_left_alone(tmp_path: Path) -> None:
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            own = Spool.for_child(tmp_path)
            _fill(own, _records(3, "child"))
            own.flush()
            os.write(ready_w, b"x")
            os.read(done_r, 1)  # hold the spool until the parent has looked
        finally:
            os._exit(0)
    try:
        assert os.read(ready_r, 1) == b"x"
        with Spool(tmp_path) as spool:
            assert spool.pending == 0  # its lock is held: not adopted
            assert spool.adopt() == 0
            os.write(done_w, b"x")
            os.waitpid(pid, 0)
            assert spool.adopt() == 3  # gone now: adopt() takes it over without a reopen
            assert _drain(spool) == _records(3, "child")
            assert list(tmp_path.glob("pid-*")) == []
    finally:
        for fd in (ready_r, ready_w, done_r, done_w):
            os.close(fd)


def test_process_crash_keeps_what_was_written_out(tmp_path: Path) -> None:
    records = _records(200)

    def child() -> None:
        spool = Spool(tmp_path, fsync="never", fsync_interval=3600)
        _fill(spool, records[:150])
        spool.commit(len(spool.read(10)))  # reading writes the buffer out
        _fill(spool, records[150:])  # only in the buffer when the process dies
        os._exit(0)  # no close, no atexit: like SIGKILL

    assert _fork(child) == 0
    with Spool(tmp_path) as spool:
        assert spool.corrupt == 0
        assert _drain(spool, 100) == records[10:150]


@pytest.mark.parametrize("policy", ["never", "interval", "always"])
def test_fsync_policies(tmp_path: Path, policy: str) -> None:
    records = _records(40)
    interval = 0.0 if policy == "interval" else 3600.0
    with Spool(tmp_path, fsync=policy, fsync_interval=interval) as spool:  # type: ignore[arg-type]
        _fill(spool, records[:1])
        spool.sync_if_due()  # what the producer's background thread calls
        (name,) = _segments(tmp_path)
        on_disk = (tmp_path / name).stat().st_size
        # "always" and a zero interval write (and fsync) each append at once; "never"
        # keeps it in the buffer until a flush, a read, or the buffer fills.
        assert on_disk == (0 if policy == "never" else _size(records[0]))
        _fill(spool, records[1:])
        spool.flush()
        assert (tmp_path / name).stat().st_size == sum(map(_size, records))
        spool.commit(len(spool.read(15)))
    with Spool(tmp_path, fsync=policy) as spool:  # type: ignore[arg-type]
        assert _drain(spool) == records[15:]


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fsync"):
        Spool(tmp_path, fsync="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_bytes"):
        Spool(tmp_path, max_bytes=0)
    with pytest.raises(ValueError, match="segment_bytes"):
        Spool(tmp_path, segment_bytes=-1)
    with Spool(tmp_path) as spool, pytest.raises(ValueError, match="count"):
        spool.commit(-1)


def test_concurrent_appenders_and_one_reader(tmp_path: Path) -> None:
    writers, per_writer = 4, 10_000
    seen: list[Record] = []
    finished = threading.Event()

    with Spool(tmp_path, segment_bytes=64 * 1024, fsync="interval", fsync_interval=0.05) as spool:

        def write(n: int) -> None:
            for i in range(per_writer):
                assert spool.append(f"t{n}", None if i % 2 else b"k", f"{n}:{i}".encode())

        def read() -> None:
            while True:
                done = finished.is_set()  # checked before reading: nothing is missed
                batch = spool.read(500)
                seen.extend(batch)
                spool.commit(len(batch))
                if done and not batch:
                    return

        reader = threading.Thread(target=read)
        threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
        reader.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        finished.set()
        reader.join(60)
        assert not reader.is_alive()
        assert (spool.pending, spool.pending_bytes, spool.dropped) == (0, 0, 0)
        assert spool.committed == spool.appended == writers * per_writer

    assert len(seen) == writers * per_writer
    assert len({v for _, _, v in seen}) == len(seen)  # every record once
    for n in range(writers):
        mine = [int(v.split(b":")[1]) for t, _, v in seen if t == f"t{n}"]
        assert mine == list(range(per_writer))  # each thread's order kept
    assert _segments(tmp_path) == []


def test_child_spool_takes_another_name_and_leaves_nothing_when_empty(tmp_path: Path) -> None:
    # An adopter still draining an earlier process with this pid holds ``pid-<pid>``.
    with Spool(tmp_path / f"pid-{os.getpid()}") as holder:
        _fill(holder, _records(2, "earlier"))
        child = Spool.for_child(tmp_path)
        assert child.directory == tmp_path / f"pid-{os.getpid()}-1"
        _fill(child, _records(1))
        child.commit(len(child.read(5)))
        child.close()
        assert not child.directory.exists()  # empty at close: removed
    with Spool(tmp_path) as spool:  # the earlier one's records are still adopted
        assert _drain(spool) == _records(2, "earlier")
        assert list(tmp_path.iterdir()) == [tmp_path / ".lock"]


def _modes(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mode & 0o777 for p in directory.iterdir() if p.is_file()}


def test_files_are_the_owners_only_whatever_the_umask(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    old = os.umask(0)  # a permissive umask must not widen anything
    try:
        spool = Spool(directory, segment_bytes=200)
        _fill(spool, _records(30))  # several segments
        spool.prepend(_records(2, tag="p"))  # a prepended segment
        spool.commit(len(spool.read(5)))  # the cursor file
        modes = _modes(directory)
        child = Spool.for_child(directory)
        _fill(child, _records(3))
        child_dir = child.directory
        child_modes = _modes(child_dir)
        child.close()
        spool.close()
    finally:
        os.umask(old)
    assert directory.stat().st_mode & 0o777 == 0o700
    assert child_dir.stat().st_mode & 0o777 == 0o700
    assert {".lock", "cursor"} <= modes.keys()
    assert len(modes) >= 4
    assert set(modes.values()) == {0o600}, modes
    assert set(child_modes.values()) == {0o600}, child_modes


def test_a_wider_existing_directory_is_named_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o755)
    Spool(directory).close()
    Spool(directory).close()
    err = capsys.readouterr().err
    assert err.count(f"spool directory {directory} has mode 755") == 1
    assert f"(pid {os.getpid()})\n" in err
    assert directory.stat().st_mode & 0o777 == 0o755  # left to its owner
    quiet = tmp_path / "private"
    Spool(quiet).close()
    assert capsys.readouterr().err == ""
