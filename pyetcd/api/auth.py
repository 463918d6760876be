"""etcdserverpb.Auth over grpc.aio: auth is not built yet, so it is never enabled.

Until it is, the store holds no users and no roles, and every RPC answers exactly as
etcd does on a cluster where none were ever added: lists are empty, lookups say "not
found", enabling fails for want of a root user. Adding users or roles is refused.
"""

from __future__ import annotations

from typing import Any

import grpc

from pyetcd.pb import rpc_pb2
from pyetcd.server.server import EtcdServer

from .common import Ctx

__all__ = ["AuthService"]

NOT_ENABLED = "etcdserver: authentication is not enabled"
NOT_SUPPORTED = "pyetcd: authentication is not supported yet"
ROOT_USER_NOT_EXIST = "etcdserver: root user does not exist"
USER_NOT_FOUND = "etcdserver: user name not found"
ROLE_NOT_FOUND = "etcdserver: role name not found"
USER_EMPTY = "etcdserver: user name is empty"
ROLE_EMPTY = "etcdserver: role name is empty"

#: etcd's auth store commits revision 1 when it is first created.
INITIAL_AUTH_REVISION = 1


class AuthService:
    def __init__(self, server: EtcdServer) -> None:
        self.server = server

    async def AuthStatus(
        self, request: rpc_pb2.AuthStatusRequest, context: Ctx
    ) -> rpc_pb2.AuthStatusResponse:
        return rpc_pb2.AuthStatusResponse(
            header=self.server.header(), enabled=False, authRevision=INITIAL_AUTH_REVISION
        )

    async def AuthDisable(
        self, request: rpc_pb2.AuthDisableRequest, context: Ctx
    ) -> rpc_pb2.AuthDisableResponse:
        # Disabling auth that is not enabled succeeds in etcd.
        return rpc_pb2.AuthDisableResponse(header=self.server.header())

    async def AuthEnable(self, request: Any, context: Ctx) -> Any:
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, ROOT_USER_NOT_EXIST)

    async def Authenticate(self, request: Any, context: Ctx) -> Any:
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, NOT_ENABLED)

    async def UserList(
        self, request: rpc_pb2.AuthUserListRequest, context: Ctx
    ) -> rpc_pb2.AuthUserListResponse:
        return rpc_pb2.AuthUserListResponse(header=self.server.header())

    async def RoleList(
        self, request: rpc_pb2.AuthRoleListRequest, context: Ctx
    ) -> rpc_pb2.AuthRoleListResponse:
        return rpc_pb2.AuthRoleListResponse(header=self.server.header())

    async def _user_not_found(self, request: Any, context: Ctx) -> Any:
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, USER_NOT_FOUND)

    async def _role_not_found(self, request: Any, context: Ctx) -> Any:
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, ROLE_NOT_FOUND)

    UserGet = _user_not_found
    UserDelete = _user_not_found
    UserChangePassword = _user_not_found
    UserGrantRole = _user_not_found
    UserRevokeRole = _user_not_found
    RoleGet = _role_not_found
    RoleDelete = _role_not_found
    RoleGrantPermission = _role_not_found
    RoleRevokePermission = _role_not_found

    async def UserAdd(self, request: rpc_pb2.AuthUserAddRequest, context: Ctx) -> Any:
        if not request.name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, USER_EMPTY)
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, NOT_SUPPORTED)

    async def RoleAdd(self, request: rpc_pb2.AuthRoleAddRequest, context: Ctx) -> Any:
        if not request.name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, ROLE_EMPTY)
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, NOT_SUPPORTED)
