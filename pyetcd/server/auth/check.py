"""What each request needs from the auth store, and the apply entry point for auth entries.

Rules this module keeps (etcd's, plus the fixes of its later advisories):

1. Range and Watch need READ over the whole requested range; Put needs WRITE
   on its key; DeleteRange needs WRITE over its range; ``prev_kv`` on a Put or
   a DeleteRange also needs READ over what it returns.
2. A Put that attaches a lease needs WRITE on every key already attached to
   that lease (whoever may write a lease may revoke it and delete its keys);
   LeaseRevoke needs WRITE on every attached key, or the root role. Unlike
   etcd, revoking even a keyless lease needs an authenticated user.
3. A Txn needs READ for every compare and everything its ops need, in BOTH
   branches, recursively through nested txns (whichever branch runs).
4. A Watch with an empty key watches from ``\\0``; ``range_end == \\0`` stays
   "from key" for the check, so a single-key grant never permits it.
5. Auth-management entries need the root role, except Authenticate, UserGet
   of oneself and RoleGet of a role one holds.
6. LeaseTimeToLive with ``keys=true`` needs a caller with READ on every key
   attached to the lease (etcd 3.5.9); without ``keys`` it is not checked, and
   neither is LeaseKeepAlive (etcd 3.5.13 checks neither).

Every ``check_*`` returns None when permitted and raises an auth error otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from google.protobuf.message import Message

from pyetcd.pb import raft_internal_pb2, rpc_pb2

from .errors import UserEmptyError
from .store import AuthInfo, AuthStore

__all__ = [
    "LeaseKeys",
    "apply_auth_request",
    "auth_info_of",
    "check_delete_range",
    "check_lease_revoke",
    "check_lease_time_to_live",
    "check_put",
    "check_raft_request",
    "check_range",
    "check_txn",
    "check_watch",
    "is_auth_request",
]

#: the keys attached to a lease (empty for an unknown lease)
LeaseKeys = Callable[[int], Iterable[bytes]]


def _no_lease_keys(lease_id: int) -> Iterable[bytes]:
    return ()


def check_range(store: AuthStore, info: AuthInfo | None, r: rpc_pb2.RangeRequest) -> None:
    """Range: READ over [key, range_end)."""
    store.is_range_permitted(info, r.key, r.range_end)


def check_put(
    store: AuthStore,
    info: AuthInfo | None,
    r: rpc_pb2.PutRequest,
    lease_keys: LeaseKeys = _no_lease_keys,
) -> None:
    """Put: WRITE on the key, WRITE on the keys of the attached lease, READ for prev_kv."""
    store.is_put_permitted(info, r.key)
    if r.lease and store.authorized_user(info) is not None:
        for key in lease_keys(r.lease):
            store.is_put_permitted(info, key)
    if r.prev_kv:
        store.is_range_permitted(info, r.key, b"")


def check_delete_range(
    store: AuthStore, info: AuthInfo | None, r: rpc_pb2.DeleteRangeRequest
) -> None:
    """DeleteRange: WRITE over the range, READ too when prev_kv."""
    store.is_delete_range_permitted(info, r.key, r.range_end)
    if r.prev_kv:
        store.is_range_permitted(info, r.key, r.range_end)


def check_txn(
    store: AuthStore,
    info: AuthInfo | None,
    r: rpc_pb2.TxnRequest,
    lease_keys: LeaseKeys = _no_lease_keys,
) -> None:
    """Txn: every compare and every op of both branches, nested txns included."""
    for cmp in r.compare:
        store.is_range_permitted(info, cmp.key, cmp.range_end)
    for op in (*r.success, *r.failure):
        which = op.WhichOneof("request")
        if which == "request_range":
            check_range(store, info, op.request_range)
        elif which == "request_put":
            check_put(store, info, op.request_put, lease_keys)
        elif which == "request_delete_range":
            check_delete_range(store, info, op.request_delete_range)
        elif which == "request_txn":
            check_txn(store, info, op.request_txn, lease_keys)


def check_lease_revoke(store: AuthStore, info: AuthInfo | None, keys: Iterable[bytes]) -> None:
    """LeaseRevoke: root, or WRITE on every key attached to the lease."""
    if store.authorized_user(info) is None:
        return
    for key in keys:
        store.is_put_permitted(info, key)


def check_lease_time_to_live(
    store: AuthStore, info: AuthInfo | None, keys: Iterable[bytes]
) -> None:
    """LeaseTimeToLive with ``keys=true``: a caller, with READ on every key it would list.

    etcd 3.5.9's fix for CVE-2023-32082, as 3.5.13 has it: without a token the answer is
    "user name is empty"; a lease with no keys needs nothing more. A call without
    ``keys`` is not checked at all (the caller must not call this then).
    """
    if not store.enabled:
        return
    if info is None:
        raise UserEmptyError()
    for key in keys:
        store.is_range_permitted(info, key, b"")


def check_watch(store: AuthStore, info: AuthInfo | None, key: bytes, range_end: bytes) -> None:
    """Watch create: READ over the watched range (empty key = ``\\0``, as the watch uses)."""
    store.is_range_permitted(info, key or b"\x00", range_end)


def auth_info_of(req: raft_internal_pb2.InternalRaftRequest) -> AuthInfo:
    """The proposer's identity an entry carries in its header."""
    return AuthInfo(req.header.username, req.header.auth_revision)


