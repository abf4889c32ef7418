"""An append-only disk spool: records Kafka cannot take now, replayed oldest first later.

Application threads call :meth:`Spool.append` with already-encoded ``(topic, key, value)``
records; one background thread calls :meth:`~Spool.read` for the oldest and
:meth:`~Spool.commit` for those it handed to Kafka.  The spool survives the process:
whoever opens the directory next replays what is left.  At-least-once: after a crash the
persisted cursor may lag behind the last commit, so a few records may be replayed twice;
none is lost by the cursor.

Layout of a spool directory::

    .lock                  flock'ed by the one process using the directory
    cursor                 "<segment id> <byte offset>" lines: what is committed
    1000000000000.spool    segments, replayed in id order; appends go to the newest,
    0999999999999.spool    prepend() writes new ones *before* the oldest (id - 1)
    pid-4242/              a forked child's own spool (see :meth:`Spool.for_child`)

Each record is framed as ``struct "<IIHi"`` = (crc32 of everything after the crc field,
length of what follows the header, topic length, key length or -1 for ``None``), then the
topic (UTF-8), the key and the value.  Opening a directory checks every record: a torn or
corrupt record (a crash mid-write, a damaged disk) is cut off with everything after it in
its segment, and counted in :attr:`Spool.corrupt`.

Durability, by ``fsync`` policy.  Appends go to a 64 KiB in-process buffer, written to the
OS when it fills, when the segment is read, when ``fsync_interval`` has passed (checked on
read, commit and :meth:`~Spool.sync_if_due`, never on append), and by :meth:`~Spool.flush`
and :meth:`~Spool.close`:

* ``"always"``: every append is written and fsync'ed before it returns.  Neither a process
  nor a machine crash loses an appended record.  Slow: one fsync per record (about 0.1 to
  several ms on real disks).
* ``"interval"`` (default): the buffer is written and fsync'ed at most every
  ``fsync_interval`` seconds (by :meth:`~Spool.sync_if_due`, which the producer's
  background thread calls, so appends never wait on the disk), at rollover, flush and
  close.  A process crash (SIGKILL)
  loses what is still in the buffer: at most 64 KiB or one interval of records; a machine
  crash may lose about the last interval as well.
* ``"never"``: written to the OS as above, fsync left to the OS.  A process crash loses as
  little as with ``"interval"``; a machine crash loses what the OS had not written back yet
  (typically up to about 30 s on Linux).

:meth:`~Spool.prepend` writes its batch at once (fsync'ed unless ``"never"``).  The cursor is
replaced atomically (``os.replace``) at each commit, fsync'ed under ``"always"``, at most once
per interval under ``"interval"``, and at close unless ``"never"``.

Forked children: a child must not share its parent's lock or segments, so it opens
:meth:`Spool.for_child`, its own ``<dir>/pid-<pid>/`` (``pid-<pid>-<n>/`` if that one is
still held by an adopter), deleted at close if empty.  When a process opens ``<dir>`` it
adopts every ``pid-*`` subdirectory whose lock is free (its process is gone): their records
are served, oldest first per subdirectory, once the main directory is empty, and a drained
subdirectory is deleted.  A long-running parent adopts children that died since it opened
the spool only when :meth:`Spool.adopt` is called again.  At fork, the child's copies of
every open spool are forgotten (buffers dropped, descriptors closed, locks left to the
parent), so the child never writes the parent's buffered records twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import sys
import threading
import time
import weakref
import zlib
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from logtide_kafka.producer._policy import FSYNC_POLICIES, FsyncPolicy
from logtide_kafka.producer._report import report

__all__ = ["FsyncPolicy", "Record", "Spool", "SpoolLocked"]

#: One spooled Kafka record: ``(topic, key, value)``.
Record = tuple[str, bytes | None, bytes]

_HEADER: Final = struct.Struct("<IIHi")  # crc, body length, topic length, key length | -1
_CRC: Final = struct.Struct("<I")
_TAIL: Final = struct.Struct("<IHi")  # the header after the crc: what the crc starts with
_HEADER_SIZE: Final = _HEADER.size
_MAX_TOPIC: Final = 0xFFFF
#: Appends start at this segment id, prepends go below it: zero-padded ids sort as numbers.
_FIRST_ID: Final = 10**12
_ID_WIDTH: Final = 13
_SUFFIX: Final = ".spool"
_CURSOR: Final = "cursor"
_CURSOR_TMP: Final = "cursor.tmp"
_LOCK: Final = ".lock"
_CHILD_PREFIX: Final = "pid-"
_WRITE_BUFFER: Final = 64 * 1024
_READ_CHUNK: Final = 1 << 20
_MAX_CACHED_TOPICS: Final = 1024
_CHILD_ATTEMPTS: Final = 8
# Spooled events carry what redaction cannot catch (messages): readable by the owner only.
_FILE_MODE: Final = 0o600
_DIR_MODE: Final = 0o700
_warned_wide: set[Path] = set()


class SpoolLocked(Exception):
    """Another live process (or another open :class:`Spool`) holds the spool directory."""


@dataclass(eq=False, slots=True)
class _Segment:
    """One segment file; ``size`` and ``records`` count whole records, buffered included."""

    id: int
    path: Path
    fd: int | None = None
    size: int = 0
    records: int = 0
    offset: int = 0  # bytes committed
    consumed: int = 0  # records committed

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


@dataclass(slots=True)
class _Counters:
    """Totals over the main directory and the adopted ones, shared by their logs."""

    pending: int = 0
    pending_bytes: int = 0
    appended: int = 0
    committed: int = 0
    dropped: int = 0
    corrupt: int = 0


def _frame(topic: str, key: bytes | None, value: bytes) -> bytes:
    """The framed record (raises on a topic or key that cannot be framed)."""
    tb = topic.encode()
    klen = -1 if key is None else len(key)
    tail = _TAIL.pack(len(tb) + max(klen, 0) + len(value), len(tb), klen)
    crc = zlib.crc32(value, zlib.crc32(key or b"", zlib.crc32(tb, zlib.crc32(tail))))
    return b"".join((_CRC.pack(crc), tail, tb, key or b"", value))


def _parse(
    fd: int, pos: int, end: int, limit: int, *, out: list[Record] | None, ends: list[int]
) -> bool:
    """Parse up to ``limit`` records of ``fd`` from ``pos`` up to ``end``, appending each
    record's end offset to ``ends`` (and the record to ``out``, unless it is None).

    Returns False when a torn or corrupt record stops the scan before ``end``.
    """
    while len(ends) < limit and pos < end:
        chunk = os.pread(fd, min(end - pos, _READ_CHUNK), pos)
        i, n = 0, len(chunk)
        while len(ends) < limit and i + _HEADER_SIZE <= n:
            crc, body, tlen, klen = _HEADER.unpack_from(chunk, i)
            total = _HEADER_SIZE + body
            if klen < -1 or tlen + max(klen, 0) > body or pos + i + total > end:
                return False
            if i + total > n:
                if i:  # the next chunk starts with this record
                    break
                # A record larger than a chunk: read it whole.
                chunk = os.pread(fd, total, pos)
                n = len(chunk)
                if n < total:
                    return False
            if zlib.crc32(memoryview(chunk)[i + 4 : i + total]) != crc:
                return False
            if out is not None:
                t = i + _HEADER_SIZE
                k = t + tlen
                v = k + max(klen, 0)
                out.append(
                    (
                        chunk[t:k].decode(errors="replace"),
                        None if klen < 0 else chunk[k:v],
                        chunk[v : i + total],
                    )
                )
            i += total
            ends.append(pos + i)
        if i == 0:  # not even a whole header left before ``end``: torn
            return False
        pos += i
    return True


def _fsync(fd: int) -> None:
    with contextlib.suppress(OSError):  # nothing better to do than carry on
        os.fsync(fd)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _warn_if_wide(directory: Path) -> None:
    """Say once per directory when others may read it (created before, or by someone
    else): it is left as it is, the owner decides."""
    try:
        mode = directory.stat().st_mode & 0o777
    except OSError:
        return
    if mode & ~_DIR_MODE and directory not in _warned_wide:
        _warned_wide.add(directory)
        report(
            f"spool directory {directory} has mode {mode:o}: other users may read the "
            f"spooled logs; chmod {_DIR_MODE:o} it"
        )


def _try_lock(directory: Path) -> int | None:
    """Open and flock ``directory/.lock`` without waiting; None when someone holds it."""
    fd = os.open(directory / _LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    with contextlib.suppress(OSError):  # the holder's pid, for SpoolLocked's message
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _unlock(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    with contextlib.suppress(OSError):
        os.close(fd)


class _Log:
    """The segments of one directory, in replay order, with their cursor; appends go to
    ``active`` through ``buf``."""

    def __init__(self, directory: Path, lock_fd: int, counters: _Counters) -> None:
        self.directory = directory
        self.lock_fd: int | None = lock_fd
        self.counters = counters
        self.segments: list[_Segment] = []
        self.active: _Segment | None = None
        self.buf = bytearray()
        self.buf_records = 0
        self.pending = 0
        self.dir_dirty = False
        self.last_id = _FIRST_ID - 1  # appends use last_id + 1
        self.first_id = _FIRST_ID  # prepends use first_id - 1

    def path(self, seg_id: int) -> Path:
        return self.directory / f"{seg_id:0{_ID_WIDTH}d}{_SUFFIX}"

    # -- opening ------------------------------------------------------------------------

    def scan(self) -> None:
        """Load the segments, cutting torn tails away, and apply the cursor."""
        ids: list[int] = []
        for entry in os.scandir(self.directory):
            if entry.name.endswith(_SUFFIX) and entry.is_file():
                with contextlib.suppress(ValueError):
                    ids.append(int(entry.name[: -len(_SUFFIX)]))
        ids.sort()
        cursor = self._load_cursor()
        # Ids still named by the cursor are never reused: a stale offset must not apply to
        # a new segment.
        known = ids + list(cursor)
        if known:
            self.last_id = max(self.last_id, *known)
            self.first_id = min(self.first_id, *known)
        for seg_id in ids:
            seg = _Segment(seg_id, self.path(seg_id))
            self._recover(seg, cursor.get(seg_id, 0))
            if seg.consumed == seg.records:
                with contextlib.suppress(OSError):
                    seg.path.unlink()
                self.dir_dirty = True
                continue
            self.segments.append(seg)
            self.pending += seg.records - seg.consumed
            self.counters.pending += seg.records - seg.consumed
            self.counters.pending_bytes += seg.size - seg.offset

    def _load_cursor(self) -> dict[int, int]:
        try:
            text = (self.directory / _CURSOR).read_text()
            return {int(a): int(b) for a, b in (line.split() for line in text.splitlines())}
        except (OSError, ValueError):  # none yet, or torn by a machine crash: replay more
            return {}

    def _recover(self, seg: _Segment, committed: int) -> None:
        fd = os.open(seg.path, os.O_RDWR | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            ends: list[int] = []
            if not _parse(fd, 0, size, sys.maxsize, out=None, ends=ends):
                good = ends[-1] if ends else 0
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, good)
                self.counters.corrupt += 1
        finally:
            os.close(fd)
        seg.records = len(ends)
        seg.size = ends[-1] if ends else 0
        # The cursor may point past a tail a machine crash lost, or anywhere if damaged:
        # count only whole records before it.
        seg.consumed = bisect_right(ends, committed)
        seg.offset = ends[seg.consumed - 1] if seg.consumed else 0

    # -- reading ------------------------------------------------------------------------

    def read(self, limit: int) -> tuple[list[Record], list[tuple[_Segment, int]]]:
        out: list[Record] = []
        marks: list[tuple[_Segment, int]] = []
        for seg in list(self.segments):
            if len(out) >= limit:
                break
            if seg.consumed == seg.records:
                continue
            ends: list[int] = []
            try:
                if seg.fd is None:
                    seg.fd = os.open(seg.path, os.O_RDONLY | os.O_CLOEXEC)
                ok = _parse(seg.fd, seg.offset, seg.size, limit - len(out), out=out, ends=ends)
            except OSError:
                ok = False
            marks.extend((seg, end) for end in ends)
            if not ok:
                self._cut(seg, ends[-1] if ends else seg.offset, len(ends))
        return out, marks

    def _cut(self, seg: _Segment, good: int, parsed: int) -> None:
        """A record of ``seg`` damaged since it was opened: forget it and what follows."""
        lost = seg.records - seg.consumed - parsed
        self.counters.pending_bytes -= seg.size - good
        self.pending -= lost
        self.counters.pending -= lost
        self.counters.corrupt += 1
        seg.records -= lost
        seg.size = good
        if seg is self.active:
            self.active = None  # appends go to a new segment

    # -- committing ---------------------------------------------------------------------

    def commit(self, marks: Sequence[tuple[_Segment, int]], durable: bool) -> None:
        freed = 0
        for seg, end in marks:
            freed += end - seg.offset
            seg.offset = end
            seg.consumed += 1
        self.pending -= len(marks)
        self.counters.pending -= len(marks)
        self.counters.pending_bytes -= freed
        self.counters.committed += len(marks)
        # Consumed segments stay in the cursor until the next commit: their ids are not
        # reused, and a crash before their deletion replays nothing twice.
        self.save_cursor(durable)
        done = [s for s in self.segments if s.consumed == s.records and s.offset == s.size]
        for seg in done:
            self._delete(seg)

    def _delete(self, seg: _Segment) -> None:
        seg.close()
        with contextlib.suppress(OSError):
            seg.path.unlink()
        self.segments.remove(seg)
        if seg is self.active:
            self.active = None
        self.dir_dirty = True

    def save_cursor(self, durable: bool) -> None:
        text = "".join(f"{s.id} {s.offset}\n" for s in self.segments if s.offset)
        tmp = self.directory / _CURSOR_TMP
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, _FILE_MODE)
            try:
                os.write(fd, text.encode())
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.directory / _CURSOR)
        except OSError:
            return  # the old cursor stays: a few records may be replayed twice
        self.dir_dirty = True
        if durable:
            self.sync_dir()

    def sync_dir(self) -> None:
        if self.dir_dirty:
            self.dir_dirty = False
            _fsync_dir(self.directory)

    # -- writing ------------------------------------------------------------------------

    def roll(self, fsync: bool) -> _Segment:
        """Start a new segment for appends (after writing out the current one)."""
        old = self.active
        if old is not None:
            self.write_out()
            if fsync and old.fd is not None:
                _fsync(old.fd)
        seg = _Segment(self.last_id + 1, self.path(self.last_id + 1))
        seg.fd = os.open(
            seg.path,
            os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_EXCL | os.O_CLOEXEC,
            _FILE_MODE,
        )
        self.last_id = seg.id
        self.segments.append(seg)
        self.active = seg
        self.dir_dirty = True
        return seg

    def write_out(self) -> bool:
        """Hand the buffer to the OS; on failure forget its records (counted as dropped)."""
        buf, seg = self.buf, self.active
        if not buf or seg is None or seg.fd is None:
            return True
        done = 0
        try:
            with memoryview(buf) as view:
                while done < len(buf):
                    done += os.write(seg.fd, view[done:])
        except OSError:  # e.g. a full disk: cut the partial record off, seal the segment
            kept = seg.size - len(buf)
            with contextlib.suppress(OSError):
                os.ftruncate(seg.fd, kept)
            seg.size = kept
            seg.records -= self.buf_records
            self.pending -= self.buf_records
            self.counters.pending -= self.buf_records
            self.counters.pending_bytes -= len(buf)
            self.counters.dropped += self.buf_records
            self.active = None
            buf.clear()
            self.buf_records = 0
            return False
        buf.clear()
        self.buf_records = 0
        return True

    def prepend(self, frames: list[bytes], segment_bytes: int, fsync: bool) -> int:
        """Write ``frames`` to new segments sorting before every other; return how many
        were written."""
        chunks: list[list[bytes]] = []
        size = 0
        for frame in frames:
            if not chunks or (size and size + len(frame) > segment_bytes):
                chunks.append([])
                size = 0
            chunks[-1].append(frame)
            size += len(frame)
        first = self.first_id - len(chunks)
        written: list[_Segment] = []
        for n, chunk in enumerate(chunks):
            seg = _Segment(first + n, self.path(first + n))
            data = b"".join(chunk)
            try:
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                fd = os.open(seg.path, flags, _FILE_MODE)
                try:
                    with memoryview(data) as view:
                        done = 0
                        while done < len(data):
                            done += os.write(fd, view[done:])
                    if fsync:
                        os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError:  # keep the chunks before: they are the oldest
                with contextlib.suppress(OSError):
                    seg.path.unlink()
                break
            seg.size, seg.records = len(data), len(chunk)
            written.append(seg)
        self.first_id = first
        self.segments[:0] = written
        count = sum(s.records for s in written)
        self.pending += count
        self.counters.pending += count
        self.counters.pending_bytes += sum(s.size for s in written)
        self.counters.appended += count
        self.dir_dirty = True
        return count

    # -- closing ------------------------------------------------------------------------

    def close_files(self, *, unlock: bool) -> None:
        for seg in self.segments:
            seg.close()
        if self.lock_fd is not None:
            if unlock:
                _unlock(self.lock_fd)
            else:  # a forked child: the lock belongs to the parent's open file description
                with contextlib.suppress(OSError):
                    os.close(self.lock_fd)
            self.lock_fd = None

    def destroy(self) -> None:
        """Delete a drained directory (its lock held until the lock file is gone)."""
        for seg in list(self.segments):
            self._delete(seg)
        for name in (_CURSOR, _CURSOR_TMP, _LOCK):
            with contextlib.suppress(OSError):
                (self.directory / name).unlink()
        with contextlib.suppress(OSError):
            self.directory.rmdir()
        self.close_files(unlock=True)


# Every open spool, so that a forked child can forget its copies (see _forget_in_child).
_live: weakref.WeakSet[Spool] = weakref.WeakSet()


class Spool:
    """A bounded, append-only, crash-safe FIFO of records (:data:`Record`) in ``directory``.

    Thread-safe (one internal lock); meant for any number of appending threads and one
    reader that calls :meth:`read` then :meth:`commit`.  Raises :class:`SpoolLocked` when
    the directory is in use.  ``max_bytes`` bounds the records not yet committed (framing
    included); the disk may hold up to one more segment of consumed records until it is
    deleted.  A new segment starts when the current one would exceed ``segment_bytes``.
    """

    directory: Path

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int = 256 * 2**20,
        segment_bytes: int = 16 * 2**20,
        fsync: FsyncPolicy = "interval",
        fsync_interval: float = 1.0,
    ) -> None:
        self._open(Path(directory), max_bytes, segment_bytes, fsync, fsync_interval, adopt=True)

    @classmethod
    def for_child(
        cls,
        parent_dir: str | os.PathLike[str],
        *,
        max_bytes: int = 256 * 2**20,
        segment_bytes: int = 16 * 2**20,
        fsync: FsyncPolicy = "interval",
        fsync_interval: float = 1.0,
    ) -> Spool:
        """The spool of a forked child: ``<parent_dir>/pid-<pid>/``, adopted by the next
        process that opens ``parent_dir`` once this one is gone."""
        base = f"{_CHILD_PREFIX}{os.getpid()}"
        for attempt in range(_CHILD_ATTEMPTS):
            # ``pid-<pid>`` may still be held by an adopter draining an earlier process
            # with the same pid, or vanish as one deletes it: use ``pid-<pid>-<n>`` then.
            directory = Path(parent_dir) / (f"{base}-{attempt}" if attempt else base)
            spool = cls.__new__(cls)
            try:
                spool._open(directory, max_bytes, segment_bytes, fsync, fsync_interval, adopt=False)
            except (SpoolLocked, FileNotFoundError):
                continue
            return spool
        raise SpoolLocked(f"no free child spool {base}[-n] in {parent_dir}")

    def _open(
        self,
        directory: Path,
        max_bytes: int,
        segment_bytes: int,
        fsync: FsyncPolicy,
        fsync_interval: float,
        *,
        adopt: bool,
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {sorted(FSYNC_POLICIES)}, not {fsync!r}")
        if max_bytes <= 0 or segment_bytes <= 0 or not fsync_interval >= 0:
            raise ValueError("max_bytes and segment_bytes must be > 0, fsync_interval >= 0")
        self.directory = Path(os.path.abspath(directory))
        self._max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._fsync_policy: FsyncPolicy = fsync
        self._fsync_interval = fsync_interval
        self._lock = threading.Lock()
        self._closed = False
        self._is_child = not adopt
        self._counters = _Counters()
        self._topics: dict[str, bytes] = {}
        self._last: tuple[_Log, list[tuple[_Segment, int]]] | None = None
        self._next_sync = time.monotonic() + fsync_interval

        self.directory.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        _warn_if_wide(self.directory)
        lock_fd = _try_lock(self.directory)
        if lock_fd is None:
            try:
                holder = (self.directory / _LOCK).read_text().strip() or "?"
            except OSError:
                holder = "?"
            raise SpoolLocked(f"spool {self.directory} is in use (pid {holder})")
        log = _Log(self.directory, lock_fd, self._counters)
        try:
            log.scan()
        except BaseException:
            log.close_files(unlock=True)
            raise
        self._log = log
        self._adopted: list[_Log] = []
        _live.add(self)
        if adopt:
            self._adopt()

    # -- counters -----------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Records spooled and not committed yet, adopted ones included."""
        return self._counters.pending

    @property
    def pending_bytes(self) -> int:
        """Bytes (framing included) of the records counted in :attr:`pending`."""
        return self._counters.pending_bytes

    @property
    def appended(self) -> int:
        """Records written by :meth:`append` and :meth:`prepend` in this process."""
        return self._counters.appended

    @property
    def committed(self) -> int:
        """Records committed in this process."""
        return self._counters.committed

    @property
    def dropped(self) -> int:
        """Records refused at the bound, when closed or unframable, or lost to a failed
        write (a full disk, say)."""
        return self._counters.dropped

    @property
    def corrupt(self) -> int:
        """Torn or corrupt records found (each cut off with whatever followed it)."""
        return self._counters.corrupt

    # -- the hot path -------------------------------------------------------------------

    def append(self, topic: str, key: bytes | None, value: bytes) -> bool:
        """Spool one record behind all others; False (and counted in :attr:`dropped`)
        when it would exceed ``max_bytes``: the newest is dropped, so what is spooled stays
        a gap-free FIFO.  Never raises for I/O errors: those drop the record too."""
        try:
            tb = self._topics.get(topic)
            if tb is None:
                tb = self._topic_bytes(topic)
            klen = -1 if key is None else len(key)
            body = len(tb) + (klen if klen > 0 else 0) + len(value)
            tail = _TAIL.pack(body, len(tb), klen)
            crc = zlib.crc32(tb, zlib.crc32(tail))
            if key:
                crc = zlib.crc32(key, crc)
            crc = zlib.crc32(value, crc)
        except (UnicodeError, struct.error, TypeError, ValueError):
            with self._lock:
                self._counters.dropped += 1
            return False
        size = _HEADER_SIZE + body
        counters = self._counters
        with self._lock:
            if self._closed or counters.pending_bytes + size > self._max_bytes:
                counters.dropped += 1
                return False
            log = self._log
            seg = log.active
            try:
                if seg is None or (seg.size and seg.size + size > self._segment_bytes):
                    seg = log.roll(self._fsync_policy != "never")
            except OSError:
                counters.dropped += 1
                return False
            buf = log.buf
            buf += _CRC.pack(crc)
            buf += tail
            buf += tb
            if key:
                buf += key
            buf += value
            seg.size += size
            seg.records += 1
            log.buf_records += 1
            log.pending += 1
            counters.pending += 1
            counters.pending_bytes += size
            counters.appended += 1
            if self._fsync_policy == "always":
                ok = log.write_out()
                if ok and seg.fd is not None:
                    _fsync(seg.fd)
                    log.sync_dir()
                return ok
            # The interval's fsync is left to sync_if_due() (the producer's background
            # thread): an application thread never waits on the disk.
            return len(buf) < _WRITE_BUFFER or log.write_out()

    def _topic_bytes(self, topic: str) -> bytes:
        tb = topic.encode()
        if len(tb) > _MAX_TOPIC:
            raise ValueError("topic too long")
        if len(self._topics) >= _MAX_CACHED_TOPICS:  # topics made up at run time
            self._topics.clear()
        self._topics[topic] = tb
        return tb

    # -- the background side ------------------------------------------------------------

    def prepend(self, records: Sequence[Record]) -> int:
        """Spool ``records`` (in their order) *before* everything already spooled: they are
        older, e.g. events still in Kafka's in-memory queue at shutdown.  Returns how many
        were kept.  Not bounded by ``max_bytes``: the records come from a bounded queue in
        memory, are older than anything spooled, and dropping them would break the rule
        that the bound only ever drops the newest."""
        frames: list[bytes] = []
        for topic, key, value in records:
            try:
                frames.append(_frame(topic, key, value))
            except (UnicodeError, struct.error, TypeError, ValueError):
                frames.append(b"")  # unframable: dropped below, order of the rest kept
        with self._lock:
            if self._closed:
                self._counters.dropped += len(records)
                return 0
            kept = [frame for frame in frames if frame]
            written = self._log.prepend(kept, self._segment_bytes, self._fsync_policy != "never")
            if written and self._fsync_policy != "never":
                self._log.sync_dir()
            self._counters.dropped += len(records) - written
            return written

    def read(self, max_records: int) -> list[Record]:
        """The oldest uncommitted records, in order, at most ``max_records``; nothing is
        consumed until :meth:`commit`, so reading again returns the same ones.  Adopted
        children's records come once the main directory is empty."""
        with self._lock:
            self._last = None
            if self._closed or max_records <= 0:
                return []
            log = self._log
            if log.pending == 0:
                log = next((a for a in self._adopted if a.pending), log)
            if log is self._log:
                log.write_out()  # the active segment must show what is buffered
            records, marks = log.read(max_records)
            self._last = (log, marks)
            if time.monotonic() >= self._next_sync:
                self._sync(durable=self._fsync_policy == "interval")
            return records

    def commit(self, count: int) -> None:
        """Mark the first ``count`` records of the last :meth:`read` as done: advance and
        persist the cursor, delete consumed segments (and drained adopted directories).

        Raises ValueError if ``count`` exceeds what the last read returned (or it was
        already committed).  After :meth:`close` it does nothing: those records will be
        replayed by the next process.
        """
        if count < 0:
            raise ValueError("count must be >= 0")
        with self._lock:
            if self._closed:
                return
            last, self._last = self._last, None
            if count == 0:
                return
            if last is None or count > len(last[1]):
                got = 0 if last is None else len(last[1])
                raise ValueError(f"commit({count}) but the last read() returned {got} record(s)")
            log, marks = last
            due = time.monotonic() >= self._next_sync
            policy = self._fsync_policy
            log.commit(marks[:count], durable=policy == "always" or (policy == "interval" and due))
            if log is not self._log and log.pending == 0:
                self._adopted.remove(log)
                log.destroy()
            if due:
                self._sync(durable=policy == "interval")

    def sync_if_due(self) -> None:
        """Write the buffer out, and fsync under ``"interval"``, once ``fsync_interval``
        has passed since the last time; cheap when it has not.  For a background thread."""
        if time.monotonic() < self._next_sync:
            return
        with self._lock:
            if not self._closed:
                self._sync(durable=self._fsync_policy == "interval")

    def flush(self) -> None:
        """Write the buffer out to the OS, and fsync it unless the policy is ``"never"``."""
        with self._lock:
            if not self._closed:
                self._sync(durable=self._fsync_policy != "never")

    def _sync(self, *, durable: bool) -> None:
        log = self._log
        log.write_out()
        if durable:
            if log.active is not None and log.active.fd is not None:
                _fsync(log.active.fd)
            log.sync_dir()
        self._next_sync = time.monotonic() + self._fsync_interval

    def close(self) -> None:
        """Flush (fsync unless ``"never"``), release the lock(s); idempotent.  Records left
        stay on disk for the next process."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._last = None
            durable = self._fsync_policy != "never"
            self._sync(durable=durable)
            if self._is_child and self._log.pending == 0:
                self._log.destroy()  # nothing to adopt: no empty pid-* directory left behind
            else:
                for log in (self._log, *self._adopted):
                    if durable:
                        log.save_cursor(durable=True)
                    log.close_files(unlock=True)
            _live.discard(self)

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Spool {self.directory} pending={self.pending} closed={self._closed}>"

    # -- forked children ----------------------------------------------------------------

    def adopt(self) -> int:
        """Adopt the ``pid-*`` subdirectories whose process is gone (done at open); return
        how many records that added.  A child's spool adopts nothing."""
        with self._lock:
            if self._closed or self._is_child:
                return 0
            return self._adopt()

    def _adopt(self) -> int:
        before = self._counters.pending
        taken = {log.directory for log in self._adopted}
        try:
            entries = sorted(
                e.name
                for e in os.scandir(self.directory)
                if e.name.startswith(_CHILD_PREFIX) and e.is_dir(follow_symlinks=False)
            )
        except OSError:
            return 0
        for name in entries:
            path = self.directory / name
            if path in taken:
                continue
            try:
                lock_fd = _try_lock(path)
            except OSError:
                continue
            if lock_fd is None:  # its process is alive
                continue
            log = _Log(path, lock_fd, self._counters)
            try:
                log.scan()
            except OSError:
                log.close_files(unlock=True)
                continue
            if log.pending:
                self._adopted.append(log)
            else:
                log.destroy()
        return self._counters.pending - before

    def _forget(self) -> None:
        """In a forked child: this copy belongs to the parent.  Drop its buffer (the parent
        writes it), close the descriptors without unlocking (the lock is the parent's)."""
        self._lock = threading.Lock()  # a parent thread may have held it at the fork
        self._closed = True
        self._last = None
        for log in (self._log, *self._adopted):
            log.buf = bytearray()
            log.close_files(unlock=False)
        _live.discard(self)


def _forget_in_child() -> None:
    for spool in list(_live):
        spool._forget()


os.register_at_fork(after_in_child=_forget_in_child)
