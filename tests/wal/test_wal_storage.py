"""WALStorage behaves as MemoryStorage, and a restart recovers exactly what was durable."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from walhelpers import META, entry

from pyetcd.raft.errors import CompactedError, UnavailableError
from pyetcd.raft.storage import MemoryStorage
from pyetcd.raft.types import ConfState, HardState, Snapshot, SnapshotMetadata
from pyetcd.wal import WALStorage
from pyetcd.wal.read_ahead import ReadAhead

SEG = 2048


def _check_same(a: WALStorage, b: MemoryStorage) -> None:
    assert a.first_index() == b.first_index()
    assert a.last_index() == b.last_index()
    assert a.snapshot() == b.snapshot()
    assert a.initial_state() == b.initial_state()
    for i in range(b.first_index() - 1, b.last_index() + 1):
        assert a.term(i) == b.term(i)
    if b.last_index() >= b.first_index():
        lo, hi = b.first_index(), b.last_index() + 1
        assert a.entries(lo, hi, 1 << 30) == b.entries(lo, hi, 1 << 30)
        assert a.entries(lo, hi, 100) == b.entries(lo, hi, 100)
    for st_ in (a, b):
        with pytest.raises(CompactedError):
            st_.entries(st_.first_index() - 1, st_.first_index(), 10)
        with pytest.raises(UnavailableError):
            st_.entries(st_.first_index(), st_.last_index() + 2, 10)


def _restarted_reference(b: MemoryStorage) -> MemoryStorage:
    """What a restart must rebuild: the snapshot, the hard state, the log after it."""
    m = MemoryStorage()
    s = b.snapshot()
    if not s.is_empty():
        m.apply_snapshot(s)
    m.set_hard_state(b.hard_state)
    lo = s.metadata.index + 1
    if b.last_index() >= lo:
        m.append(b.entries(lo, b.last_index() + 1, 1 << 60))
    return m


ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(1, 6), st.integers(0, 3), st.integers(0, 50)),
        st.tuples(st.just("snapshot"), st.integers(0, 10), st.booleans(), st.just(0)),
        st.tuples(st.just("receive"), st.integers(1, 20), st.just(0), st.just(0)),
        st.tuples(st.just("restart"), st.just(0), st.just(0), st.just(0)),
    ),
    max_size=25,
)


@settings(derandomize=True, deadline=None, max_examples=60)
@given(ops)
def test_equivalent_to_memory_storage_across_restarts(
    program: list[tuple[str, int, int, int]],
) -> None:
    tmp = tempfile.mkdtemp(prefix="walstorage-")
    try:
        _run_program(tmp, program)
    finally:
        shutil.rmtree(tmp)


def _open(tmp: str) -> WALStorage:
    return WALStorage.open(tmp, metadata=META, segment_size=SEG, max_wals=2, max_snapshots=2)


def _reopen(tmp: str) -> WALStorage:
    """A restart as the server makes it: the log read in a forked child under our lock."""
    ahead = ReadAhead.start(tmp)
    assert ahead is not None
    try:
        read = ahead.result()
        assert read is not None  # the child's read is the one checked here
        return WALStorage.open(
            tmp, segment_size=SEG, max_wals=2, max_snapshots=2, read=read,
            lock_fd=ahead.take_lock(),
        )
    finally:
        ahead.close()


def _run_program(tmp: str, program: list[tuple[str, int, int, int]]) -> None:
    a, b = _open(tmp), MemoryStorage()
    term = 1
    try:
        for op, x, y, z in program:
            if op == "append":
                # new entries from a point at most y back (a conflicting suffix is replaced)
                # (never below the commit index or the snapshot: those are settled)
                settled = max(b.hard_state.commit, b.snapshot().metadata.index)
                start = max(settled + 1, b.last_index() + 1 - y)
                term += 1 if y else 0
                ents = [entry(i, term, size=z) for i in range(start, start + x)]
                hs = HardState(term, 1, min(b.hard_state.commit, start - 1))
                a.save(hs, ents).result()
                b.append(ents)
                b.set_hard_state(hs)
            elif op == "snapshot" and b.last_index() > b.snapshot().metadata.index:
                idx = max(b.snapshot().metadata.index + 1, b.last_index() - x)
                hs = HardState(term, 1, max(b.hard_state.commit, idx))
                a.save(hs).result()
                b.set_hard_state(hs)
                cs = ConfState(voters=(1, 2, 3))
                data = b"s%d" % idx
                assert a.create_snapshot(idx, cs, data) == b.create_snapshot(idx, cs, data)
                if y:
                    a.compact(idx)
                    b.compact(idx)
            elif op == "receive":
                idx = b.last_index() + x
                s = Snapshot(b"recv%d" % idx, SnapshotMetadata(ConfState(voters=(1,)), idx, term))
                hs = HardState(term, 1, idx)
                a.save(hs).result()
                b.set_hard_state(hs)
                a.apply_snapshot(s)
                b.apply_snapshot(s)
            elif op == "restart":
                a.close()
                a = _reopen(tmp)
                b = _restarted_reference(b)
                assert not a.created
            _check_same(a, b)
        a.close()
        a = _open(tmp)
        _check_same(a, _restarted_reference(b))
    finally:
        a.close()


def test_snapshot_release_restart_round_trip(tmp_path: Path) -> None:
    st_ = WALStorage.open(str(tmp_path), metadata=META, segment_size=SEG, max_wals=2,
                          max_snapshots=2)
    assert st_.created
    for i in range(1, 301):
        st_.save(HardState(3, 2, i - 1), [entry(i, 3, size=30)]).result()
        if i % 100 == 0:
            st_.create_snapshot(i - 10, ConfState(voters=(2,)), b"app%d" % i)
            st_.compact(i - 10)
    assert len(st_.wal.segments()) <= 3
    assert len(st_.snapshotter.snap_names()) == 2
    st_.close()
    again = WALStorage.open(str(tmp_path), segment_size=SEG)
    try:
        assert again.metadata == META
        assert again.snapshot().metadata.index == 290
        assert again.snapshot().data == b"app300"
        assert again.initial_state() == (HardState(3, 2, 299), ConfState(voters=(2,)))
        assert again.entries(291, 301, 1 << 20) == [entry(i, 3, size=30) for i in range(291, 301)]
        with pytest.raises(CompactedError):
            again.entries(290, 291, 100)
    finally:
        again.close()


def _log_with_snapshots(tmp_path: Path) -> WALStorage:
    # many segments (max_wals=0 keeps them all), a snapshot every 100 entries
    st_ = WALStorage.open(str(tmp_path), metadata=META, segment_size=SEG, max_wals=0,
                          max_snapshots=0)
    for i in range(1, 401):
        st_.save(HardState(3, 2, i - 1), [entry(i, 3, size=30)]).result()
        if i % 100 == 0:
            st_.create_snapshot(i - 10, ConfState(voters=(2,)), b"app%d" % i)
    st_.close()
    return st_


def test_restart_reads_the_log_from_the_newest_snapshots_segment(tmp_path: Path) -> None:
    # The segments before the one holding the newest snapshot's index are not read:
    # garbage in the first one does not stop a restart (etcd reads from there too).
    st_ = _log_with_snapshots(tmp_path)
    segments = st_.wal.segments()
    assert len(segments) > 4
    first = tmp_path / "member" / "wal" / str(segments[0])
    first.write_bytes(b"\xff" * first.stat().st_size)
    read = WALStorage.read(str(tmp_path))
    assert read.snap is not None and read.snap.metadata.index == 390
    assert read.snap.data == b"app400"
    assert [e.index for e in read.wal.result.entries] == list(range(391, 401))


def test_restart_scans_the_whole_log_when_the_newest_snapshot_is_unusable(
    tmp_path: Path,
) -> None:
    # A snapshot file with no marker in the log (saved, then a crash before the
    # marker): the restart falls back to the markers of the whole log.
    _log_with_snapshots(tmp_path)
    expected = WALStorage.read(str(tmp_path))
    snap_dir = tmp_path / "member" / "snap"
    newest = sorted(snap_dir.iterdir())[-1]
    (snap_dir / "0000000000000003-0000000000010000.snap").write_bytes(newest.read_bytes())
    read = WALStorage.read(str(tmp_path))
    assert read.snap == expected.snap and read.snap is not None
    assert read.snap.metadata.index == 390
    assert read.wal.result.entries == expected.wal.result.entries
