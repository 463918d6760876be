"""Leader failure under a stream of writes: kill -9, and SIGSTOP/SIGCONT."""

from __future__ import annotations

import time

import grpc

from pyetcd.pb import rpc_pb2
from tests.framework import Cluster, Member

from .client import Writer, increasing, missing_acked, put, wait_converged, wrong_revisions

# Writes that must be acknowledged after the failure before the test calls it "resumed".
RESUMED = 30
# What a request to a member that lost leadership may answer instead of data.
NOT_SERVED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def _check_acked_everywhere(members: list[Member], w: Writer) -> None:
    """Every acknowledged put is on every member, at the revision it was acked with."""
    assert w.acked
    assert increasing(list(w.revisions.values()))
    for m in members:
        assert missing_acked(m, "w/", w.acked, serializable=False) == [], m.name
        assert missing_acked(m, "w/", w.acked, serializable=True) == [], m.name
        assert wrong_revisions(m, "w/", w.revisions) == [], m.name


def test_kill_leader_under_writes(cluster: Cluster) -> None:
    leader = cluster.wait_leader()
    lead_id = cluster.member_id(leader)
    followers = [m for m in cluster.members if m is not leader]
    with Writer(followers) as w:
        w.wait_acks_after(0.0, RESUMED, timeout=10)
        t0 = time.monotonic()
        leader.kill()
        new_leader = cluster.wait_leader(followers, timeout=15, not_id=lead_id)
        w.wait_acks_after(t0, RESUMED, timeout=20)
    assert new_leader in followers
    _check_acked_everywhere(followers, w)

    cluster.restart(leader)
    cluster.wait_leader(timeout=20)
    wait_converged(cluster.members)
    _check_acked_everywhere(cluster.members, w)


def test_paused_leader_serves_no_stale_linearizable_read(cluster: Cluster) -> None:
    leader = cluster.wait_leader()
    lead_id = cluster.member_id(leader)
    st = leader.status()
    assert st is not None
    term_before = st.raftTerm
    followers = [m for m in cluster.members if m is not leader]
    put(leader, "x", "before-pause")
    # The leader's channel is connected now, so requests sent while it is paused sit
    # in its socket buffer and are the first things it reads when it wakes up.
    leader.kv().Range(rpc_pb2.RangeRequest(key=b"x"), timeout=2)

    leader.pause()
    cluster.wait_leader(followers, timeout=15, not_id=lead_id)
    with Writer(followers) as w:
        w.wait_acks_after(0.0, RESUMED, timeout=20)
    put(followers[0], "x", "while-paused")

    kv = leader.kv()
    read_x = kv.Range.future(rpc_pb2.RangeRequest(key=b"x"), timeout=5)
    read_w = kv.Range.future(rpc_pb2.RangeRequest(key=b"w/", range_end=b"w0"), timeout=5)
    # A write the old leader received while paused: it may fail, but if it is
    # acknowledged it must be in the new term's history on every member.
    put_y = kv.Put.future(rpc_pb2.PutRequest(key=b"y", value=b"to-old-leader"), timeout=5)
    leader.resume()

    try:
        resp = read_x.result()
    except grpc.RpcError as err:
        assert err.code() in NOT_SERVED, err
    else:
        assert [kv.value for kv in resp.kvs] == [b"while-paused"]
    try:
        resp = read_w.result()
    except grpc.RpcError as err:
        assert err.code() in NOT_SERVED, err
    else:
        have = {kv.key.decode(): kv.value.decode() for kv in resp.kvs}
        assert [k for k, v in w.acked.items() if have.get(k) != v] == []
    # A fresh linearizable read right after waking is fresh too.
    try:
        resp = kv.Range(rpc_pb2.RangeRequest(key=b"x"), timeout=5)
    except grpc.RpcError as err:
        assert err.code() in NOT_SERVED, err
    else:
        assert [kv.value for kv in resp.kvs] == [b"while-paused"]
    try:
        y_rev: int | None = int(put_y.result().header.revision)
    except grpc.RpcError:
        y_rev = None

    cluster.wait_leader(timeout=20)
    wait_converged(cluster.members)
    _check_acked_everywhere(cluster.members, w)
    for m in cluster.members:
        got = m.kv().Range(rpc_pb2.RangeRequest(key=b"y"), timeout=5)
        if y_rev is not None:
            assert [(kv.value, kv.mod_revision) for kv in got.kvs] == [(b"to-old-leader", y_rev)]
        st = m.status()
        assert st is not None and st.raftTerm > term_before


def test_paused_follower_reads_fresh_after_wakeup(cluster: Cluster) -> None:
    leader = cluster.wait_leader()
    follower = next(m for m in cluster.members if m is not leader)
    put(leader, "z", "before-pause")
    follower.kv().Range(rpc_pb2.RangeRequest(key=b"z"), timeout=2)
    follower.pause()
    put(leader, "z", "while-paused")
    read_z = follower.kv().Range.future(rpc_pb2.RangeRequest(key=b"z"), timeout=5)
    follower.resume()
    try:
        resp = read_z.result()
    except grpc.RpcError as err:
        assert err.code() in NOT_SERVED, err
    else:
        assert [kv.value for kv in resp.kvs] == [b"while-paused"]
    wait_converged(cluster.members)
