"""Leader-only calls made on a follower: LeaseKeepAlive, LeaseTimeToLive and
MemberPromote reach the leader over the peer port and come back with its answer (and
the leader counts the promotions, etcd_server_learner_promote_*).

A follower's own lessor does not know remaining TTLs (it would answer an enormous
one), so a TTL at or below the granted one shows that the leader answered.
"""

from __future__ import annotations

import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pyetcd.pb import rpc_pb2
from tests.framework import Cluster, Member, free_ports, wait_until

TTL = 30  # long enough that nothing expires during the test


def _followers(cluster: Cluster) -> tuple[Member, Member]:
    leader = cluster.wait_leader()
    a, b = (m for m in cluster.members if m is not leader)
    return a, b


def test_lease_calls_through_a_follower(cluster: Cluster) -> None:
    follower, _ = _followers(cluster)
    lease = follower.lease()
    lease_id = int(lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=TTL), timeout=5).ID)
    follower.kv().Put(rpc_pb2.PutRequest(key=b"fw/k", value=b"v", lease=lease_id), timeout=5)

    ttl = lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=lease_id, keys=True), timeout=5)
    assert 0 < ttl.TTL <= TTL and ttl.grantedTTL == TTL
    assert list(ttl.keys) == [b"fw/k"]
    assert ttl.header.member_id == cluster.member_id(follower)
    no_keys = lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=lease_id), timeout=5)
    assert list(no_keys.keys) == [] and 0 < no_keys.TTL <= TTL

    requests = [rpc_pb2.LeaseKeepAliveRequest(ID=i) for i in (lease_id, lease_id + 1, lease_id)]
    got = [(r.ID, r.TTL) for r in lease.LeaseKeepAlive(iter(requests), timeout=10)]
    # an unknown lease renews to TTL 0 (etcd's answer, not an error)
    assert got == [(lease_id, TTL), (lease_id + 1, 0), (lease_id, TTL)]

    unknown = lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=lease_id + 1), timeout=5)
    assert unknown.TTL == -1


def _add_learner(cluster: Cluster, via: Member) -> tuple[Member, int]:
    client_port, peer_port = free_ports(2)
    m = cluster.new_member("infra4", client_port, peer_port)

    def added() -> int | None:
        try:
            resp = via.cluster().MemberAdd(
                rpc_pb2.MemberAddRequest(peerURLs=[m.peer_url], isLearner=True), timeout=5
            )
        except grpc.RpcError as err:
            # etcd refuses reconfiguration for a few seconds after start
            if "unhealthy cluster" in str(err.details()):
                return None
            raise
        return int(resp.member.ID)

    return m, wait_until("learner added", added, 15, step=0.2)


def _promote_error(m: Member, member_id: int) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        m.cluster().MemberPromote(rpc_pb2.MemberPromoteRequest(ID=member_id), timeout=10)
    return err.value


def _promotions(m: Member) -> dict[str, float]:
    """The member's learner promotion counts: "ok", and each failure's reason."""
    with urllib.request.urlopen(f"http://{m.endpoint}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for f in text_string_to_metric_families(text):
        for s in f.samples:
            if s.name == "etcd_server_learner_promote_successes_total" or (
                s.name == "etcd_server_learner_promote_successes"  # etcd's name: no _total
            ):
                out["ok"] = s.value
            elif f.name == "etcd_server_learner_promote_failures":
                out[s.labels["Reason"]] = s.value
    return out


def test_member_promote_through_a_follower(cluster: Cluster) -> None:
    leader = cluster.wait_leader()
    follower, _ = _followers(cluster)
    m4, new_id = _add_learner(cluster, follower)

    # not started: only the leader can tell it has not caught up
    err = _promote_error(follower, new_id)
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.details() == (
        "etcdserver: can only promote a learner member which is in sync with leader"
    )
    voter = _promote_error(follower, cluster.member_id(follower))
    assert voter.details() == "etcdserver: can only promote a learner member"

    initial = f"{cluster.initial_cluster},{m4.name}={m4.peer_url}"
    cluster.members.append(m4)  # so that the cluster's teardown kills it
    m4.initial_cluster, m4.initial_cluster_state = initial, "existing"
    m4.start()

    def promoted() -> rpc_pb2.MemberPromoteResponse | None:
        try:
            resp: rpc_pb2.MemberPromoteResponse = follower.cluster().MemberPromote(
                rpc_pb2.MemberPromoteRequest(ID=new_id), timeout=10
            )
        except grpc.RpcError as e:
            assert "in sync with leader" in str(e.details()), e
            return None
        return resp

    resp = wait_until("learner promoted via a follower", promoted, 30, step=0.2)
    assert {m.ID: m.isLearner for m in resp.members}[new_id] is False
    assert resp.header.member_id == cluster.member_id(follower)

    # Counted once, where the promotion was decided (the success and the "not in
    # sync" failures on the leader), each failure by its error.
    not_ready = "etcdserver: can only promote a learner member which is in sync with leader"
    on_leader = _promotions(leader)
    assert on_leader["ok"] == 1 and on_leader[not_ready] >= 1
    total: dict[str, float] = {}
    for m in cluster.members[:3]:
        for reason, n in _promotions(m).items():
            total[reason] = total.get(reason, 0) + n
    assert total == {
        "ok": 1,
        not_ready: on_leader[not_ready],
        "membership: can only promote a learner member": 1,  # etcd's word for it
    }
