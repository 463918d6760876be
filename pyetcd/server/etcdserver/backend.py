"""Opening the backend at start, and refusing one that lost data (etcd's backend.go).

A restarted member replays its WAL from the backend's consistent index on, and the WAL
holds entries only from its newest raft snapshot on. A backend whose consistent index is
below that snapshot's index (deleted, truncated to nothing, replaced by an older copy)
can therefore never be caught up. Like etcd's recoverSnapshotBackend, the member then
installs the database that came with that snapshot (``%016x.snap.db``, left by a crash
between receiving a snapshot and installing it) and, when there is none, refuses to
start: "failed to recover v3 backend from snapshot" (error "failed to find database
snapshot file (snap: snapshot file doesn't exist)"). A file that is not a backend
refuses to start with "failed to open database". Either way the data dir is left as it
was: a member never starts empty over a data dir that had data.
"""

from __future__ import annotations

import contextlib
import os

from pyetcd.config import ServerConfig
from pyetcd.logutil import Logger
from pyetcd.mvcc import BackendError, KVStore
from pyetcd.mvcc.metrics import MvccMetrics

from .fatal import FatalError
from .stores import backend_path, new_kvstore

__all__ = [
    "NoDBSnapshotError",
    "backend_exists",
    "open_backend",
    "recover_snapshot_backend",
    "snapshot_db_path",
]

RECOVER_FAILED = "failed to recover v3 backend from snapshot"


class NoDBSnapshotError(Exception):
    def __init__(self) -> None:
        super().__init__("snap: snapshot file doesn't exist")


def snapshot_db_path(cfg: ServerConfig, index: int) -> str:
    """Where the database received with the snapshot at ``index`` is kept."""
    return os.path.join(cfg.data_dir, "member", "snap", f"{index:016x}.snap.db")


def backend_exists(cfg: ServerConfig) -> bool:
    """Whether ``member/snap/db`` exists with something in it (a file truncated to 0
    bytes holds no backend: sqlite would take it for a new, empty one)."""
    try:
        return os.path.getsize(backend_path(cfg)) > 0
    except FileNotFoundError:
        return False


def open_backend(cfg: ServerConfig, metrics: MvccMetrics | None = None) -> KVStore:
    """Open the backend file as it is.

    Raises:
        FatalError: "failed to open database" (not a database, tables missing, I/O).
    """
    path = backend_path(cfg)
    try:
        return new_kvstore(cfg, metrics)
    except BackendError as err:
        raise FatalError(err.action, err.cause, {"path": path}) from err


def recover_snapshot_backend(
    cfg: ServerConfig,
    kv: KVStore | None,
    snapshot_index: int,
    logger: Logger,
    metrics: MvccMetrics | None = None,
) -> KVStore:
    """The backend to start from, given the newest raft snapshot's index.

    ``kv``: the backend opened before the snapshot was known, or None when there was
    none to open (``backend_exists`` was false; nothing was created then).

    Raises:
        FatalError: "failed to recover v3 backend from snapshot" when the backend is
            behind the snapshot and the snapshot's database is not there; "failed to
            open database" when the one installed cannot be opened.
    """
    consistent_index = 0 if kv is None else kv.consistent_index
    if kv is not None and snapshot_index <= consistent_index:
        return kv
    if kv is None and snapshot_index == 0:
        # A new backend for a log that still starts at its first entry: replaying the
        # whole WAL rebuilds it.
        return open_backend(cfg, metrics)
    fields = {
        "backend-path": backend_path(cfg),
        "backend-consistent-index": consistent_index,
        "backend": "found" if kv is not None else "missing or empty",
        "snapshot-index": snapshot_index,
    }
    snap_db = snapshot_db_path(cfg, snapshot_index)
    if not os.path.exists(snap_db):
        if kv is not None:
            kv.close()
        err = NoDBSnapshotError()
        raise FatalError(
            RECOVER_FAILED,
            RuntimeError(f"failed to find database snapshot file ({err})"),
            fields,
        )
    if kv is not None:
        kv.close()
    db = backend_path(cfg)
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(db + suffix)
    try:
        os.replace(snap_db, db)
    except OSError as err:
        raise FatalError(
            RECOVER_FAILED,
            RuntimeError(f"failed to rename database snapshot file ({err})"),
            fields,
        ) from err
    kv = open_backend(cfg, metrics)
    logger.info(
        "recovered v3 backend from snapshot",
        {**fields, "backend-consistent-index": kv.consistent_index},
    )
    return kv
