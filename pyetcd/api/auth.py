"""etcdserverpb.Auth over grpc.aio: auth is not built yet, so it is never enabled."""

from __future__ import annotations

from typing import Any

from pyetcd.pb import rpc_pb2
from pyetcd.server.server import EtcdServer

from .common import Ctx

__all__ = ["AuthService"]

NOT_ENABLED = "etcdserver: authentication is not enabled"
NOT_SUPPORTED = "pyetcd: authentication is not supported yet"


class AuthService:
    def __init__(self, server: EtcdServer) -> None:
        self.server = server

    async def AuthStatus(
        self, request: rpc_pb2.AuthStatusRequest, context: Ctx
    ) -> rpc_pb2.AuthStatusResponse:
        return rpc_pb2.AuthStatusResponse(header=self.server.header(), enabled=False)

    async def AuthDisable(
        self, request: rpc_pb2.AuthDisableRequest, context: Ctx
    ) -> rpc_pb2.AuthDisableResponse:
        # Disabling auth that is not enabled succeeds in etcd.
        return rpc_pb2.AuthDisableResponse(header=self.server.header())

    async def Authenticate(self, request: Any, context: Ctx) -> Any:
        import grpc

        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, NOT_ENABLED)

    async def _unsupported(self, request: Any, context: Ctx) -> Any:
        import grpc

        await context.abort(grpc.StatusCode.UNIMPLEMENTED, NOT_SUPPORTED)

    AuthEnable = _unsupported
    UserAdd = _unsupported
    UserGet = _unsupported
    UserList = _unsupported
    UserDelete = _unsupported
    UserChangePassword = _unsupported
    UserGrantRole = _unsupported
    UserRevokeRole = _unsupported
    RoleAdd = _unsupported
    RoleGet = _unsupported
    RoleList = _unsupported
    RoleDelete = _unsupported
    RoleGrantPermission = _unsupported
    RoleRevokePermission = _unsupported