def check_raft_request(
    store: AuthStore,
    req: raft_internal_pb2.InternalRaftRequest,
    lease_keys: LeaseKeys = _no_lease_keys,
) -> None:
    """At apply: the checks for a put, delete_range, txn or lease_revoke entry (else none)."""
    info = auth_info_of(req)
    if req.HasField("put"):
        check_put(store, info, req.put, lease_keys)
    elif req.HasField("delete_range"):
        check_delete_range(store, info, req.delete_range)
    elif req.HasField("txn"):
        check_txn(store, info, req.txn, lease_keys)
    elif req.HasField("lease_revoke"):
        check_lease_revoke(store, info, lease_keys(req.lease_revoke.ID))


# -- auth entries --------------------------------------------------------------------------

# entry field -> apply method, for the requests that need the root role
_ADMIN_ONLY: dict[str, Callable[[AuthStore, Any], Message]] = {
    "auth_enable": AuthStore.auth_enable,
    "auth_disable": AuthStore.auth_disable,
    "auth_status": lambda store, r: store.status(),
    "auth_user_add": AuthStore.user_add,
    "auth_user_delete": AuthStore.user_delete,
    "auth_user_change_password": AuthStore.user_change_password,
    "auth_user_grant_role": AuthStore.user_grant_role,
    "auth_user_revoke_role": AuthStore.user_revoke_role,
    "auth_user_list": AuthStore.user_list,
    "auth_role_add": AuthStore.role_add,
    "auth_role_delete": AuthStore.role_delete,
    "auth_role_grant_permission": AuthStore.role_grant_permission,
    "auth_role_revoke_permission": AuthStore.role_revoke_permission,
    "auth_role_list": AuthStore.role_list,
}
_SELF_SERVICE = ("auth_user_get", "auth_role_get", "authenticate")


def is_auth_request(req: raft_internal_pb2.InternalRaftRequest) -> bool:
    """Whether the entry carries an auth request (for :func:`apply_auth_request`)."""
    return any(fd.name in _ADMIN_ONLY or fd.name in _SELF_SERVICE for fd, _ in req.ListFields())


def apply_auth_request(
    store: AuthStore, req: raft_internal_pb2.InternalRaftRequest, index: int
) -> Message | None:
    """Apply an auth entry at raft ``index`` with etcd's admin checks.

    Returns the response without header, or None if ``req`` is no auth request.
    Raises the auth error etcd answers with.
    """
    info = auth_info_of(req)
    for fd, value in req.ListFields():
        apply = _ADMIN_ONLY.get(fd.name)
        if apply is not None:
            store.is_admin_permitted(info)
            return apply(store, value)
        if fd.name == "auth_user_get":
            if info.username != value.name:
                store.is_admin_permitted(info)
            return store.user_get(value)
        if fd.name == "auth_role_get":
            if not store.has_role(info.username, value.role):
                store.is_admin_permitted(info)
            return store.role_get(value)
        if fd.name == "authenticate":
            return store.authenticate(value, index)
    return None
