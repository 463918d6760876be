"""The Applier checks put/delete/txn/lease-revoke entries against the auth store as
the proposer named in the entry header, and applies auth entries."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pyetcd.config import ServerConfig
from pyetcd.logutil import new_logger
from pyetcd.mvcc import KVStore
from pyetcd.pb import auth_pb2, raft_internal_pb2, rpc_pb2
from pyetcd.raft import Entry, EntryType
from pyetcd.server.auth import errors as ae
from pyetcd.server.auth.store import hash_password
from pyetcd.server.etcdserver.apply import Applier
from pyetcd.server.etcdserver.stores import Stores
from pyetcd.server.etcdserver.wait import RequestWait


class NoPeers:
    def sync(self) -> None:
        pass

    def restore(self, snap: object) -> None:
        raise AssertionError("no snapshots here")


class Harness:
    def __init__(self, path: Path) -> None:
        log = new_logger("zap", ["stderr"], "error", stderr=io.StringIO())
        cfg = ServerConfig(data_dir=str(path), bcrypt_cost=4)
        stores = Stores(cfg, 1, log, KVStore(str(path / "db")))
        self.store = stores.kv
        self.auth = stores.auth
        self.waits = RequestWait()
        self.applier = Applier(stores, self.waits, log, NoPeers(), NoPeers(), member_id=1)  # type: ignore[arg-type]
        self.index = 0

    def apply(self, req: raft_internal_pb2.InternalRaftRequest) -> object:
        """Apply one entry; returns its result or the error it failed with."""
        self.index += 1
        req.header.ID = self.index
        fut = self.waits.register(self.index)
        entry = Entry(term=1, index=self.index, type=EntryType.NORMAL, data=req.SerializeToString())
        self.applier.apply_entries([entry], lambda cc: None)  # type: ignore[arg-type,return-value]
        return fut.exception() or fut.result()

    def as_user(self, name: str, revision: int | None = None, **field: object) -> object:
        req = raft_internal_pb2.InternalRaftRequest(**field)  # type: ignore[arg-type]
        req.header.username = name
        req.header.auth_revision = self.auth.revision if revision is None else revision
        return self.apply(req)


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path)
    for name in ("root", "u"):
        harness.apply(
            raft_internal_pb2.InternalRaftRequest(
                auth_user_add=rpc_pb2.AuthUserAddRequest(
                    name=name, hashedPassword=hash_password("pw", 4)
                )
            )
        )
    for req in (
        raft_internal_pb2.InternalRaftRequest(
            auth_user_grant_role=rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root")
        ),
        raft_internal_pb2.InternalRaftRequest(auth_role_add=rpc_pb2.AuthRoleAddRequest(name="r")),
        raft_internal_pb2.InternalRaftRequest(
            auth_role_grant_permission=rpc_pb2.AuthRoleGrantPermissionRequest(
                name="r", perm=auth_pb2.Permission(permType=auth_pb2.Permission.READWRITE, key=b"a")
            )
        ),
        raft_internal_pb2.InternalRaftRequest(
            auth_user_grant_role=rpc_pb2.AuthUserGrantRoleRequest(user="u", role="r")
        ),
        raft_internal_pb2.InternalRaftRequest(auth_enable=rpc_pb2.AuthEnableRequest()),
    ):
        assert not isinstance(harness.apply(req), Exception)
    yield harness
    harness.store.close()


async def test_puts_are_checked_at_apply_as_the_header_user(h: Harness) -> None:
    assert not isinstance(h.as_user("u", put=rpc_pb2.PutRequest(key=b"a", value=b"1")), Exception)
    denied = h.as_user("u", put=rpc_pb2.PutRequest(key=b"b", value=b"1"))
    assert isinstance(denied, ae.PermissionDeniedError)
    anonymous = h.apply(raft_internal_pb2.InternalRaftRequest(put=rpc_pb2.PutRequest(key=b"a")))
    assert isinstance(anonymous, ae.UserEmptyError)


async def test_an_entry_authorized_before_the_last_auth_change_is_refused(h: Harness) -> None:
    old = h.auth.revision
    h.as_user(
        "root",
        auth_role_add=rpc_pb2.AuthRoleAddRequest(name="another"),
    )
    assert h.auth.revision == old + 1
    stale = h.as_user("u", revision=old, put=rpc_pb2.PutRequest(key=b"a", value=b"2"))
    assert isinstance(stale, ae.AuthOldRevisionError)
    assert str(stale) == "etcdserver: revision of auth store is old"


async def test_auth_entries_need_root(h: Harness) -> None:
    denied = h.as_user("u", auth_role_add=rpc_pb2.AuthRoleAddRequest(name="x"))
    assert isinstance(denied, ae.PermissionDeniedError)
    ok = h.as_user("root", auth_role_add=rpc_pb2.AuthRoleAddRequest(name="x"))
    assert isinstance(ok, rpc_pb2.AuthRoleAddResponse)
