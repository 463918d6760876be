"""Raft snapshot files: atomic save, CRC, newest valid loaded, retention."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyetcd.raft.types import ConfState, Snapshot, SnapshotMetadata
from pyetcd.wal import NoSnapshotError, Snapshotter, WALSnapshot
from pyetcd.wal.snap import decode_snapshot_file, encode_snapshot_file

ids = st.lists(st.integers(min_value=1, max_value=2**64 - 1), max_size=5).map(tuple)
snapshots = st.builds(
    Snapshot,
    data=st.binary(max_size=300),
    metadata=st.builds(
        SnapshotMetadata,
        conf_state=st.builds(ConfState, voters=ids, learners=ids, voters_outgoing=ids,
                             learners_next=ids, auto_leave=st.booleans()),
        index=st.integers(min_value=1, max_value=2**64 - 1),
        term=st.integers(min_value=0, max_value=2**64 - 1),
    ),
)


@settings(derandomize=True, deadline=None)
@given(snapshots)
def test_snapshot_file_round_trip(snap: Snapshot) -> None:
    assert decode_snapshot_file(encode_snapshot_file(snap)) == snap


def snap(index: int, term: int = 1) -> Snapshot:
    return Snapshot(data=f"state {index}".encode(),
                    metadata=SnapshotMetadata(ConfState(voters=(1, 2, 3)), index, term))


def test_save_names_files_by_term_and_index_and_loads_newest(tmp_path: Path) -> None:
    ss = Snapshotter(str(tmp_path / "snap"), max_snapshots=0)
    with pytest.raises(NoSnapshotError):
        ss.load()
    for i in (10, 20, 30):
        ss.save_snap(snap(i, term=2))
    assert ss.snap_names()[0] == f"{2:016x}-{30:016x}.snap"
    assert ss.load() == snap(30, 2)
    assert not [n for n in os.listdir(ss.dir) if n.endswith(".tmp")]


def test_corrupt_newest_falls_back_with_a_warning(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    ss = Snapshotter(str(tmp_path / "snap"))
    ss.save_snap(snap(10))
    ss.save_snap(snap(20))
    newest = os.path.join(ss.dir, ss.snap_names()[0])
    with open(newest, "r+b") as f:
        f.seek(9)
        b = f.read(1)
        f.seek(9)
        f.write(bytes([b[0] ^ 1]))
    with caplog.at_level(logging.WARNING):
        assert ss.load() == snap(10)
    assert "crc mismatch" in caplog.text
    assert os.path.exists(newest + ".broken")


def test_load_newest_available_only_picks_snapshots_the_wal_knows(tmp_path: Path) -> None:
    ss = Snapshotter(str(tmp_path / "snap"))
    ss.save_snap(snap(10))
    ss.save_snap(snap(20))  # orphan: its WAL marker never became durable
    assert ss.load_newest_available([WALSnapshot(0, 0), WALSnapshot(10, 1)]) == snap(10)
    assert ss.load_newest_available([WALSnapshot(0, 0)]) is None


def test_retention_keeps_max_snapshots(tmp_path: Path) -> None:
    ss = Snapshotter(str(tmp_path / "snap"), max_snapshots=2)
    for i in range(1, 6):
        ss.save_snap(snap(i * 10))
    assert ss.snap_names() == [f"{1:016x}-{50:016x}.snap", f"{1:016x}-{40:016x}.snap"]
