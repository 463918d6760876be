"""Property test: the permission checker allows exactly what a plain model of etcd's rules allows.

The model knows nothing of intervals. It enumerates a small key universe and
asks, key by key, whether some granted permission contains it. The universe
holds every string of length 1..3 over ``\\0 a b c d``: all keys, range ends and
single-key ends (``key + \\0``) the strategies can produce lie in it, so any
gap in a user's coverage starts at a universe key and enumeration is exact.

Rules modelled (etcd 3.5 with its later advisory fixes):
- auth disabled: everything allowed; requests needing nothing are allowed;
- else no user -> UserEmpty, stale revision -> AuthOldRevision, unknown user ->
  PermissionDenied, root role -> allowed;
- Range/compare/watch: READ on every key of the range; Put: WRITE key (+ READ
  if prev_kv, + WRITE on each key of the attached lease); DeleteRange: WRITE
  (+ READ if prev_kv) on the range; Txn: all of the above for compares and both
  branches, recursively; LeaseRevoke: an authenticated user with WRITE on each
  attached key.
- A range: ``range_end`` empty = the key; ``\\0`` = every key from it; a range
  with ``range_end <= key`` needs its key; a watch's empty key is ``\\0``.
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pyetcd.mvcc.backend import Backend
from pyetcd.pb import auth_pb2, rpc_pb2
from pyetcd.server.auth import errors as ae
from pyetcd.server.auth.check import (
    check_delete_range,
    check_lease_revoke,
    check_put,
    check_range,
    check_txn,
    check_watch,
)
from pyetcd.server.auth.store import AuthInfo, AuthStore
from pyetcd.server.auth.token import SimpleTokenProvider

READ, WRITE, RW = 0, 1, 2
UNIVERSE = sorted(
    "".join(t).encode()
    for n in (1, 2, 3)
    for t in itertools.product("\x00abcd", repeat=n)
)
USERS = ("u1", "u2", "u3")
ROLES = ("r1", "r2", "r3")
LEASES = (1, 2, 3)

# -- strategies ----------------------------------------------------------------------------

KEYS = [b"a", b"b", b"aa", b"ab", b"ba", b"bb", b"c"]
keys = st.sampled_from(KEYS)
# the same keys in other orders: hypothesis favours early elements, and
# unrelated draws (a range's end, a lease's keys) must not all favour the same key
ends = st.sampled_from([b"ab", b"c", b"b", b"bb", b"aa", b"ba", b"a"])
lease_attached = st.sampled_from(KEYS[::-1])


def prefix_end(key: bytes) -> bytes:
    return key[:-1] + bytes([key[-1] + 1])


def draw_end(draw: st.DrawFn, key: bytes) -> bytes:
    kind = draw(st.sampled_from(["one", "from", "prefix", "range"]))
    if kind == "one":
        return b""
    if kind == "from":
        return b"\x00"
    if kind == "prefix" and key:
        return prefix_end(key)
    return draw(ends)


@st.composite
def ranges(draw: st.DrawFn, watch: bool = False) -> tuple[bytes, bytes]:
    key = draw(st.one_of(keys, st.just(b"")) if watch else keys)
    return key, draw_end(draw, key)


@st.composite
def perms(draw: st.DrawFn) -> tuple[int, bytes, bytes]:
    ptype = draw(st.sampled_from([READ, WRITE, RW, RW]))
    key = draw(st.one_of(keys, st.just(b""), st.just(b"\x00")))  # an empty key matches nothing
    if key == b"\x00":  # etcdctl's --from-key "" (every key) or the key \0 alone
        return ptype, key, draw(st.sampled_from([b"\x00", b""]))
    return ptype, key, draw_end(draw, key)


mutations = st.one_of(
    st.tuples(st.just("grant"), st.sampled_from(ROLES), perms()),
    st.tuples(st.just("revoke_perm"), st.sampled_from(ROLES), perms()),
    st.tuples(st.just("grant_role"), st.sampled_from(USERS), st.sampled_from(ROLES)),
    st.tuples(st.just("grant_root"), st.sampled_from(USERS), st.just("root")),
    st.tuples(st.just("revoke_role"), st.sampled_from(USERS), st.sampled_from(ROLES)),
    st.tuples(st.just("delete_role"), st.sampled_from(ROLES), st.just(None)),
)

put_reqs = st.builds(
    lambda k, p, lease: rpc_pb2.PutRequest(key=k, prev_kv=p, lease=lease),
    keys, st.booleans(), st.sampled_from((0, 0, *LEASES, 9)),
)
delete_reqs = st.builds(
    lambda r, p: rpc_pb2.DeleteRangeRequest(key=r[0], range_end=r[1], prev_kv=p),
    ranges(), st.booleans(),
)
range_reqs = st.builds(lambda r: rpc_pb2.RangeRequest(key=r[0], range_end=r[1]), ranges())


def _txn(children: st.SearchStrategy[rpc_pb2.TxnRequest]) -> st.SearchStrategy[rpc_pb2.TxnRequest]:
    ops = st.one_of(
        st.builds(lambda r: rpc_pb2.RequestOp(request_range=r), range_reqs),
        st.builds(lambda r: rpc_pb2.RequestOp(request_put=r), put_reqs),
        st.builds(lambda r: rpc_pb2.RequestOp(request_delete_range=r), delete_reqs),
        st.builds(lambda r: rpc_pb2.RequestOp(request_txn=r), children),
    )
    compares = st.builds(lambda r: rpc_pb2.Compare(key=r[0], range_end=r[1]), ranges())
    return st.builds(
        lambda c, s, f: rpc_pb2.TxnRequest(compare=c, success=s, failure=f),
        st.lists(compares, max_size=2), st.lists(ops, max_size=3), st.lists(ops, max_size=3),
    )


txn_reqs = st.recursive(
    st.builds(lambda: rpc_pb2.TxnRequest()), _txn, max_leaves=6
)


@st.composite
def wrapped(draw: st.DrawFn) -> rpc_pb2.TxnRequest:
    """One op buried in a branch of nested txns: its verdict must not depend on where."""
    op = draw(st.one_of(
        st.builds(lambda r: rpc_pb2.RequestOp(request_range=r), range_reqs),
        st.builds(lambda r: rpc_pb2.RequestOp(request_put=r), put_reqs),
        st.builds(lambda r: rpc_pb2.RequestOp(request_delete_range=r), delete_reqs),
    ))
    txn = rpc_pb2.TxnRequest()
    for _ in range(draw(st.integers(0, 2)) + 1):
        txn = rpc_pb2.TxnRequest()
        (txn.failure if draw(st.booleans()) else txn.success).append(op)
        op = rpc_pb2.RequestOp(request_txn=txn)
    return txn


requests = st.one_of(
    st.tuples(st.just("range"), range_reqs),
    st.tuples(st.just("put"), put_reqs),
    st.tuples(st.just("delete"), delete_reqs),
    st.tuples(st.just("txn"), txn_reqs),
    st.tuples(st.just("txn"), wrapped()),
    st.tuples(st.just("revoke"), st.sampled_from((*LEASES, 9))),
    st.tuples(st.just("watch"), ranges(watch=True)),
)
requesters = st.one_of(
    st.sampled_from(USERS),
    st.sampled_from(USERS),
    st.sampled_from(["root", "ghost", None, "stale"]),
)
# the starting grants: every role gets some permissions, every user some roles
initial_grants = st.lists(
    st.tuples(st.just("grant"), st.sampled_from(ROLES), perms()), min_size=3, max_size=10
)
initial_roles = st.lists(
    st.tuples(st.just("grant_role"), st.sampled_from(USERS), st.sampled_from(ROLES)),
    min_size=3, max_size=8,
)
lease_maps = st.fixed_dictionaries(
    {lease: st.lists(lease_attached, max_size=2, unique=True) for lease in LEASES}
)

# -- the model -----------------------------------------------------------------------------


@dataclass
class Model:
    enabled: bool
    roles: dict[str, dict[tuple[bytes, bytes], int]] = field(default_factory=dict)
    users: dict[str, set[str]] = field(default_factory=dict)

    def mutate(self, op: str, a: str, b: Any) -> None:
        if op == "grant" and a in self.roles:
            t, k, e = b
            # etcd 3.5.8 (#15294) refuses a range that selects no key
            if k and (not e or k < e or e == b"\x00"):
                self.roles[a][(k, e)] = t
        elif op == "revoke_perm" and a in self.roles:
            _, k, e = b
            self.roles[a].pop((k, e), None)
        elif op in ("grant_role", "grant_root") and (b in self.roles or b == "root"):
            self.users[a].add(str(b))
        elif op == "revoke_role":
            self.users[a].discard(str(b))
        elif op == "delete_role" and a in self.roles:
            del self.roles[a]
            for granted in self.users.values():
                granted.discard(a)

    def granted(self, user: str, write: bool) -> set[bytes]:
        wanted = (WRITE, RW) if write else (READ, RW)
        out: set[bytes] = set()
        for role in self.users[user]:
            for (k, e), t in self.roles.get(role, {}).items():
                if t in wanted:
                    out.update(u for u in UNIVERSE if perm_contains(k, e, u))
        return out


def perm_contains(key: bytes, end: bytes, u: bytes) -> bool:
    if not key:
        return False
    if end == b"":
        return u == key
    if end == b"\x00":
        return u >= key
    return key <= u < end


def request_keys(key: bytes, end: bytes) -> set[bytes]:
    if end == b"" or (end != b"\x00" and end <= key):
        return {key}
    return {u for u in UNIVERSE if u >= key and (end == b"\x00" or u < end)}


# a need: (write?, keys)
Need = tuple[bool, set[bytes]]


def needs_of(kind: str, req: Any, leases: dict[int, list[bytes]]) -> list[Need]:
    if kind == "range":
        assert isinstance(req, rpc_pb2.RangeRequest)
        return [(False, request_keys(req.key, req.range_end))]
    if kind == "watch":
        key, end = req
        return [(False, request_keys(key or b"\x00", end))]
    if kind == "put":
        assert isinstance(req, rpc_pb2.PutRequest)
        out: list[Need] = [(True, {req.key})]
        out += [(True, {k}) for k in leases.get(req.lease, [])]
        return out + ([(False, {req.key})] if req.prev_kv else [])
    if kind == "delete":
        assert isinstance(req, rpc_pb2.DeleteRangeRequest)
        ks = request_keys(req.key, req.range_end)
        return [(True, ks)] + ([(False, ks)] if req.prev_kv else [])
    assert kind == "txn" and isinstance(req, rpc_pb2.TxnRequest)
    out = [(False, request_keys(c.key, c.range_end)) for c in req.compare]
    for op in [*req.success, *req.failure]:
        which = op.WhichOneof("request")
        sub = {"request_range": "range", "request_put": "put",
               "request_delete_range": "delete", "request_txn": "txn"}[str(which)]
        out += needs_of(sub, getattr(op, str(which)), leases)
    return out


def model_verdict(
    m: Model, who: str | None, kind: str, req: Any, leases: dict[int, list[bytes]]
) -> type[Exception] | None:
    if not m.enabled:
        return None
    if kind == "revoke":
        needs: list[Need] = [(True, {k}) for k in leases.get(req, [])]
        needs_user = True
    else:
        needs = needs_of(kind, req, leases)
        needs_user = bool(needs)
    if not needs_user:
        return None
    if who is None:
        return ae.UserEmptyError
    if who == "stale":
        return ae.AuthOldRevisionError
    if who not in m.users:
        return ae.PermissionDeniedError
    if "root" in m.users[who]:
        return None
    for write, ks in needs:
        if not ks <= m.granted(who, write):
            return ae.PermissionDeniedError
    return None


# -- the system under test -----------------------------------------------------------------


def build_store(enabled: bool, muts: list[tuple[str, str, Any]]) -> tuple[AuthStore, Model]:
    store = AuthStore(Backend(":memory:"), SimpleTokenProvider(), bcrypt_cost=4)
    model = Model(enabled)
    for name in ("root", *USERS):
        req = rpc_pb2.AuthUserAddRequest(name=name)
        req.options.no_password = True  # no bcrypt: keeps examples fast
        store.user_add(req)
        model.users[name] = set()
    for role in ROLES:
        store.role_add(rpc_pb2.AuthRoleAddRequest(name=role))
        model.roles[role] = {}
    store.user_grant_role(rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"))
    model.users["root"].add("root")
    for op, a, b in muts:
        model.mutate(op, a, b)
        with contextlib.suppress(ae.AuthError):  # the model skipped it too
            apply_mutation(store, op, a, b)
    if enabled:
        store.auth_enable()
    return store, model


def apply_mutation(store: AuthStore, op: str, a: str, b: Any) -> None:
    if op == "grant":
        t, k, e = b
        store.role_grant_permission(rpc_pb2.AuthRoleGrantPermissionRequest(
            name=a, perm=auth_pb2.Permission(permType=t, key=k, range_end=e)))
    elif op == "revoke_perm":
        _, k, e = b
        store.role_revoke_permission(
            rpc_pb2.AuthRoleRevokePermissionRequest(role=a, key=k, range_end=e))
    elif op in ("grant_role", "grant_root"):
        store.user_grant_role(rpc_pb2.AuthUserGrantRoleRequest(user=a, role=str(b)))
    elif op == "revoke_role":
        store.user_revoke_role(rpc_pb2.AuthUserRevokeRoleRequest(name=a, role=str(b)))
    elif op == "delete_role":
        store.role_delete(rpc_pb2.AuthRoleDeleteRequest(role=a))


def checker_verdict(
    store: AuthStore, who: str | None, kind: str, req: Any, leases: dict[int, list[bytes]]
) -> type[Exception] | None:
    if who is None:
        info = None
    elif who == "stale":
        info = AuthInfo("u1", store.revision - 1)
    else:
        info = AuthInfo(who, store.revision)

    def lease_keys(lease: int) -> list[bytes]:
        return leases.get(lease, [])

    try:
        if kind == "range":
            check_range(store, info, req)
        elif kind == "put":
            check_put(store, info, req, lease_keys)
        elif kind == "delete":
            check_delete_range(store, info, req)
        elif kind == "txn":
            check_txn(store, info, req, lease_keys)
        elif kind == "revoke":
            check_lease_revoke(store, info, lease_keys(req))
        else:
            key, end = req
            check_watch(store, info, key, end)
    except ae.AuthError as err:
        return type(err)
    return None


@settings(max_examples=1000, derandomize=True, deadline=None)
@given(
    enabled=st.sampled_from([True, True, True, False]),
    muts=st.builds(
        lambda a, b, c: a + b + c, initial_grants, initial_roles, st.lists(mutations, max_size=8)
    ),
    leases=lease_maps,
    who=requesters,
    batch=st.lists(requests, min_size=1, max_size=16),
)
def test_checker_matches_model(
    enabled: bool,
    muts: list[tuple[str, str, Any]],
    leases: dict[int, list[bytes]],
    who: str | None,
    batch: list[tuple[str, Any]],
) -> None:
    store, model = build_store(enabled, muts)
    # the store's state is the model's state
    for user, granted in model.users.items():
        assert set(store.user_get(rpc_pb2.AuthUserGetRequest(name=user)).roles) == granted
    for role, granted_perms in model.roles.items():
        got = store.role_get(rpc_pb2.AuthRoleGetRequest(role=role)).perm
        assert {(p.key, p.range_end): p.permType for p in got} == granted_perms
    for kind, req in batch:
        expected = model_verdict(model, who, kind, req, leases)
        assert checker_verdict(store, who, kind, req, leases) is expected, (kind, req)


def test_model_universe_is_closed() -> None:
    # every key, range end and single-key end (key + \0) the strategies make is in it
    for k in [b"a", b"b", b"aa", b"ab", b"ba", b"bb", b"c"]:
        assert {k, k + b"\x00", prefix_end(k)} <= set(UNIVERSE)
