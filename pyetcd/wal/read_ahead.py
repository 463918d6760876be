"""Reading a restarting member's WAL in a forked child while the parent rebuilds its
key index.

Both are CPU-bound Python: in one process they run one after the other under the GIL,
while a forked child reads the log on another core. Rules:

1. The parent takes the WAL's lock before forking, so nothing writes the log between
   the child's read and the parent's open. The child only reads (``WALStorage.read``:
   no repair, nothing written to the log) and hands the result back pickled over a
   pipe; the parent repairs a torn tail and positions the log itself, and ``WAL.open``
   reads again if the segment files are not the ones the child read.
2. Any failure of the child (an error in the log, a signal, a short pipe) makes the
   parent read the log itself, so errors are raised and reported as without it.
3. The child never returns into the parent's code: it leaves through ``os._exit``, and
   it stops listening for the parent's signals first.
"""

from __future__ import annotations

import os
import pickle
import signal
from typing import Any

from pyetcd.raft.types import Entry, EntryType

from .errors import WALError
from .reader import ReadResult, WALRead
from .storage import StorageRead, WALStorage
from .wal import WAL

__all__ = ["ReadAhead"]


class ReadAhead:
    """A child process reading one data dir's WAL; :meth:`result` collects it."""

    def __init__(self, pid: int, fd: int, lock_fd: int) -> None:
        self._pid = pid
        self._fd = fd
        self._lock_fd: int | None = lock_fd
        self._done = False

    @classmethod
    def start(
        cls, data_dir: str, *, wal_dir: str | None = None, max_snapshots: int = 5
    ) -> ReadAhead | None:
        """Lock the WAL directory and fork a child that reads the log; None where the
        platform cannot fork or the lock is not to be had (``WALStorage.open`` then
        raises what is wrong).

        Call from the thread that owns signal handling (the main thread).
        """
        if not hasattr(os, "fork"):
            return None
        try:
            lock_fd = WAL.lock_dir(wal_dir or os.path.join(data_dir, "member", "wal"))
        except WALError:
            return None
        try:
            r, w = os.pipe()
        except OSError:
            os.close(lock_fd)
            return None
        try:
            pid = os.fork()
        except OSError:  # no process to spare (EAGAIN, ENOMEM): read in-process
            for fd in (r, w, lock_fd):
                os.close(fd)
            return None
        if pid == 0:  # the child
            code = 1
            try:
                os.close(r)
                _stop_hearing_signals()
                read = WALStorage.read(data_dir, wal_dir=wal_dir, max_snapshots=max_snapshots)
                _write_all(w, pickle.dumps(_pack(read), pickle.HIGHEST_PROTOCOL))
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        return cls(pid, r, lock_fd)

    def take_lock(self) -> int | None:
        """The WAL directory's lock fd, handed over to the caller (once)."""
        fd, self._lock_fd = self._lock_fd, None
        return fd

    def result(self) -> StorageRead | None:
        """The child's read, or None if it failed (read the log yourself then).
        Blocks until the child is done; call once."""
        if self._done:
            return None
        self._done = True
        chunks = []
        try:
            while chunk := os.read(self._fd, 1 << 20):
                chunks.append(chunk)
        finally:
            os.close(self._fd)
            _, status = os.waitpid(self._pid, 0)
        if status != 0 or not chunks:
            return None
        try:
            return _unpack(pickle.loads(b"".join(chunks)))
        except Exception:  # a truncated or foreign payload: read it again
            return None

    def close(self) -> None:
        """Stop and reap the child if its result was never collected; release the lock
        if it was never taken."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if not self._done:
            self._done = True
            os.close(self._fd)
            os.kill(self._pid, signal.SIGKILL)  # unreaped, so the pid is still ours
            os.waitpid(self._pid, 0)


def _stop_hearing_signals() -> None:
    # The parent's event loop learns of signals through a wakeup fd the child shares;
    # a signal sent to the child (a terminal's Ctrl-C reaches the whole group) must not
    # be reported there. (ValueError: not callable from this thread; nothing to undo.)
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
    except ValueError:
        pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.close(fd)


def _pack(read: StorageRead) -> tuple[Any, ...]:
    # Entries travel as plain tuples: pickling 100,000s of frozen dataclasses is several
    # times slower in both processes.
    res = read.wal.result
    entries = [(e.term, e.index, int(e.type), e.data) for e in res.entries]
    return (
        read.wal_dir,
        read.snap,
        read.wal.snap,
        res.metadata,
        res.hard_state,
        entries,
        read.wal.tail,
    )


def _unpack(payload: tuple[Any, ...]) -> StorageRead:
    wal_dir, snap, walsnap, metadata, hard_state, raw, tail = payload
    entries = [Entry(term, index, EntryType(kind), data) for term, index, kind, data in raw]
    return StorageRead(
        wal_dir, snap, WALRead(walsnap, ReadResult(metadata, hard_state, entries), tail)
    )
