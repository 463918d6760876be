"""A put entry applied the three ways a member meets one (its own proposal with the
converted request, a waiter without it, another member's entry with no waiter) leaves
the same store, and answers where someone waits."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from pyetcd.config import ServerConfig
from pyetcd.logutil import new_logger
from pyetcd.mvcc import KVStore, NoSpaceError
from pyetcd.mvcc import types as mt
from pyetcd.pb import raft_internal_pb2, rpc_pb2
from pyetcd.raft import Entry, EntryType
from pyetcd.server.etcdserver import pbconv
from pyetcd.server.etcdserver.apply import Applier
from pyetcd.server.etcdserver.stores import Stores
from pyetcd.server.etcdserver.wait import RequestWait


class NoPeers:
    def sync(self) -> None:
        pass

    def restore(self, snap: object) -> None:
        raise AssertionError("no snapshots here")


class Member:
    def __init__(self, path: Path, quota: int = 0) -> None:
        log = new_logger("zap", ["stderr"], "error", stderr=io.StringIO())
        cfg = ServerConfig(data_dir=str(path))
        stores = Stores(cfg, 1, log, KVStore(str(path / "db"), quota_bytes=quota))
        self.stores = stores
        self.kv = stores.kv
        self.waits = RequestWait()
        self.applier = Applier(stores, self.waits, log, NoPeers(), NoPeers(), member_id=1)  # type: ignore[arg-type]
        self.index = 0

    def apply(self, put: rpc_pb2.PutRequest, how: str) -> object:
        """Apply one put entry; ``how``: "converted", "waiter" or "none". Returns the
        waiter's result or error (None when nobody waits)."""
        self.index += 1
        req = raft_internal_pb2.InternalRaftRequest(put=put)
        req.header.ID = self.index
        fut = None
        if how == "converted":
            fut = self.waits.register(self.index, request=pbconv.put_from_pb(put))
        elif how == "waiter":
            fut = self.waits.register(self.index)
        entry = Entry(term=1, index=self.index, type=EntryType.NORMAL, data=req.SerializeToString())
        self.applier.apply_entries([entry], lambda cc: None)  # type: ignore[arg-type,return-value]
        assert self.kv.consistent_index == self.index
        if fut is None:
            return None
        return fut.exception() or fut.result()

    def state(self) -> object:
        kv = self.kv
        return (
            kv.current_revision,
            kv.backend.key_range(b""),
            kv.hash_kv(0),
            (kv.metrics.puts, kv.metrics.put_bytes, kv.metrics.txns),
        )


PUTS = [
    rpc_pb2.PutRequest(key=b"a", value=b"1"),
    rpc_pb2.PutRequest(key=b"b", value=b"2"),
    rpc_pb2.PutRequest(key=b"a", value=b"3"),
    rpc_pb2.PutRequest(key=b"a", value=b"4", prev_kv=True),
    rpc_pb2.PutRequest(key=b"b", ignore_value=True),
    rpc_pb2.PutRequest(key=b"c", value=b"5"),
]


async def test_put_entries_apply_alike_whoever_waits(tmp_path: Path) -> None:
    members = {how: Member(tmp_path / how) for how in ("converted", "waiter", "none")}
    for put in PUTS:
        answers = {how: m.apply(put, how) for how, m in members.items()}
        assert answers["none"] is None
        assert answers["converted"] == answers["waiter"]
        resp = answers["converted"]
        assert isinstance(resp, mt.PutResponse)
        assert resp.header.revision == members["none"].kv.current_revision
        states = [m.state() for m in members.values()]
        assert states[0] == states[1] == states[2]
    last = members["waiter"].apply(rpc_pb2.PutRequest(key=b"a", value=b"6", prev_kv=True), "waiter")
    assert isinstance(last, mt.PutResponse) and last.prev_kv is not None
    assert last.prev_kv.value == b"4"


async def test_a_plain_put_over_the_quota_is_applied_then_raises_nospace(tmp_path: Path) -> None:
    for how in ("converted", "none"):
        m = Member(tmp_path / how, quota=1)
        got = m.apply(rpc_pb2.PutRequest(key=b"k", value=b"v"), how)
        assert m.kv.get(b"k") is not None and m.kv.nospace
        if how == "converted":
            assert isinstance(got, NoSpaceError)
        with pytest.raises(NoSpaceError):
            m.kv.check_space(1)
