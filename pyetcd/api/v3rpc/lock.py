"""v3lockpb.Lock: distributed locks as etcd's concurrency.Mutex runs them.

Lock(name, lease): put the key ``<name>/<lease in hex>`` attached to the lease (or
find it, when this lease already waits for or holds the lock), then wait until
every key under ``<name>/`` created before it is deleted. The holder is the key
with the lowest create revision. Unlock(key) deletes the key.
"""

from __future__ import annotations

import asyncio

from pyetcd.pb import rpc_pb2, v3lock_pb2
from pyetcd.server.auth.store import AuthInfo
from pyetcd.server.etcdserver.server import EtcdServer

from .access import caller
from .common import Ctx
from .concurrency import (
    RecipeError,
    prefix_end,
    recipe_errors,
    session_lease,
    spawn_cleanup,
    wait_deletes,
)

__all__ = ["LockService", "acquire"]

ERR_SESSION_EXPIRED = "mutex: session is expired"


async def acquire(
    server: EtcdServer, prefix: bytes, lease: int, auth: AuthInfo | None = None
) -> tuple[bytes, int, rpc_pb2.ResponseHeader | None]:
    """The Mutex's first step: create (or find) this lease's key under ``prefix``.

    Returns the key, its create revision, and the txn's header if the key already
    holds the lock (None when older keys must be waited for).
    """
    key = prefix + f"{lease:x}".encode()
    owner = rpc_pb2.RangeRequest(
        key=prefix,
        range_end=prefix_end(prefix),
        limit=1,
        sort_order=rpc_pb2.RangeRequest.ASCEND,
        sort_target=rpc_pb2.RangeRequest.CREATE,
    )
    txn = rpc_pb2.TxnRequest(
        compare=[
            rpc_pb2.Compare(
                key=key,
                target=rpc_pb2.Compare.CREATE,
                result=rpc_pb2.Compare.EQUAL,
                create_revision=0,
            )
        ],
        success=[
            rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, lease=lease)),
            rpc_pb2.RequestOp(request_range=owner),
        ],
        failure=[
            rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=key)),
            rpc_pb2.RequestOp(request_range=owner),
        ],
    )
    resp = await server.kv.txn(txn, auth)
    my_rev = resp.header.revision
    if not resp.succeeded:
        my_rev = resp.responses[0].response_range.kvs[0].create_revision
    owners = resp.responses[1].response_range.kvs
    held = not owners or owners[0].create_revision == my_rev
    return key, my_rev, resp.header if held else None


class LockService:
    """The Lock service of one member."""

    def __init__(self, server: EtcdServer) -> None:
        self.server = server

    @recipe_errors
    async def Lock(self, request: v3lock_pb2.LockRequest, context: Ctx) -> v3lock_pb2.LockResponse:
        server = self.server
        auth = await caller(server, context)
        lease = await session_lease(server, request.lease, auth)
        prefix = request.name + b"/"
        key, my_rev, header = await acquire(server, prefix, lease, auth)
        if header is not None:
            return v3lock_pb2.LockResponse(header=header, key=key)
        try:
            await wait_deletes(server, prefix, my_rev - 1, auth)
            # The lease may have expired while waiting: then the key is gone.
            got = await server.kv.range(rpc_pb2.RangeRequest(key=key), auth)
        except asyncio.CancelledError:
            spawn_cleanup(self._delete(key, auth))
            raise
        except Exception:
            await self._delete(key, auth)
            raise
        if not got.kvs:
            raise RecipeError(ERR_SESSION_EXPIRED)
        return v3lock_pb2.LockResponse(header=got.header, key=key)

    @recipe_errors
    async def Unlock(
        self, request: v3lock_pb2.UnlockRequest, context: Ctx
    ) -> v3lock_pb2.UnlockResponse:
        auth = await caller(self.server, context)
        resp = await self.server.kv.delete_range(rpc_pb2.DeleteRangeRequest(key=request.key), auth)
        return v3lock_pb2.UnlockResponse(header=resp.header)

    async def _delete(self, key: bytes, auth: AuthInfo | None) -> None:
        await self.server.kv.delete_range(rpc_pb2.DeleteRangeRequest(key=key), auth)
