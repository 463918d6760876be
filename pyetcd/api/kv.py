"""etcdserverpb.KV over grpc.aio: a thin shell around EtcdServer."""

from __future__ import annotations

from typing import Any, TypeAlias

from pyetcd.pb import rpc_pb2
from pyetcd.server.server import EtcdServer

from .errors import translate_errors

__all__ = ["KVService"]

Ctx: TypeAlias = Any  # grpc ships no type stubs


class KVService:
    def __init__(self, server: EtcdServer) -> None:
        self.server = server

    @translate_errors
    async def Range(self, request: rpc_pb2.RangeRequest, context: Ctx) -> rpc_pb2.RangeResponse:
        return await self.server.range(request)

    @translate_errors
    async def Put(self, request: rpc_pb2.PutRequest, context: Ctx) -> rpc_pb2.PutResponse:
        return await self.server.put(request)

    @translate_errors
    async def DeleteRange(
        self, request: rpc_pb2.DeleteRangeRequest, context: Ctx
    ) -> rpc_pb2.DeleteRangeResponse:
        return await self.server.delete_range(request)

    @translate_errors
    async def Txn(self, request: rpc_pb2.TxnRequest, context: Ctx) -> rpc_pb2.TxnResponse:
        return await self.server.txn(request)

    @translate_errors
    async def Compact(
        self, request: rpc_pb2.CompactionRequest, context: Ctx
    ) -> rpc_pb2.CompactionResponse:
        return await self.server.compact(request)
