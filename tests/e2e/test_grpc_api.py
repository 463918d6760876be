"""Every etcd v3 RPC through our generated stubs, including the error paths.

Each test runs against pyetcd and against real etcd 3.5.1: etcd is the oracle that
keeps the expected status codes and messages honest (etcd 3.5's status codes and texts).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pyetcd.pb import (
    kv_pb2,
    rpc_pb2,
    rpc_pb2_grpc,
    v3election_pb2,
    v3election_pb2_grpc,
    v3lock_pb2,
    v3lock_pb2_grpc,
)
from tests.framework import ORACLE_VERSION, REPORTED_VERSION, Member, running_member

SC = grpc.StatusCode
MAX_REQUEST_BYTES = 1572864


@dataclass
class Client:
    """Stubs for every etcd service over one channel."""

    member: Member
    channel: grpc.Channel

    def __post_init__(self) -> None:
        ch = self.channel
        self.kv = rpc_pb2_grpc.KVStub(ch)
        self.watch = rpc_pb2_grpc.WatchStub(ch)
        self.lease = rpc_pb2_grpc.LeaseStub(ch)
        self.cluster = rpc_pb2_grpc.ClusterStub(ch)
        self.maintenance = rpc_pb2_grpc.MaintenanceStub(ch)
        self.auth = rpc_pb2_grpc.AuthStub(ch)
        self.lock = v3lock_pb2_grpc.LockStub(ch)
        self.election = v3election_pb2_grpc.ElectionStub(ch)
        self.health = health_pb2_grpc.HealthStub(ch)

    def put(self, key: bytes, value: bytes = b"v") -> int:
        return int(
            self.kv.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=10).header.revision
        )


@pytest.fixture(scope="module", params=["pyetcd", "etcd"])
def client(request: pytest.FixtureRequest) -> Iterator[Client]:
    options = [("grpc.max_send_message_length", 8 << 20)]
    with running_member(request.param) as m, grpc.insecure_channel(m.endpoint, options) as ch:
        yield Client(m, ch)


def rpc_error(call: object) -> tuple[grpc.StatusCode, str]:
    """Run ``call()`` expecting a status error; returns its (code, message)."""
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    err = info.value
    return err.code(), err.details()


def check_header(h: rpc_pb2.ResponseHeader, revision: bool = True) -> None:
    assert h.cluster_id != 0 and h.member_id != 0 and h.raft_term >= 2
    assert (h.revision > 0) == revision


def check_header_or_empty(client: Client, h: rpc_pb2.ResponseHeader) -> None:
    """etcd 3.5.1 sends Defragment, MoveLeader and Snapshot responses without a header,
    and so does pyetcd."""
    assert h == rpc_pb2.ResponseHeader()


# -- KV ------------------------------------------------------------------------------------------


def test_put_range_delete(client: Client) -> None:
    p = b"kv/"
    r1 = client.kv.Put(rpc_pb2.PutRequest(key=p + b"a", value=b"1"), timeout=10)
    check_header(r1.header)
    r2 = client.kv.Put(rpc_pb2.PutRequest(key=p + b"a", value=b"2", prev_kv=True), timeout=10)
    assert r2.header.revision == r1.header.revision + 1
    assert r2.prev_kv.value == b"1" and r2.prev_kv.version == 1
    client.put(p + b"b", b"3")
    client.put(p + b"c", b"4")
    rng = client.kv.Range(rpc_pb2.RangeRequest(key=p, range_end=p[:-1] + b"0", limit=2))
    check_header(rng.header)
    assert [kv.key for kv in rng.kvs] == [p + b"a", p + b"b"] and rng.more and rng.count == 3
    old = client.kv.Range(rpc_pb2.RangeRequest(key=p + b"a", revision=r1.header.revision))
    assert old.kvs[0].value == b"1"
    assert old.header.revision == rng.header.revision  # the current revision, not the read's
    desc = client.kv.Range(
        rpc_pb2.RangeRequest(
            key=p,
            range_end=p[:-1] + b"0",
            sort_order=rpc_pb2.RangeRequest.DESCEND,
            sort_target=rpc_pb2.RangeRequest.VALUE,
            keys_only=True,
            serializable=True,
        )
    )
    assert [kv.key for kv in desc.kvs] == [p + b"c", p + b"b", p + b"a"] and not desc.kvs[0].value
    cnt = client.kv.Range(rpc_pb2.RangeRequest(key=p, range_end=p[:-1] + b"0", count_only=True))
    assert cnt.count == 3 and not cnt.kvs
    mod = client.kv.Range(
        rpc_pb2.RangeRequest(
            key=p, range_end=p[:-1] + b"0", min_mod_revision=r2.header.revision + 1
        )
    )
    assert [kv.key for kv in mod.kvs] == [p + b"b", p + b"c"]
    d = client.kv.DeleteRange(
        rpc_pb2.DeleteRangeRequest(key=p + b"b", range_end=p[:-1] + b"0", prev_kv=True)
    )
    assert d.deleted == 2 and [kv.value for kv in d.prev_kvs] == [b"3", b"4"]
    check_header(d.header)


def test_empty_key_errors(client: Client) -> None:
    msg = "etcdserver: key is not provided"
    assert rpc_error(lambda: client.kv.Range(rpc_pb2.RangeRequest())) == (
        SC.INVALID_ARGUMENT,
        msg,
    )
    assert rpc_error(lambda: client.kv.Put(rpc_pb2.PutRequest(value=b"x"))) == (
        SC.INVALID_ARGUMENT,
        msg,
    )
    assert rpc_error(lambda: client.kv.DeleteRange(rpc_pb2.DeleteRangeRequest())) == (
        SC.INVALID_ARGUMENT,
        msg,
    )
    txn = rpc_pb2.TxnRequest(compare=[rpc_pb2.Compare(target=rpc_pb2.Compare.VALUE)])
    assert rpc_error(lambda: client.kv.Txn(txn)) == (SC.INVALID_ARGUMENT, msg)


def test_put_flag_errors(client: Client) -> None:
    assert rpc_error(
        lambda: client.kv.Put(rpc_pb2.PutRequest(key=b"flags/missing", ignore_value=True))
    ) == (SC.INVALID_ARGUMENT, "etcdserver: key not found")
    assert rpc_error(
        lambda: client.kv.Put(rpc_pb2.PutRequest(key=b"flags/k", value=b"x", ignore_value=True))
    ) == (SC.INVALID_ARGUMENT, "etcdserver: value is provided")
    assert rpc_error(
        lambda: client.kv.Put(rpc_pb2.PutRequest(key=b"flags/k", lease=7, ignore_lease=True))
    ) == (SC.INVALID_ARGUMENT, "etcdserver: lease is provided")
    assert rpc_error(
        lambda: client.kv.Put(rpc_pb2.PutRequest(key=b"flags/k", value=b"x", lease=0x7777))
    ) == (SC.NOT_FOUND, "etcdserver: requested lease not found")


def test_future_and_compacted_revisions(client: Client) -> None:
    rev = client.put(b"rev/a", b"1")
    client.put(b"rev/a", b"2")
    future = rpc_pb2.RangeRequest(key=b"rev/a", revision=rev + 1000)
    assert rpc_error(lambda: client.kv.Range(future)) == (
        SC.OUT_OF_RANGE,
        "etcdserver: mvcc: required revision is a future revision",
    )
    assert rpc_error(lambda: client.kv.Compact(rpc_pb2.CompactionRequest(revision=rev + 1000))) == (
        SC.OUT_OF_RANGE,
        "etcdserver: mvcc: required revision is a future revision",
    )
    c = client.kv.Compact(rpc_pb2.CompactionRequest(revision=rev + 1, physical=True), timeout=10)
    check_header(c.header)
    compacted = (SC.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted")
    assert rpc_error(lambda: client.kv.Range(rpc_pb2.RangeRequest(key=b"rev/a", revision=rev))) == (
        compacted
    )
    assert rpc_error(lambda: client.kv.Compact(rpc_pb2.CompactionRequest(revision=rev))) == (
        compacted
    )
    ok = client.kv.Range(rpc_pb2.RangeRequest(key=b"rev/a", revision=rev + 1))
    assert ok.kvs[0].value == b"2"


def test_txn(client: Client) -> None:
    rev = client.put(b"txn/k", b"v1")
    cmp = rpc_pb2.Compare(
        key=b"txn/k",
        target=rpc_pb2.Compare.VALUE,
        result=rpc_pb2.Compare.EQUAL,
        value=b"v1",
    )
    req = rpc_pb2.TxnRequest(
        compare=[cmp],
        success=[
            rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"txn/k", value=b"v2")),
            rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"txn/k")),
        ],
        failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"txn/k"))],
    )
    r = client.kv.Txn(req, timeout=10)
    assert r.succeeded and r.header.revision == rev + 1
    # A Txn's header.revision is its write's revision (etcdctl lock relies on it).
    assert r.responses[0].response_put.header.revision == rev + 1
    assert r.responses[1].response_range.kvs[0].value == b"v2"
    r = client.kv.Txn(req, timeout=10)
    assert not r.succeeded and r.responses[0].response_range.kvs[0].value == b"v2"
    assert r.header.revision == rev + 1  # read-only branch: no new revision


def test_txn_errors(client: Client) -> None:
    def put(k: bytes) -> rpc_pb2.RequestOp:
        return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, value=b"x"))

    too_many = rpc_pb2.TxnRequest(success=[put(b"many/%d" % i) for i in range(129)])
    assert rpc_error(lambda: client.kv.Txn(too_many)) == (
        SC.INVALID_ARGUMENT,
        "etcdserver: too many operations in txn request",
    )
    ok = rpc_pb2.TxnRequest(success=[put(b"many/%d" % i) for i in range(128)])
    assert client.kv.Txn(ok, timeout=10).succeeded
    dup = rpc_pb2.TxnRequest(success=[put(b"dup/a"), put(b"dup/a")])
    assert rpc_error(lambda: client.kv.Txn(dup)) == (
        SC.INVALID_ARGUMENT,
        "etcdserver: duplicate key given in txn request",
    )
    overlap = rpc_pb2.TxnRequest(
        success=[
            put(b"dup/b"),
            rpc_pb2.RequestOp(
                request_delete_range=rpc_pb2.DeleteRangeRequest(key=b"dup/", range_end=b"dup0")
            ),
        ]
    )
    assert rpc_error(lambda: client.kv.Txn(overlap)) == (
        SC.INVALID_ARGUMENT,
        "etcdserver: duplicate key given in txn request",
    )
    # The same key in the success and failure branches is fine.
    both_branches = rpc_pb2.TxnRequest(success=[put(b"dup/c")], failure=[put(b"dup/c")])
    assert client.kv.Txn(both_branches, timeout=10).succeeded


def test_request_too_large(client: Client) -> None:
    big = rpc_pb2.PutRequest(key=b"big/k", value=b"x" * (MAX_REQUEST_BYTES + 1))
    assert rpc_error(lambda: client.kv.Put(big, timeout=10)) == (
        SC.INVALID_ARGUMENT,
        "etcdserver: request is too large",
    )
    # Beyond the gRPC receive limit (max-request-bytes + 512 KiB) gRPC itself refuses.
    huge = rpc_pb2.PutRequest(key=b"big/k", value=b"x" * (MAX_REQUEST_BYTES + 600 * 1024))
    code, _ = rpc_error(lambda: client.kv.Put(huge, timeout=10))
    assert code == SC.RESOURCE_EXHAUSTED
    just_fits = rpc_pb2.PutRequest(key=b"big/k", value=b"x" * (MAX_REQUEST_BYTES - 1024))
    assert client.kv.Put(just_fits, timeout=10).header.revision > 0


# -- Lease ---------------------------------------------------------------------------------------


def test_lease(client: Client) -> None:
    g = client.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=60), timeout=10)
    check_header(g.header)
    assert g.ID > 0 and g.TTL == 60
    client.kv.Put(rpc_pb2.PutRequest(key=b"lease/k", value=b"v", lease=g.ID), timeout=10)
    ttl = client.lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=g.ID, keys=True))
    assert ttl.grantedTTL == 60 and 55 <= ttl.TTL <= 60 and list(ttl.keys) == [b"lease/k"]
    leases = client.lease.LeaseLeases(rpc_pb2.LeaseLeasesRequest())
    assert g.ID in [lease.ID for lease in leases.leases]
    ka = list(client.lease.LeaseKeepAlive(iter([rpc_pb2.LeaseKeepAliveRequest(ID=g.ID)])))
    assert [(r.ID, r.TTL) for r in ka] == [(g.ID, 60)]
    check_header(ka[0].header)
    rv = client.lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=g.ID), timeout=10)
    check_header(rv.header)
    assert not client.kv.Range(rpc_pb2.RangeRequest(key=b"lease/k")).kvs


def test_lease_errors(client: Client) -> None:
    unknown = 0x1234567
    assert rpc_error(lambda: client.lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=unknown))) == (
        SC.NOT_FOUND,
        "etcdserver: requested lease not found",
    )
    ttl = client.lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=unknown))
    assert (unknown, -1) == (ttl.ID, ttl.TTL)
    ka = list(client.lease.LeaseKeepAlive(iter([rpc_pb2.LeaseKeepAliveRequest(ID=unknown)])))
    assert [(r.ID, r.TTL) for r in ka] == [(unknown, 0)]
    client.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=30, ID=0x4242), timeout=10)
    assert rpc_error(
        lambda: client.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=30, ID=0x4242))
    ) == (SC.FAILED_PRECONDITION, "etcdserver: lease already exists")
    assert rpc_error(
        lambda: client.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=9_000_000_001))
    ) == (SC.OUT_OF_RANGE, "etcdserver: too large lease TTL")
    short = client.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=1), timeout=10)
    assert short.TTL == 2  # the minimum TTL: ceil(1.5 x election timeout)
    client.lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=short.ID), timeout=10)
    client.lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=0x4242), timeout=10)


def test_lease_expiry_deletes_keys(client: Client) -> None:
    """The leader revokes an expired lease through Raft: its keys go in one revision."""
    g = client.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=2), timeout=10)
    for k in (b"expire/a", b"expire/b"):
        client.kv.Put(rpc_pb2.PutRequest(key=k, value=b"v", lease=g.ID), timeout=10)
    before = client.kv.Range(rpc_pb2.RangeRequest(key=b"expire/a")).header.revision
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = client.kv.Range(rpc_pb2.RangeRequest(key=b"expire/", range_end=b"expire0"))
        if not r.kvs:
            break
        time.sleep(0.2)
    assert not r.kvs, "keys of an expired lease are still there"
    assert r.header.revision == before + 1
    ttl = client.lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=g.ID))
    assert ttl.TTL == -1


def test_nested_txn_and_compares(client: Client) -> None:
    rev = client.put(b"nest/k", b"1")
    inner = rpc_pb2.TxnRequest(
        compare=[
            rpc_pb2.Compare(
                key=b"nest/k",
                target=rpc_pb2.Compare.CREATE,
                result=rpc_pb2.Compare.EQUAL,
                create_revision=rev,
            )
        ],
        success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"nest/in", value=b"x"))],
    )
    outer = rpc_pb2.TxnRequest(
        compare=[
            rpc_pb2.Compare(
                key=b"nest/k",
                target=rpc_pb2.Compare.LEASE,
                result=rpc_pb2.Compare.EQUAL,
                lease=0,
            ),
            rpc_pb2.Compare(
                key=b"nest/",
                range_end=b"nest0",
                target=rpc_pb2.Compare.VERSION,
                result=rpc_pb2.Compare.GREATER,
                version=0,
            ),
        ],
        success=[
            rpc_pb2.RequestOp(request_txn=inner),
            rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"nest/out", value=b"y")),
        ],
    )
    r = client.kv.Txn(outer, timeout=10)
    assert r.succeeded and r.responses[0].response_txn.succeeded
    assert r.header.revision == rev + 1
    got = client.kv.Range(rpc_pb2.RangeRequest(key=b"nest/", range_end=b"nest0"))
    assert [(kv.key, kv.mod_revision) for kv in got.kvs] == [
        (b"nest/in", rev + 1),
        (b"nest/k", rev),
        (b"nest/out", rev + 1),
    ]
    from_key = client.kv.Range(rpc_pb2.RangeRequest(key=b"nest/k", range_end=b"\0", limit=1))
    assert from_key.kvs[0].key == b"nest/k" and from_key.more


# -- Watch ---------------------------------------------------------------------------------------


class WatchSession:
    """A bidi Watch stream driven from a queue of requests."""

    def __init__(self, client: Client) -> None:
        import queue

        self.requests: queue.Queue[rpc_pb2.WatchRequest | None] = queue.Queue()

        def gen() -> Iterator[rpc_pb2.WatchRequest]:
            while (req := self.requests.get()) is not None:
                yield req

        self.responses = client.watch.Watch(gen(), timeout=20)

    def send(self, req: rpc_pb2.WatchRequest) -> None:
        self.requests.put(req)

    def recv(self) -> rpc_pb2.WatchResponse:
        resp: rpc_pb2.WatchResponse = next(self.responses)
        return resp

    def close(self) -> None:
        self.requests.put(None)
        self.responses.cancel()


def create(key: bytes, **kw: Any) -> rpc_pb2.WatchRequest:
    return rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=key, **kw))


def test_watch(client: Client) -> None:
    start = client.put(b"watch/a", b"1")
    client.put(b"watch/b", b"2")
    client.kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"watch/a"), timeout=10)
    w = WatchSession(client)
    try:
        w.send(create(b"watch/", range_end=b"watch0", start_revision=start, prev_kv=True))
        created = w.recv()
        assert created.created and created.watch_id == 0
        check_header(created.header)
        events: list[kv_pb2.Event] = []
        while len(events) < 3:
            events.extend(w.recv().events)
        assert [(e.type, e.kv.key) for e in events] == [
            (kv_pb2.Event.PUT, b"watch/a"),
            (kv_pb2.Event.PUT, b"watch/b"),
            (kv_pb2.Event.DELETE, b"watch/a"),
        ]
        assert events[2].prev_kv.value == b"1"
        w.send(create(b"watch/c", watch_id=7))
        assert (r := w.recv()).created and r.watch_id == 7
        client.put(b"watch/c", b"3")
        got = {}
        while 7 not in got:
            r = w.recv()
            got[r.watch_id] = r
        assert got[7].events[0].kv.value == b"3"
        w.send(rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest()))
        while (r := w.recv()).events:
            pass
        assert r.watch_id == -1 and not r.created and r.header.revision >= start
        w.send(rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=7)))
        r = w.recv()
        assert r.canceled and r.watch_id == 7
    finally:
        w.close()


def test_watch_filters_and_fragment(client: Client) -> None:
    start = client.put(b"wf/a", b"1")
    client.kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"wf/a"), timeout=10)
    client.put(b"wf/b", b"x" * 1000)
    w = WatchSession(client)
    try:
        no_put = [rpc_pb2.WatchCreateRequest.NOPUT]
        w.send(create(b"wf/", range_end=b"wf0", start_revision=start, filters=no_put))
        assert w.recv().created
        r = w.recv()
        assert [(e.type, e.kv.key) for e in r.events] == [(kv_pb2.Event.DELETE, b"wf/a")]
        no_del = [rpc_pb2.WatchCreateRequest.NODELETE]
        w.send(
            create(b"wf/", range_end=b"wf0", start_revision=start, filters=no_del, fragment=True)
        )
        events: list[kv_pb2.Event] = []
        while len(events) < 2:
            r = w.recv()
            if r.watch_id == 1:
                events.extend(r.events)
        assert [(e.type, e.kv.key) for e in events] == [
            (kv_pb2.Event.PUT, b"wf/a"),
            (kv_pb2.Event.PUT, b"wf/b"),
        ]
    finally:
        w.close()


def test_watch_compacted_start(client: Client) -> None:
    rev = client.put(b"wc/a", b"1")
    client.put(b"wc/a", b"2")
    client.kv.Compact(rpc_pb2.CompactionRequest(revision=rev + 1), timeout=10)
    w = WatchSession(client)
    try:
        w.send(create(b"wc/a", start_revision=rev))
        first = w.recv()
        if first.created and not first.canceled:
            first = w.recv()
        assert first.canceled and first.compact_revision == rev + 1
    finally:
        w.close()


# -- Cluster, Maintenance, Auth, health ------------------------------------------------------------


def test_member_list(client: Client) -> None:
    r = client.cluster.MemberList(rpc_pb2.MemberListRequest(), timeout=10)
    check_header(r.header, revision=False)
    (m,) = r.members
    assert r.header.member_id == m.ID and m.name == "default" and not m.isLearner
    assert list(m.clientURLs) == [client.member.advertise_client_url]
    assert list(m.peerURLs) == [client.member.advertise_peer_url]


def test_maintenance(client: Client) -> None:
    st = client.maintenance.Status(rpc_pb2.StatusRequest(), timeout=10)
    check_header(st.header)
    assert st.version == (REPORTED_VERSION if client.member.kind == "pyetcd" else ORACLE_VERSION)
    assert st.leader == st.header.member_id and st.dbSize > 0
    assert st.raftIndex >= st.raftAppliedIndex > 0 and not st.errors
    alarms = client.maintenance.Alarm(rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.GET))
    check_header(alarms.header)
    assert not alarms.alarms
    defrag = client.maintenance.Defragment(rpc_pb2.DefragmentRequest(), timeout=30)
    check_header_or_empty(client, defrag.header)
    check_header(client.maintenance.Hash(rpc_pb2.HashRequest(), timeout=10).header)
    hkv = client.maintenance.HashKV(rpc_pb2.HashKVRequest(), timeout=10)
    check_header(hkv.header)
    code, msg = rpc_error(
        lambda: client.maintenance.HashKV(rpc_pb2.HashKVRequest(revision=10**9), timeout=10)
    )
    assert (code, msg) == (
        SC.OUT_OF_RANGE,
        "etcdserver: mvcc: required revision is a future revision",
    )
    ml = client.maintenance.MoveLeader(
        rpc_pb2.MoveLeaderRequest(targetID=st.header.member_id), timeout=10
    )
    check_header_or_empty(client, ml.header)
    assert rpc_error(
        lambda: client.maintenance.MoveLeader(rpc_pb2.MoveLeaderRequest(targetID=99), timeout=10)
    ) == (SC.FAILED_PRECONDITION, "etcdserver: bad leader transferee")


def test_snapshot_stream(client: Client) -> None:
    chunks = list(client.maintenance.Snapshot(rpc_pb2.SnapshotRequest(), timeout=30))
    assert chunks[-1].remaining_bytes == 0
    body = b"".join(c.blob for c in chunks[:-1])
    assert chunks[-1].blob == hashlib.sha256(body).digest()
    # remaining_bytes counts the backend bytes still to come (not the hash trailer).
    sent = 0
    for c in chunks[:-1]:
        sent += len(c.blob)
        assert c.remaining_bytes == len(body) - sent
    check_header_or_empty(client, chunks[0].header)


def test_auth_disabled(client: Client) -> None:
    """With auth never set up: no users, no roles, enabling needs a root user."""
    a = client.auth
    st = a.AuthStatus(rpc_pb2.AuthStatusRequest(), timeout=10)
    check_header(st.header)
    assert (st.enabled, st.authRevision) == (False, 1)
    check_header(a.AuthDisable(rpc_pb2.AuthDisableRequest(), timeout=10).header)
    users = a.UserList(rpc_pb2.AuthUserListRequest(), timeout=10)
    roles = a.RoleList(rpc_pb2.AuthRoleListRequest(), timeout=10)
    check_header(users.header)
    assert not users.users and not roles.roles
    fp = SC.FAILED_PRECONDITION
    calls: list[tuple[Any, Any, tuple[grpc.StatusCode, str]]] = [
        (a.AuthEnable, rpc_pb2.AuthEnableRequest(), (fp, "etcdserver: root user does not exist")),
        (
            a.Authenticate,
            rpc_pb2.AuthenticateRequest(name="root", password="pw"),
            (fp, "etcdserver: authentication is not enabled"),
        ),
        (
            a.UserGet,
            rpc_pb2.AuthUserGetRequest(name="bob"),
            (fp, "etcdserver: user name not found"),
        ),
        (
            a.UserGrantRole,
            rpc_pb2.AuthUserGrantRoleRequest(user="bob", role="r"),
            (fp, "etcdserver: user name not found"),
        ),
        (a.RoleGet, rpc_pb2.AuthRoleGetRequest(role="r"), (fp, "etcdserver: role name not found")),
        (
            a.RoleDelete,
            rpc_pb2.AuthRoleDeleteRequest(role="r"),
            (fp, "etcdserver: role name not found"),
        ),
        (
            a.UserAdd,
            rpc_pb2.AuthUserAddRequest(name=""),
            (SC.INVALID_ARGUMENT, "etcdserver: user name is empty"),
        ),
        (
            a.RoleAdd,
            rpc_pb2.AuthRoleAddRequest(name=""),
            (SC.INVALID_ARGUMENT, "etcdserver: role name is empty"),
        ),
    ]
    for method, req, expected in calls:
        assert rpc_error(lambda m=method, r=req: m(r, timeout=10)) == expected, req


def test_health_service(client: Client) -> None:
    r = client.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert r.status == health_pb2.HealthCheckResponse.SERVING


def lock_and_election(client: Client) -> None:
    """v3lock.Lock/Unlock and v3election Campaign/Leader/Resign, one round each."""
    g = client.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=30), timeout=10)
    lk = client.lock.Lock(v3lock_pb2.LockRequest(name=b"glock", lease=g.ID), timeout=10)
    assert lk.key.startswith(b"glock/")
    check_header(lk.header)
    client.lock.Unlock(v3lock_pb2.UnlockRequest(key=lk.key), timeout=10)
    c = client.election.Campaign(
        v3election_pb2.CampaignRequest(name=b"gelect", lease=g.ID, value=b"me"), timeout=10
    )
    leader = client.election.Leader(v3election_pb2.LeaderRequest(name=b"gelect"), timeout=10)
    assert leader.kv.value == b"me" and leader.kv.key == c.leader.key
    client.election.Proclaim(
        v3election_pb2.ProclaimRequest(leader=c.leader, value=b"me2"), timeout=10
    )
    observed = client.election.Observe(v3election_pb2.LeaderRequest(name=b"gelect"), timeout=10)
    assert next(observed).kv.value == b"me2"
    observed.cancel()
    assert rpc_error(
        lambda: client.election.Proclaim(
            v3election_pb2.ProclaimRequest(
                leader=v3election_pb2.LeaderKey(name=b"gelect", key=b"gelect/0", rev=1, lease=g.ID),
                value=b"x",
            ),
            timeout=10,
        )
    ) == (SC.UNKNOWN, "election: not leader")
    client.election.Resign(v3election_pb2.ResignRequest(leader=c.leader), timeout=10)
    client.lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=g.ID), timeout=10)


def test_lock_and_election_services(client: Client) -> None:
    lock_and_election(client)
