"""Who calls, and what the non-KV services demand of them once auth is enabled.

KV permissions are checked by the server (reads) and at apply (writes); this
module covers the calls etcd guards at the API layer:

- admin (the root role): Defragment, Hash, HashKV, Snapshot, MoveLeader,
  Downgrade, MemberAdd/Remove/Update/Promote, Alarm ACTIVATE/DEACTIVATE;
- an authenticated user (a valid token or, with ``--client-cert-auth``, a
  certificate): MemberList, Alarm GET, LeaseGrant, LeaseLeases, LeaseRevoke
  (plus WRITE on its keys, at apply), LeaseTimeToLive with ``keys`` (plus READ
  on the lease's keys, etcd 3.5.9). etcd 3.5.13 leaves MemberList, Alarm GET,
  LeaseGrant, LeaseLeases and a keyless LeaseRevoke open (etcd's main branch
  later closed the lease calls); pyetcd is stricter there (docs/VERSION.md);
- open to anyone, as on etcd 3.5.13: Status (``etcdctl endpoint status``),
  LeaseKeepAlive (whatever token the stream carries) and LeaseTimeToLive
  without ``keys``.

With auth disabled every function here returns None at once.
"""

from __future__ import annotations

from pyetcd.server.auth.store import AuthInfo
from pyetcd.server.etcdserver.server import EtcdServer

from .auth import auth_info_from_context
from .common import Ctx

__all__ = ["caller", "require_admin", "require_user"]


async def caller(server: EtcdServer, context: Ctx) -> AuthInfo | None:
    """The caller's identity, or None (auth disabled, or no credentials sent).

    Raises:
        InvalidAuthTokenError: a token was sent but is unknown or expired.
    """
    if not server.auth_store.enabled:
        return None
    return await auth_info_from_context(server, context)


async def require_user(server: EtcdServer, context: Ctx) -> AuthInfo | None:
    """The caller, who must be an existing user authorized at the current revision.

    Raises:
        UserEmptyError, AuthOldRevisionError, PermissionDeniedError, InvalidAuthTokenError.
    """
    if not server.auth_store.enabled:
        return None
    info = await auth_info_from_context(server, context)
    server.auth_store.authorized_user(info)
    return info


async def require_admin(server: EtcdServer, context: Ctx) -> AuthInfo | None:
    """The caller, who must hold the root role.

    Raises:
        UserEmptyError, UserNotFoundError, PermissionDeniedError, InvalidAuthTokenError.
    """
    if not server.auth_store.enabled:
        return None
    info = await auth_info_from_context(server, context)
    server.auth_store.is_admin_permitted(info)
    return info
