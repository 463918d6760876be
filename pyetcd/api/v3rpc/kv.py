"""etcdserverpb.KV over gRPC: a thin shell around EtcdServer.

With auth enabled each call carries the caller's identity (from its token) to the
server, which checks reads before serving them and writes at apply.
"""

from __future__ import annotations

from typing import Any, TypeAlias

from pyetcd.grpcwire import Handler
from pyetcd.pb import rpc_pb2
from pyetcd.server.etcdserver.server import EtcdServer

from .access import caller
from .errors import translate_errors

__all__ = ["KVService", "register_range_encoded"]

Ctx: TypeAlias = Any  # a grpcwire.ServerCall, or the gateway's context


class KVService:
    def __init__(self, server: EtcdServer) -> None:
        self.server = server

    @translate_errors
    async def Range(self, request: rpc_pb2.RangeRequest, context: Ctx) -> rpc_pb2.RangeResponse:
        auth = await caller(self.server, context) if self.server.auth_store.enabled else None
        return await self.server.kv.range(request, auth)

    @translate_errors
    async def RangeEncoded(self, request: rpc_pb2.RangeRequest, context: Ctx) -> bytes:
        """Range for the gRPC wire: the RangeResponse already serialized, a slice at a
        time, so that a large answer does not hold the event loop in one encode (see
        ``register_range_encoded``)."""
        auth = await caller(self.server, context) if self.server.auth_store.enabled else None
        return await self.server.kv.range_encoded(request, auth)

    @translate_errors
    async def Put(self, request: rpc_pb2.PutRequest, context: Ctx) -> rpc_pb2.PutResponse:
        auth = await caller(self.server, context) if self.server.auth_store.enabled else None
        return await self.server.kv.put(request, auth)

    @translate_errors
    async def PutEncoded(self, request: rpc_pb2.PutRequest, context: Ctx) -> bytes:
        """Put for the gRPC wire: the PutResponse already serialized (see
        ``register_range_encoded``)."""
        auth = await caller(self.server, context) if self.server.auth_store.enabled else None
        return await self.server.kv.put_encoded(request, auth)

    @translate_errors
    async def DeleteRange(
        self, request: rpc_pb2.DeleteRangeRequest, context: Ctx
    ) -> rpc_pb2.DeleteRangeResponse:
        auth = await caller(self.server, context) if self.server.auth_store.enabled else None
        return await self.server.kv.delete_range(request, auth)

    @translate_errors
    async def Txn(self, request: rpc_pb2.TxnRequest, context: Ctx) -> rpc_pb2.TxnResponse:
        auth = await caller(self.server, context) if self.server.auth_store.enabled else None
        return await self.server.kv.txn(request, auth)

    @translate_errors
    async def Compact(
        self, request: rpc_pb2.CompactionRequest, context: Ctx
    ) -> rpc_pb2.CompactionResponse:
        auth = await caller(self.server, context) if self.server.auth_store.enabled else None
        return await self.server.kv.compact(request, auth)


def _as_is(payload: bytes) -> bytes:
    return payload


def register_range_encoded(kv: KVService, server: Any) -> None:
    """Serve ``/etcdserverpb.KV/Range`` and ``/Put`` with ``kv.RangeEncoded`` and
    ``kv.PutEncoded`` on ``server`` (a grpcwire GrpcServer, after the KV service's own
    handlers, which these replace): their answers come serialized."""
    server.add_registered_method_handlers(
        "etcdserverpb.KV",
        {
            "Range": Handler(
                False,
                False,
                rpc_pb2.RangeRequest.FromString,
                _as_is,
                unary_unary=kv.RangeEncoded,
            ),
            "Put": Handler(
                False, False, rpc_pb2.PutRequest.FromString, _as_is, unary_unary=kv.PutEncoded
            ),
        },
    )
