"""Crashes: kill -9 of a writing process, and a power cut that loses unsynced data."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from walhelpers import META, PowerCutFS, entry

from pyetcd.raft.types import HardState
from pyetcd.wal import WAL, WALSnapshot, WALStorage

CHILD = os.path.join(os.path.dirname(__file__), "walchild.py")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_kill_9_never_loses_an_acknowledged_entry(tmp_path: Path) -> None:
    d = str(tmp_path / "wal")
    rng = random.Random(20240601)
    env = {**os.environ, "PYTHONPATH": ROOT}
    acked = 0
    for _round in range(25):
        proc = subprocess.Popen([sys.executable, CHILD, d, "8192"], stdout=subprocess.PIPE,
                                env=env, text=True)
        assert proc.stdout is not None
        first = proc.stdout.readline().split()
        assert first[0] == "start" and int(first[1]) >= acked  # nothing acked was lost
        target = rng.randrange(1, 400)
        for _ in range(target):
            line = proc.stdout.readline()
            if not line:
                break
            acked = max(acked, int(line))
        proc.send_signal(signal.SIGKILL)  # mid-write, mid-fsync or mid-cut
        proc.wait()
        proc.stdout.close()
        w, r = WAL.open(d, segment_size=8192)
        w.close()
        indexes = [e.index for e in r.entries]
        assert indexes == list(range(1, len(indexes) + 1))
        assert len(indexes) >= acked
        for e in r.entries[-3:]:
            assert e.data == bytes(e.index % 256 for _ in range(64))
    assert acked > 100


def _run_and_cut(
    root: Path, fs: PowerCutFS, inline: bool = False
) -> tuple[list[int], HardState]:
    """Write through ``fs``: acked entries and the last acked hard state; then cut.
    ``inline``: the acknowledged saves are written on this thread (``save_inline``)."""
    d = str(root / "data" / "member" / "wal")
    w = WAL.create(d, META, fs=fs, segment_size=2048)
    acked: list[int] = []
    hs = HardState()
    for i in range(1, 120):
        hs_i = HardState(term=1 + i // 40, vote=1, commit=i - 1)
        e = [entry(i, term=hs_i.term, size=40)]
        if not (inline and w.save_inline(hs_i, e)):
            w.save(hs_i, e).result()
        acked.append(i)
        hs = hs_i
        if i == 60:
            w.save_snapshot(WALSnapshot(50, 2)).result()
            w.release_to(50)
    pending = [w.save(HardState(9, 9, 0), [entry(i, term=9)]) for i in range(120, 130)]
    fs.kill()
    with contextlib.suppress(OSError):
        w.close()
    del pending
    fs.cut()
    return acked, hs


@pytest.mark.parametrize("inline", [False, True], ids=["writer-thread", "inline"])
def test_power_cut_keeps_every_acknowledged_entry_and_hard_state(
    tmp_path: Path, inline: bool
) -> None:
    (tmp_path / "data").mkdir()
    fs = PowerCutFS(str(tmp_path))
    acked, hs = _run_and_cut(tmp_path, fs, inline)
    d = str(tmp_path / "data" / "member" / "wal")
    w, r = WAL.open(d, WALSnapshot(50, 2), segment_size=2048)
    w.close()
    got = [e.index for e in r.entries]
    assert got[: len(acked) - 50] == acked[50:]
    assert r.hard_state.term >= hs.term and r.hard_state.vote == hs.vote
    assert r.hard_state.commit >= hs.commit - 1  # commit-only changes are not synced


@pytest.mark.parametrize("inline", [False, True], ids=["writer-thread", "inline"])
@pytest.mark.parametrize("broken", ["drop_fdatasync", "drop_dir_fsync"])
def test_the_power_cut_layer_catches_a_missing_fsync(
    tmp_path: Path, broken: str, inline: bool
) -> None:
    (tmp_path / "data").mkdir()
    fs = PowerCutFS(str(tmp_path), **{broken: True})
    acked, _ = _run_and_cut(tmp_path, fs, inline)
    d = str(tmp_path / "data" / "member" / "wal")
    with pytest.raises(Exception):  # noqa: B017 - lost data shows up as any of several errors
        w, r = WAL.open(d, WALSnapshot(50, 2), segment_size=2048)
        w.close()
        assert [e.index for e in r.entries][: len(acked) - 50] == acked[50:]


def test_power_cut_through_wal_storage_with_snapshots(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    fs = PowerCutFS(str(tmp_path))
    st = WALStorage.open(str(data), metadata=META, fs=fs, segment_size=2048, max_wals=2,
                         max_snapshots=2)
    for i in range(1, 80):
        st.save(HardState(2, 1, i - 1), [entry(i, term=2, size=40)]).result()
        if i % 25 == 0:
            st.create_snapshot(i - 1, None, f"state@{i - 1}".encode())
            st.compact(i - 1)
    st.save(HardState(2, 1, 79)).result()
    fs.kill()
    with contextlib.suppress(OSError):
        st.close()
    fs.cut()
    st2 = WALStorage.open(str(data), segment_size=2048, max_wals=2, max_snapshots=2)
    try:
        assert st2.snapshot().metadata.index == 74
        assert st2.snapshot().data == b"state@74"
        assert st2.last_index() == 79
        assert st2.entries(75, 80, 1 << 20) == [entry(i, term=2, size=40) for i in range(75, 80)]
        assert st2.initial_state()[0].term == 2
    finally:
        st2.close()
