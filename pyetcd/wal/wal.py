"""The write-ahead log: segment files, group commit, repair and release.

Rules:
1. Whoever holds ``_tail_lock`` owns the tail (open segment, offset, running crc):
   normally the writer thread. ``save`` only queues; the thread drains everything
   queued, encodes it in order, writes it with one ``write`` and makes it durable with
   one ``fdatasync`` (group commit). Callers learn completion per save through a
   ``concurrent.futures.Future``. ``save_inline`` writes on the caller's thread
   instead (no future, no hand-off), but only when no queued save is still unwritten
   (``_unwritten`` counts them), so saves stay in call order.
2. A save is synced when it carries entries, changes term or vote, or is a snapshot
   marker (etcd's MustSync); a commit-only hard state is written but not synced.
3. A new segment is a temp file, preallocated, written, fsynced, renamed, and the
   directory fsynced; the segment before it is truncated to its end and synced first.
4. The WAL directory is created as a temp directory that is renamed into place, its
   parent fsynced; the directory is ``flock``ed while a WAL object has it open.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import struct
import threading
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import msgpack

from pyetcd.raft.types import EMPTY_HARD_STATE, Entry, HardState

from .errors import WALClosedError, WALExistsError, WALLockedError, WALNotFoundError
from .fs import FS, OS_FS
from .reader import ReadResult, Replay, ScanCache, WALRead, read_log, read_wal, search_index
from .record import (
    Metadata,
    RecordType,
    WALSnapshot,
    encode_frame,
    encode_metadata,
    encode_snapshot,
    encode_state,
    length_word,
)
from .segment import SegmentName, list_segment_names, segment_name

__all__ = ["SEGMENT_SIZE_BYTES", "WAL", "wal_exists"]

log = logging.getLogger(__name__)

#: Preallocated size of a segment (etcd's SegmentSizeBytes).
SEGMENT_SIZE_BYTES = 64 * 1000 * 1000
#: An fsync slower than this is logged (etcd's warnSyncDuration).
WARN_SYNC_SECONDS = 1.0
#: Weight of the newest fdatasync in ``WAL.sync_seconds_average``.
SYNC_AVERAGE_WEIGHT = 0.125

_HEADER = struct.Struct("<QIB")
_ENTRY = int(RecordType.ENTRY)
_ENTRY_TYPE = bytes([_ENTRY])
_STATE = int(RecordType.STATE)
_STATE_TYPE = bytes([_STATE])
_PAD = [b"\0" * i for i in range(8)]
_JOIN_ONCE = 4096  # entries longer than this are not concatenated with their framing


@dataclass(slots=True)
class _Save:
    hard_state: HardState
    entries: Sequence[Entry]
    snapshot: WALSnapshot | None
    future: Future[None] | None  # None: written inline, the caller is told directly


def wal_exists(wal_dir: str, fs: FS = OS_FS) -> bool:
    """Whether ``wal_dir`` holds at least one segment file."""
    return fs.exists(wal_dir) and bool(list_segment_names(fs.listdir(wal_dir)))


def _lock_dir(fs: FS, wal_dir: str) -> int:
    if not fs.exists(wal_dir):
        raise WALNotFoundError()
    fd = fs.open(wal_dir, os.O_RDONLY | os.O_DIRECTORY)
    if not fs.lock(fd):
        fs.close(fd)
        raise WALLockedError(wal_dir)
    return fd


class WAL:
    """An open write-ahead log positioned for appending. Build with ``create``/``open``."""

    def __init__(
        self,
        fs: FS,
        wal_dir: str,
        lock_fd: int,
        metadata: Metadata,
        segments: list[SegmentName],
        tail: tuple[int, int, int, int, HardState],
        segment_size: int,
        max_wals: int,
    ) -> None:
        self.fs = fs
        self.dir = wal_dir
        self.metadata = metadata
        self.segment_size = segment_size
        self.max_wals = max_wals
        self._lock_fd = lock_fd
        self._segments_lock = threading.Lock()
        self._segments = segments  # guarded by _segments_lock; appended by the writer
        # Writer-thread state: fd of the last segment, write offset, running crc,
        # index of the last entry written, last hard state written.
        self._fd, self._offset, self._crc, self._last_index, self._hs = tail
        self._packer = msgpack.Packer(use_bin_type=True)
        self._queue: queue.SimpleQueue[_Save | None] = queue.SimpleQueue()
        self._tail_lock = threading.Lock()
        # Saves queued but not yet written (changed under _count_lock; decremented by
        # the writer while it still holds _tail_lock). An inline save, holding
        # _tail_lock, may only go ahead when it is 0, or it would overtake them.
        self._unwritten = 0
        self._count_lock = threading.Lock()
        self._error: BaseException | None = None
        self._closed = False
        #: Number of fdatasync calls for saves (group commit makes it << number of saves).
        self.sync_count = 0
        #: Moving average of the saves' fdatasync calls alone (the disk, not the thread
        #: hand-offs or a busy CPU around them); written by whichever thread synced.
        self.sync_seconds_average = 0.0
        #: Bytes written to segments since this open (etcd_disk_wal_write_bytes_total);
        #: bumped by the writer thread, read by anyone.
        self.bytes_written = 0
        self._writer = threading.Thread(target=self._run, name="wal-writer", daemon=True)
        self._writer.start()

    # -- construction -------------------------------------------------------

    @classmethod
    def create(
        cls,
        wal_dir: str,
        metadata: Metadata,
        *,
        fs: FS = OS_FS,
        segment_size: int = SEGMENT_SIZE_BYTES,
        max_wals: int = 5,
    ) -> WAL:
        """Create a new WAL in ``wal_dir`` (which must not hold one) and open it.

        Raises WALExistsError if segments are already there.
        """
        wal_dir = os.path.abspath(wal_dir)
        if wal_exists(wal_dir, fs):
            raise WALExistsError(wal_dir)
        parent = os.path.dirname(wal_dir)
        fs.mkdir_all(parent)
        tmp = wal_dir + ".tmp"
        if fs.exists(tmp):
            fs.rmtree(tmp)
        fs.mkdir(tmp)
        name = segment_name(0, 0)
        fd = fs.open(os.path.join(tmp, name), os.O_RDWR | os.O_CREAT | os.O_EXCL)
        try:
            fs.preallocate(fd, segment_size)
            head, crc = _header(0, metadata, None)
            frame, crc = encode_frame(RecordType.SNAPSHOT, encode_snapshot(WALSnapshot()), crc)
            head += frame
            fs.write(fd, head)
            fs.fsync(fd)
            fs.fsync_dir(tmp)
            if fs.exists(wal_dir):  # an empty directory left by someone: replace it
                fs.rmtree(wal_dir)
            fs.rename(tmp, wal_dir)
            fs.fsync_dir(parent)
            lock_fd = _lock_dir(fs, wal_dir)
        except BaseException:
            fs.close(fd)
            raise
        tail = (fd, len(head), crc, 0, EMPTY_HARD_STATE)
        segments = [SegmentName(0, 0)]
        return cls(fs, wal_dir, lock_fd, metadata, segments, tail, segment_size, max_wals)

    @classmethod
    def open(
        cls,
        wal_dir: str,
        snap: WALSnapshot | None = None,
        *,
        fs: FS = OS_FS,
        segment_size: int = SEGMENT_SIZE_BYTES,
        max_wals: int = 5,
        read: WALRead | None = None,
        lock_fd: int | None = None,
    ) -> tuple[WAL, ReadResult]:
        """Open an existing WAL, replay it from ``snap`` and position it for appending.

        A torn tail of the last segment is truncated (a ``.broken`` copy kept). Raises
        WALNotFoundError, WALLockedError, CorruptWALError (nothing changed on disk),
        SnapshotNotFoundError, SnapshotMismatchError or MetadataConflictError.

        ``read``: a read of this log made beforehand (``read_wal``) while ``lock_fd``
        (from :meth:`lock_dir`, now owned by the WAL) was held; used if it is from
        ``snap`` and saw the same segment files, else the log is read again.
        """
        wal_dir = os.path.abspath(wal_dir)
        snap = snap or WALSnapshot()
        if lock_fd is None:
            lock_fd = _lock_dir(fs, wal_dir)
            read = None  # not read under our lock: someone may have written since
        try:
            names = fs.listdir(wal_dir)
            segments = list_segment_names(names)
            if read is None or read.snap != snap or read.tail.segments != segments:
                read = read_wal(fs, wal_dir, segments, snap)
            tail = read.tail
            last_path = os.path.join(wal_dir, str(segments[-1]))
            if tail.torn:
                _repair(fs, last_path, tail.end, tail.reason)
            for name in names:  # cuts that never completed
                if name.endswith(".wal.tmp"):
                    fs.unlink(os.path.join(wal_dir, name))
            fd = fs.open(last_path, os.O_RDWR)
        except BaseException:
            fs.close(lock_fd)
            raise
        try:
            fs.preallocate(fd, segment_size)
            fs.seek(fd, tail.end)
        except BaseException:
            fs.close(fd)
            fs.close(lock_fd)
            raise
        result = read.result
        position = (fd, tail.end, tail.crc, tail.last_written, result.hard_state)
        wal = cls(fs, wal_dir, lock_fd, result.metadata, segments, position, segment_size, max_wals)
        return wal, result

    @staticmethod
    def lock_dir(wal_dir: str, fs: FS = OS_FS) -> int:
        """Take the WAL directory's lock ahead of :meth:`open`; returns its fd.

        Raises WALNotFoundError or WALLockedError.
        """
        return _lock_dir(fs, os.path.abspath(wal_dir))

    @staticmethod
    def valid_snapshot_entries(
        wal_dir: str, fs: FS = OS_FS, scans: ScanCache | None = None, from_index: int = 0
    ) -> list[WALSnapshot]:
        """The snapshot markers a restart may start from, oldest first: those at or
        below the last hard state's commit index (read only, no lock taken).

        ``from_index``: read only the segments from the one holding that index on (all
        of them when none starts at or below it), so only markers there are found."""
        wal_dir = os.path.abspath(wal_dir)
        segments = list_segment_names(fs.listdir(wal_dir))
        if not segments:
            raise WALNotFoundError()
        start = 0
        if from_index:
            with contextlib.suppress(WALNotFoundError):
                start = search_index(segments, from_index)
        replay = Replay(WALSnapshot(), replay_entries=False)
        read_log(fs, wal_dir, segments, replay, start, scans)
        commit = replay.hard_state.commit
        return [s for s in replay.snapshots if s.index <= commit]

    # -- writing ------------------------------------------------------------

    def save(self, hard_state: HardState, entries: Sequence[Entry] = ()) -> Future[None]:
        """Queue ``entries`` then ``hard_state`` for writing; the future completes when
        they are written (and fdatasynced if entries, term or vote changed).

        Safe to call from any thread; saves are written in call order. ``entries`` must
        not be mutated afterwards. A failed write fails this and every later save.
        """
        fut: Future[None] = Future()
        if self._closed:
            fut.set_exception(WALClosedError())
        elif hard_state.is_empty() and not entries:
            fut.set_result(None)
        else:
            self._enqueue(_Save(hard_state, entries, None, fut))
        return fut

    def save_inline(self, hard_state: HardState, entries: Sequence[Entry] = ()) -> bool:
        """Write ``entries`` then ``hard_state`` (and fdatasync them, as ``save`` would)
        on this thread before returning, skipping the two thread hand-offs and the
        future: True once done. False, with nothing done, when the writer thread has
        saves queued or is writing (call ``save``: saves stay in call order).

        Raises what the write or sync raised (WALClosedError once closed); a failed
        write fails every later save too.
        """
        if self._closed:
            raise WALClosedError()
        if hard_state.is_empty() and not entries:
            return True
        if not self._tail_lock.acquire(blocking=False):
            return False
        try:
            if self._unwritten:
                return False
            if self._error is not None:
                raise self._error
            try:
                # _write_batch of this one save, without building it
                chunks: list[bytes] = []
                size, sync = self._encode(hard_state, entries, None, chunks)
                cut = self._offset + size >= self.segment_size
                if chunks:
                    self._write(chunks)
                if cut:
                    self._cut()  # syncs everything written so far
                elif sync:
                    self._sync()
            except BaseException as exc:
                self._error = exc
                raise
            return True
        finally:
            self._tail_lock.release()

    def save_snapshot(self, snap: WALSnapshot) -> Future[None]:
        """Queue a snapshot marker; completes once it is fdatasynced."""
        fut: Future[None] = Future()
        if self._closed:
            fut.set_exception(WALClosedError())
        else:
            self._enqueue(_Save(EMPTY_HARD_STATE, (), snap, fut))
        return fut

    def _enqueue(self, r: _Save) -> None:
        with self._count_lock:
            self._unwritten += 1
        self._queue.put(r)

    def close(self) -> None:
        """Stop the writer after everything queued, sync, and release the lock."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._writer.join()
        try:
            if self._error is None:
                self.fs.fdatasync(self._fd)
        finally:
            if self._fd >= 0:
                self.fs.close(self._fd)
            self.fs.close(self._lock_fd)

    # -- release ------------------------------------------------------------

    def segments(self) -> list[SegmentName]:
        with self._segments_lock:
            return list(self._segments)

    def release_to(self, index: int) -> list[str]:
        """Remove segments wholly before ``index`` (a durable snapshot's index) while more
        than ``max_wals`` files exist (0 keeps all); returns the removed file names."""
        with self._segments_lock:
            try:
                keep_from = search_index(self._segments, index)
            except WALNotFoundError:
                return []
            excess = len(self._segments) - self.max_wals if self.max_wals > 0 else 0
            doomed = self._segments[: max(0, min(keep_from, excess))]
            del self._segments[: len(doomed)]
        for seg in doomed:
            self.fs.unlink(os.path.join(self.dir, str(seg)))
        if doomed:
            self.fs.fsync_dir(self.dir)
        return [str(s) for s in doomed]

    # -- the writer thread ----------------------------------------------------

    def _run(self) -> None:
        q = self._queue
        while True:
            batch = [q.get()]
            while True:
                try:
                    batch.append(q.get_nowait())
                except queue.Empty:
                    break
            reqs = [r for r in batch if r is not None]
            if reqs:
                with self._tail_lock:
                    self._commit(reqs)
                    with self._count_lock:
                        self._unwritten -= len(reqs)
            if len(reqs) != len(batch):
                return

    def _commit(self, reqs: list[_Save]) -> None:
        # RUNNING futures can no longer be cancelled; a save is written even if its
        # caller gave up waiting, or the log would get a hole.
        futures = [r.future for r in reqs if r.future is not None]
        live = [f.set_running_or_notify_cancel() for f in futures]
        try:
            if self._error is not None:
                raise self._error
            if self._write_batch(reqs):
                self._sync()
        except BaseException as exc:
            self._error = exc
            for f, ok in zip(futures, live, strict=True):
                if ok:
                    f.set_exception(exc)
            return
        for f, ok in zip(futures, live, strict=True):
            if ok:
                f.set_result(None)

    def _sync(self) -> None:
        start = time.monotonic()
        self.fs.fdatasync(self._fd)
        self.sync_count += 1
        took = time.monotonic() - start
        self.sync_seconds_average += (took - self.sync_seconds_average) * SYNC_AVERAGE_WEIGHT
        if took > WARN_SYNC_SECONDS:
            log.warning("slow fdatasync took %.3fs, expected < %.3fs", took, WARN_SYNC_SECONDS)

    def _write_batch(self, reqs: Sequence[_Save]) -> bool:
        """Write the batch (cutting segments as they fill); True if a sync is owed."""
        chunks: list[bytes] = []
        size = 0
        must_sync = False
        for r in reqs:
            added, sync = self._encode(r.hard_state, r.entries, r.snapshot, chunks)
            size += added
            must_sync = must_sync or sync
            if self._offset + size >= self.segment_size:
                self._write(chunks)
                chunks = []
                size = 0
                self._cut()  # syncs everything written so far
                must_sync = False
        if chunks:
            self._write(chunks)
        return must_sync

    def _encode(
        self,
        hs: HardState,
        entries: Sequence[Entry],
        snapshot: WALSnapshot | None,
        out: list[bytes],
    ) -> tuple[int, bool]:
        crc = self._crc
        size = 0
        sync = False
        if entries:
            pack = self._packer.pack
            crc32 = zlib.crc32
            header = _HEADER.pack
            append = out.append
            for e in entries:
                data = pack((e.term, e.index, int(e.type), e.data))
                crc = crc32(data, crc32(_ENTRY_TYPE, crc))
                n = 5 + len(data)
                head, pad = header(length_word(n), crc, _ENTRY), _PAD[-n % 8]
                if n > _JOIN_ONCE:  # a long entry is copied once, by the write's join
                    out += (head, data, pad)
                else:
                    append(head + data + pad)
                size += 8 + n + len(pad)
            self._last_index = entries[-1].index
            sync = True
        old = self._hs
        changed = hs.term != old.term or hs.vote != old.vote or hs.commit != old.commit
        if changed and not hs.is_empty():
            sync = sync or hs.term != old.term or hs.vote != old.vote
            # encode_frame(STATE, encode_state(hs)) inline, with the WAL's own packer
            data = self._packer.pack((hs.term, hs.vote, hs.commit))
            crc = zlib.crc32(data, zlib.crc32(_STATE_TYPE, crc))
            n = 5 + len(data)
            frame = _HEADER.pack(length_word(n), crc, _STATE) + data + _PAD[-n % 8]
            out.append(frame)
            size += len(frame)
            self._hs = hs
        if snapshot is not None:
            frame, crc = encode_frame(RecordType.SNAPSHOT, encode_snapshot(snapshot), crc)
            out.append(frame)
            size += len(frame)
            self._last_index = max(self._last_index, snapshot.index)
            sync = True
        self._crc = crc
        return size, sync

    def _write(self, chunks: list[bytes]) -> None:
        data = b"".join(chunks)
        self.fs.write(self._fd, data)
        self._offset += len(data)
        self.bytes_written += len(data)

    def _cut(self) -> None:
        fs = self.fs
        fs.ftruncate(self._fd, self._offset)  # drop the preallocated rest: the segment is final
        fs.fdatasync(self._fd)
        fs.close(self._fd)
        # Until the next segment is open there is no tail: a failure below (EMFILE,
        # ENOSPC) must not leave a closed descriptor, whose number may be reused, to
        # be synced or closed again.
        self._fd = -1
        with self._segments_lock:
            seg = SegmentName(self._segments[-1].seq + 1, self._last_index + 1)
        path = os.path.join(self.dir, str(seg))
        tmp = path + ".tmp"
        fd = fs.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        self._fd = fd
        fs.preallocate(fd, self.segment_size)
        head, self._crc = _header(self._crc, self.metadata, self._hs)
        fs.write(fd, head)
        fs.fsync(fd)
        fs.rename(tmp, path)
        fs.fsync_dir(self.dir)
        self._offset = len(head)
        self.bytes_written += len(head)
        with self._segments_lock:
            self._segments.append(seg)
        log.info("created a new WAL segment %s", path)


def _header(crc: int, metadata: Metadata, hs: HardState | None) -> tuple[bytes, int]:
    """The records opening a segment: crc, metadata and (after a cut) the hard state."""
    out, crc = encode_frame(RecordType.CRC, b"", crc)
    frame, crc = encode_frame(RecordType.METADATA, encode_metadata(metadata), crc)
    out += frame
    if hs is not None and not hs.is_empty():
        frame, crc = encode_frame(RecordType.STATE, encode_state(hs), crc)
        out += frame
    return out, crc


def _repair(fs: FS, path: str, end: int, reason: str) -> None:
    """Keep a ``.broken`` copy of the last segment, then cut it at its last valid record."""
    fs.copy_durable(path, path + ".broken")
    fd = fs.open(path, os.O_RDWR)
    try:
        fs.ftruncate(fd, end)
        fs.fsync(fd)
    finally:
        fs.close(fd)
    log.warning(
        "repaired torn WAL tail of %s at offset %d (%s); copy kept as %s.broken",
        path,
        end,
        reason,
        path,
    )
