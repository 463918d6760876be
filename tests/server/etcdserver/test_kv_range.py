"""KVServer.range_encoded (issue 17): a sliced read of the current revision that a
compaction interrupts starts again at the new revision; one at a given revision
answers CompactedError."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pyetcd.mvcc import KVStore
from pyetcd.mvcc.errors import CompactedError
from pyetcd.pb import rpc_pb2
from pyetcd.server.etcdserver.kv import KVServer
from pyetcd.server.etcdserver.pacer import ReadPacer


class CompactingPacer(ReadPacer):
    """Runs the steps in one go, compacting the store above the read after the first
    step of the first ``times`` reads."""

    def __init__(self, kv: KVStore, times: int) -> None:
        super().__init__()
        self.kv, self.times, self.reads = kv, times, 0

    async def run(self, steps: Generator[None, None, Any]) -> Any:
        self.reads += 1
        first = True
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value
            if first and self.times > 0:
                self.times -= 1
                kv = self.kv
                kv.begin_write()
                kv.write_put(b"other", b"x", 0)
                kv.end_write()
                kv.compact(kv.current_revision)
            first = False


def _server(kv: KVStore, pacer: ReadPacer) -> KVServer:
    stores: Any = SimpleNamespace(kv=kv, auth=SimpleNamespace(enabled=False))
    headers: Any = SimpleNamespace(
        header=lambda rev: rpc_pb2.ResponseHeader(revision=rev, member_id=1),
        fill=lambda h: setattr(h, "member_id", 1),
    )
    return KVServer(stores, None, None, headers, max_txn_ops=128, pacer=pacer)  # type: ignore[arg-type]


@pytest.fixture
def kv(tmp_path: Path) -> Generator[KVStore, None, None]:
    store = KVStore(str(tmp_path / "db"))
    for i in range(2000):
        store.begin_write()
        store.write_put(b"k%05d" % i, b"v", 0)
        store.end_write()
    yield store
    store.close()


def test_current_revision_read_restarts_after_a_compaction(kv: KVStore) -> None:
    pacer = CompactingPacer(kv, times=2)
    req = rpc_pb2.RangeRequest(key=b"k", range_end=b"l", serializable=True)
    resp = rpc_pb2.RangeResponse.FromString(asyncio.run(_server(kv, pacer).range_encoded(req)))
    assert resp.count == 2000 and len(resp.kvs) == 2000
    assert resp.header.revision == kv.current_revision  # the revision it restarted at
    assert pacer.reads == 4  # two interrupted reads, the third whole, then the encode


def test_read_at_a_revision_answers_compacted(kv: KVStore) -> None:
    pacer = CompactingPacer(kv, times=1)
    req = rpc_pb2.RangeRequest(
        key=b"k", range_end=b"l", serializable=True, revision=kv.current_revision
    )
    with pytest.raises(CompactedError):
        asyncio.run(_server(kv, pacer).range_encoded(req))


class InOneGo(ReadPacer):
    async def run(self, steps: Generator[None, None, Any]) -> Any:
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"limit": 7},
        {"sort_order": rpc_pb2.RangeRequest.DESCEND},
        {"sort_order": rpc_pb2.RangeRequest.DESCEND, "limit": 3},
        {"sort_order": rpc_pb2.RangeRequest.ASCEND, "sort_target": rpc_pb2.RangeRequest.MOD},
        {"sort_order": rpc_pb2.RangeRequest.DESCEND, "sort_target": rpc_pb2.RangeRequest.VALUE},
        {"keys_only": True},
        {"count_only": True},
        {"min_mod_revision": 500, "max_mod_revision": 900},
        {"min_create_revision": 1200},
        {"revision": 1000},
        {"revision": 1000, "limit": 5, "keys_only": True},
    ],
)
def test_encoded_answer_from_the_wire_cache_is_the_message(
    kv: KVStore, options: dict[str, Any]
) -> None:
    # every answer, first read (encodings built) and again (taken from the read
    # cache), is byte for byte the message form of the same range
    for lease in (1, 2, 3):
        kv.lessor.grant(lease, 3600)
    for i in range(0, 2000, 3):  # newer revisions of some keys, with values and leases
        kv.begin_write()
        kv.write_put(b"k%05d" % i, b"w%d" % i * (i % 5), i % 4)
        kv.end_write()
    server = _server(kv, InOneGo())
    req = rpc_pb2.RangeRequest(key=b"k00100", range_end=b"k01900", serializable=True, **options)
    plain = rpc_pb2.RangeRequest(key=b"k00000", range_end=b"k02000", serializable=True)
    want = asyncio.run(server.range(req)).SerializeToString()
    want_plain = asyncio.run(server.range(plain)).SerializeToString()
    # plain first (the cache then holds every record's encoding), the options twice,
    # plain again (what the options' reads left in the cache is right for any read)
    assert asyncio.run(server.range_encoded(plain)) == want_plain
    for _ in range(2):
        assert asyncio.run(server.range_encoded(req)) == want
    kv.read_cache.kvs.clear()
    kv.read_cache.wire.clear()
    for _ in range(2):
        assert asyncio.run(server.range_encoded(req)) == want
    assert asyncio.run(server.range_encoded(plain)) == want_plain
    cache = kv.read_cache
    if options in ({}, {"limit": 7}, {"sort_order": rpc_pb2.RangeRequest.DESCEND}):
        assert cache.wire  # the plain ranges went through the cache
    assert set(cache.wire) <= set(cache.kvs)


def test_wire_encodings_leave_with_their_values() -> None:
    from pyetcd.mvcc.read_cache import ReadCache
    from pyetcd.mvcc.types import KeyValue

    cache = ReadCache(max_bytes=1000, max_entries=3)
    for i in range(1, 4):
        cache.remember((i, 0), KeyValue(b"k%d" % i, i, i, 1, b"v" * 10))
        cache.remember_wire((i, 0), b"e" * 20)
    cache.remember_wire((9, 0), b"never held")  # no value at (9, 0): not kept
    assert (9, 0) not in cache.wire
    cache.remember((4, 0), KeyValue(b"k4", 4, 4, 1, b"v"))
    assert list(cache.wire) == [(2, 0), (3, 0)]
    assert cache.size == sum(len(v.key) + len(v.value) for v in cache.kvs.values()) + 40
    small = ReadCache(max_bytes=100, max_entries=100)
    for i in range(1, 4):
        small.remember((i, 0), KeyValue(b"k%d" % i, i, i, 1, b"v" * 10))
        small.remember_wire((i, 0), b"e" * 30)  # the encodings count towards the bound
    assert small.size <= 100 and set(small.wire) <= set(small.kvs)
