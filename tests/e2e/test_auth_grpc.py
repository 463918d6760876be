"""Auth enforcement on every RPC path, through a gRPC client and the HTTP gateway.

One pyetcd with auth enabled: user ``u`` holds role ``r`` with READWRITE on key
``k1``, READ on prefix ``p/``, WRITE on prefix ``w/`` and READWRITE on prefix
``lk/``. The checks include the bypasses etcd's advisories closed: nested txns,
prev_kv, lease attachment inside txns, from-key watches on a single-key grant,
MemberList/Alarm/Lease calls without credentials.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from pyetcd.pb import auth_pb2, rpc_pb2, rpc_pb2_grpc, v3lock_pb2, v3lock_pb2_grpc
from tests.framework import Member, running_member

SC = grpc.StatusCode
READ, WRITE, READWRITE = (
    auth_pb2.Permission.READ,
    auth_pb2.Permission.WRITE,
    auth_pb2.Permission.READWRITE,
)
DENIED = "etcdserver: permission denied"
NO_USER = "etcdserver: user name is empty"


def _end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


@dataclass
class Cluster:
    member: Member
    channel: grpc.Channel
    root: tuple[tuple[str, str], ...]
    user: tuple[tuple[str, str], ...]

    def stub(self, cls: type) -> object:
        return cls(self.channel)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with running_member("pyetcd", extra_args=["--bcrypt-cost", "4"]) as m:
        ch = grpc.insecure_channel(m.endpoint)
        auth = rpc_pb2_grpc.AuthStub(ch)
        auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="root", password="rootpw"))
        auth.RoleAdd(rpc_pb2.AuthRoleAddRequest(name="root"))
        auth.UserGrantRole(rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"))
        auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="u", password="upw"))
        auth.RoleAdd(rpc_pb2.AuthRoleAddRequest(name="r"))
        for key, end, kind in (
            (b"k1", b"", READWRITE),
            (b"p/", _end(b"p/"), READ),
            (b"w/", _end(b"w/"), WRITE),
            (b"lk/", _end(b"lk/"), READWRITE),
        ):
            auth.RoleGrantPermission(
                rpc_pb2.AuthRoleGrantPermissionRequest(
                    name="r", perm=auth_pb2.Permission(permType=kind, key=key, range_end=end)
                )
            )
        auth.UserGrantRole(rpc_pb2.AuthUserGrantRoleRequest(user="u", role="r"))
        auth.AuthEnable(rpc_pb2.AuthEnableRequest())
        root = auth.Authenticate(rpc_pb2.AuthenticateRequest(name="root", password="rootpw"))
        user = auth.Authenticate(rpc_pb2.AuthenticateRequest(name="u", password="upw"))
        try:
            yield Cluster(m, ch, (("token", root.token),), (("token", user.token),))
        finally:
            ch.close()


def _fails(call: object, code: grpc.StatusCode, text: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    assert (info.value.code(), info.value.details()) == (code, text)


def test_ranges_need_read_over_the_whole_range(cluster: Cluster) -> None:
    kv = rpc_pb2_grpc.KVStub(cluster.channel)
    md = cluster.user
    kv.Range(rpc_pb2.RangeRequest(key=b"k1"), metadata=md)
    kv.Range(rpc_pb2.RangeRequest(key=b"k1", serializable=True), metadata=md)
    kv.Range(rpc_pb2.RangeRequest(key=b"p/", range_end=_end(b"p/")), metadata=md)
    kv.Range(rpc_pb2.RangeRequest(key=b"p/a", range_end=b"p/b"), metadata=md)
    for key, end in ((b"k1", b"k2"), (b"p/", b"\x00"), (b"w/a", b""), (b"k0", b"k1\x00")):
        req = rpc_pb2.RangeRequest(key=key, range_end=end)
        _fails(lambda req=req: kv.Range(req, metadata=md), SC.PERMISSION_DENIED, DENIED)
    _fails(lambda: kv.Range(rpc_pb2.RangeRequest(key=b"k1")), SC.INVALID_ARGUMENT, NO_USER)
    _fails(
        lambda: kv.Range(rpc_pb2.RangeRequest(key=b"k1"), metadata=(("token", "bogus.1"),)),
        SC.UNAUTHENTICATED,
        "etcdserver: invalid auth token",
    )


def test_writes_and_prev_kv(cluster: Cluster) -> None:
    kv = rpc_pb2_grpc.KVStub(cluster.channel)
    md = cluster.user
    kv.Put(rpc_pb2.PutRequest(key=b"k1", value=b"v"), metadata=md)
    kv.Put(rpc_pb2.PutRequest(key=b"w/a", value=b"v"), metadata=md)
    kv.Put(rpc_pb2.PutRequest(key=b"k1", value=b"v", prev_kv=True), metadata=md)
    denied = [
        rpc_pb2.PutRequest(key=b"p/a", value=b"v"),
        rpc_pb2.PutRequest(key=b"w/a", value=b"v", prev_kv=True),  # prev_kv needs READ
    ]
    for req in denied:
        _fails(lambda req=req: kv.Put(req, metadata=md), SC.PERMISSION_DENIED, DENIED)
    kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"w/", range_end=_end(b"w/")), metadata=md)
    req = rpc_pb2.DeleteRangeRequest(key=b"w/", range_end=_end(b"w/"), prev_kv=True)
    _fails(lambda: kv.DeleteRange(req, metadata=md), SC.PERMISSION_DENIED, DENIED)
    _fails(lambda: kv.Put(rpc_pb2.PutRequest(key=b"k1")), SC.INVALID_ARGUMENT, NO_USER)


def _op_put(key: bytes, prev_kv: bool = False) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=b"x", prev_kv=prev_kv))


def test_txn_checks_both_branches_and_nested_txns(cluster: Cluster) -> None:
    kv = rpc_pb2_grpc.KVStub(cluster.channel)
    md = cluster.user
    cmp = rpc_pb2.Compare(key=b"k1", target=rpc_pb2.Compare.VERSION, version=0)
    ok = rpc_pb2.TxnRequest(compare=[cmp], success=[_op_put(b"k1")], failure=[_op_put(b"w/b")])
    kv.Txn(ok, metadata=md)
    nested_deny = rpc_pb2.TxnRequest(
        success=[_op_put(b"k1")],
        failure=[rpc_pb2.RequestOp(request_txn=rpc_pb2.TxnRequest(failure=[_op_put(b"secret")]))],
    )
    nested_prev_kv = rpc_pb2.TxnRequest(
        success=[
            rpc_pb2.RequestOp(
                request_txn=rpc_pb2.TxnRequest(success=[_op_put(b"w/c", prev_kv=True)])
            )
        ]
    )
    cmp_deny = rpc_pb2.TxnRequest(
        compare=[rpc_pb2.Compare(key=b"secret", target=rpc_pb2.Compare.VERSION, version=0)],
        success=[_op_put(b"k1")],
    )
    read_only_deny = rpc_pb2.TxnRequest(
        success=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"k1"))],
        failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"secret"))],
    )
    for req in (nested_deny, nested_prev_kv, cmp_deny, read_only_deny):
        _fails(lambda req=req: kv.Txn(req, metadata=md), SC.PERMISSION_DENIED, DENIED)


def test_lease_attachment_revoke_and_time_to_live(cluster: Cluster) -> None:
    kv = rpc_pb2_grpc.KVStub(cluster.channel)
    lease = rpc_pb2_grpc.LeaseStub(cluster.channel)
    root, md = cluster.root, cluster.user
    lid = lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=100), metadata=root).ID
    kv.Put(rpc_pb2.PutRequest(key=b"secret", value=b"s", lease=lid), metadata=root)
    attach = rpc_pb2.PutRequest(key=b"w/l", value=b"v", lease=lid)
    _fails(lambda: kv.Put(attach, metadata=md), SC.PERMISSION_DENIED, DENIED)
    in_txn = rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(request_put=attach)])
    _fails(lambda: kv.Txn(in_txn, metadata=md), SC.PERMISSION_DENIED, DENIED)
    revoke = rpc_pb2.LeaseRevokeRequest(ID=lid)
    _fails(lambda: lease.LeaseRevoke(revoke, metadata=md), SC.PERMISSION_DENIED, DENIED)
    # LeaseTimeToLive as etcd 3.5.13: with keys, a caller with READ on each (3.5.9);
    # without keys, open (the keys are not shown)
    ttl = rpc_pb2.LeaseTimeToLiveRequest(ID=lid, keys=True)
    _fails(lambda: lease.LeaseTimeToLive(ttl, metadata=md), SC.PERMISSION_DENIED, DENIED)
    _fails(lambda: lease.LeaseTimeToLive(ttl), SC.INVALID_ARGUMENT, NO_USER)
    bare = rpc_pb2.LeaseTimeToLiveRequest(ID=lid)
    assert lease.LeaseTimeToLive(bare, metadata=md).grantedTTL == 100
    assert lease.LeaseTimeToLive(bare).keys == []
    assert lease.LeaseTimeToLive(ttl, metadata=root).keys == [b"secret"]
    # LeaseKeepAlive as etcd 3.5.13: no check at all (no token, a bad token, any user)
    for metadata in ((), md, (("token", "not-a-token"),)):
        (renewed,) = lease.LeaseKeepAlive(
            iter([rpc_pb2.LeaseKeepAliveRequest(ID=lid)]), metadata=metadata
        )
        assert (lid, 100) == (renewed.ID, renewed.TTL)
    _fails(
        lambda: lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=100)), SC.INVALID_ARGUMENT, NO_USER
    )
    _fails(lambda: lease.LeaseLeases(rpc_pb2.LeaseLeasesRequest()), SC.INVALID_ARGUMENT, NO_USER)
    # the user's own lease on its own keys works end to end
    own = lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=100), metadata=md).ID
    kv.Put(rpc_pb2.PutRequest(key=b"k1", value=b"v", lease=own), metadata=md)
    assert lease.LeaseTimeToLive(
        rpc_pb2.LeaseTimeToLiveRequest(ID=own, keys=True), metadata=md
    ).keys == [b"k1"]
    lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=own), metadata=md)
    lease.LeaseRevoke(revoke, metadata=root)


def _watch_create(
    cluster: Cluster, key: bytes, end: bytes, md: tuple[tuple[str, str], ...] | None = None
) -> rpc_pb2.WatchResponse:
    watch = rpc_pb2_grpc.WatchStub(cluster.channel)
    req = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=key, range_end=end))
    call = watch.Watch(iter([req]), metadata=cluster.user if md is None else md, timeout=5)
    try:
        first: rpc_pb2.WatchResponse = next(iter(call))
        return first
    finally:
        call.cancel()


def test_watch_needs_read_over_the_watched_range(cluster: Cluster) -> None:
    assert not _watch_create(cluster, b"k1", b"").canceled
    assert not _watch_create(cluster, b"p/", _end(b"p/")).canceled
    for key, end in ((b"k1", b"\x00"), (b"", b"\x00"), (b"p/", b"\x00"), (b"secret", b"")):
        resp = _watch_create(cluster, key, end)
        assert resp.created and resp.canceled and resp.watch_id == -1, (key, end)
        assert resp.cancel_reason == (
            "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
        )
    # etcd 3.5.6 (#14547): the reason names the auth failure, so a client can renew
    for md, reason in (
        ((), "rpc error: code = InvalidArgument desc = etcdserver: user name is empty"),
        (
            (("token", "not-a-token"),),
            "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token",
        ),
    ):
        resp = _watch_create(cluster, b"k1", b"", md)
        assert (resp.watch_id, resp.canceled, resp.cancel_reason) == (-1, True, reason)


def test_cluster_and_maintenance_calls(cluster: Cluster) -> None:
    cl = rpc_pb2_grpc.ClusterStub(cluster.channel)
    mt = rpc_pb2_grpc.MaintenanceStub(cluster.channel)
    root, md = cluster.root, cluster.user
    _fails(lambda: cl.MemberList(rpc_pb2.MemberListRequest()), SC.INVALID_ARGUMENT, NO_USER)
    assert len(cl.MemberList(rpc_pb2.MemberListRequest(), metadata=md).members) == 1
    add = rpc_pb2.MemberAddRequest(peerURLs=["http://127.0.0.1:1"], isLearner=True)
    _fails(lambda: cl.MemberAdd(add, metadata=md), SC.PERMISSION_DENIED, DENIED)
    alarm_get = rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.GET)
    _fails(lambda: mt.Alarm(alarm_get), SC.INVALID_ARGUMENT, NO_USER)
    mt.Alarm(alarm_get, metadata=md)
    activate = rpc_pb2.AlarmRequest(
        action=rpc_pb2.AlarmRequest.ACTIVATE, memberID=1, alarm=rpc_pb2.NOSPACE
    )
    _fails(lambda: mt.Alarm(activate, metadata=md), SC.PERMISSION_DENIED, DENIED)
    raw_denied = "auth: permission denied"
    _fails(lambda: mt.Defragment(rpc_pb2.DefragmentRequest(), metadata=md), SC.UNKNOWN, raw_denied)
    _fails(lambda: mt.HashKV(rpc_pb2.HashKVRequest(), metadata=md), SC.UNKNOWN, raw_denied)
    _fails(
        lambda: next(iter(mt.Snapshot(rpc_pb2.SnapshotRequest(), metadata=md))),
        SC.UNKNOWN,
        raw_denied,
    )
    mt.HashKV(rpc_pb2.HashKVRequest(), metadata=root)
    assert mt.Status(rpc_pb2.StatusRequest()).version  # open to anyone, as on etcd


def test_lock_runs_as_the_caller(cluster: Cluster) -> None:
    lock = v3lock_pb2_grpc.LockStub(cluster.channel)
    md = cluster.user
    got = lock.Lock(v3lock_pb2.LockRequest(name=b"lk"), metadata=md, timeout=10)
    assert got.key.startswith(b"lk/")
    lock.Unlock(v3lock_pb2.UnlockRequest(key=got.key), metadata=md)
    _fails(
        lambda: lock.Lock(v3lock_pb2.LockRequest(name=b"zz"), metadata=md, timeout=10),
        SC.UNKNOWN,
        DENIED,
    )


def _post(
    cluster: Cluster, path: str, body: dict[str, str], token: str = ""
) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        f"http://{cluster.member.endpoint}{path}", data=json.dumps(body).encode(), method="POST"
    )
    if token:
        req.add_header("Authorization", token)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_gateway_forwards_the_authorization_header(cluster: Cluster) -> None:
    token = cluster.user[0][1]
    key = "azE="  # base64 of k1
    status, body = _post(cluster, "/v3/kv/range", {"key": key}, token)
    assert status == 200, body
    status, body = _post(cluster, "/v3/kv/range", {"key": key})
    assert (status, body["message"]) == (400, NO_USER)
    status, body = _post(cluster, "/v3/kv/range", {"key": "c2VjcmV0"}, token)
    assert (status, body["message"]) == (403, DENIED)
    status, body = _post(cluster, "/v3/auth/authenticate", {"name": "u", "password": "upw"})
    assert status == 200 and body["token"]


def test_health_stays_healthy_with_auth_enabled(cluster: Cluster) -> None:
    with urllib.request.urlopen(f"http://{cluster.member.endpoint}/health", timeout=10) as r:
        assert json.loads(r.read())["health"] == "true"


def test_expired_lease_is_revoked_with_auth_enabled(cluster: Cluster) -> None:
    # the leader revokes an expired lease as root, whatever keys it holds
    kv = rpc_pb2_grpc.KVStub(cluster.channel)
    lease = rpc_pb2_grpc.LeaseStub(cluster.channel)
    root = cluster.root
    lid = lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=2), metadata=root).ID
    kv.Put(rpc_pb2.PutRequest(key=b"expiring", value=b"v", lease=lid), metadata=root)
    deadline = time.monotonic() + 15
    while kv.Range(rpc_pb2.RangeRequest(key=b"expiring"), metadata=root).kvs:
        assert time.monotonic() < deadline, "the expired lease's key is still there"
        time.sleep(0.2)


def test_passwords_and_tokens_never_reach_the_log(cluster: Cluster) -> None:
    # this module's last test: every call above has been logged by now
    assert cluster.member.log_path is not None
    log = cluster.member.log_path.read_text(errors="replace")
    assert "added a user" in log  # the log is the member's, and it logs auth changes
    for secret in ("rootpw", "upw", cluster.root[0][1], cluster.user[0][1]):
        assert secret not in log
    token_letters = cluster.user[0][1].split(".")[0]
    assert token_letters not in log
