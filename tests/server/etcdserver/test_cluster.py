"""ClusterServer's strict reconfiguration check (etcd's mayAddMember/mayRemoveMember):
the decision table with a fake transport whose peers' active-since times are set by
hand (times are time.monotonic() values, as the real transport records them)."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest

from pyetcd.logutil import Level, Logger
from pyetcd.server.etcdserver.cluster import HEALTH_INTERVAL, ClusterServer
from pyetcd.server.etcdserver.errors import NotEnoughStartedMembersError, UnhealthyError
from pyetcd.server.etcdserver.membership import Member

SELF = 1
LONG_AGO = -3600.0  # connected an hour ago (relative to now)
JUST_NOW = -1.0  # connected a second ago: less than the health interval


class FakeTransport:
    def __init__(self, since: dict[int, float]) -> None:
        now = time.monotonic()
        self._since = {peer: now + ago for peer, ago in since.items()}

    def active_since(self, peer_id: int) -> float | None:
        return self._since.get(peer_id)


def server(members: list[Member], since: dict[int, float], strict: bool = True) -> ClusterServer:
    membership = SimpleNamespace(members={m.id: m for m in members})
    face: Any = SimpleNamespace(
        stores=SimpleNamespace(membership=membership),
        proposer=None,
        leadership=None,
        log=Logger([], Level.INFO),
    )
    return ClusterServer(
        SELF,
        face,
        FakeTransport(since),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        strict_reconfig_check=strict,
        heartbeat=0.1,
    )


def voter(i: int, started: bool = True) -> Member:
    return Member(i, f"m{i}" if started else "", (f"http://10.0.0.{i}:2380",))


def learner(i: int) -> Member:
    return Member(i, "", (f"http://10.0.0.{i}:2380",), (), True)


NEW_VOTER = Member(99, "", ("http://10.0.0.99:2380",))
NEW_LEARNER = Member(99, "", ("http://10.0.0.99:2380",), (), True)


def test_health_interval_is_etcds() -> None:
    assert HEALTH_INTERVAL == 5.0


def test_one_member_cluster_may_grow() -> None:
    server([voter(SELF)], {})._may_add(NEW_VOTER)


def test_add_needs_every_voter_connected_for_the_interval() -> None:
    members = [voter(SELF), voter(2), voter(3)]
    server(members, {2: LONG_AGO, 3: LONG_AGO})._may_add(NEW_VOTER)
    for since in ({2: LONG_AGO, 3: JUST_NOW}, {2: LONG_AGO}):
        with pytest.raises(UnhealthyError):
            server(members, since)._may_add(NEW_VOTER)
        with pytest.raises(UnhealthyError):  # learners too, as in etcd 3.5.1
            server(members, since)._may_add(NEW_LEARNER)
        server(members, since, strict=False)._may_add(NEW_VOTER)
    # a learner that is down does not count: only voters must be connected
    server([*members, learner(4)], {2: LONG_AGO, 3: LONG_AGO})._may_add(NEW_VOTER)


def test_add_counts_started_members_first() -> None:
    # {1, 2 started; 3, 4 added but never started} + a new voter: 2 of 5 started
    members = [voter(SELF), voter(2), voter(3, started=False), voter(4, started=False)]
    with pytest.raises(NotEnoughStartedMembersError):
        server(members, {2: LONG_AGO})._may_add(NEW_VOTER)
    # a learner does not change the quorum: only the connection check applies
    with pytest.raises(UnhealthyError):
        server(members, {2: LONG_AGO})._may_add(NEW_LEARNER)
    # {1, 2, 5 started; 3 never started} + a new voter: 3 of 5 started is a quorum,
    # but 3 is not connected: unhealthy
    with pytest.raises(UnhealthyError):
        server([*members[:3], voter(5)], {2: LONG_AGO, 5: LONG_AGO})._may_add(NEW_VOTER)


def test_remove() -> None:
    members = [voter(SELF), voter(2), voter(3)]
    healthy = {2: LONG_AGO, 3: LONG_AGO}
    server(members, healthy)._may_remove(members[2])
    # a member that is down is not in the active quorum: it may go at once
    server(members, {2: JUST_NOW})._may_remove(members[2])
    # removing an up member while the other peer is new: 1 of the 2 left connected
    with pytest.raises(UnhealthyError):
        server(members, {2: JUST_NOW, 3: LONG_AGO})._may_remove(members[2])
    server(members, {2: JUST_NOW, 3: LONG_AGO}, strict=False)._may_remove(members[2])
    # learners go freely
    server([*members, learner(4)], {4: JUST_NOW})._may_remove(learner(4))
    # {1, 2 started, 3 unstarted}: removing 2 leaves 1 started of 2
    members = [voter(SELF), voter(2), voter(3, started=False)]
    with pytest.raises(NotEnoughStartedMembersError):
        server(members, healthy)._may_remove(members[1])
