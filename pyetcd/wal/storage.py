"""The Raft core's Storage, backed by the WAL and the snapshot files.

Like etcd's server, the log lives in a MemoryStorage filled from the WAL at start; every
write goes to memory and to the WAL, and a restart rebuilds exactly the durable part.

Rule: the thread that drives the Raft core is the only caller of the write methods;
``save`` queues the WAL write (group commit) and returns its future, which the caller
must await before sending messages that depend on what was saved.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from pyetcd.raft.storage import MemoryStorage
from pyetcd.raft.types import ConfState, Entry, HardState, Snapshot

from .fs import FS, OS_FS
from .reader import ScanCache, WALRead, read_wal
from .record import Metadata, WALSnapshot
from .segment import list_segment_names
from .snap import SnapMetrics, Snapshotter
from .wal import SEGMENT_SIZE_BYTES, WAL, wal_exists

__all__ = ["StorageRead", "WALStorage"]


@dataclass(frozen=True, slots=True)
class StorageRead:
    """Everything a restart recovers from the WAL directory and the snapshot files."""

    wal_dir: str  # absolute
    snap: Snapshot | None  # the newest snapshot with a marker in the WAL
    wal: WALRead  # the log read from that marker


class WALStorage:
    """A ``pyetcd.raft.storage.Storage`` whose writes are durable in the WAL."""

    def __init__(
        self, wal: WAL, snapshotter: Snapshotter, memory: MemoryStorage, created: bool
    ) -> None:
        self.wal = wal
        self.snapshotter = snapshotter
        self.memory = memory
        # The reads the Raft core makes several times per put go straight to the memory
        # log, one Python frame less each (the methods below say the same; ``memory``
        # is never replaced).
        self.term = memory.term  # type: ignore[method-assign]
        self.first_index = memory.first_index  # type: ignore[method-assign]
        self.last_index = memory.last_index  # type: ignore[method-assign]
        self.entries = memory.entries  # type: ignore[method-assign]
        #: True if this open created the WAL (a new member), False on restart.
        self.created = created

    @classmethod
    def open(
        cls,
        data_dir: str,
        *,
        wal_dir: str | None = None,
        metadata: Metadata | None = None,
        fs: FS = OS_FS,
        segment_size: int = SEGMENT_SIZE_BYTES,
        max_wals: int = 5,
        max_snapshots: int = 5,
        read: StorageRead | None = None,
        lock_fd: int | None = None,
        snap_metrics: SnapMetrics | None = None,
    ) -> WALStorage:
        """Open the member's storage under ``data_dir`` (``member/wal``, ``member/snap``),
        creating it with ``metadata`` if there is no WAL yet.

        On restart the newest snapshot that has a marker in the WAL is loaded, and the
        WAL is replayed from it. Raises the WAL's errors (see ``WAL.open``).

        ``read``: what :meth:`read` returned for this directory beforehand (perhaps in
        another process) while ``lock_fd`` (``WAL.lock_dir``, now owned by the WAL) was
        held; without the lock, or if the segment files changed, the log is read again.

        ``snap_metrics``: told the durations of each snapshot file saved.
        """
        wal_dir = wal_dir or os.path.join(data_dir, "member", "wal")
        snapshotter = Snapshotter(
            os.path.join(data_dir, "member", "snap"),
            fs=fs,
            max_snapshots=max_snapshots,
            metrics=snap_metrics,
        )
        memory = MemoryStorage()
        if not wal_exists(wal_dir, fs):
            wal = WAL.create(
                wal_dir, metadata or Metadata(), fs=fs, segment_size=segment_size, max_wals=max_wals
            )
            fs.mkdir_all(snapshotter.dir)
            return cls(wal, snapshotter, memory, created=True)
        if read is None or lock_fd is None or read.wal_dir != os.path.abspath(wal_dir):
            read = cls.read(data_dir, wal_dir=wal_dir, fs=fs, max_snapshots=max_snapshots)
        snap = read.snap
        wal, result = WAL.open(
            wal_dir,
            read.wal.snap,
            fs=fs,
            segment_size=segment_size,
            max_wals=max_wals,
            read=read.wal,
            lock_fd=lock_fd,
        )
        if snap is not None:
            memory.apply_snapshot(snap)
        memory.set_hard_state(result.hard_state)
        memory.append(result.entries)
        return cls(wal, snapshotter, memory, created=False)

    @staticmethod
    def read(
        data_dir: str,
        *,
        wal_dir: str | None = None,
        fs: FS = OS_FS,
        max_snapshots: int = 5,
    ) -> StorageRead:
        """What ``open`` recovers from an existing WAL and snapshots, read without
        taking the WAL's lock and without changing the log (a snapshot file that fails
        to load is renamed ``.broken``, as ``open`` would). Raises the WAL's errors."""
        wal_dir = os.path.abspath(wal_dir or os.path.join(data_dir, "member", "wal"))
        snapshotter = Snapshotter(
            os.path.join(data_dir, "member", "snap"), fs=fs, max_snapshots=max_snapshots
        )
        scans: ScanCache = {}  # the log is read once for both passes
        # The newest snapshot's marker is in the segment holding its index or a later
        # one: the log before that segment is read only when no snapshot from there on
        # is usable (a long log kept by --max-wals is not scanned whole on every start).
        newest = snapshotter.newest_index()
        snap = None
        if newest:
            markers = WAL.valid_snapshot_entries(wal_dir, fs, scans, from_index=newest)
            snap = snapshotter.load_newest_available(markers)
        if snap is None:
            markers = WAL.valid_snapshot_entries(wal_dir, fs, scans)
            snap = snapshotter.load_newest_available(markers)
        walsnap = (
            WALSnapshot() if snap is None else WALSnapshot(snap.metadata.index, snap.metadata.term)
        )
        segments = list_segment_names(fs.listdir(wal_dir))
        return StorageRead(wal_dir, snap, read_wal(fs, wal_dir, segments, walsnap, scans))

    @property
    def metadata(self) -> Metadata:
        return self.wal.metadata

    # -- Storage (reads) ----------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self.memory.initial_state()

    def entries(self, lo: int, hi: int, max_size: int) -> list[Entry]:
        return self.memory.entries(lo, hi, max_size)

    def term(self, index: int) -> int:
        return self.memory.term(index)

    def first_index(self) -> int:
        return self.memory.first_index()

    def last_index(self) -> int:
        return self.memory.last_index()

    def snapshot(self) -> Snapshot:
        return self.memory.snapshot()

    @property
    def sync_seconds_average(self) -> float:
        """Moving average of the WAL's fdatasync calls (the disk's speed)."""
        return self.wal.sync_seconds_average

    # -- writes by the application -----------------------------------------------

    def save(self, hard_state: HardState, entries: Sequence[Entry] = ()) -> Future[None]:
        """Append ``entries`` and set ``hard_state`` (if not empty); the future completes
        when they are durable. Memory is updated at once, so reads see them before then."""
        self._remember(hard_state, entries)
        return self.wal.save(hard_state, entries)

    def save_inline(
        self, hard_state: HardState, entries: Sequence[Entry] = ()
    ) -> Future[None] | None:
        """``save``, written (and synced) on this thread if the WAL's writer has nothing
        queued (``WAL.save_inline``): None once they are durable, and a failure is
        raised here. Otherwise queued as by ``save``, whose future is returned."""
        self._remember(hard_state, entries)
        if self.wal.save_inline(hard_state, entries):
            return None
        return self.wal.save(hard_state, entries)

    def _remember(self, hard_state: HardState, entries: Sequence[Entry]) -> None:
        if entries:
            self.memory.append(list(entries))
        if not hard_state.is_empty():
            self.memory.set_hard_state(hard_state)

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Persist a snapshot received from the leader and replace the log with it.

        Blocks until durable (snapshot file, then WAL marker; an orphan file is harmless,
        a marker without its file is not). The hard state saying commit >= the snapshot
        index must have been saved too, or the marker is ignored at the next start.
        """
        self._persist_snapshot(snap)
        self.memory.apply_snapshot(snap)
        self.wal.release_to(snap.metadata.index)

    def create_snapshot(self, index: int, conf_state: ConfState | None, data: bytes) -> Snapshot:
        """Record the applied state at ``index`` as a snapshot, durably; then release
        WAL segments before it. Blocks until durable."""
        snap = self.memory.create_snapshot(index, conf_state, data)
        self._persist_snapshot(snap)
        self.wal.release_to(index)
        return snap

    def compact(self, compact_index: int) -> None:
        """Drop cached entries before ``compact_index`` (memory only; see create_snapshot)."""
        self.memory.compact(compact_index)

    def close(self) -> None:
        self.wal.close()

    def _persist_snapshot(self, snap: Snapshot) -> None:
        self.snapshotter.save_snap(snap)
        md = snap.metadata
        self.wal.save_snapshot(WALSnapshot(md.index, md.term)).result()
