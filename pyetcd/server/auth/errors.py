"""The auth store's typed errors, each carrying the text etcd 3.5 sends.

They derive from :class:`~pyetcd.server.etcdserver.errors.ServerError`, so the apply loop
fails a waiter with them like any other server error. Their gRPC codes live in
one table, :data:`pyetcd.api.v3rpc.auth.AUTH_ERROR_CODES`.

Two errors keep etcd's ``auth:`` wording because etcd sends them with code
Unknown, never translated: :class:`NoPasswordUserError` (Authenticate of a
user added with ``--no-password``) and :class:`AuthOptionsError` (a bad
``--auth-token``), which stops the server at start.
"""

from __future__ import annotations

from pyetcd.server.etcdserver.errors import ServerError

__all__ = [
    "AuthError",
    "AuthFailedError",
    "AuthMethodError",
    "AuthNotEnabledError",
    "AuthOldRevisionError",
    "AuthOptionsError",
    "InvalidAuthMgmtError",
    "InvalidAuthTokenError",
    "KeyMismatchError",
    "MissingKeyError",
    "NoPasswordUserError",
    "PermissionDeniedError",
    "PermissionNotGivenError",
    "PermissionNotGrantedError",
    "RoleAlreadyExistError",
    "RoleEmptyError",
    "RoleNotFoundError",
    "RoleNotGrantedError",
    "RootRoleNotExistError",
    "RootUserNotExistError",
    "UserAlreadyExistError",
    "UserEmptyError",
    "UserNotFoundError",
    "VerifyOnlyError",
]


class AuthError(ServerError):
    """Base of the auth store's errors; ``str()`` is etcd's message."""

    message = "etcdserver: auth error"


class RootUserNotExistError(AuthError):
    message = "etcdserver: root user does not exist"


class RootRoleNotExistError(AuthError):
    message = "etcdserver: root user does not have root role"


class UserAlreadyExistError(AuthError):
    message = "etcdserver: user name already exists"


class UserEmptyError(AuthError):
    message = "etcdserver: user name is empty"


class UserNotFoundError(AuthError):
    message = "etcdserver: user name not found"


class RoleAlreadyExistError(AuthError):
    message = "etcdserver: role name already exists"


class RoleNotFoundError(AuthError):
    message = "etcdserver: role name not found"


class RoleEmptyError(AuthError):
    message = "etcdserver: role name is empty"


class AuthFailedError(AuthError):
    message = "etcdserver: authentication failed, invalid user ID or password"


class NoPasswordUserError(AuthError):
    message = "auth: authentication failed, password was given for no password user"


class PermissionNotGivenError(AuthError):
    message = "etcdserver: permission not given"


class PermissionDeniedError(AuthError):
    message = "etcdserver: permission denied"


class RoleNotGrantedError(AuthError):
    message = "etcdserver: role is not granted to the user"


class PermissionNotGrantedError(AuthError):
    message = "etcdserver: permission is not granted to the role"


class AuthNotEnabledError(AuthError):
    message = "etcdserver: authentication is not enabled"


class AuthOldRevisionError(AuthError):
    message = "etcdserver: revision of auth store is old"


class InvalidAuthTokenError(AuthError):
    message = "etcdserver: invalid auth token"


class InvalidAuthMgmtError(AuthError):
    message = "etcdserver: invalid auth management"


class AuthOptionsError(AuthError):
    message = "auth: invalid auth options"


class AuthMethodError(AuthOptionsError):
    message = "auth: invalid auth signature method"


class MissingKeyError(AuthOptionsError):
    message = "auth: missing key data"


class KeyMismatchError(AuthOptionsError):
    message = "auth: public and private keys don't match"


class VerifyOnlyError(AuthError):
    message = "auth: token signing attempted with verify-only key"
