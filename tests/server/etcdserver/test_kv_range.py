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
        header=lambda rev: rpc_pb2.ResponseHeader(revision=rev, member_id=1)
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
