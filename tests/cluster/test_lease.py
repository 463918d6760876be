"""Leases across members: expiry survives a leader change; keep-alive via a follower."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest

from pyetcd.pb import rpc_pb2
from tests.framework import Cluster, Member, wait_until

from .client import get_prefix

TTL = 3  # seconds; etcd's minimum with the default election timeout is 2


def _grant_with_key(m: Member, key: str) -> int:
    lease_id = int(m.lease().LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=TTL), timeout=5).ID)
    m.kv().Put(rpc_pb2.PutRequest(key=key.encode(), value=b"v", lease=lease_id), timeout=5)
    return lease_id


def _has_key(m: Member, key: str) -> bool:
    return key in get_prefix(m, key)


def test_lease_expires_after_leader_killed(cluster: Cluster) -> None:
    leader = cluster.wait_leader()
    lead_id = cluster.member_id(leader)
    follower, other = (m for m in cluster.members if m is not leader)
    lease_id = _grant_with_key(follower, "lease/a")
    granted = time.monotonic()

    leader.kill()
    cluster.wait_leader([follower, other], timeout=15, not_id=lead_id)
    if time.monotonic() - granted < TTL - 0.5:
        # The lease must not have expired early on the way.
        assert _has_key(other, "lease/a")
    # The new leader extends every lease when it takes over (etcd's Promote), so
    # expiry comes at the latest TTL + election timeout after the election.
    wait_until("the lease's key deleted", lambda: not _has_key(other, "lease/a"), TTL + 10)
    assert time.monotonic() - granted >= TTL - 0.5
    assert not _has_key(follower, "lease/a")
    ttl = follower.lease().LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=lease_id), timeout=5)
    assert ttl.TTL == -1


def test_keepalive_through_follower_keeps_lease(cluster: Cluster) -> None:
    leader = cluster.wait_leader()
    follower = next(m for m in cluster.members if m is not leader)
    lease_id = _grant_with_key(follower, "lease/b")

    def requests() -> Iterator[rpc_pb2.LeaseKeepAliveRequest]:
        # Keep it alive for more than twice its TTL, renewing every TTL/3.
        for _ in range(7):
            yield rpc_pb2.LeaseKeepAliveRequest(ID=lease_id)
            time.sleep(TTL / 3)

    responses = follower.lease().LeaseKeepAlive(requests(), timeout=30)
    ttls = [int(r.TTL) for r in responses]
    assert ttls == [TTL] * 7
    assert _has_key(leader, "lease/b")
    assert _has_key(follower, "lease/b")
    left = follower.lease().LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=lease_id), timeout=5)
    assert 0 < left.TTL <= TTL

    wait_until("the lease's key deleted", lambda: not _has_key(leader, "lease/b"), TTL + 5)
    with pytest.raises(grpc.RpcError):
        follower.lease().LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=lease_id), timeout=5)
