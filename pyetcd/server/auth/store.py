"""The auth store: users, roles, permissions and the enabled flag, as etcd keeps them.

Rules this module keeps:

1. Every change arrives as a committed raft entry and is applied by exactly one
   ``apply``-path method taking the etcdserverpb request and returning the
   response without header, or raising an :mod:`auth_errors` error with etcd's
   text. Applying is deterministic: passwords come pre-hashed in the entry
   (the API layer calls :func:`hash_password` before proposing, so no raft
   entry carries a password), except for entries that carry only ``password``
   (etcd < 3.5), which are hashed here as etcd does.
2. The state lives in the backend's ``auth`` (``authEnabled``, ``authRevision``),
   ``auth_users`` and ``auth_roles`` tables, written in the backend's open
   transaction, so it commits with the consistent index that covers it and a
   restart (or a snapshot restore followed by :meth:`AuthStore.recover`)
   restores it. The in-memory copy is only a cache of those tables.
3. The auth revision starts at 1 and grows by one with every change that
   alters users or roles and with AuthDisable; AuthEnable and no-op grants do
   not move it (etcd 3.5.1, observed).
4. Permission checks follow etcd's order: auth disabled -> allowed; no user
   (revision 0) -> "user name is empty"; a revision older than the store's ->
   "revision of auth store is old"; unknown user -> denied; root role ->
   allowed; otherwise the merged permissions of the user's roles decide
   (:mod:`auth_perms`).
"""

from __future__ import annotations

import base64
import binascii
import struct
from typing import Any

from pyetcd.logutil import Logger
from pyetcd.mvcc.backend import Backend
from pyetcd.pb import auth_pb2, raft_internal_pb2, rpc_pb2

from .errors import (
    AuthFailedError,
    AuthNotEnabledError,
    AuthOldRevisionError,
    InvalidAuthMgmtError,
    InvalidAuthTokenError,
    NoPasswordUserError,
    PermissionDeniedError,
    PermissionNotGivenError,
    PermissionNotGrantedError,
    RoleAlreadyExistError,
    RoleEmptyError,
    RoleNotFoundError,
    RoleNotGrantedError,
    RootRoleNotExistError,
    RootUserNotExistError,
    UserAlreadyExistError,
    UserEmptyError,
    UserNotFoundError,
)
from .perms import RangePermissions, merged_permissions
from .token import AuthInfo, TokenProvider

__all__ = [
    "DEFAULT_BCRYPT_COST",
    "ROOT_ROLE",
    "ROOT_USER",
    "AuthInfo",
    "AuthStore",
    "hash_password",
    "valid_permission_range",
]

ROOT_USER = "root"
ROOT_ROLE = "root"
#: etcd's --bcrypt-cost default; costs outside bcrypt's [4, 31] fall back to it
DEFAULT_BCRYPT_COST = 10
_MIN_COST, _MAX_COST = 4, 31
# bcrypt reads at most 72 bytes; Go's bcrypt of etcd 3.5.1 ignored the rest silently
_BCRYPT_MAX_PASSWORD = 72

_AUTH = "auth"
_USERS = "auth_users"
_ROLES = "auth_roles"
_ENABLED_KEY = b"authEnabled"
_REVISION_KEY = b"authRevision"
_U64 = struct.Struct(">Q")


def valid_bcrypt_cost(cost: int) -> int:
    """``cost`` if bcrypt accepts it, else etcd's default (10)."""
    return cost if _MIN_COST <= cost <= _MAX_COST else DEFAULT_BCRYPT_COST


def _bcrypt() -> Any:
    # Loaded when a password is first hashed or checked, not by every member: a cluster
    # without auth (most) keeps its 0.4 MiB (issue 22).
    import bcrypt

    return bcrypt


