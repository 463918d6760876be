"""The KV duties of a member (etcd's v3 KV server side): ranges are served here after a
linearizable wait, writes are checked, converted once and proposed through Raft."""

from __future__ import annotations

from pyetcd.mvcc import types as mt
from pyetcd.pb import raft_internal_pb2, rpc_pb2
from pyetcd.server.auth.check import check_range, check_txn
from pyetcd.server.auth.store import AuthInfo

from . import pbconv, txn
from .header import ResponseHeaders
from .proposer import Proposer
from .read_index import ReadIndexer
from .stores import Stores
from .validate import (
    check_delete_request,
    check_put_request,
    check_range_request,
    check_txn_request,
)

__all__ = ["KVServer"]


class KVServer:
    """Range, Put, DeleteRange, Txn and Compact, protobuf in and out.

    ``auth``: who asks (None with auth disabled); reads are checked here, writes at apply.
    """

    def __init__(
        self,
        stores: Stores,
        proposer: Proposer,
        read_indexer: ReadIndexer,
        headers: ResponseHeaders,
        *,
        max_txn_ops: int,
    ) -> None:
        self.stores = stores
        self.proposer = proposer
        self.read_indexer = read_indexer
        self.headers = headers
        self.max_txn_ops = max_txn_ops

    async def range(
        self, req: rpc_pb2.RangeRequest, auth: AuthInfo | None = None
    ) -> rpc_pb2.RangeResponse:
        r = pbconv.range_from_pb(req)
        check_range_request(r)
        if not req.serializable:
            await self.read_indexer.wait_linearizable()
        stores = self.stores
        if stores.auth.enabled:
            check_range(stores.auth, auth, req)
        resp = pbconv.range_to_pb(txn.range_(stores.kv, r))
        self.headers.fill(resp.header)
        return resp

    async def put(
        self, req: rpc_pb2.PutRequest, auth: AuthInfo | None = None
    ) -> rpc_pb2.PutResponse:
        r = pbconv.put_from_pb(req)
        check_put_request(r)
        result = await self.proposer.propose(
            raft_internal_pb2.InternalRaftRequest(put=req), auth, r
        )
        assert isinstance(result, mt.PutResponse)
        resp = pbconv.put_to_pb(result)
        self.headers.fill(resp.header)
        return resp

    async def delete_range(
        self, req: rpc_pb2.DeleteRangeRequest, auth: AuthInfo | None = None
    ) -> rpc_pb2.DeleteRangeResponse:
        r = pbconv.delete_range_from_pb(req)
        check_delete_request(r)
        result = await self.proposer.propose(
            raft_internal_pb2.InternalRaftRequest(delete_range=req), auth, r
        )
        assert isinstance(result, mt.DeleteRangeResponse)
        resp = pbconv.delete_range_to_pb(result)
        self.headers.fill(resp.header)
        return resp

    async def txn(
        self, req: rpc_pb2.TxnRequest, auth: AuthInfo | None = None
    ) -> rpc_pb2.TxnResponse:
        t = pbconv.txn_from_pb(req)
        check_txn_request(t, self.max_txn_ops)
        if _txn_read_only(req):
            # A read-only txn is a read: linearizable through ReadIndex, not the log.
            await self.read_indexer.wait_linearizable()
            stores = self.stores
            if stores.auth.enabled:
                check_txn(stores.auth, auth, req)
            result: object = txn.txn(stores.kv, t)
        else:
            result = await self.proposer.propose(
                raft_internal_pb2.InternalRaftRequest(txn=req), auth, t
            )
        assert isinstance(result, mt.TxnResponse)
        resp = pbconv.txn_to_pb(result)
        self.headers.fill(resp.header)
        return resp

    async def compact(
        self, req: rpc_pb2.CompactionRequest, auth: AuthInfo | None = None
    ) -> rpc_pb2.CompactionResponse:
        result = await self.proposer.propose(
            raft_internal_pb2.InternalRaftRequest(compaction=req), auth
        )
        assert isinstance(result, mt.CompactionResponse)
        return rpc_pb2.CompactionResponse(header=self.headers.header(result.header.revision))


def _txn_read_only(req: rpc_pb2.TxnRequest) -> bool:
    for op in (*req.success, *req.failure):
        which = op.WhichOneof("request")
        if which == "request_range":
            continue
        if which == "request_txn" and _txn_read_only(op.request_txn):
            continue
        return False
    return True
