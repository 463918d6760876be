"""etcdserverpb.Auth over gRPC, and the token lookup every service shares.

Every Auth RPC is proposed through Raft as etcd 3.5 does (so every member
applies it, and the admin check happens at apply with the proposer's identity
in the entry header). Passwords never enter the log: UserAdd and
UserChangePassword are bcrypt-hashed here, Authenticate checks the password
here and proposes only the user name and the simple-token prefix.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from functools import wraps
from typing import Any, Protocol, TypeVar

from google.protobuf.message import Message

from pyetcd.api.v3rpc import errors
from pyetcd.grpcwire.status import StatusCode
from pyetcd.pb import raft_internal_pb2, rpc_pb2
from pyetcd.server.auth import errors as ae
from pyetcd.server.auth.store import AuthInfo, AuthStore, hash_password
from pyetcd.server.auth.token import SimpleTokenProvider

from .common import Ctx
from .errors import AUTH_ERROR_CODES

__all__ = ["AUTH_ERROR_CODES", "AuthServer", "AuthService", "auth_info_from_context"]

SC = StatusCode

# metadata keys etcd reads the token from (gRPC clients, then the HTTP gateway)
_TOKEN_KEYS = ("token", "authorization")
# how long a request waits for this member to apply the entry that issued its token
_TOKEN_APPLY_WAIT = 5.0


class AppliedWaiter(Protocol):
    def wait(self, index: int) -> asyncio.Future[None]: ...


class AuthServer(Protocol):
    """What the Auth service needs from the server."""

    @property
    def auth_store(self) -> AuthStore: ...

    @property
    def applied_wait(self) -> AppliedWaiter: ...

    @property
    def client_cert_auth(self) -> bool:
        """Whether ``--client-cert-auth`` is on (a certificate's CN names the user)."""
        ...

    def header(self, revision: int | None = None) -> rpc_pb2.ResponseHeader: ...

    async def propose(self, req: raft_internal_pb2.InternalRaftRequest) -> object: ...


async def auth_info_from_context(server: AuthServer, context: Ctx) -> AuthInfo | None:
    """Who the caller is, from metadata ``token`` (or ``authorization``).

    None when auth is disabled or no token was sent (the permission checks
    then answer "user name is empty"). A simple token issued at a raft index
    this member has not applied yet is looked up once it has.

    Raises:
        InvalidAuthTokenError: the token is unknown, expired or forged.
    """
    store = server.auth_store
    if not store.enabled:
        return None
    md = dict(context.invocation_metadata() or ())
    token = next((md[k] for k in _TOKEN_KEYS if md.get(k)), None)
    if token is None:
        return _tls_auth_info(server, context)
    if isinstance(token, bytes):
        token = token.decode(errors="replace")
    index = SimpleTokenProvider.token_index(token)
    if index is not None and isinstance(store.tokens, SimpleTokenProvider):
        try:
            await asyncio.wait_for(server.applied_wait.wait(index), _TOKEN_APPLY_WAIT)
        except TimeoutError:
            raise ae.InvalidAuthTokenError() from None
    return store.auth_info_from_token(token)


def _tls_auth_info(server: AuthServer, context: Ctx) -> AuthInfo | None:
    # etcd's AuthInfoFromTLS: with --client-cert-auth, a caller without a token acts
    # as the user named by its certificate's common name, at the current revision.
    if not server.client_cert_auth:
        return None
    auth_context = getattr(context, "auth_context", None)
    if auth_context is None:
        return None
    names = auth_context().get("x509_common_name") or []
    if not names:
        return None
    name = names[0]
    username = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
    return AuthInfo(username, server.auth_store.revision)


F = TypeVar("F", bound=Callable[..., Coroutine[Any, Any, Any]])
M = TypeVar("M", bound=Message)


def _translate(fn: F) -> F:
    """Auth errors become etcd's status; the rest goes to the shared table."""

    @wraps(fn)
    async def wrapper(self: Any, request: Any, context: Ctx) -> Any:
        try:
            return await fn(self, request, context)
        except ae.AuthError as err:
            await context.abort(AUTH_ERROR_CODES.get(type(err), SC.UNKNOWN), str(err))
        except Exception as err:  # the shared table decides, or re-raises
            await errors.abort(context, err)

    return wrapper  # type: ignore[return-value]


class AuthService:
    """etcdserverpb.Auth over the member's auth store."""

    def __init__(self, server: AuthServer) -> None:
        self.server = server

    @property
    def store(self) -> AuthStore:
        """The auth store requests are checked against."""
        return self.server.auth_store


    async def _propose(self, context: Ctx, want: type[M], **field: Message) -> M:
        """Propose one auth request as the caller; returns the response with a header."""
        req = raft_internal_pb2.InternalRaftRequest(**field)
        info = await auth_info_from_context(self.server, context)
        if info is not None:
            req.header.username = info.username
            req.header.auth_revision = info.revision
        resp = await self.server.propose(req)
        assert isinstance(resp, want)
        resp.header.CopyFrom(self.server.header())
        return resp

    @_translate
    async def AuthEnable(
        self, request: rpc_pb2.AuthEnableRequest, context: Ctx
    ) -> rpc_pb2.AuthEnableResponse:
        return await self._propose(context, rpc_pb2.AuthEnableResponse, auth_enable=request)

    @_translate
    async def AuthDisable(
        self, request: rpc_pb2.AuthDisableRequest, context: Ctx
    ) -> rpc_pb2.AuthDisableResponse:
        return await self._propose(context, rpc_pb2.AuthDisableResponse, auth_disable=request)

    @_translate
    async def AuthStatus(
        self, request: rpc_pb2.AuthStatusRequest, context: Ctx
    ) -> rpc_pb2.AuthStatusResponse:
        return await self._propose(context, rpc_pb2.AuthStatusResponse, auth_status=request)

    @_translate
    async def Authenticate(
        self, request: rpc_pb2.AuthenticateRequest, context: Ctx
    ) -> rpc_pb2.AuthenticateResponse:
        store = self.store
        while True:
            checked = await asyncio.to_thread(store.check_password, request.name, request.password)
            internal = raft_internal_pb2.InternalAuthenticateRequest(
                name=request.name, simple_token=store.gen_token_prefix()
            )
            resp = await self.server.propose(
                raft_internal_pb2.InternalRaftRequest(authenticate=internal)
            )
            # the password was checked against a store that has not changed since
            if checked == store.revision:
                assert isinstance(resp, rpc_pb2.AuthenticateResponse)
                resp.header.CopyFrom(self.server.header())
                return resp

    @_translate
    async def UserAdd(
        self, request: rpc_pb2.AuthUserAddRequest, context: Ctx
    ) -> rpc_pb2.AuthUserAddResponse:
        if not request.options.no_password:
            request.hashedPassword = await asyncio.to_thread(
                hash_password, request.password, self.store.bcrypt_cost
            )
        request.password = ""
        return await self._propose(context, rpc_pb2.AuthUserAddResponse, auth_user_add=request)

    @_translate
    async def UserGet(
        self, request: rpc_pb2.AuthUserGetRequest, context: Ctx
    ) -> rpc_pb2.AuthUserGetResponse:
        return await self._propose(context, rpc_pb2.AuthUserGetResponse, auth_user_get=request)

    @_translate
    async def UserList(
        self, request: rpc_pb2.AuthUserListRequest, context: Ctx
    ) -> rpc_pb2.AuthUserListResponse:
        return await self._propose(context, rpc_pb2.AuthUserListResponse, auth_user_list=request)

    @_translate
    async def UserDelete(
        self, request: rpc_pb2.AuthUserDeleteRequest, context: Ctx
    ) -> rpc_pb2.AuthUserDeleteResponse:
        return await self._propose(
            context, rpc_pb2.AuthUserDeleteResponse, auth_user_delete=request
        )

    @_translate
    async def UserChangePassword(
        self, request: rpc_pb2.AuthUserChangePasswordRequest, context: Ctx
    ) -> rpc_pb2.AuthUserChangePasswordResponse:
        request.hashedPassword = await asyncio.to_thread(
            hash_password, request.password, self.store.bcrypt_cost
        )
        request.password = ""
        return await self._propose(
            context, rpc_pb2.AuthUserChangePasswordResponse, auth_user_change_password=request
        )

    @_translate
    async def UserGrantRole(
        self, request: rpc_pb2.AuthUserGrantRoleRequest, context: Ctx
    ) -> rpc_pb2.AuthUserGrantRoleResponse:
        return await self._propose(
            context, rpc_pb2.AuthUserGrantRoleResponse, auth_user_grant_role=request
        )

    @_translate
    async def UserRevokeRole(
        self, request: rpc_pb2.AuthUserRevokeRoleRequest, context: Ctx
    ) -> rpc_pb2.AuthUserRevokeRoleResponse:
        return await self._propose(
            context, rpc_pb2.AuthUserRevokeRoleResponse, auth_user_revoke_role=request
        )

    @_translate
    async def RoleAdd(
        self, request: rpc_pb2.AuthRoleAddRequest, context: Ctx
    ) -> rpc_pb2.AuthRoleAddResponse:
        return await self._propose(context, rpc_pb2.AuthRoleAddResponse, auth_role_add=request)

    @_translate
    async def RoleGet(
        self, request: rpc_pb2.AuthRoleGetRequest, context: Ctx
    ) -> rpc_pb2.AuthRoleGetResponse:
        return await self._propose(context, rpc_pb2.AuthRoleGetResponse, auth_role_get=request)

    @_translate
    async def RoleList(
        self, request: rpc_pb2.AuthRoleListRequest, context: Ctx
    ) -> rpc_pb2.AuthRoleListResponse:
        return await self._propose(context, rpc_pb2.AuthRoleListResponse, auth_role_list=request)

    @_translate
    async def RoleDelete(
        self, request: rpc_pb2.AuthRoleDeleteRequest, context: Ctx
    ) -> rpc_pb2.AuthRoleDeleteResponse:
        return await self._propose(
            context, rpc_pb2.AuthRoleDeleteResponse, auth_role_delete=request
        )

    @_translate
    async def RoleGrantPermission(
        self, request: rpc_pb2.AuthRoleGrantPermissionRequest, context: Ctx
    ) -> rpc_pb2.AuthRoleGrantPermissionResponse:
        return await self._propose(
            context, rpc_pb2.AuthRoleGrantPermissionResponse, auth_role_grant_permission=request
        )

    @_translate
    async def RoleRevokePermission(
        self, request: rpc_pb2.AuthRoleRevokePermissionRequest, context: Ctx
    ) -> rpc_pb2.AuthRoleRevokePermissionResponse:
        return await self._propose(
            context, rpc_pb2.AuthRoleRevokePermissionResponse, auth_role_revoke_permission=request
        )
