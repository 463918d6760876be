"""Everything a member keeps in its backend, and the backend travelling with snapshots.

``Stores`` owns the KV store (with its lessor), the watchable store, the membership,
the auth store and the active alarms: all read from one backend file. When a Raft
snapshot brings a new backend (etcd's recoverSnapshot), ``restore`` rebuilds them in
place; every other part holds the ``Stores`` and asks it for the current one, so
nothing keeps a stale store after a restore.

``BackendSnapshots`` is the peer transport's side of that: it streams this member's
backend to a follower with a MsgSnap, remembers where a received one was saved, and
installs it when the driver applies the snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator

from pyetcd.config import ServerConfig
from pyetcd.logutil import Logger
from pyetcd.mvcc import KVStore, Lessor
from pyetcd.mvcc.metrics import DISCARD, MvccMetrics, Observer
from pyetcd.mvcc.watchable_store import WatchableStore
from pyetcd.raft import Snapshot
from pyetcd.server.auth.store import AuthInfo, AuthStore
from pyetcd.server.auth.token import TokenProvider, new_token_provider

from .leadership import Leadership
from .membership import Membership

__all__ = ["BackendSnapshots", "Stores", "backend_path", "new_kvstore"]


def backend_path(cfg: ServerConfig) -> str:
    """``<data-dir>/member/snap/db``: the one place that names the backend file."""
    return os.path.join(cfg.data_dir, "member", "snap", "db")


# etcd 3.5's defaultLeaseCheckpointInterval; 3.5 has no flag for it
LEASE_CHECKPOINT_INTERVAL = 300.0


def new_kvstore(cfg: ServerConfig, metrics: MvccMetrics | None = None) -> KVStore:
    """Open the backend file as it is now (counting into the member's ``metrics``)."""
    return KVStore(
        backend_path(cfg),
        # 0 keeps the backend's defaults (etcd's: 10000 writes, 100 ms)
        batch_limit=cfg.backend_batch_limit if cfg.backend_batch_limit > 0 else 10000,
        batch_interval=cfg.backend_batch_interval if cfg.backend_batch_interval > 0 else 0.1,
        compaction_batch_limit=cfg.experimental_compaction_batch_limit,
        # the compact hash check compares the hashes compactions take
        compaction_hashes=cfg.experimental_compact_hash_check_enabled,
        quota_bytes=cfg.quota_backend_bytes,
        min_lease_ttl=max(2, -(-3 * cfg.election_timeout // 2000)),
        lease_checkpoint_interval=(
            LEASE_CHECKPOINT_INTERVAL if cfg.experimental_enable_lease_checkpoint else None
        ),
        lease_checkpoint_persist=cfg.experimental_enable_lease_checkpoint_persist,
        metrics=metrics,
    )


class Stores:
    """The member's state kept in its backend (see the module docstring)."""

    def __init__(self, cfg: ServerConfig, cluster_id: int, logger: Logger, kv: KVStore) -> None:
        self.cfg = cfg
        self.cluster_id = cluster_id
        self.log = logger
        # The token provider outlives a backend swap: tokens stay valid while the
        # restored state still has auth enabled.
        self._tokens: TokenProvider = new_token_provider(cfg.auth_token, float(cfg.auth_token_ttl))
        self.watchable = WatchableStore(kv)
        #: Held while the backend file is read from a connection of its own (snapshot
        #: exports) or rewritten (defragmentation): sqlite's last connection to close
        #: deletes the ``-wal`` file by name, so a defrag's file swap must not overlap
        #: another reader.
        self.file_lock = asyncio.Lock()
        self._open(kv)

    def _open(self, kv: KVStore) -> None:
        self.kv = kv
        self.membership = Membership(kv.backend, self.cluster_id)
        self.auth = AuthStore(
            kv.backend, self._tokens, bcrypt_cost=self.cfg.bcrypt_cost, logger=self.log
        )
        #: Active alarms: (member ID, alarm type), as persisted in the "alarm" table.
        self.alarms: set[tuple[int, int]] = {
            (int.from_bytes(k[:8], "big"), int.from_bytes(k[8:], "big"))
            for k, _ in kv.backend.items("alarm")
        }

    @property
    def lessor(self) -> Lessor:
        return self.kv.lessor

    def root_auth(self) -> AuthInfo | None:
        """The identity of the server's own requests while auth is enabled."""
        return AuthInfo("root", self.auth.revision) if self.auth.enabled else None

    def restore(self, db_path: str) -> None:
        """Replace the backend file with ``db_path`` and reload everything from it."""
        db = backend_path(self.cfg)
        self.kv.close()
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(db + suffix)
        os.replace(db_path, db)
        old = self.watchable
        self._open(new_kvstore(self.cfg, old.kv.metrics))
        self.watchable = WatchableStore(self.kv)
        # Watchers move to the restored store; they catch up from their next revision.
        self.watchable.adopt(old)

    def close(self) -> None:
        self.kv.close()


class BackendSnapshots:
    """The backend sent and received beside Raft snapshots."""

    def __init__(
        self,
        stores: Stores,
        leadership: Leadership,
        logger: Logger,
        snapshot_seconds: Observer = DISCARD,
    ) -> None:
        """``snapshot_seconds``: told how long each backend sent to a follower took."""
        self.snapshot_seconds = snapshot_seconds
        self.stores = stores
        self.leadership = leadership
        self.log = logger
        self._received_db: str | None = None

    async def open_snapshot_db(self, msg: object) -> AsyncIterator[bytes]:
        """The backend, consistent as of now, streamed to a follower with a MsgSnap."""
        fd, path = tempfile.mkstemp(prefix="pyetcd-send-", suffix=".db")
        os.close(fd)
        start = time.monotonic()
        try:
            async with self.stores.file_lock:
                kv = self.stores.kv
                kv.commit()
                await asyncio.to_thread(kv.backend.snapshot_to, path)
            with open(path, "rb") as f:
                while chunk := await asyncio.to_thread(f.read, 1 << 20):
                    yield chunk
        finally:
            os.unlink(path)
            self.snapshot_seconds.observe(time.monotonic() - start)

    def on_snapshot_received(self, msg: object, path: str | None) -> None:
        if path is not None:
            self._received_db = path

    def restore(self, snap: Snapshot) -> None:
        """Install the backend that came with ``snap``."""
        path = self._received_db
        if path is None:
            raise RuntimeError(f"no backend received for snapshot {snap.metadata.index}")
        self._received_db = None
        self.stores.restore(path)
        self.leadership.restored()
        self.log.info(
            "restored backend from snapshot",
            {
                "snapshot-index": snap.metadata.index,
                "consistent-index": self.stores.kv.consistent_index,
            },
        )
