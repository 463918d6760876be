"""The KV duties of a member (etcd's v3 KV server side): ranges are served here after a
linearizable wait, writes are checked, converted once and proposed through Raft."""

from __future__ import annotations

from pyetcd.mvcc import types as mt
from pyetcd.mvcc.errors import CompactedError
from pyetcd.mvcc.hash import varint
from pyetcd.pb import raft_internal_pb2, rpc_pb2
from pyetcd.server.auth.check import check_range, check_txn
from pyetcd.server.auth.store import AuthInfo

from . import pbconv, txn
from .header import ResponseHeaders
from .pacer import ReadPacer
from .proposer import Proposer
from .read_index import ReadIndexer
from .stores import Stores
from .validate import (
    check_delete_request,
    check_put_request,
    check_range_request,
    check_txn_request,
)

__all__ = ["ENCODE_SLICE_KVS", "READ_SLICE_KEYS", "KVServer"]

#: Keys of the index walked per step of a range (the pacer runs steps for ~1 ms).
READ_SLICE_KEYS = 256
#: KeyValues encoded per step of a range's answer.
ENCODE_SLICE_KVS = 256
#: Tries of a sliced read of the current revision that a compaction interrupted.
READ_RESTARTS = 3


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
        pacer: ReadPacer,
    ) -> None:
        self.stores = stores
        self.proposer = proposer
        self.read_indexer = read_indexer
        self.headers = headers
        self.max_txn_ops = max_txn_ops
        self.pacer = pacer

    async def range(
        self, req: rpc_pb2.RangeRequest, auth: AuthInfo | None = None
    ) -> rpc_pb2.RangeResponse:
        """Range as a message (the JSON gateway's form of :meth:`range_encoded`): read
        in slices like it, then converted to the message once (not encoded and parsed)."""
        r = await self._admit(req, auth)
        if not r.range_end:
            return self._range_one(r)
        resp = pbconv.range_to_pb(await self._read(r))
        self.headers.fill(resp.header)
        return resp

    async def range_encoded(
        self, req: rpc_pb2.RangeRequest, auth: AuthInfo | None = None
    ) -> bytes:
        """Range, answered as a serialized RangeResponse.

        A large range is read and encoded a slice at a time through the pacer, so it
        cannot hold the event loop (see ``pacer.py``); the answer is what one read at
        the revision in its header gives. A read of one key is bounded work: it is
        read and encoded in one go, without the pacer's machinery (most reads are).
        """
        r = await self._admit(req, auth)
        if not r.range_end:
            one: bytes = self._range_one(r).SerializeToString()
            return one
        return await self._range_sliced(r)

    async def _admit(self, req: rpc_pb2.RangeRequest, auth: AuthInfo | None) -> mt.RangeRequest:
        """The request converted and checked, after its linearizable wait."""
        r = pbconv.range_from_pb(req)
        check_range_request(r)
        if not req.serializable:
            await self.read_indexer.wait_linearizable()
        stores = self.stores
        if stores.auth.enabled:
            check_range(stores.auth, auth, req)
        return r

    def _range_one(self, r: mt.RangeRequest) -> rpc_pb2.RangeResponse:
        resp = pbconv.range_to_pb(txn.range_(self.stores.kv, r))
        self.headers.fill(resp.header)
        return resp

    async def _range_sliced(self, r: mt.RangeRequest) -> bytes:
        result = await self._read(r)
        header = self.headers.header(result.header.revision)
        # the cache of the store now serving (a snapshot may have replaced the one
        # read): a revision's record, hence its encoding, is the same in either
        cache = self.stores.kv.read_cache
        return await self.pacer.run(
            pbconv.range_encode_steps(result, header, ENCODE_SLICE_KVS, cache)
        )

    async def _read(self, r: mt.RangeRequest) -> mt.RangeResponse:
        # A compaction above the read's revision (or a snapshot replacing the store)
        # between two slices ends the read with CompactedError. A read of the current
        # revision then starts again at the new current revision, which is as recent
        # as a linearizable read needs; after a few such restarts it is served in one
        # go. A read at a given revision answers the error, as if the compaction had
        # come first.
        for _ in range(READ_RESTARTS):
            kv = self.stores.kv
            try:
                return await self.pacer.run(
                    txn.range_steps(kv, r, kv.current_revision, READ_SLICE_KEYS)
                )
            except CompactedError:
                if r.revision and not kv.closed:
                    raise
        return txn.range_(self.stores.kv, r)

    async def put(
        self, req: rpc_pb2.PutRequest, auth: AuthInfo | None = None
    ) -> rpc_pb2.PutResponse:
        resp = pbconv.put_to_pb(await self._put(req, auth))
        self.headers.fill(resp.header)
        return resp

    async def put_encoded(self, req: rpc_pb2.PutRequest, auth: AuthInfo | None = None) -> bytes:
        """Put, answered as a serialized PutResponse: the bytes ``put``'s answer
        serializes to, encoded by hand when it is a header alone (a put's usual answer)."""
        result = await self._put(req, auth)
        if result.prev_kv is not None:
            resp = pbconv.put_to_pb(result)
            self.headers.fill(resp.header)
            encoded: bytes = resp.SerializeToString()
            return encoded
        header = self.headers.encoded(result.header.revision)
        return b"\x0a" + varint(len(header)) + header  # field 1, the header

    async def _put(self, req: rpc_pb2.PutRequest, auth: AuthInfo | None) -> mt.PutResponse:
        r = pbconv.put_from_pb(req)
        check_put_request(r)
        result = await self.proposer.propose(
            raft_internal_pb2.InternalRaftRequest(), auth, r, body=("put", req)
        )
        assert isinstance(result, mt.PutResponse)
        return result

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
                raft_internal_pb2.InternalRaftRequest(), auth, t, body=("txn", req)
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
