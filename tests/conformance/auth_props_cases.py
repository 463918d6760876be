"""Issue 10's generated auth cases, played through a server's gRPC API.

A :class:`Case` is what ``tests/server/test_auth_model.py`` generates for the
permission checker -- role/permission mutations, the keys attached to leases
1..3, and requests -- and :class:`AuthServer` plays it on one running member
(pyetcd or real etcd), recording a :class:`Trace`: every mutation's answer, the
auth state read back, and per request and requester the :class:`Outcome`
together with the lease attachments at that moment. The verdicts are then
compared with the model's (``model_verdict``) by the test module.

The model and the strategies are imported, not copied: there is one model.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from hypothesis import strategies as st

from pyetcd.pb import auth_pb2, rpc_pb2, rpc_pb2_grpc
from pyetcd.server.auth import errors as ae

# test_auth_model lives in tests/server/auth, a plain directory (no package): import it
# by module name, as pytest's prepend mode does when it collects it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server" / "auth"))
import test_auth_model as tam

__all__ = [
    "ETCD_351_GAPS",
    "INVERTED_RANGE",
    "WATCH_REASON_351",
    "AuthServer",
    "Case",
    "Outcome",
    "Step",
    "Trace",
    "cases",
    "deciding_rules",
    "etcd_351_verdict",
    "expected_verdict",
    "tam",
]

ROOT_PASSWORD = "root-pw"
TIMEOUT = 15.0
#: Leases live long enough for the whole module; they are revoked between examples.
LEASE_TTL = 3600
LeaseMap = tuple[tuple[int, tuple[bytes, ...]], ...]

# verdicts, the same words for the model and the servers
ALLOWED, DENIED, USER_EMPTY, OLD_REVISION, INVALID, OTHER = (
    "allowed", "denied", "user empty", "old revision", "invalid", "other",
)  # fmt: skip
_MODEL_WORDS: dict[type[Exception] | None, str] = {
    None: ALLOWED,
    ae.PermissionDeniedError: DENIED,
    ae.UserEmptyError: USER_EMPTY,
    ae.AuthOldRevisionError: OLD_REVISION,
}


def password(user: str) -> str:
    return f"{user}-pw"


# -- cases ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Case:
    """Mutations applied as root, lease attachments, then requests.

    Each request runs as u1, u2, u3 and one of ``root`` / no token (``extra``).
    """

    mutations: list[tuple[str, str, Any]]
    leases: dict[int, list[bytes]]
    requests: list[tuple[str, Any]]
    extra: list[str | None]

    def requesters(self, i: int) -> tuple[str | None, ...]:
        return (*tam.USERS, self.extra[i])


_feature_puts = st.builds(
    lambda k, lease, prev_kv: rpc_pb2.PutRequest(key=k, prev_kv=prev_kv, lease=lease),
    tam.keys,
    st.sampled_from((0, *tam.LEASES)),
    st.booleans(),
)
#: Requests aimed at the rules issue 10 names (prev_kv READ, lease keys WRITE, from-key
#: watches), bare and inside a txn: ``tam.requests`` alone seldom lets them decide.
feature_requests = st.one_of(
    st.tuples(st.just("put"), _feature_puts),
    st.tuples(st.just("txn"), _feature_puts.map(
        lambda p: rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(request_put=p)]))),
    st.tuples(st.just("watch"), st.tuples(tam.keys, st.just(b"\x00"))),
)  # fmt: skip


def _selects_keys(perm: tuple[int, bytes, bytes]) -> bool:
    """Grants both servers take: etcd 3.5.8 (#15294) refuses a range that selects no
    key, 3.5.1 stores it (matching nothing); pyetcd answers as 3.5.13, which
    tests/e2e/test_etcd_3_5_13.py pins, so the comparison with 3.5.1 leaves them out."""
    _, key, end = perm
    return bool(key) and (not end or key < end or end == b"\x00")


@st.composite
def cases(draw: st.DrawFn, min_requests: int = 4, max_requests: int = 8) -> Case:
    """Smaller than the unit test's cases (every mutation here is a Raft write), and
    denser: every role gets permissions and user ``u<i>`` role ``r<i>``, so that
    most requests meet a user holding some grants and the finer rules (prev_kv,
    lease keys, from-key) decide verdicts rather than a bare "denied"."""
    # READ and WRITE alone as often as READWRITE: prev_kv decides only where they differ
    perms = st.tuples(
        tam.perms().filter(_selects_keys), st.sampled_from([tam.READ, tam.WRITE, tam.RW])
    )
    grants = [
        ("grant", role, (ptype, key, end))
        for role in tam.ROLES
        for (_, key, end), ptype in draw(st.lists(perms, min_size=1, max_size=3))
    ]
    roles = [("grant_role", user, role) for user, role in zip(tam.USERS, tam.ROLES, strict=True)]
    roles += draw(st.lists(
        st.tuples(st.just("grant_role"), st.sampled_from(tam.USERS), st.sampled_from(tam.ROLES)),
        max_size=2,
    ))  # fmt: skip
    more = draw(st.lists(tam.mutations.filter(
        lambda m: m[0] != "grant" or _selects_keys(m[2])), max_size=3))  # fmt: skip
    requests = draw(st.lists(
        st.one_of(tam.requests, feature_requests), min_size=min_requests, max_size=max_requests,
    ))  # fmt: skip
    extra = draw(st.lists(
        st.sampled_from([None, "root"]), min_size=len(requests), max_size=len(requests),
    ))  # fmt: skip
    # every lease holds a key: a lease without keys decides nothing but a tokenless revoke
    leases = draw(st.fixed_dictionaries({
        lease: st.lists(tam.lease_attached, min_size=1, max_size=2, unique=True)
        for lease in tam.LEASES
    }))  # fmt: skip
    return Case(grants + roles + more, leases, requests, extra)


def build_model(case: Case) -> tam.Model:
    """The model after the case's mutations, auth enabled."""
    model = tam.Model(enabled=True)
    model.users = {"root": {"root"}, **{u: set() for u in tam.USERS}}
    model.roles = {r: {} for r in tam.ROLES}
    for op, a, b in case.mutations:
        model.mutate(op, a, b)
    return model


def expected_verdict(model: tam.Model, step: Step) -> str:
    """The model's verdict for ``step``, in the words of :class:`Outcome`.

    A refused watch says why in its cancel_reason, as etcd 3.5.6+ does (#14547):
    "user name is empty" without a token, "permission denied" otherwise.
    """
    leases = {lease: list(keys) for lease, keys in step.leases}
    return _MODEL_WORDS[tam.model_verdict(model, step.who, step.kind, step.request, leases)]


#: Advisory fixes the model holds (issue 10: pyetcd must hold them) that etcd 3.5.1
#: (October 2021) predates, each observed on the 3.5.1 binary. :func:`etcd_351_verdict`
#: is the model with exactly these gaps; real etcd is held to it.
ETCD_351_GAPS: dict[str, str] = {
    "GHSA-rfx7-8w68-q57q": "nested txns: 3.5.1 checks a txn's compares and its top-level "
    "ops only; nothing inside a nested txn is checked",
    "GHSA-x35m-3gp4-4fh5": "a put inside a txn: 3.5.1 checks WRITE on its key only, neither "
    "READ for prev_kv nor WRITE on the keys attached to its lease (a delete's prev_kv "
    "inside a txn is checked)",
    "GHSA-xg4h-6gfc-h4m8": "a from-key watch (range_end \\0): 3.5.1 checks READ on its start "
    "key only, so a single-key grant lets it watch every later key",
    "GHSA-q8m4-xhhv-38mg": "LeaseRevoke: 3.5.1 checks WRITE on the lease's attached keys and "
    "nothing else, so a lease with no keys (or an unknown one) is revoked without a token",
}


#: Requests whose answer from etcd 3.5.1 no rule predicts. A range whose range_end
#: is neither empty nor \0 and not above its key selects no key at all; 3.5.1 hands
#: [key, range_end), inverted, to its interval tree, and the answer then depends on
#: the tree's shape. Observed on the 3.5.1 binary, Range [b, a) by a user with READ
#: on: point a + [a, c) -> denied; point a + [b, \0) -> denied; points "" and a +
#: [\0, \0) -> denied; [\0, \0) + point a -> allowed; [\0, \0) + point "" -> allowed.
#: The model, and pyetcd, ask for READ on the key.
INVERTED_RANGE = "inverted range"

#: Not an advisory but a version: etcd 3.5.1 gave every refused watch the
#: permission-denied reason; 3.5.6 (#14547) names the failure, and pyetcd answers as
#: 3.5.13. Both refuse; only the words differ, so the servers' data stay the same.
WATCH_REASON_351 = "watch cancel reason before etcd 3.5.6"

def etcd_351_verdict(model: tam.Model, step: Step) -> tuple[str | None, str | None]:
    """What etcd 3.5.1 answers, and the gap that decided it when that differs from
    the model's verdict; ``(None, INVERTED_RANGE)`` when no rule predicts the answer.

    The request is rewritten into what 3.5.1's checks look at, then the same
    model judges it: one model, with the gaps of :data:`ETCD_351_GAPS` as data.
    """
    fixed = expected_verdict(model, step)
    kind, req = step.kind, step.request
    leases = dict(step.leases)
    if any(end not in (b"", b"\x00") and end <= key for key, end in _ranges(kind, req)):
        return None, INVERTED_RANGE
    if kind == "revoke" and not leases.get(req):
        old, gap = ALLOWED, "GHSA-q8m4-xhhv-38mg"
    elif kind == "watch" and req[1] == b"\x00":
        old, gap = expected_verdict(model, _replace(step, (req[0], b""))), "GHSA-xg4h-6gfc-h4m8"
    elif kind == "txn":
        old = expected_verdict(model, _replace(step, _txn_as_351_sees_it(req, strip_puts=True)))
        top_level = expected_verdict(model, _replace(step, _txn_as_351_sees_it(req)))
        gap = "GHSA-rfx7-8w68-q57q" if top_level != fixed else "GHSA-x35m-3gp4-4fh5"
    else:
        old, gap = fixed, None
    if kind == "watch" and old == USER_EMPTY:
        old, gap = DENIED, gap or WATCH_REASON_351
    return old, (gap if old != fixed else None)


def deciding_rules(model: tam.Model, step: Step) -> list[str]:
    """The fine rules that decide ``step``'s verdict: removing one changes it.

    For coverage only: a property run in which prev_kv or a lease never decided
    anything would check those rules vacuously.
    """
    fixed = expected_verdict(model, step)
    kind, req = step.kind, step.request
    variants: list[tuple[str, Any]] = []
    if kind == "txn":
        top = _txn_as_351_sees_it(req)
        fixed_top = expected_verdict(model, _replace(step, top))
        stripped = _txn_as_351_sees_it(req, strip_puts=True)
        fixed_stripped = expected_verdict(model, _replace(step, stripped))
        return [name for name, changed in (
            ("txn: nested ops", fixed_top != fixed),
            ("txn: put prev_kv/lease", fixed_stripped != fixed_top),
        ) if changed]  # fmt: skip
    if kind in ("put", "delete") and req.prev_kv:
        variants.append((f"{kind} prev_kv", _copy(req, prev_kv=False)))
    if kind == "put" and req.lease:
        variants.append(("put lease", _copy(req, lease=0)))
    if kind == "watch" and req[1] == b"\x00":
        variants.append(("from-key watch", (req[0], b"")))
    return [name for name, r in variants if expected_verdict(model, _replace(step, r)) != fixed]


def _copy(req: Any, **changes: Any) -> Any:
    out = type(req)()
    out.CopyFrom(req)
    for name, value in changes.items():
        setattr(out, name, value)
    return out


def _ranges(kind: str, req: Any) -> Iterator[tuple[bytes, bytes]]:
    """Every (key, range_end) a request asks about, nested txns included."""
    if kind == "watch":
        yield req[0] or b"\x00", req[1]
    elif kind in ("range", "delete"):
        yield req.key, req.range_end
    elif kind == "txn":
        for cmp in req.compare:
            yield cmp.key, cmp.range_end
        for op in [*req.success, *req.failure]:
            which = str(op.WhichOneof("request"))
            sub = {"request_range": "range", "request_delete_range": "delete"}.get(which, which)
            yield from _ranges("txn" if which == "request_txn" else sub, getattr(op, which))


def _replace(step: Step, request: Any) -> Step:
    return Step(step.index, step.who, step.kind, request, step.leases, step.outcome)


def _txn_as_351_sees_it(txn: rpc_pb2.TxnRequest, strip_puts: bool = False) -> rpc_pb2.TxnRequest:
    """The compares and top-level ops; with ``strip_puts``, puts reduced to their key."""

    def ops(branch: Any) -> list[rpc_pb2.RequestOp]:
        out = []
        for op in branch:
            which = op.WhichOneof("request")
            if which == "request_put" and strip_puts:
                out.append(rpc_pb2.RequestOp(
                    request_put=rpc_pb2.PutRequest(key=op.request_put.key)))  # fmt: skip
            elif which != "request_txn":
                out.append(op)
        return out

    return rpc_pb2.TxnRequest(
        compare=txn.compare, success=ops(txn.success), failure=ops(txn.failure)
    )


# -- traces --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """A server's answer reduced to a verdict plus the exact text it came with."""

    verdict: str
    detail: str  # "OK", "CODE: message", "created" or the watch's cancel_reason


@dataclass(frozen=True, slots=True)
class Step:
    """One request by one requester, with the lease attachments it met."""

    index: int  # into Case.requests
    who: str | None
    kind: str
    request: Any
    leases: LeaseMap
    outcome: Outcome


@dataclass
class Trace:
    """Everything one server answered for one case."""

    server: str
    mutations: list[str] = field(default_factory=list)
    users: dict[str, set[str]] = field(default_factory=dict)
    roles: dict[str, dict[tuple[bytes, bytes], int]] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)


