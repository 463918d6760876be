"""Opening the backend at start against the newest raft snapshot (etcd's
recoverSnapshotBackend): never start empty over a data dir that had data."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from pyetcd.config import ServerConfig
from pyetcd.logutil import Level, Logger
from pyetcd.mvcc import KVStore
from pyetcd.server.etcdserver.backend import (
    backend_exists,
    open_backend,
    recover_snapshot_backend,
    snapshot_db_path,
)
from pyetcd.server.etcdserver.fatal import FatalError, error_text
from pyetcd.server.etcdserver.stores import backend_path


def _cfg(tmp: Path) -> ServerConfig:
    os.makedirs(tmp / "d" / "member" / "snap")
    return ServerConfig(name="n", data_dir=str(tmp / "d"))


def _store_at(path: str, consistent_index: int) -> None:
    kv = KVStore(path)
    kv.set_consistent_index(consistent_index, 2)
    kv.begin_write()
    kv.write_put(b"k", b"at-%d" % consistent_index, 0)
    kv.end_write()
    kv.close()


def _log() -> Logger:
    return Logger([io.StringIO()], Level.INFO)


def test_a_backend_at_or_past_the_snapshot_is_kept(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    _store_at(backend_path(cfg), 10)
    kv = open_backend(cfg)
    assert recover_snapshot_backend(cfg, kv, 10, _log()) is kv
    kv.close()


def test_no_backend_and_no_snapshot_starts_a_new_one(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    assert not backend_exists(cfg)
    kv = recover_snapshot_backend(cfg, None, 0, _log())
    assert kv.consistent_index == 0
    kv.close()


@pytest.mark.parametrize("lost", ["missing", "empty", "older"])
def test_a_backend_behind_the_snapshot_is_refused(tmp_path: Path, lost: str) -> None:
    cfg = _cfg(tmp_path)
    db = backend_path(cfg)
    kv = None
    if lost == "empty":
        open(db, "wb").close()
    elif lost == "older":
        _store_at(db, 7)
        kv = open_backend(cfg)
    assert backend_exists(cfg) == (lost == "older")
    with pytest.raises(FatalError) as exc:
        recover_snapshot_backend(cfg, kv, 2505, _log())
    assert exc.value.msg == "failed to recover v3 backend from snapshot"
    assert error_text(exc.value.cause) == (
        "failed to find database snapshot file (snap: snapshot file doesn't exist)"
    )
    assert exc.value.fields["snapshot-index"] == 2505
    # Nothing was created or changed in its place.
    assert os.path.exists(db) == (lost != "missing")
    if lost == "empty":
        assert os.path.getsize(db) == 0


def test_the_database_received_with_the_snapshot_is_installed(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    _store_at(backend_path(cfg), 7)
    _store_at(snapshot_db_path(cfg, 12), 12)
    kv = recover_snapshot_backend(cfg, open_backend(cfg), 12, _log())
    try:
        assert kv.consistent_index == 12
        got = kv.get(b"k")
        assert got is not None and got.value == b"at-12"
        assert not os.path.exists(snapshot_db_path(cfg, 12))
    finally:
        kv.close()


def test_a_garbage_backend_fails_to_open(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    with open(backend_path(cfg), "wb") as f:
        f.write(os.urandom(8192))
    with pytest.raises(FatalError) as exc:
        open_backend(cfg)
    assert exc.value.msg == "failed to open database"
    assert exc.value.fields == {"path": backend_path(cfg)}
    assert "not a database" in error_text(exc.value.cause)
