"""The WAL read in a forked child: same result as reading in-process, under our lock,
and any failure of the child falls back to the in-process read and its errors."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from walhelpers import META, dir_bytes, entry

from pyetcd.raft.types import ConfState, HardState
from pyetcd.wal import WAL, CorruptWALError, WALLockedError, WALStorage
from pyetcd.wal.read_ahead import ReadAhead
from pyetcd.wal.segment import list_segment_names

SEG = 4096


def _member(tmp: Path) -> str:
    """A data dir whose log has several segments, a snapshot with entries on both sides
    of it, a suffix overwritten by a new term, and a torn last record."""
    d = str(tmp / "member-data")
    st = WALStorage.open(d, metadata=META, segment_size=SEG, max_wals=50)
    for i in range(1, 61):
        st.save(HardState(2, 1, i - 1), [entry(i, 2, size=40)]).result()
    st.save(HardState(2, 1, 50)).result()
    st.create_snapshot(45, ConfState(voters=(1,)), b"app-state")
    st.save(HardState(3, 1, 50), [entry(i, 3, size=40) for i in range(55, 58)]).result()
    st.close()
    wal_dir = os.path.join(d, "member", "wal")
    last = os.path.join(wal_dir, str(list_segment_names(os.listdir(wal_dir))[-1]))
    with open(last, "r+b") as f:  # tear the last record: a half-written frame
        data = f.read().rstrip(b"\0")
        f.seek(len(data) - 8)
        f.write(b"\0" * 8)
    return d


def _state(st: WALStorage) -> tuple[object, ...]:
    lo, hi = st.first_index(), st.last_index() + 1
    return st.initial_state(), st.snapshot(), st.entries(lo, hi, 1 << 30), st.wal.segments()


def test_child_reads_what_the_parent_would(tmp_path: Path) -> None:
    d = _member(tmp_path)
    twin = str(tmp_path / "twin")
    shutil.copytree(d, twin)
    expected = WALStorage.read(d)
    assert expected.wal.tail.torn and expected.snap is not None
    assert [e.index for e in expected.wal.result.entries] == list(range(46, 58))
    ahead = ReadAhead.start(d)
    assert ahead is not None
    try:
        got = ahead.result()
        assert got == expected
        st = WALStorage.open(d, read=got, lock_fd=ahead.take_lock())
    finally:
        ahead.close()
    plain = WALStorage.open(twin)
    try:
        assert _state(st) == _state(plain)
        # both repaired the torn tail the same way, and append the same way after it
        for s in (st, plain):
            s.save(HardState(3, 1, 57), [entry(58, 3)]).result()
    finally:
        st.close()
        plain.close()
    assert dir_bytes(d) == dir_bytes(twin)


def test_the_lock_is_held_from_the_fork_until_handed_over(tmp_path: Path) -> None:
    d = _member(tmp_path)
    wal_dir = os.path.join(d, "member", "wal")
    ahead = ReadAhead.start(d)
    assert ahead is not None
    try:
        with pytest.raises(WALLockedError):
            WAL.lock_dir(wal_dir)
        assert ahead.result() is not None
        with pytest.raises(WALLockedError):  # the child is gone, the lock is not
            WAL.lock_dir(wal_dir)
    finally:
        ahead.close()
    os.close(WAL.lock_dir(wal_dir))  # close() released it
    again = ReadAhead.start(d)
    assert again is not None
    try:
        assert ReadAhead.start(d) is None  # locked: the caller's open will say so
    finally:
        again.close()


def test_a_failing_child_leaves_the_error_to_the_parent(tmp_path: Path) -> None:
    d = _member(tmp_path)
    wal_dir = os.path.join(d, "member", "wal")
    first = os.path.join(wal_dir, str(list_segment_names(os.listdir(wal_dir))[0]))
    with open(first, "r+b") as f:  # damage in the middle of the log: not a torn tail
        f.seek(200)
        b = f.read(1)
        f.seek(200)
        f.write(bytes([b[0] ^ 0x40]))
    before = dir_bytes(d)
    ahead = ReadAhead.start(d)
    assert ahead is not None
    try:
        assert ahead.result() is None
        with pytest.raises(CorruptWALError, match="offset"):
            WALStorage.open(d, read=None, lock_fd=ahead.take_lock())
    finally:
        ahead.close()
    assert dir_bytes(d) == before
    with pytest.raises(CorruptWALError):  # the lock was released with the error
        WALStorage.open(d)


def test_close_without_collecting_reaps_the_child(tmp_path: Path) -> None:
    d = _member(tmp_path)
    ahead = ReadAhead.start(d)
    assert ahead is not None
    pid = ahead._pid
    ahead.close()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    assert ahead.result() is None
    WALStorage.open(d).close()


def test_a_read_not_made_under_our_lock_is_not_trusted(tmp_path: Path) -> None:
    d = _member(tmp_path)
    stale = WALStorage.read(d)
    st = WALStorage.open(d)
    st.save(HardState(3, 1, 57), [entry(58, 3)]).result()
    st.close()
    st = WALStorage.open(d, read=stale)  # no lock_fd: read again
    try:
        assert st.last_index() == 58
    finally:
        st.close()


def test_a_wal_dir_outside_the_data_dir(tmp_path: Path) -> None:
    d, w = str(tmp_path / "data"), str(tmp_path / "elsewhere" / "wal")
    st = WALStorage.open(d, wal_dir=w, metadata=META, segment_size=SEG)
    for i in range(1, 11):
        st.save(HardState(1, 1, i - 1), [entry(i)]).result()
    st.close()
    ahead = ReadAhead.start(d, wal_dir=w)
    assert ahead is not None
    try:
        read = ahead.result()
        assert read == WALStorage.read(d, wal_dir=w)
        st = WALStorage.open(d, wal_dir=w, read=read, lock_fd=ahead.take_lock())
    finally:
        ahead.close()
    try:
        assert st.last_index() == 10 and st.initial_state()[0] == HardState(1, 1, 9)
    finally:
        st.close()


def test_no_fork_to_spare_means_no_read_ahead_and_no_lock_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = _member(tmp_path)

    def no_fork() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    assert ReadAhead.start(d) is None
    monkeypatch.undo()
    WALStorage.open(d).close()  # the lock was not kept
