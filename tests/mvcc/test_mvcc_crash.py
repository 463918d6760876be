"""Crash tests: SIGKILL a process applying batched writes or compacting, then
reopen and check the store equals exactly the entries up to its consistent index."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pyetcd.mvcc import KVStore, PutRequest, RangeRequest
from pyetcd.server.etcdserver import txn as kvtxn

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pyetcd.mvcc import KVStore, PutRequest
    from pyetcd.mvcc import kvstore as kvmod
    from pyetcd.server.etcdserver import txn as kvtxn

    path, n, kill_at, compact_at, mode = sys.argv[1], *map(int, sys.argv[2:5]), sys.argv[5]
    kv = KVStore(path, batch_limit=97, batch_interval=1e9)
    start = kv.consistent_index + 1
    for i in range(start, n + 1):
        kv.set_consistent_index(i, 1)
        kvtxn.put(kv, PutRequest(b"k%03d" % (i % 300), b"v%d" % i))
        if mode == "writes" and i == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if mode == "async" and i % 500 == 0:
            print(i, flush=True)
    if mode == "compact":
        kv.commit()
        batches = [0]
        real = kv.backend.commit
        def commit_then_die():
            real()
            batches[0] += 1
            if batches[0] == 3:  # scheduled rev + one batch of deletes are durable
                os.kill(os.getpid(), signal.SIGKILL)
        kv.backend.commit = commit_then_die
        kv.compact(compact_at)
    kv.close()
    print("done", flush=True)
    """
)


def run_child(tmp: Path, *args: object) -> subprocess.Popen[str]:
    script = tmp / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, str(script), *map(str, args)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def reference(n: int) -> dict[bytes, tuple[bytes, int]]:
    state: dict[bytes, tuple[bytes, int]] = {}
    for i in range(1, n + 1):
        state[b"k%03d" % (i % 300)] = (b"v%d" % i, i + 1)
    return state


def check_consistent(path: str) -> KVStore:
    kv = KVStore(path)
    ci = kv.consistent_index
    assert kv.current_revision == ci + 1  # one put per entry, first at revision 2
    got = {
        x.key: (x.value, x.mod_revision)
        for x in kvtxn.range_(kv, RangeRequest(b"\x00", b"\x00")).kvs
    }
    assert got == reference(ci)
    return kv


@pytest.mark.parametrize("kill_at", [150, 97 * 3 + 40])
def test_kill_during_batched_writes(tmp_path: Path, kill_at: int) -> None:
    path = str(tmp_path / "member" / "snap" / "db")
    p = run_child(tmp_path, path, 1000, kill_at, 0, "writes")
    p.wait(timeout=60)
    assert p.returncode == -signal.SIGKILL
    kv = check_consistent(path)
    # the last commit came at a batch boundary before the kill
    assert kv.consistent_index == (kill_at // 97) * 97
    kv.close()
    # replaying the "WAL" from the consistent index completes the store
    p = run_child(tmp_path, path, 1000, 0, 0, "none")
    assert p.wait(timeout=60) == 0
    kv = check_consistent(path)
    assert kv.consistent_index == 1000
    kv.close()


def test_kill_at_a_random_moment(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    p = run_child(tmp_path, path, 200_000, 0, 0, "async")
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "500"
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)
    kv = check_consistent(path)
    kv.close()


def test_kill_during_compaction_resumes(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    n, compact_at = 3000, 2500
    p = run_child(tmp_path, path, n, 0, compact_at, "compact")
    p.wait(timeout=60)
    assert p.returncode == -signal.SIGKILL
    kv = check_consistent(path)
    assert kv.compact_revision == compact_at
    h = kv.hash_kv(0)
    kv.close()
    clean = KVStore(str(tmp_path / "clean"))
    for i in range(1, n + 1):
        clean.set_consistent_index(i, 1)
        kvtxn.put(clean, PutRequest(b"k%03d" % (i % 300), b"v%d" % i))
    clean.compact(compact_at)
    assert clean.hash_kv(0) == h
    rows = clean.backend.key_range(b"", None)
    clean.close()
    kv = KVStore(path)
    assert kv.backend.key_range(b"", None) == rows  # history below the compaction is gone
    kv.close()
