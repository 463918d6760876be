"""WAL create/open/save, segment cuts, group commit, release and locking."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from walhelpers import META, SMALL_SEGMENT, entry, write_log

from pyetcd.raft.types import Entry, HardState
from pyetcd.wal import (
    WAL,
    Metadata,
    SnapshotMismatchError,
    SnapshotNotFoundError,
    WALExistsError,
    WALLockedError,
    WALNotFoundError,
    WALSnapshot,
)
from pyetcd.wal.fs import FS
from pyetcd.wal.segment import list_segment_names


def wal_dir(tmp_path: Path) -> str:
    return str(tmp_path / "data" / "member" / "wal")


def test_create_then_reopen_recovers_metadata_state_and_entries(tmp_path: Path) -> None:
    d = wal_dir(tmp_path)
    w = WAL.create(d, META, segment_size=SMALL_SEGMENT)
    hs = write_log(w, 1, 50)
    w.close()
    assert os.listdir(d) == ["0000000000000000-0000000000000000.wal"]
    assert os.path.getsize(os.path.join(d, os.listdir(d)[0])) == SMALL_SEGMENT  # preallocated
    w, r = WAL.open(d, segment_size=SMALL_SEGMENT)
    w.close()
    assert r.metadata == META
    assert r.hard_state == hs
    assert r.entries == [entry(i) for i in range(1, 51)]


def test_create_refuses_an_existing_wal_and_open_a_missing_one(tmp_path: Path) -> None:
    d = wal_dir(tmp_path)
    with pytest.raises(WALNotFoundError):
        WAL.open(d)
    WAL.create(d, META, segment_size=SMALL_SEGMENT).close()
    with pytest.raises(WALExistsError):
        WAL.create(d, META, segment_size=SMALL_SEGMENT)
    assert not os.path.exists(d + ".tmp")


def test_segments_are_cut_and_named_by_sequence_and_first_index(tmp_path: Path) -> None:
    d = wal_dir(tmp_path)
    w = WAL.create(d, META, segment_size=4096)
    write_log(w, 1, 200, size=100)
    segs = w.segments()
    w.close()
    assert len(segs) > 3
    assert [s.seq for s in segs] == list(range(len(segs)))
    names = list_segment_names(os.listdir(d))
    assert names == segs
    w, r = WAL.open(d, segment_size=4096)
    assert [e.index for e in r.entries] == list(range(1, 201))
    # each cut segment's name is the index of its first entry
    for seg in segs[1:]:
        assert seg.index > 1
    w.close()


def test_overwritten_suffix_is_replaced_on_replay(tmp_path: Path) -> None:
    d = wal_dir(tmp_path)
    w = WAL.create(d, META, segment_size=SMALL_SEGMENT)
    write_log(w, 1, 10, term=1)
    # a new leader at term 2 overwrites from index 6
    w.save(HardState(term=2, vote=2, commit=5), [entry(i, term=2) for i in range(6, 9)]).result()
    w.close()
    _, r = _open_closed(d)
    assert r.entries == [entry(i, 1) for i in range(1, 6)] + [entry(i, 2) for i in range(6, 9)]
    assert r.hard_state == HardState(term=2, vote=2, commit=5)


def _open_closed(d: str, snap: WALSnapshot | None = None):  # type: ignore[no-untyped-def]
    w, r = WAL.open(d, snap, segment_size=SMALL_SEGMENT)
    w.close()
    return w, r


def test_commit_only_state_is_written_without_fdatasync(tmp_path: Path) -> None:
    w = WAL.create(wal_dir(tmp_path), META, segment_size=SMALL_SEGMENT)
    w.save(HardState(1, 1, 0), [entry(1)]).result()
    before = w.sync_count
    w.save(HardState(1, 1, 1)).result()  # commit changed only
    assert w.sync_count == before
    w.save(HardState(2, 0, 1)).result()  # term changed
    assert w.sync_count == before + 1
    w.close()
    _, r = _open_closed(wal_dir(tmp_path))
    assert r.hard_state == HardState(2, 0, 1)


def test_concurrent_saves_are_group_committed_in_call_order(tmp_path: Path) -> None:
    w = WAL.create(wal_dir(tmp_path), META, segment_size=SMALL_SEGMENT)
    lock = threading.Lock()
    nxt = [1]
    futs = []

    def writer() -> None:
        for _ in range(200):
            with lock:  # index taken and save queued atomically: call order = index order
                i = nxt[0]
                nxt[0] += 1
                futs.append(w.save(HardState(1, 1, 0), [entry(i, size=40)]))

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for f in futs:
        f.result()
    assert w.sync_count < len(futs)  # batching happened (one sync per drained batch)
    w.close()
    _, r = _open_closed(wal_dir(tmp_path))
    assert [e.index for e in r.entries] == list(range(1, 1601))


def test_open_at_snapshot_returns_entries_after_it(tmp_path: Path) -> None:
    d = wal_dir(tmp_path)
    w = WAL.create(d, META, segment_size=SMALL_SEGMENT)
    write_log(w, 1, 20)
    w.save_snapshot(WALSnapshot(index=12, term=1)).result()
    write_log(w, 21, 25)
    w.close()
    _, r = _open_closed(d, WALSnapshot(12, 1))
    assert [e.index for e in r.entries] == list(range(13, 26))
    with pytest.raises(SnapshotMismatchError):
        WAL.open(d, WALSnapshot(12, 7), segment_size=SMALL_SEGMENT)
    with pytest.raises(SnapshotNotFoundError):
        WAL.open(d, WALSnapshot(13, 1), segment_size=SMALL_SEGMENT)
    assert WAL.valid_snapshot_entries(d) == [WALSnapshot(0, 0), WALSnapshot(12, 1)]


def test_release_removes_segments_before_the_snapshot_keeping_max_wals(tmp_path: Path) -> None:
    d = wal_dir(tmp_path)
    w = WAL.create(d, META, segment_size=4096, max_wals=3)
    write_log(w, 1, 300, size=100)
    w.save(HardState(1, 1, 300)).result()
    segs = w.segments()
    assert len(segs) >= 8
    snap_index = segs[-2].index + 1  # inside the second to last segment
    w.save_snapshot(WALSnapshot(snap_index, 1)).result()
    removed = w.release_to(snap_index)
    assert removed == [str(s) for s in segs[: len(segs) - 3]]
    assert list_segment_names(os.listdir(d)) == segs[-3:]
    w.close()
    w, r = WAL.open(d, WALSnapshot(snap_index, 1), segment_size=4096)
    w.close()
    assert [e.index for e in r.entries] == list(range(snap_index + 1, 301))


def test_release_keeps_the_segment_holding_the_snapshot(tmp_path: Path) -> None:
    d = wal_dir(tmp_path)
    w = WAL.create(d, META, segment_size=4096, max_wals=1)
    write_log(w, 1, 300, size=100)
    segs = w.segments()
    snap_index = segs[3].index + 2
    w.save(HardState(1, 1, 300)).result()
    w.save_snapshot(WALSnapshot(snap_index, 1)).result()
    assert w.release_to(snap_index) == [str(s) for s in segs[:3]]
    w.close()
    w, r = WAL.open(d, WALSnapshot(snap_index, 1), segment_size=4096)
    w.close()
    assert [e.index for e in r.entries] == list(range(snap_index + 1, 301))
    assert r.hard_state == HardState(1, 1, 300)


def test_max_wals_zero_keeps_everything(tmp_path: Path) -> None:
    w = WAL.create(wal_dir(tmp_path), META, segment_size=4096, max_wals=0)
    write_log(w, 1, 100, size=100)
    w.save_snapshot(WALSnapshot(100, 1)).result()
    assert w.release_to(100) == []
    w.close()


def test_a_second_open_fails_while_locked(tmp_path: Path) -> None:
    d = wal_dir(tmp_path)
    w = WAL.create(d, META, segment_size=SMALL_SEGMENT)
    write_log(w, 1, 3)
    with pytest.raises(WALLockedError, match="locked"):
        WAL.open(d, segment_size=SMALL_SEGMENT)
    # and from another process
    code = (
        "import sys\nfrom pyetcd.wal import WAL, WALLockedError\n"
        "try:\n    WAL.open(sys.argv[1])\nexcept WALLockedError as e:\n"
        "    print(e); sys.exit(3)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, d], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 3, proc.stderr
    assert "locked by another process" in proc.stdout
    w.close()
    WAL.open(d, segment_size=SMALL_SEGMENT)[0].close()


def test_save_after_close_fails(tmp_path: Path) -> None:
    w = WAL.create(wal_dir(tmp_path), META, segment_size=SMALL_SEGMENT)
    w.close()
    with pytest.raises(Exception, match="closed"):
        w.save(HardState(1, 0, 0), [Entry(1, 1)]).result()


def test_metadata_is_repeated_in_every_segment(tmp_path: Path) -> None:
    d = wal_dir(tmp_path)
    w = WAL.create(d, Metadata(7, 9), segment_size=4096)
    write_log(w, 1, 100, size=100)
    w.close()
    w, r = WAL.open(d, segment_size=4096)
    w.close()
    assert r.metadata == Metadata(7, 9)


class _GatedFS(FS):
    """Records which thread wrote and synced; fdatasync waits for ``gate`` when armed."""

    def __init__(self) -> None:
        self.threads: list[tuple[str, str]] = []
        self.gate: threading.Event | None = None
        self.syncing = threading.Event()

    def write(self, fd: int, data: bytes | memoryview) -> None:
        self.threads.append(("write", threading.current_thread().name))
        super().write(fd, data)

    def fdatasync(self, fd: int) -> None:
        self.threads.append(("fdatasync", threading.current_thread().name))
        if self.gate is not None:
            self.syncing.set()
            assert self.gate.wait(10)
        super().fdatasync(fd)


def test_inline_save_is_written_and_synced_on_the_callers_thread(tmp_path: Path) -> None:
    fs = _GatedFS()
    w = WAL.create(wal_dir(tmp_path), META, fs=fs, segment_size=SMALL_SEGMENT)
    fs.threads.clear()
    before = w.sync_count
    assert w.save_inline(HardState(1, 1, 0), [entry(1)]) is True
    me = threading.current_thread().name
    assert fs.threads == [("write", me), ("fdatasync", me)]
    assert w.sync_count == before + 1
    w.close()
    _, r = _open_closed(wal_dir(tmp_path))
    assert [e.index for e in r.entries] == [1]


def test_inline_save_never_overtakes_a_queued_one(tmp_path: Path) -> None:
    fs = _GatedFS()
    w = WAL.create(wal_dir(tmp_path), META, fs=fs, segment_size=SMALL_SEGMENT)
    fs.gate = threading.Event()
    first = w.save(HardState(1, 1, 0), [entry(1)])  # the writer thread blocks in its sync
    assert fs.syncing.wait(10)
    # The writer is busy: nothing is written ahead of the first; queued behind it instead.
    assert w.save_inline(HardState(1, 1, 0), [entry(2)]) is False
    second = w.save(HardState(1, 1, 0), [entry(2)])
    assert not second.done()
    fs.gate.set()
    first.result(10)
    second.result(10)
    assert w.save_inline(HardState(1, 1, 0), [entry(3)]) is True  # the writer is idle again
    w.close()
    _, r = _open_closed(wal_dir(tmp_path))
    assert [e.index for e in r.entries] == [1, 2, 3]
    assert [t for op, t in fs.threads if op == "write"][-1] == threading.current_thread().name


def test_a_failed_inline_save_fails_every_later_save(tmp_path: Path) -> None:
    class Failing(FS):
        def fdatasync(self, fd: int) -> None:
            raise OSError(5, "I/O error")

    w = WAL.create(wal_dir(tmp_path), META, fs=Failing(), segment_size=SMALL_SEGMENT)
    with pytest.raises(OSError, match="I/O error"):
        w.save_inline(HardState(1, 1, 0), [entry(1)])
    with pytest.raises(OSError, match="I/O error"):
        w.save(HardState(1, 1, 0), [entry(2)]).result(10)
    with pytest.raises(OSError, match="I/O error"):
        w.save_inline(HardState(1, 1, 0), [entry(3)])
    with contextlib.suppress(OSError):
        w.close()