def classify(err: grpc.RpcError) -> Outcome:
    code, text = err.code(), err.details() or ""
    detail = f"{code.name}: {text}"
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return Outcome(DENIED, detail)
    if text == ae.UserEmptyError.message:
        return Outcome(USER_EMPTY, detail)
    if text == ae.AuthOldRevisionError.message:
        return Outcome(OLD_REVISION, detail)
    if text == "etcdserver: requested lease not found":
        return Outcome(ALLOWED, detail)  # past the auth check; the lease is gone
    if text == "etcdserver: duplicate key given in txn request":
        return Outcome(INVALID, detail)  # request validation, before any auth check
    return Outcome(OTHER, detail)


# -- one server ----------------------------------------------------------------------------


class AuthServer:
    """Plays cases on one member over gRPC; keeps the root user across cases."""

    def __init__(self, name: str, endpoint: str) -> None:
        self.name = name
        self.channel = grpc.insecure_channel(endpoint)
        self.auth = rpc_pb2_grpc.AuthStub(self.channel)
        self.kv = rpc_pb2_grpc.KVStub(self.channel)
        self.lease = rpc_pb2_grpc.LeaseStub(self.channel)
        self.watch = rpc_pb2_grpc.WatchStub(self.channel)
        self.enabled = False
        self.root_md: tuple[tuple[str, str], ...] = ()

    def close(self) -> None:
        self.channel.close()

    def bootstrap(self) -> None:
        """The root user with the root role: made once, survives every reset."""
        self.auth.UserAdd(
            rpc_pb2.AuthUserAddRequest(name="root", password=ROOT_PASSWORD), timeout=TIMEOUT
        )
        self.auth.RoleAdd(rpc_pb2.AuthRoleAddRequest(name="root"), timeout=TIMEOUT)
        self.auth.UserGrantRole(
            rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"), timeout=TIMEOUT
        )

    def play(self, case: Case) -> Trace:
        """Reset, set the case up, enable auth and issue every request."""
        trace = Trace(self.name)
        self.reset()
        self.setup(case, trace)
        self.auth.AuthEnable(rpc_pb2.AuthEnableRequest(), timeout=TIMEOUT)
        self.enabled = True
        tokens = {who: self.token(who) for who in ("root", *tam.USERS)}
        self.root_md = tokens["root"]
        leases = self.lease_map()
        for i, (kind, req) in enumerate(case.requests):
            for who in case.requesters(i):
                md = tokens[who] if who is not None else ()
                outcome = self.issue(kind, req, md)
                trace.steps.append(Step(i, who, kind, req, leases, outcome))
                if outcome.verdict == ALLOWED and kind not in ("range", "watch"):
                    leases = self.lease_map()  # writes move keys between leases
        return trace

    def token(self, user: str) -> tuple[tuple[str, str], ...]:
        pw = ROOT_PASSWORD if user == "root" else password(user)
        resp = self.auth.Authenticate(
            rpc_pb2.AuthenticateRequest(name=user, password=pw), timeout=TIMEOUT
        )
        return (("token", resp.token),)

    def reset(self) -> None:
        """Auth off; no users but root, no roles but root, no leases, no keys."""
        if self.enabled:
            md = self.token("root")
            self.auth.AuthDisable(rpc_pb2.AuthDisableRequest(), metadata=md, timeout=TIMEOUT)
            self.enabled = False
        for user in tam.USERS:
            self._tolerate(self.auth.UserDelete, rpc_pb2.AuthUserDeleteRequest(name=user))
        for role in tam.ROLES:
            self._tolerate(self.auth.RoleDelete, rpc_pb2.AuthRoleDeleteRequest(role=role))
        for item in self.lease.LeaseLeases(rpc_pb2.LeaseLeasesRequest(), timeout=TIMEOUT).leases:
            self._tolerate(self.lease.LeaseRevoke, rpc_pb2.LeaseRevokeRequest(ID=item.ID))
        self.kv.DeleteRange(
            rpc_pb2.DeleteRangeRequest(key=b"\x00", range_end=b"\x00"), timeout=TIMEOUT
        )

    def _tolerate(self, method: Any, request: Any) -> str:
        """Call ``method``; an error is returned as its text (the model skips it too)."""
        try:
            method(request, timeout=TIMEOUT)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
            return f"{err.code().name}: {err.details()}"
        return "OK"

    def setup(self, case: Case, trace: Trace) -> None:
        for user in tam.USERS:
            self.auth.UserAdd(
                rpc_pb2.AuthUserAddRequest(name=user, password=password(user)), timeout=TIMEOUT
            )
        for role in tam.ROLES:
            self.auth.RoleAdd(rpc_pb2.AuthRoleAddRequest(name=role), timeout=TIMEOUT)
        for op, a, b in case.mutations:
            method, request = mutation_call(self.auth, op, a, b)
            trace.mutations.append(self._tolerate(method, request))
        for user in ("root", *tam.USERS):
            got = self.auth.UserGet(rpc_pb2.AuthUserGetRequest(name=user), timeout=TIMEOUT)
            trace.users[user] = set(got.roles)
        for role in tam.ROLES:
            try:
                perms = self.auth.RoleGet(rpc_pb2.AuthRoleGetRequest(role=role), timeout=TIMEOUT)
            except grpc.RpcError:
                continue  # deleted by the case
            trace.roles[role] = {(p.key, p.range_end): int(p.permType) for p in perms.perm}
        for lease_id, keys in sorted(case.leases.items()):
            self.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(ID=lease_id, TTL=LEASE_TTL),
                                  timeout=TIMEOUT)  # fmt: skip
            for key in keys:
                self.kv.Put(rpc_pb2.PutRequest(key=key, value=b"v", lease=lease_id),
                            timeout=TIMEOUT)  # fmt: skip

    def lease_map(self) -> LeaseMap:
        """Which keys are attached to which lease, read as root."""
        out = []
        md = self.root_md
        for item in self.lease.LeaseLeases(
            rpc_pb2.LeaseLeasesRequest(), metadata=md, timeout=TIMEOUT
        ).leases:
            ttl = self.lease.LeaseTimeToLive(
                rpc_pb2.LeaseTimeToLiveRequest(ID=item.ID, keys=True), metadata=md, timeout=TIMEOUT
            )
            out.append((int(item.ID), tuple(sorted(ttl.keys))))
        return tuple(sorted(out))

    def issue(self, kind: str, req: Any, md: tuple[tuple[str, str], ...]) -> Outcome:
        if kind == "watch":
            key, end = req
            return self.watch_once(key, end, md)
        method = {
            "range": self.kv.Range,
            "put": self.kv.Put,
            "delete": self.kv.DeleteRange,
            "txn": self.kv.Txn,
            "revoke": self.lease.LeaseRevoke,
        }[kind]
        request = rpc_pb2.LeaseRevokeRequest(ID=req) if kind == "revoke" else req
        try:
            method(request, metadata=md, timeout=TIMEOUT)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
            return classify(err)
        return Outcome(ALLOWED, "OK")

    def watch_once(self, key: bytes, end: bytes, md: tuple[tuple[str, str], ...]) -> Outcome:
        """Open a stream, create one watch, read the first answer, close the stream."""
        answered = threading.Event()

        def requests() -> Iterator[rpc_pb2.WatchRequest]:
            yield rpc_pb2.WatchRequest(
                create_request=rpc_pb2.WatchCreateRequest(key=key, range_end=end)
            )
            # half-closing the stream before the answer may end the stream unanswered
            answered.wait(TIMEOUT)

        call = self.watch.Watch(requests(), metadata=md, timeout=TIMEOUT)
        try:
            first = next(call)
        except grpc.RpcError as err:
            return classify(err)
        finally:
            answered.set()
            call.cancel()
        if first.created and not first.canceled:
            return Outcome(ALLOWED, "created")
        if first.canceled and "permission denied" in first.cancel_reason:
            return Outcome(DENIED, first.cancel_reason)
        if first.canceled and first.cancel_reason.endswith(ae.UserEmptyError.message):
            return Outcome(USER_EMPTY, first.cancel_reason)
        if first.canceled and first.cancel_reason == "mvcc: watcher range is empty":
            return Outcome(ALLOWED, first.cancel_reason)  # refused after the auth check
        return Outcome(OTHER, f"created={first.created} canceled={first.canceled} "
                              f"reason={first.cancel_reason!r}")  # fmt: skip


def mutation_call(auth: Any, op: str, a: str, b: Any) -> tuple[Any, Any]:
    """The Auth RPC and request for one of the model's mutations."""
    if op == "grant":
        t, k, e = b
        perm = auth_pb2.Permission(permType=t, key=k, range_end=e)
        return auth.RoleGrantPermission, rpc_pb2.AuthRoleGrantPermissionRequest(name=a, perm=perm)
    if op == "revoke_perm":
        _, k, e = b
        return auth.RoleRevokePermission, rpc_pb2.AuthRoleRevokePermissionRequest(
            role=a, key=k, range_end=e
        )
    if op in ("grant_role", "grant_root"):
        return auth.UserGrantRole, rpc_pb2.AuthUserGrantRoleRequest(user=a, role=str(b))
    if op == "revoke_role":
        return auth.UserRevokeRole, rpc_pb2.AuthUserRevokeRoleRequest(name=a, role=str(b))
    assert op == "delete_role"
    return auth.RoleDelete, rpc_pb2.AuthRoleDeleteRequest(role=a)