def hash_password(password: str, cost: int = DEFAULT_BCRYPT_COST) -> str:
    """The ``hashedPassword`` the API layer puts into UserAdd/UserChangePassword.

    Base64 of the bcrypt hash, as etcd 3.5 proposes it. Slow by design (run it
    off the event loop).
    """
    bcrypt = _bcrypt()
    salt = bcrypt.gensalt(rounds=valid_bcrypt_cost(cost))
    digest = bcrypt.hashpw(password.encode()[:_BCRYPT_MAX_PASSWORD], salt)
    return base64.b64encode(digest).decode()


def _has_root_role(user: auth_pb2.User) -> bool:
    return ROOT_ROLE in user.roles


def valid_permission_range(key: bytes, range_end: bytes) -> bool:
    """Whether a permission's [key, range_end) can select a key (etcd 3.5.8's rule)."""
    if not key:
        return False
    return not range_end or key < range_end or range_end == b"\x00"


class AuthStore:
    """etcd's auth store over the backend's auth tables."""

    def __init__(
        self,
        backend: Backend,
        tokens: TokenProvider,
        *,
        bcrypt_cost: int = DEFAULT_BCRYPT_COST,
        logger: Logger | None = None,
    ) -> None:
        """Load the auth state from ``backend`` (initialising the revision to 1).

        Args:
            backend: the member's backend; the store writes into its open transaction.
            tokens: the ``--auth-token`` provider.
            bcrypt_cost: ``--bcrypt-cost`` (invalid values fall back to 10 with a warning).
            logger: where changes are logged (never passwords or tokens).
        """
        self._be = backend
        self.tokens = tokens
        self._log = logger
        self.bcrypt_cost = valid_bcrypt_cost(bcrypt_cost)
        if self.bcrypt_cost != bcrypt_cost:
            self._info(
                "use default bcrypt cost instead of the invalid given cost",
                given_cost=bcrypt_cost,
                default_cost=DEFAULT_BCRYPT_COST,
            )
        self._enabled = False
        self._revision = 0
        self._users: dict[str, auth_pb2.User] = {}
        self._roles: dict[str, auth_pb2.Role] = {}
        self._perm_cache: dict[str, RangePermissions] = {}
        self.recover()
        if self._revision == 0:
            self._commit_revision()

    # -- state ---------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """Whether authentication is enabled."""
        return self._enabled

    @property
    def revision(self) -> int:
        """The auth revision: grows with every change of users, roles or the enabled flag."""
        return self._revision

    def recover(self) -> None:
        """(Re)load everything from the backend, e.g. after a snapshot replaced it."""
        be = self._be
        self._enabled = be.get(_AUTH, _ENABLED_KEY) == b"\x01"
        raw = be.get(_AUTH, _REVISION_KEY)
        self._revision = 0 if raw is None else int(_U64.unpack(raw)[0])
        self._users = {}
        for k, v in be.items(_USERS):
            self._users[k.decode()] = auth_pb2.User.FromString(v)
        self._roles = {}
        for k, v in be.items(_ROLES):
            self._roles[k.decode()] = auth_pb2.Role.FromString(v)
        self._perm_cache.clear()
        if self._enabled:
            self.tokens.enable()
        else:
            self.tokens.disable()

    def user(self, name: str) -> auth_pb2.User | None:
        """A copy of the stored user, or None."""
        u = self._users.get(name)
        if u is None:
            return None
        copy = auth_pb2.User()
        copy.CopyFrom(u)
        return copy

    def has_role(self, username: str, role: str) -> bool:
        """Whether ``username`` exists and was granted ``role``."""
        u = self._users.get(username)
        return u is not None and role in u.roles

    def status(self) -> rpc_pb2.AuthStatusResponse:
        """AuthStatus without header."""
        return rpc_pb2.AuthStatusResponse(enabled=self._enabled, authRevision=self._revision)

    # -- persistence ---------------------------------------------------------------------

    def _commit_revision(self) -> None:
        self._revision += 1
        self._be.put(_AUTH, _REVISION_KEY, _U64.pack(self._revision))

    def _put_user(self, user: auth_pb2.User) -> None:
        name = user.name.decode()
        self._users[name] = user
        self._be.put(_USERS, user.name, user.SerializeToString())
        self._perm_cache.pop(name, None)

    def _put_role(self, role: auth_pb2.Role) -> None:
        self._roles[role.name.decode()] = role
        self._be.put(_ROLES, role.name, role.SerializeToString())
        # a role change can touch any user's merged permissions
        self._perm_cache.clear()

    def _info(self, msg: str, **fields: Any) -> None:
        if self._log is not None:
            self._log.info(msg, fields)

    # -- enable / disable / authenticate -------------------------------------------------

    def auth_enable(self, r: rpc_pb2.AuthEnableRequest | None = None) -> rpc_pb2.AuthEnableResponse:
        """Apply AuthEnable: needs user ``root`` holding role ``root``; revision unchanged."""
        if self._enabled:
            self._info("authentication is already enabled; ignored auth enable request")
            return rpc_pb2.AuthEnableResponse()
        root = self._users.get(ROOT_USER)
        if root is None:
            raise RootUserNotExistError()
        if not _has_root_role(root):
            raise RootRoleNotExistError()
        self._be.put(_AUTH, _ENABLED_KEY, b"\x01")
        self._enabled = True
        self.tokens.enable()
        self._perm_cache.clear()
        self._info("enabled authentication")
        return rpc_pb2.AuthEnableResponse()

    def auth_disable(
        self, r: rpc_pb2.AuthDisableRequest | None = None
    ) -> rpc_pb2.AuthDisableResponse:
        """Apply AuthDisable: invalidates every token; a no-op when already disabled."""
        if not self._enabled:
            return rpc_pb2.AuthDisableResponse()
        self._be.put(_AUTH, _ENABLED_KEY, b"\x00")
        self._commit_revision()
        self._enabled = False
        self.tokens.disable()
        self._info("disabled authentication")
        return rpc_pb2.AuthDisableResponse()

    def check_password(self, name: str, password: str) -> int:
        """Verify a password (API side, before proposing Authenticate); returns the revision
        it was checked at, so the caller can retry when the store moved meanwhile.

        Slow by design (bcrypt): run it off the event loop.

        Raises:
            AuthNotEnabledError, AuthFailedError, NoPasswordUserError.
        """
        if not self._enabled:
            raise AuthNotEnabledError()
        user = self._users.get(name)
        if user is None:
            raise AuthFailedError()
        if user.options.no_password:
            raise NoPasswordUserError()
        revision = self._revision
        try:
            ok = _bcrypt().checkpw(password.encode()[:_BCRYPT_MAX_PASSWORD], user.password)
        except ValueError:
            ok = False
        if not ok:
            self._info("invalid password", user_name=name)
            raise AuthFailedError()
        return revision

    def gen_token_prefix(self) -> str:
        """The ``simple_token`` the proposing member puts into InternalAuthenticateRequest."""
        return self.tokens.gen_token_prefix()

    def authenticate(
        self, r: raft_internal_pb2.InternalAuthenticateRequest, index: int
    ) -> rpc_pb2.AuthenticateResponse:
        """Apply Authenticate at raft ``index``: issue the token (password checked before)."""
        if not self._enabled:
            raise AuthNotEnabledError()
        user = self._users.get(r.name)
        if user is None or user.options.no_password:
            raise AuthFailedError()
        token = self.tokens.assign(r.name, self._revision, index, r.simple_token)
        return rpc_pb2.AuthenticateResponse(token=token)

    def auth_info_from_token(self, token: str) -> AuthInfo | None:
        """Who a request's token names; None when auth is disabled.

        Raises:
            InvalidAuthTokenError: unknown, expired or forged token.
        """
        if not self._enabled:
            return None
        info = self.tokens.info(token, self._revision)
        if info is None:
            raise InvalidAuthTokenError()
        return info

    # -- users ---------------------------------------------------------------------------

    def _password(self, password: str, hashed: str) -> bytes:
        if password and not hashed:
            # an entry from etcd < 3.5 carries the password itself
            bcrypt = _bcrypt()
            salt = bcrypt.gensalt(rounds=self.bcrypt_cost)
            return bytes(bcrypt.hashpw(password.encode()[:_BCRYPT_MAX_PASSWORD], salt))
        try:
            return base64.b64decode(hashed, validate=True)
        except (binascii.Error, ValueError):
            raise NoPasswordUserError() from None

    def _existing_user(self, name: str) -> auth_pb2.User:
        user = self._users.get(name)
        if user is None:
            raise UserNotFoundError()
        copy = auth_pb2.User()
        copy.CopyFrom(user)
        return copy

    def user_add(self, r: rpc_pb2.AuthUserAddRequest) -> rpc_pb2.AuthUserAddResponse:
        """Apply UserAdd (``hashedPassword`` from :func:`hash_password`)."""
        if not r.name:
            raise UserEmptyError()
        if r.name in self._users:
            raise UserAlreadyExistError()
        user = auth_pb2.User(name=r.name.encode())
        user.options.no_password = r.options.no_password
        if not r.options.no_password:
            user.password = self._password(r.password, r.hashedPassword)
        self._put_user(user)
        self._commit_revision()
        self._info("added a user", user_name=r.name)
        return rpc_pb2.AuthUserAddResponse()

    def user_delete(self, r: rpc_pb2.AuthUserDeleteRequest) -> rpc_pb2.AuthUserDeleteResponse:
        """Apply UserDelete (``root`` cannot go while auth is enabled)."""
        if self._enabled and r.name == ROOT_USER:
            raise InvalidAuthMgmtError()
        if r.name not in self._users:
            raise UserNotFoundError()
        del self._users[r.name]
        self._be.delete(_USERS, r.name.encode())
        self._perm_cache.pop(r.name, None)
        self._commit_revision()
        self.tokens.invalidate_user(r.name)
        self._info("deleted a user", user_name=r.name)
        return rpc_pb2.AuthUserDeleteResponse()

    def user_change_password(
        self, r: rpc_pb2.AuthUserChangePasswordRequest
    ) -> rpc_pb2.AuthUserChangePasswordResponse:
        """Apply UserChangePassword; the user's tokens stop working."""
        user = self._existing_user(r.name)
        user.password = b""
        if not user.options.no_password:
            user.password = self._password(r.password, r.hashedPassword)
        self._put_user(user)
        self._commit_revision()
        self.tokens.invalidate_user(r.name)
        self._info("changed a password of a user", user_name=r.name)
        return rpc_pb2.AuthUserChangePasswordResponse()

    def user_grant_role(
        self, r: rpc_pb2.AuthUserGrantRoleRequest
    ) -> rpc_pb2.AuthUserGrantRoleResponse:
        """Apply UserGrantRole; role ``root`` may be granted before it exists."""
        user = self._existing_user(r.user)
        if r.role != ROOT_ROLE and r.role not in self._roles:
            raise RoleNotFoundError()
        if r.role in user.roles:
            # etcd ignores a repeated grant without moving the revision
            return rpc_pb2.AuthUserGrantRoleResponse()
        roles = sorted([*user.roles, r.role])
        del user.roles[:]
        user.roles.extend(roles)
        self._put_user(user)
        self._commit_revision()
        self._info("granted a role to a user", user_name=r.user, role_name=r.role)
        return rpc_pb2.AuthUserGrantRoleResponse()

    def user_get(self, r: rpc_pb2.AuthUserGetRequest) -> rpc_pb2.AuthUserGetResponse:
        """UserGet: the user's roles."""
        user = self._existing_user(r.name)
        return rpc_pb2.AuthUserGetResponse(roles=list(user.roles))

    def user_list(
        self, r: rpc_pb2.AuthUserListRequest | None = None
    ) -> rpc_pb2.AuthUserListResponse:
        """UserList: every user name in byte order."""
        return rpc_pb2.AuthUserListResponse(users=sorted(self._users, key=str.encode))

    def user_revoke_role(
        self, r: rpc_pb2.AuthUserRevokeRoleRequest
    ) -> rpc_pb2.AuthUserRevokeRoleResponse:
        """Apply UserRevokeRole (``root`` keeps role ``root`` while auth is enabled)."""
        if self._enabled and r.name == ROOT_USER and r.role == ROOT_ROLE:
            raise InvalidAuthMgmtError()
        user = self._existing_user(r.name)
        kept = [role for role in user.roles if role != r.role]
        if len(kept) == len(user.roles):
            raise RoleNotGrantedError()
        del user.roles[:]
        user.roles.extend(kept)
        self._put_user(user)
        self._commit_revision()
        self._info("revoked a role from a user", user_name=r.name, role_name=r.role)
        return rpc_pb2.AuthUserRevokeRoleResponse()

    # -- roles ---------------------------------------------------------------------------

    def _existing_role(self, name: str) -> auth_pb2.Role:
        role = self._roles.get(name)
        if role is None:
            raise RoleNotFoundError()
        copy = auth_pb2.Role()
        copy.CopyFrom(role)
        return copy

    def role_add(self, r: rpc_pb2.AuthRoleAddRequest) -> rpc_pb2.AuthRoleAddResponse:
        """Apply RoleAdd."""
        if not r.name:
            raise RoleEmptyError()
        if r.name in self._roles:
            raise RoleAlreadyExistError()
        self._put_role(auth_pb2.Role(name=r.name.encode()))
        self._commit_revision()
        self._info("created a role", role_name=r.name)
        return rpc_pb2.AuthRoleAddResponse()

    def role_get(self, r: rpc_pb2.AuthRoleGetRequest) -> rpc_pb2.AuthRoleGetResponse:
        """RoleGet: the role's permissions as stored (etcd 3.5.1 shows none for ``root``)."""
        role = self._existing_role(r.role)
        return rpc_pb2.AuthRoleGetResponse(perm=list(role.keyPermission))

    def role_list(
        self, r: rpc_pb2.AuthRoleListRequest | None = None
    ) -> rpc_pb2.AuthRoleListResponse:
        """RoleList: every role name in byte order."""
        return rpc_pb2.AuthRoleListResponse(roles=sorted(self._roles, key=str.encode))

    def role_delete(self, r: rpc_pb2.AuthRoleDeleteRequest) -> rpc_pb2.AuthRoleDeleteResponse:
        """Apply RoleDelete: also revokes the role from every user holding it."""
        if self._enabled and r.role == ROOT_ROLE:
            raise InvalidAuthMgmtError()
        if r.role not in self._roles:
            raise RoleNotFoundError()
        del self._roles[r.role]
        self._be.delete(_ROLES, r.role.encode())
        self._perm_cache.clear()
        for name in [n for n, u in self._users.items() if r.role in u.roles]:
            user = self._existing_user(name)
            kept = [role for role in user.roles if role != r.role]
            del user.roles[:]
            user.roles.extend(kept)
            self._put_user(user)
        self._commit_revision()
        self._info("deleted a role", role_name=r.role)
        return rpc_pb2.AuthRoleDeleteResponse()

    def role_grant_permission(
        self, r: rpc_pb2.AuthRoleGrantPermissionRequest
    ) -> rpc_pb2.AuthRoleGrantPermissionResponse:
        """Apply RoleGrantPermission: a grant on an existing [key, range_end) changes its type.

        A range that selects no key (an empty key, or an end at or below the key other
        than the open end ``\0``) is refused, as from etcd 3.5.8 (#15294).
        """
        if not r.HasField("perm"):
            raise PermissionNotGivenError()
        if not valid_permission_range(r.perm.key, r.perm.range_end):
            raise InvalidAuthMgmtError()
        role = self._existing_role(r.name)
        for perm in role.keyPermission:
            if perm.key == r.perm.key and perm.range_end == r.perm.range_end:
                perm.permType = r.perm.permType
                break
        else:
            perms = [*role.keyPermission, r.perm]
            # stable: equal keys keep grant order
            perms.sort(key=lambda p: p.key)
            del role.keyPermission[:]
            role.keyPermission.extend(perms)
        self._put_role(role)
        self._commit_revision()
        self._info(
            "granted/updated a permission to a role",
            role_name=r.name,
            permission=auth_pb2.Permission.Type.Name(r.perm.permType),
        )
        return rpc_pb2.AuthRoleGrantPermissionResponse()

    def role_revoke_permission(
        self, r: rpc_pb2.AuthRoleRevokePermissionRequest
    ) -> rpc_pb2.AuthRoleRevokePermissionResponse:
        """Apply RoleRevokePermission of exactly [key, range_end)."""
        role = self._existing_role(r.role)
        kept = [p for p in role.keyPermission if (p.key, p.range_end) != (r.key, r.range_end)]
        if len(kept) == len(role.keyPermission):
            raise PermissionNotGrantedError()
        del role.keyPermission[:]
        role.keyPermission.extend(kept)
        self._put_role(role)
        self._commit_revision()
        self._info("revoked a permission on range", role_name=r.role)
        return rpc_pb2.AuthRoleRevokePermissionResponse()

    # -- permission checks ---------------------------------------------------------------

    def authorized_user(self, info: AuthInfo | None) -> auth_pb2.User | None:
        """The user a request acts as, after etcd's checks; None when anything is allowed
        (auth disabled or a root user).

        Raises:
            UserEmptyError: no token was given (revision 0).
            AuthOldRevisionError: the request was authorized before the last auth change.
            PermissionDeniedError: the user no longer exists.
        """
        if not self._enabled:
            return None
        if info is None or info.revision == 0:
            raise UserEmptyError()
        if info.revision < self._revision:
            raise AuthOldRevisionError()
        user = self._users.get(info.username)
        if user is None:
            raise PermissionDeniedError()
        return None if _has_root_role(user) else user

    def _permissions(self, user: auth_pb2.User) -> RangePermissions:
        name = user.name.decode()
        perms = self._perm_cache.get(name)
        if perms is None:
            perms = merged_permissions(user, self._roles)
            self._perm_cache[name] = perms
        return perms

    def _check(self, info: AuthInfo | None, key: bytes, range_end: bytes, write: bool) -> None:
        user = self.authorized_user(info)
        if user is None:
            return
        perms = self._permissions(user)
        if not (perms.write if write else perms.read).covers_request(key, range_end):
            raise PermissionDeniedError()

    def is_range_permitted(self, info: AuthInfo | None, key: bytes, range_end: bytes) -> None:
        """READ over ``key``/``range_end`` (empty: one key; ``\\0``: from key); raises if not."""
        self._check(info, key, range_end, write=False)

    def is_put_permitted(self, info: AuthInfo | None, key: bytes) -> None:
        """WRITE on one key; raises if not."""
        self._check(info, key, b"", write=True)

    def is_delete_range_permitted(
        self, info: AuthInfo | None, key: bytes, range_end: bytes
    ) -> None:
        """WRITE over ``key``/``range_end``; raises if not."""
        self._check(info, key, range_end, write=True)

    def is_admin_permitted(self, info: AuthInfo | None) -> None:
        """Root role needed (when enabled). Raises UserEmpty / UserNotFound / PermissionDenied."""
        if not self._enabled:
            return
        if info is None or not info.username:
            raise UserEmptyError()
        user = self._users.get(info.username)
        if user is None:
            raise UserNotFoundError()
        if not _has_root_role(user):
            raise PermissionDeniedError()

    def is_admin(self, info: AuthInfo | None) -> bool:
        """Whether :meth:`is_admin_permitted` would pass."""
        try:
            self.is_admin_permitted(info)
        except (UserEmptyError, UserNotFoundError, PermissionDeniedError):
            return False
        return True
