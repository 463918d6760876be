"""Unit tests of pyetcd/server/auth_store.py, auth_check.py, auth_perms.py and auth_token.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pyetcd.mvcc.backend import Backend
from pyetcd.pb import auth_pb2, raft_internal_pb2, rpc_pb2
from pyetcd.server.auth import errors as ae
from pyetcd.server.auth.check import (
    apply_auth_request,
    check_delete_range,
    check_lease_revoke,
    check_put,
    check_raft_request,
    check_txn,
    check_watch,
    is_auth_request,
)
from pyetcd.server.auth.perms import IntervalSet, perm_interval
from pyetcd.server.auth.store import AuthInfo, AuthStore, hash_password
from pyetcd.server.auth.token import (
    JWTTokenProvider,
    SimpleTokenProvider,
    new_token_provider,
    parse_token_options,
)

COST = 4
READ, WRITE, RW = (
    auth_pb2.Permission.READ,
    auth_pb2.Permission.WRITE,
    auth_pb2.Permission.READWRITE,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Backend]:
    be = Backend(str(tmp_path / "db"))
    yield be
    be.close()


@pytest.fixture
def store(backend: Backend, clock: Clock) -> AuthStore:
    return AuthStore(backend, SimpleTokenProvider(300, clock), bcrypt_cost=COST)


def add_user(store: AuthStore, name: str, password: str = "pw", no_password: bool = False) -> None:
    req = rpc_pb2.AuthUserAddRequest(name=name)
    req.options.no_password = no_password
    if not no_password:
        req.hashedPassword = hash_password(password, COST)
    store.user_add(req)


def grant(store: AuthStore, role: str, ptype: int, key: bytes, end: bytes = b"") -> None:
    perm = auth_pb2.Permission(permType=ptype, key=key, range_end=end)  # type: ignore[arg-type]
    store.role_grant_permission(rpc_pb2.AuthRoleGrantPermissionRequest(name=role, perm=perm))


def enable_with_root(store: AuthStore) -> None:
    add_user(store, "root")
    store.user_grant_role(rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"))
    store.auth_enable()


def info(store: AuthStore, name: str) -> AuthInfo:
    return AuthInfo(name, store.revision)


# -- errors --------------------------------------------------------------------------------


def test_error_texts_are_etcds() -> None:
    assert str(ae.RootUserNotExistError()) == "etcdserver: root user does not exist"
    assert str(ae.RootRoleNotExistError()) == "etcdserver: root user does not have root role"
    assert str(ae.UserAlreadyExistError()) == "etcdserver: user name already exists"
    assert str(ae.UserNotFoundError()) == "etcdserver: user name not found"
    assert str(ae.RoleAlreadyExistError()) == "etcdserver: role name already exists"
    assert str(ae.RoleNotFoundError()) == "etcdserver: role name not found"
    assert str(ae.UserEmptyError()) == "etcdserver: user name is empty"
    assert str(ae.RoleEmptyError()) == "etcdserver: role name is empty"
    assert (
        str(ae.AuthFailedError())
        == "etcdserver: authentication failed, invalid user ID or password"
    )
    assert str(ae.PermissionDeniedError()) == "etcdserver: permission denied"
    assert str(ae.InvalidAuthTokenError()) == "etcdserver: invalid auth token"
    assert str(ae.AuthOldRevisionError()) == "etcdserver: revision of auth store is old"
    assert str(ae.AuthNotEnabledError()) == "etcdserver: authentication is not enabled"
    assert str(ae.RoleNotGrantedError()) == "etcdserver: role is not granted to the user"
    assert (
        str(ae.PermissionNotGrantedError()) == "etcdserver: permission is not granted to the role"
    )
    assert str(ae.InvalidAuthMgmtError()) == "etcdserver: invalid auth management"
    assert str(ae.PermissionNotGivenError()) == "etcdserver: permission not given"
    assert str(ae.NoPasswordUserError()) == (
        "auth: authentication failed, password was given for no password user"
    )


# -- revision, enable, persistence ---------------------------------------------------------


def test_revision_starts_at_one_and_follows_etcd(store: AuthStore) -> None:
    # the sequence observed on etcd 3.5.1 (auth status after each step)
    assert store.revision == 1
    add_user(store, "root")
    assert store.revision == 2
    add_user(store, "alice", no_password=True)
    store.role_add(rpc_pb2.AuthRoleAddRequest(name="r"))
    assert store.revision == 4
    with pytest.raises(ae.RootRoleNotExistError):
        store.auth_enable()
    store.role_add(rpc_pb2.AuthRoleAddRequest(name="root"))
    store.user_grant_role(rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"))
    assert store.revision == 6
    store.auth_enable()
    assert store.enabled and store.revision == 6  # enable does not move it
    store.auth_enable()  # already enabled: ignored
    grant(store, "r", READ, b"a", b"c")
    assert store.revision == 7
    store.user_grant_role(rpc_pb2.AuthUserGrantRoleRequest(user="alice", role="r"))
    assert store.revision == 8
    store.user_grant_role(rpc_pb2.AuthUserGrantRoleRequest(user="alice", role="r"))
    assert store.revision == 8  # repeated grant: no change
    store.auth_disable()
    assert not store.enabled and store.revision == 9
    store.auth_disable()
    assert store.revision == 9
    st = store.status()
    assert st.enabled is False and st.authRevision == 9


def test_enable_needs_root_user_with_root_role(store: AuthStore) -> None:
    with pytest.raises(ae.RootUserNotExistError):
        store.auth_enable()
    add_user(store, "root")
    with pytest.raises(ae.RootRoleNotExistError):
        store.auth_enable()
    # granting role root works before the role exists (etcd 3.5.1)
    store.user_grant_role(rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"))
    store.auth_enable()
    assert store.enabled


def test_restart_restores_everything(tmp_path: Path, clock: Clock) -> None:
    be = Backend(str(tmp_path / "db"))
    store = AuthStore(be, SimpleTokenProvider(300, clock), bcrypt_cost=COST)
    enable_with_root(store)
    add_user(store, "alice", "secret")
    store.role_add(rpc_pb2.AuthRoleAddRequest(name="r"))
    grant(store, "r", RW, b"k", b"\x00")
    store.user_grant_role(rpc_pb2.AuthUserGrantRoleRequest(user="alice", role="r"))
    rev = store.revision
    token = store.authenticate(raft_internal_pb2.InternalAuthenticateRequest(
        name="alice", simple_token="abc"), 7).token
    be.close()

    be2 = Backend(str(tmp_path / "db"))
    try:
        again = AuthStore(be2, SimpleTokenProvider(300, clock), bcrypt_cost=COST)
        assert again.enabled and again.revision == rev
        assert again.user_list().users == ["alice", "root"]
        assert again.role_get(rpc_pb2.AuthRoleGetRequest(role="r")).perm[0].key == b"k"
        assert again.check_password("alice", "secret") == rev
        again.is_put_permitted(AuthInfo("alice", rev), b"kz")
        with pytest.raises(ae.InvalidAuthTokenError):  # simple tokens die with the process
            again.auth_info_from_token(token)
    finally:
        be2.close()


def test_recover_reloads_from_backend(store: AuthStore, backend: Backend) -> None:
    add_user(store, "bob")
    backend.delete("auth_users", b"bob")
    assert store.user("bob") is not None
    store.recover()
    assert store.user("bob") is None


# -- users ---------------------------------------------------------------------------------


def test_user_errors(store: AuthStore) -> None:
    with pytest.raises(ae.UserEmptyError):
        store.user_add(rpc_pb2.AuthUserAddRequest(name=""))
    add_user(store, "alice")
    with pytest.raises(ae.UserAlreadyExistError):
        add_user(store, "alice")
    for call in (
        lambda: store.user_delete(rpc_pb2.AuthUserDeleteRequest(name="x")),
        lambda: store.user_get(rpc_pb2.AuthUserGetRequest(name="x")),
        lambda: store.user_change_password(rpc_pb2.AuthUserChangePasswordRequest(name="x")),
        lambda: store.user_grant_role(rpc_pb2.AuthUserGrantRoleRequest(user="x", role="r")),
        lambda: store.user_revoke_role(rpc_pb2.AuthUserRevokeRoleRequest(name="x", role="r")),
    ):
        with pytest.raises(ae.UserNotFoundError):
            call()
    with pytest.raises(ae.RoleNotFoundError):
        store.user_grant_role(rpc_pb2.AuthUserGrantRoleRequest(user="alice", role="nope"))
    with pytest.raises(ae.RoleNotGrantedError):
        store.user_revoke_role(rpc_pb2.AuthUserRevokeRoleRequest(name="alice", role="nope"))


def test_user_roles_sorted_and_revoked(store: AuthStore) -> None:
    add_user(store, "alice")
    for r in ("zeta", "alpha", "mid"):
        store.role_add(rpc_pb2.AuthRoleAddRequest(name=r))
        store.user_grant_role(rpc_pb2.AuthUserGrantRoleRequest(user="alice", role=r))
    assert list(store.user_get(rpc_pb2.AuthUserGetRequest(name="alice")).roles) == [
        "alpha", "mid", "zeta"]
    store.user_revoke_role(rpc_pb2.AuthUserRevokeRoleRequest(name="alice", role="mid"))
    assert list(store.user_get(rpc_pb2.AuthUserGetRequest(name="alice")).roles) == [
        "alpha", "zeta"]


def test_password_is_hashed_and_checked(store: AuthStore) -> None:
    enable_with_root(store)
    add_user(store, "alice", "s3cret")
    stored = store.user("alice")
    assert stored is not None and stored.password.startswith(b"$2")
    assert b"s3cret" not in stored.password
    assert store.check_password("alice", "s3cret") == store.revision
    with pytest.raises(ae.AuthFailedError):
        store.check_password("alice", "wrong")
    with pytest.raises(ae.AuthFailedError):
        store.check_password("nobody", "x")
    store.user_change_password(rpc_pb2.AuthUserChangePasswordRequest(
        name="alice", hashedPassword=hash_password("new", COST)))
    store.check_password("alice", "new")
    with pytest.raises(ae.AuthFailedError):
        store.check_password("alice", "s3cret")


def test_legacy_entry_with_plain_password_is_hashed_at_apply(store: AuthStore) -> None:
    enable_with_root(store)
    store.user_add(rpc_pb2.AuthUserAddRequest(name="old", password="pw"))
    u = store.user("old")
    assert u is not None and u.password != b"pw"
    store.check_password("old", "pw")


def test_no_password_user(store: AuthStore) -> None:
    enable_with_root(store)
    add_user(store, "cert", no_password=True)
    with pytest.raises(ae.NoPasswordUserError):
        store.check_password("cert", "anything")
    with pytest.raises(ae.AuthFailedError):
        store.authenticate(raft_internal_pb2.InternalAuthenticateRequest(name="cert"), 3)
    # a password change keeps it password-less
    store.user_change_password(rpc_pb2.AuthUserChangePasswordRequest(
        name="cert", hashedPassword=hash_password("x", COST)))
    u = store.user("cert")
    assert u is not None and u.password == b"" and u.options.no_password


def test_check_password_needs_auth_enabled(store: AuthStore) -> None:
    add_user(store, "alice")
    with pytest.raises(ae.AuthNotEnabledError):
        store.check_password("alice", "pw")
    with pytest.raises(ae.AuthNotEnabledError):
        store.authenticate(raft_internal_pb2.InternalAuthenticateRequest(name="alice"), 3)


def test_root_cannot_be_dismantled_while_enabled(store: AuthStore) -> None:
    enable_with_root(store)
    with pytest.raises(ae.InvalidAuthMgmtError):
        store.user_revoke_role(rpc_pb2.AuthUserRevokeRoleRequest(name="root", role="root"))
    with pytest.raises(ae.InvalidAuthMgmtError):
        store.user_delete(rpc_pb2.AuthUserDeleteRequest(name="root"))
    with pytest.raises(ae.InvalidAuthMgmtError):
        store.role_delete(rpc_pb2.AuthRoleDeleteRequest(role="root"))
    store.auth_disable()
    store.user_revoke_role(rpc_pb2.AuthUserRevokeRoleRequest(name="root", role="root"))
    store.user_delete(rpc_pb2.AuthUserDeleteRequest(name="root"))


def test_user_list_in_byte_order(store: AuthStore) -> None:
    for n in ("b", "B", "a"):
        add_user(store, n)
    assert list(store.user_list().users) == ["B", "a", "b"]


# -- roles ---------------------------------------------------------------------------------


def test_role_errors(store: AuthStore) -> None:
    with pytest.raises(ae.RoleEmptyError):
        store.role_add(rpc_pb2.AuthRoleAddRequest(name=""))
    store.role_add(rpc_pb2.AuthRoleAddRequest(name="r"))
    with pytest.raises(ae.RoleAlreadyExistError):
        store.role_add(rpc_pb2.AuthRoleAddRequest(name="r"))
    with pytest.raises(ae.RoleNotFoundError):
        store.role_get(rpc_pb2.AuthRoleGetRequest(role="x"))
    with pytest.raises(ae.RoleNotFoundError):
        store.role_delete(rpc_pb2.AuthRoleDeleteRequest(role="x"))
    with pytest.raises(ae.RoleNotFoundError):
        grant(store, "x", READ, b"a")
    with pytest.raises(ae.RoleNotFoundError):
        store.role_revoke_permission(rpc_pb2.AuthRoleRevokePermissionRequest(role="x", key=b"a"))
    with pytest.raises(ae.PermissionNotGivenError):
        store.role_grant_permission(rpc_pb2.AuthRoleGrantPermissionRequest(name="r"))
    with pytest.raises(ae.PermissionNotGrantedError):
        store.role_revoke_permission(rpc_pb2.AuthRoleRevokePermissionRequest(role="r", key=b"a"))


def test_grant_sorts_by_key_and_updates_type(store: AuthStore) -> None:
    store.role_add(rpc_pb2.AuthRoleAddRequest(name="r"))
    grant(store, "r", READ, b"m")
    grant(store, "r", WRITE, b"a", b"c")
    grant(store, "r", READ, b"a")
    grant(store, "r", RW, b"a", b"c")
    perms = store.role_get(rpc_pb2.AuthRoleGetRequest(role="r")).perm
    assert [(p.key, p.range_end, p.permType) for p in perms] == [
        (b"a", b"c", RW), (b"a", b"", READ), (b"m", b"", READ)]
    store.role_revoke_permission(rpc_pb2.AuthRoleRevokePermissionRequest(
        role="r", key=b"a", range_end=b"c"))
    perms = store.role_get(rpc_pb2.AuthRoleGetRequest(role="r")).perm
    assert [(p.key, p.range_end) for p in perms] == [(b"a", b""), (b"m", b"")]


def test_role_delete_revokes_from_users(store: AuthStore) -> None:
    add_user(store, "alice")
    store.role_add(rpc_pb2.AuthRoleAddRequest(name="r"))
    store.user_grant_role(rpc_pb2.AuthUserGrantRoleRequest(user="alice", role="r"))
    store.role_delete(rpc_pb2.AuthRoleDeleteRequest(role="r"))
    assert list(store.user_get(rpc_pb2.AuthUserGetRequest(name="alice")).roles) == []
    assert list(store.role_list().roles) == []


# -- permission checks ---------------------------------------------------------------------


@pytest.fixture
def alice(store: AuthStore) -> AuthInfo:
    enable_with_root(store)
    add_user(store, "alice")
    store.role_add(rpc_pb2.AuthRoleAddRequest(name="r"))
    store.user_grant_role(rpc_pb2.AuthUserGrantRoleRequest(user="alice", role="r"))
    grant(store, "r", READ, b"k")  # one key
    grant(store, "r", RW, b"p/", b"p0")  # prefix p/
    grant(store, "r", WRITE, b"w", b"\x00")  # from w on
    return info(store, "alice")


def test_disabled_permits_everything(store: AuthStore) -> None:
    store.is_range_permitted(None, b"a", b"\x00")
    store.is_put_permitted(None, b"a")
    store.is_admin_permitted(None)
    check_lease_revoke(store, None, [b"a"])


def test_user_level_errors(store: AuthStore, alice: AuthInfo) -> None:
    with pytest.raises(ae.UserEmptyError):
        store.is_range_permitted(None, b"k", b"")
    with pytest.raises(ae.UserEmptyError):
        store.is_range_permitted(AuthInfo("", 0), b"k", b"")
    with pytest.raises(ae.AuthOldRevisionError):
        store.is_range_permitted(AuthInfo("alice", alice.revision - 1), b"k", b"")
    with pytest.raises(ae.PermissionDeniedError):
        store.is_range_permitted(AuthInfo("ghost", alice.revision), b"k", b"")


def test_single_key_prefix_and_from_key(store: AuthStore, alice: AuthInfo) -> None:
    store.is_range_permitted(alice, b"k", b"")
    store.is_range_permitted(alice, b"k", b"k\x00")  # exactly the one key
    for key, end in ((b"k", b"\x00"), (b"k", b"l"), (b"j", b"k\x00"), (b"ka", b"")):
        with pytest.raises(ae.PermissionDeniedError):
            store.is_range_permitted(alice, key, end)
    with pytest.raises(ae.PermissionDeniedError):
        store.is_put_permitted(alice, b"k")  # READ only
    store.is_range_permitted(alice, b"p/", b"p0")
    store.is_range_permitted(alice, b"p/x", b"p/y")
    store.is_delete_range_permitted(alice, b"p/", b"p0")
    with pytest.raises(ae.PermissionDeniedError):
        store.is_range_permitted(alice, b"p/", b"p1")
    store.is_put_permitted(alice, b"w")
    store.is_put_permitted(alice, b"zzzz")
    store.is_delete_range_permitted(alice, b"w", b"\x00")
    with pytest.raises(ae.PermissionDeniedError):
        store.is_delete_range_permitted(alice, b"v", b"\x00")
    with pytest.raises(ae.PermissionDeniedError):
        store.is_range_permitted(alice, b"w", b"")  # WRITE only


def test_inverted_range_needs_its_start_key(store: AuthStore, alice: AuthInfo) -> None:
    store.is_range_permitted(alice, b"k", b"a")
    with pytest.raises(ae.PermissionDeniedError):
        store.is_range_permitted(alice, b"l", b"a")


def test_root_permits_everything(store: AuthStore, alice: AuthInfo) -> None:
    root = info(store, "root")
    store.is_range_permitted(root, b"\x00", b"\x00")
    store.is_admin_permitted(root)
    with pytest.raises(ae.PermissionDeniedError):
        store.is_admin_permitted(alice)
    with pytest.raises(ae.UserNotFoundError):
        store.is_admin_permitted(AuthInfo("ghost", 9))
    with pytest.raises(ae.UserEmptyError):
        store.is_admin_permitted(None)


def test_permissions_follow_changes(store: AuthStore, alice: AuthInfo) -> None:
    store.is_put_permitted(alice, b"p/a")
    store.role_revoke_permission(rpc_pb2.AuthRoleRevokePermissionRequest(
        role="r", key=b"p/", range_end=b"p0"))
    with pytest.raises(ae.AuthOldRevisionError):
        store.is_put_permitted(alice, b"p/a")
    with pytest.raises(ae.PermissionDeniedError):
        store.is_put_permitted(info(store, "alice"), b"p/a")


def test_prev_kv_needs_read(store: AuthStore, alice: AuthInfo) -> None:
    check_put(store, alice, rpc_pb2.PutRequest(key=b"w1"))
    with pytest.raises(ae.PermissionDeniedError):
        check_put(store, alice, rpc_pb2.PutRequest(key=b"w1", prev_kv=True))
    check_put(store, alice, rpc_pb2.PutRequest(key=b"p/1", prev_kv=True))
    with pytest.raises(ae.PermissionDeniedError):
        check_delete_range(store, alice, rpc_pb2.DeleteRangeRequest(
            key=b"w", range_end=b"x", prev_kv=True))


def test_lease_attach_and_revoke_need_write_on_attached_keys(
    store: AuthStore, alice: AuthInfo
) -> None:
    attached = {1: [b"p/a", b"w"], 2: [b"p/a", b"k"]}

    def keys(lease: int) -> list[bytes]:
        return attached.get(lease, [])

    check_put(store, alice, rpc_pb2.PutRequest(key=b"p/b", lease=1), keys)
    with pytest.raises(ae.PermissionDeniedError):
        check_put(store, alice, rpc_pb2.PutRequest(key=b"p/b", lease=2), keys)
    check_lease_revoke(store, alice, keys(1))
    with pytest.raises(ae.PermissionDeniedError):
        check_lease_revoke(store, alice, keys(2))
    check_lease_revoke(store, info(store, "root"), keys(2))
    with pytest.raises(ae.UserEmptyError):
        check_lease_revoke(store, None, [])


def test_txn_checks_every_branch_and_nested_txn(store: AuthStore, alice: AuthInfo) -> None:
    def txn(*ops: rpc_pb2.RequestOp, failure: bool = False) -> rpc_pb2.TxnRequest:
        t = rpc_pb2.TxnRequest()
        (t.failure if failure else t.success).extend(ops)
        return t

    put_ok = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"p/1"))
    put_bad = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"k"))
    check_txn(store, alice, txn(put_ok))
    with pytest.raises(ae.PermissionDeniedError):
        check_txn(store, alice, txn(put_ok, put_bad, failure=True))
    nested = rpc_pb2.RequestOp(request_txn=txn(put_bad, failure=True))
    with pytest.raises(ae.PermissionDeniedError):
        check_txn(store, alice, txn(rpc_pb2.RequestOp(request_txn=txn(nested))))
    prev = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"w1", prev_kv=True))
    with pytest.raises(ae.PermissionDeniedError):
        check_txn(store, alice, txn(rpc_pb2.RequestOp(request_txn=txn(prev))))
    t = txn(put_ok)
    t.compare.append(rpc_pb2.Compare(key=b"w1"))
    with pytest.raises(ae.PermissionDeniedError):
        check_txn(store, alice, t)


def test_watch_from_key_on_single_key_grant_is_denied(store: AuthStore, alice: AuthInfo) -> None:
    check_watch(store, alice, b"k", b"")
    with pytest.raises(ae.PermissionDeniedError):
        check_watch(store, alice, b"k", b"\x00")
    with pytest.raises(ae.PermissionDeniedError):
        check_watch(store, alice, b"", b"\x00")  # every key
    check_watch(store, info(store, "root"), b"", b"\x00")


def test_check_raft_request_uses_header(store: AuthStore, alice: AuthInfo) -> None:
    req = raft_internal_pb2.InternalRaftRequest(put=rpc_pb2.PutRequest(key=b"k"))
    req.header.username = "alice"
    req.header.auth_revision = alice.revision
    with pytest.raises(ae.PermissionDeniedError):
        check_raft_request(store, req)
    req.put.key = b"p/x"
    check_raft_request(store, req)
    req.header.auth_revision = 0
    with pytest.raises(ae.UserEmptyError):
        check_raft_request(store, req)


# -- auth entries --------------------------------------------------------------------------


def test_apply_auth_request_admin_rules(store: AuthStore, alice: AuthInfo) -> None:
    def entry(user: str, **kw: object) -> raft_internal_pb2.InternalRaftRequest:
        req = raft_internal_pb2.InternalRaftRequest(**kw)  # type: ignore[arg-type]
        req.header.username = user
        req.header.auth_revision = store.revision
        return req

    add = entry("alice", auth_role_add=rpc_pb2.AuthRoleAddRequest(name="x"))
    assert is_auth_request(add)
    with pytest.raises(ae.PermissionDeniedError):
        apply_auth_request(store, add, 5)
    with pytest.raises(ae.UserEmptyError):
        apply_auth_request(store, entry("", auth_status=rpc_pb2.AuthStatusRequest()), 5)
    apply_auth_request(store, entry("root", auth_role_add=rpc_pb2.AuthRoleAddRequest(name="x")), 5)
    own = apply_auth_request(store, entry(
        "alice", auth_user_get=rpc_pb2.AuthUserGetRequest(name="alice")), 5)
    assert isinstance(own, rpc_pb2.AuthUserGetResponse) and list(own.roles) == ["r"]
    with pytest.raises(ae.PermissionDeniedError):
        apply_auth_request(store, entry(
            "alice", auth_user_get=rpc_pb2.AuthUserGetRequest(name="root")), 5)
    apply_auth_request(store, entry("alice", auth_role_get=rpc_pb2.AuthRoleGetRequest(role="r")), 5)
    with pytest.raises(ae.PermissionDeniedError):
        apply_auth_request(store, entry(
            "alice", auth_role_get=rpc_pb2.AuthRoleGetRequest(role="root")), 5)
    resp = apply_auth_request(store, entry("", authenticate=(
        raft_internal_pb2.InternalAuthenticateRequest(name="alice", simple_token="ABC"))), 42)
    assert isinstance(resp, rpc_pb2.AuthenticateResponse) and resp.token == "ABC.42"
    put = raft_internal_pb2.InternalRaftRequest(put=rpc_pb2.PutRequest(key=b"a"))
    assert not is_auth_request(put) and apply_auth_request(store, put, 5) is None


# -- tokens --------------------------------------------------------------------------------


def test_simple_token_lifecycle(store: AuthStore, alice: AuthInfo, clock: Clock) -> None:
    prefix = store.gen_token_prefix()
    assert len(prefix) == 16 and prefix.isalpha()
    token = store.authenticate(raft_internal_pb2.InternalAuthenticateRequest(
        name="alice", simple_token=prefix), 17).token
    assert token == f"{prefix}.17"
    assert SimpleTokenProvider.token_index(token) == 17
    assert store.auth_info_from_token(token) == AuthInfo("alice", store.revision)
    clock.now += 299  # each use restarts the TTL
    assert store.auth_info_from_token(token) is not None
    clock.now += 299
    assert store.auth_info_from_token(token) is not None
    clock.now += 300
    with pytest.raises(ae.InvalidAuthTokenError):
        store.auth_info_from_token(token)
    for bad in ("", "nodot", "a.b", "a.1.2", f"{prefix}.18"):
        with pytest.raises(ae.InvalidAuthTokenError):
            store.auth_info_from_token(bad)


def test_simple_tokens_die_with_password_change_delete_and_disable(
    store: AuthStore, alice: AuthInfo
) -> None:
    def login(name: str, index: int) -> str:
        return store.authenticate(raft_internal_pb2.InternalAuthenticateRequest(
            name=name, simple_token="x"), index).token

    t1, root_token = login("alice", 1), login("root", 2)
    store.user_change_password(rpc_pb2.AuthUserChangePasswordRequest(
        name="alice", hashedPassword=hash_password("n", COST)))
    with pytest.raises(ae.InvalidAuthTokenError):
        store.auth_info_from_token(t1)
    assert store.auth_info_from_token(root_token) is not None
    t2 = login("alice", 3)
    store.user_delete(rpc_pb2.AuthUserDeleteRequest(name="alice"))
    with pytest.raises(ae.InvalidAuthTokenError):
        store.auth_info_from_token(t2)
    store.auth_disable()
    assert store.auth_info_from_token(root_token) is None  # auth off: tokens ignored
    store.auth_enable()
    with pytest.raises(ae.InvalidAuthTokenError):
        store.auth_info_from_token(root_token)


def test_simple_token_expire_sweeps(clock: Clock) -> None:
    p = SimpleTokenProvider(10, clock)
    p.enable()
    p.assign("u", 1, 1, "a")
    clock.now += 5
    p.assign("u", 1, 2, "a")
    clock.now += 6
    assert p.expire() == 1 and len(p) == 1


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, tmp: Path) -> tuple[str, str]:
    tmp.mkdir(parents=True, exist_ok=True)
    priv = tmp / "priv.pem"
    pub = tmp / "pub.pem"
    priv.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return str(priv), str(pub)


@pytest.mark.parametrize("method", ["RS256", "PS384", "ES256"])
def test_jwt_tokens(tmp_path: Path, method: str) -> None:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if method.startswith("ES"):
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    priv, pub = _pem(key, tmp_path)
    clock = Clock()
    opts = f"jwt,pub-key={pub},priv-key={priv},sign-method={method},ttl=1m"
    p = new_token_provider(opts, wall_clock=clock)
    assert isinstance(p, JWTTokenProvider) and p.ttl == 60 and not p.verify_only
    token = p.assign("alice", 7, 100, "")
    claims = pyjwt.decode(token, options={"verify_signature": False})
    assert claims == {"username": "alice", "revision": 7, "exp": int(clock.now) + 60}
    assert p.info(token, 99) == AuthInfo("alice", 7)  # the token's revision, not the store's
    verifier = new_token_provider(f"jwt,pub-key={pub},sign-method={method}", wall_clock=clock)
    assert isinstance(verifier, JWTTokenProvider) and verifier.verify_only
    assert verifier.info(token, 0) == AuthInfo("alice", 7)
    with pytest.raises(ae.VerifyOnlyError):
        verifier.assign("alice", 1, 1, "")
    assert p.info(token[:-4] + "AAAA", 7) is None
    forged = pyjwt.encode({"username": "root", "revision": 7, "exp": 2**40}, "k" * 32, "HS256")
    assert p.info(forged, 7) is None
    clock.now += 61
    assert p.info(token, 7) is None


def test_jwt_old_revision_after_auth_change(tmp_path: Path, backend: Backend) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    priv, pub = _pem(key, tmp_path)
    p = new_token_provider(f"jwt,pub-key={pub},priv-key={priv},sign-method=RS256")
    store = AuthStore(backend, p, bcrypt_cost=COST)
    enable_with_root(store)
    token = store.authenticate(raft_internal_pb2.InternalAuthenticateRequest(name="root"), 1).token
    ai = store.auth_info_from_token(token)
    store.is_put_permitted(ai, b"a")
    add_user(store, "bob")
    ai = store.auth_info_from_token(token)
    with pytest.raises(ae.AuthOldRevisionError):
        store.is_put_permitted(ai, b"a")


def test_jwt_option_errors(tmp_path: Path) -> None:
    k1 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    k2 = ec.generate_private_key(ec.SECP256R1())
    priv1, _ = _pem(k1, tmp_path / "1")
    _, pub_other = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048),
                        tmp_path / "2")
    priv_ec, _ = _pem(k2, tmp_path / "3")
    with pytest.raises(ae.AuthMethodError):
        new_token_provider(f"jwt,priv-key={priv1},sign-method=XX256")
    with pytest.raises(ae.MissingKeyError):
        new_token_provider("jwt,sign-method=RS256")
    with pytest.raises(ae.MissingKeyError):
        new_token_provider("jwt,sign-method=HS256")
    with pytest.raises(ae.KeyMismatchError):
        new_token_provider(f"jwt,priv-key={priv1},pub-key={pub_other},sign-method=RS256")
    with pytest.raises(ae.AuthOptionsError):
        new_token_provider(f"jwt,priv-key={priv_ec},sign-method=RS256")
    with pytest.raises(ae.AuthOptionsError):
        new_token_provider("jwt,priv-key=/nonexistent,sign-method=RS256")
    with pytest.raises(ae.AuthOptionsError):
        new_token_provider("bogus")
    with pytest.raises(ae.AuthOptionsError):
        parse_token_options("jwt,a=1,a=2")
    with pytest.raises(ae.AuthOptionsError):
        parse_token_options("jwt,a")
    hs = tmp_path / "hs.key"
    hs.write_bytes(b"s" * 32)
    p = new_token_provider(f"jwt,priv-key={hs},sign-method=HS256")
    assert isinstance(p, JWTTokenProvider)
    assert p.info(p.assign("u", 3, 1, ""), 0) == AuthInfo("u", 3)
    assert isinstance(new_token_provider("simple", ttl=5), SimpleTokenProvider)


# -- intervals -----------------------------------------------------------------------------


def test_interval_set_merges_touching_runs() -> None:
    s = IntervalSet.of([(b"c", b"d"), (b"a", b"b"), (b"b", b"c"), (b"x", None), (b"y", b"z")])
    assert s.begins == (b"a", b"x") and s.ends == (b"d", None)
    assert s.covers(b"a", b"d") and not s.covers(b"a", b"d\x00")
    assert s.covers(b"x", None) and s.covers(b"zzz", None) and not s.covers(b"w", None)
    assert perm_interval(b"", b"") is None and perm_interval(b"b", b"a") is None
    assert perm_interval(b"k", b"") == (b"k", b"k\x00")


# -- the Auth service over a fake server ----------------------------------------------------


class FakeContext:
    def __init__(self, token: str | None = None) -> None:
        self.md = [("token", token)] if token else []
        self.aborted: tuple[object, str] | None = None

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return self.md

    async def abort(self, code: object, message: str) -> None:
        self.aborted = (code, message)
        raise RuntimeError(message)


class FakeServer:
    """Applies every proposal at once, as a one-member cluster would."""

    def __init__(self, store: AuthStore) -> None:
        self.auth_store = store
        self.client_cert_auth = False
        self.index = 0
        self.proposed: list[raft_internal_pb2.InternalRaftRequest] = []

        class Applied:
            def wait(self, index: int) -> object:
                import asyncio

                fut = asyncio.get_running_loop().create_future()
                fut.set_result(None)
                return fut

        self.applied_wait = Applied()

    def header(self, revision: int | None = None) -> rpc_pb2.ResponseHeader:
        return rpc_pb2.ResponseHeader(cluster_id=1, member_id=2, revision=3)

    async def propose(self, req: raft_internal_pb2.InternalRaftRequest) -> object:
        self.index += 1
        self.proposed.append(req)
        return apply_auth_request(self.auth_store, req, self.index)


async def test_auth_service_flow(store: AuthStore) -> None:
    from pyetcd.api.v3rpc.auth import AuthService

    server = FakeServer(store)
    svc = AuthService(server)
    ctx = FakeContext()
    await svc.UserAdd(rpc_pb2.AuthUserAddRequest(name="root", password="rootpw"), ctx)
    await svc.UserGrantRole(rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"), ctx)
    resp = await svc.AuthEnable(rpc_pb2.AuthEnableRequest(), ctx)
    assert resp.header.member_id == 2 and store.enabled
    # no raft entry carries a password
    assert all(b"rootpw" not in r.SerializeToString() for r in server.proposed)
    with pytest.raises(RuntimeError, match="authentication failed"):
        await svc.Authenticate(rpc_pb2.AuthenticateRequest(name="root", password="bad"), ctx)
    auth = await svc.Authenticate(rpc_pb2.AuthenticateRequest(name="root", password="rootpw"), ctx)
    assert auth.token.endswith(f".{server.index}")
    assert b"rootpw" not in server.proposed[-1].SerializeToString()
    anon = FakeContext()
    with pytest.raises(RuntimeError, match="user name is empty"):
        await svc.RoleAdd(rpc_pb2.AuthRoleAddRequest(name="r"), anon)
    assert anon.aborted is not None and anon.aborted[0].name == "INVALID_ARGUMENT"  # type: ignore[attr-defined]
    as_root = FakeContext(auth.token)
    await svc.RoleAdd(rpc_pb2.AuthRoleAddRequest(name="r"), as_root)
    st = await svc.AuthStatus(rpc_pb2.AuthStatusRequest(), as_root)
    assert st.enabled and st.authRevision == store.revision
    bad = FakeContext("nope.1")
    with pytest.raises(RuntimeError, match="invalid auth token"):
        await svc.RoleList(rpc_pb2.AuthRoleListRequest(), bad)
    assert bad.aborted is not None and bad.aborted[0].name == "UNAUTHENTICATED"  # type: ignore[attr-defined]
