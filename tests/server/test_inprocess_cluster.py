"""Three real EtcdServers in one process, joined by the in-memory transport.

Every wait is on an event (a leader known, an index applied, a snapshot transfer
recorded); faults come from the network's knobs, not from killing processes.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from pyetcd.config import ServerConfig
from pyetcd.logutil import Level, Logger
from pyetcd.pb import rpc_pb2
from pyetcd.raft import NONE, ConfChangeType, Message
from pyetcd.server.etcdserver import raft_node
from pyetcd.server.etcdserver.errors import MemberExistsError, TooManyLearnersError
from pyetcd.server.etcdserver.membership import Member
from pyetcd.server.etcdserver.server import EtcdServer
from pyetcd.server.etcdserver.transport import Transport, TransportParams
from pyetcd.server.rafthttp.memory import MemoryNetwork

# Small enough for fast elections, large enough that a busy machine keeps its leader.
HEARTBEAT_MS = 10
ELECTION_MS = 100
TIMEOUT = 20.0


class Receiver:
    """The ``Raft`` the memory transport delivers to: the server's inbox, and the
    server for the members removed from the cluster."""

    def __init__(self, params: TransportParams) -> None:
        self.step = params.receiver.step
        self.report_unreachable = params.receiver.report_unreachable
        self.report_snapshot = params.receiver.report_snapshot
        self.is_removed = params.removed.is_removed


def build_server(cfg: ServerConfig, logger: Logger, net: MemoryNetwork) -> EtcdServer:
    """A member as embed builds it, with the in-memory transport in place of TCP."""

    def transport(params: TransportParams) -> Transport:
        return net.transport(
            params.member_id,
            list(params.peers),
            Receiver(params),
            params.logger,
            open_snapshot_db=params.snapshots.open_snapshot_db,
            on_snapshot=params.snapshots.on_snapshot_received,
            snapshot_dir=params.snapshot_dir,
        )

    return EtcdServer(cfg, logger, transport_factory=transport)


@dataclass
class Cluster:
    net: MemoryNetwork
    servers: list[EtcdServer]
    logs: dict[int, io.StringIO] = field(default_factory=dict)

    async def leader(self) -> EtcdServer:
        """The leader, once every member knows one and they agree."""
        async with asyncio.timeout(TIMEOUT):
            await asyncio.gather(*(s.wait_leader() for s in self.servers))
        leads = {s.leader for s in self.servers}
        assert len(leads) == 1, leads
        return next(s for s in self.servers if s.member_id in leads)

    def others(self, server: EtcdServer) -> list[EtcdServer]:
        return [s for s in self.servers if s is not server]


MakeCluster = Callable[..., Awaitable[Cluster]]


@pytest.fixture
async def make_cluster(tmp_path: Path) -> AsyncIterator[MakeCluster]:
    started: list[EtcdServer] = []

    async def make(size: int = 3, **changes: object) -> Cluster:
        names = [f"infra{i + 1}" for i in range(size)]
        # Addresses from TEST-NET-1: nothing listens on them, nothing dials them.
        peer = {n: f"http://192.0.2.{i + 1}:2380" for i, n in enumerate(names)}
        initial = ",".join(f"{n}={u}" for n, u in peer.items())
        net = MemoryNetwork()
        cluster = Cluster(net, [])
        for i, name in enumerate(names):
            client = f"http://192.0.2.{i + 1}:2379"
            cfg = ServerConfig(
                name=name,
                data_dir=str(tmp_path / name),
                heartbeat_interval=HEARTBEAT_MS,
                election_timeout=ELECTION_MS,
                listen_peer_urls=(peer[name],),
                initial_advertise_peer_urls=(peer[name],),
                listen_client_urls=(client,),
                advertise_client_urls=(client,),
                initial_cluster=initial,
            ).replace(**changes)
            sink = io.StringIO()
            server = build_server(cfg, Logger([sink], Level.INFO), net)
            await server.start()
            started.append(server)
            cluster.servers.append(server)
            cluster.logs[server.member_id] = sink
        return cluster

    yield make
    for server in started:
        await server.stop()


async def put(server: EtcdServer, key: str, value: str) -> int:
    resp = await server.kv.put(rpc_pb2.PutRequest(key=key.encode(), value=value.encode()))
    return resp.header.revision


async def get(server: EtcdServer, key: str, serializable: bool = False) -> str | None:
    resp = await server.kv.range(rpc_pb2.RangeRequest(key=key.encode(), serializable=serializable))
    return resp.kvs[0].value.decode() if resp.kvs else None


async def new_leader(server: EtcdServer, old: int) -> int:
    """Wait until ``server`` follows a leader other than ``old``. A new leader commits
    an entry of its term as it takes over, so every apply is a moment to look again."""
    async with asyncio.timeout(TIMEOUT):
        while server.leader in (old, NONE):
            await server.applied_wait.wait(server.applied_wait.applied + 1)
    return server.leader


async def caught_up(server: EtcdServer, index: int) -> None:
    async with asyncio.timeout(TIMEOUT):
        await server.applied_wait.wait(index)


# -- tests --------------------------------------------------------------------------------------


async def test_elects_a_leader_and_replicates(make_cluster: MakeCluster) -> None:
    c = await make_cluster()
    leader = await c.leader()
    rev = await put(leader, "k", "v1")
    for f in c.others(leader):
        # Linearizable: the follower asks the leader for a read index and waits for it.
        assert await get(f, "k") == "v1"
        assert f.stores.kv.current_revision >= rev
    assert {s.cluster_id for s in c.servers} == {leader.cluster_id}
    assert len({s.member_id for s in c.servers}) == 3


async def test_isolated_leader_is_replaced_and_catches_up(make_cluster: MakeCluster) -> None:
    c = await make_cluster()
    old = await c.leader()
    await put(old, "before", "1")
    a, b = c.others(old)
    for f in (a, b):
        assert await get(f, "before") == "1"

    c.net.isolate(old.member_id)
    elected = await new_leader(a, old.member_id)
    assert elected in (a.member_id, b.member_id)
    leader = next(s for s in (a, b) if s.member_id == elected)
    assert leader.raft.term > old.raft.term  # pre-vote: the cut-off leader never bumped its term
    for i in range(10):
        await put(leader, f"during/{i}", str(i))
    assert await get(a if leader is b else b, "during/9") == "9"
    # Cut off, the old leader has none of it.
    assert await get(old, "during/0", serializable=True) is None

    c.net.heal()
    await caught_up(old, leader.applied_wait.applied)
    assert await get(old, "during/9", serializable=True) == "9"
    assert old.leader == leader.member_id and not old.is_leader
    await put(leader, "after", "x")
    assert await get(old, "after") == "x"


async def test_partitioned_minority_cannot_write_majority_can(make_cluster: MakeCluster) -> None:
    c = await make_cluster()
    leader = await c.leader()
    a, b = c.others(leader)
    c.net.partition([leader.member_id, a.member_id], [b.member_id])
    await put(leader, "k", "majority")
    assert await get(a, "k") == "majority"
    assert await get(b, "k", serializable=True) is None
    c.net.heal()
    await caught_up(b, leader.applied_wait.applied)
    assert await get(b, "k", serializable=True) == "majority"


async def test_lagging_member_catches_up_through_snapshot(
    make_cluster: MakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # etcd keeps 5000 entries behind a snapshot for slow followers; keep 20 here, so
    # that a few hundred writes leave the lagging member behind the leader's log.
    monkeypatch.setattr(raft_node, "SNAPSHOT_CATCHUP_ENTRIES", 20)
    c = await make_cluster(snapshot_count=50)
    leader = await c.leader()
    lagging = c.others(leader)[0]
    await put(leader, "s/first", "0")
    assert await get(lagging, "s/first") == "0"

    c.net.isolate(lagging.member_id)
    keys = 300
    for start in range(0, keys, 50):
        await asyncio.gather(
            *(put(leader, f"s/{i:04d}", f"v{i}") for i in range(start, start + 50))
        )
    assert leader.storage.first_index() > lagging.applied_wait.applied + 1
    assert await get(lagging, "s/0000", serializable=True) is None

    c.net.heal()
    rec = await asyncio.wait_for(
        c.net.wait_snapshot(lambda r: r.to == lagging.member_id and r.ok), TIMEOUT
    )
    assert rec.frm == leader.member_id
    # A write after the restore reaches it through the log again; once it is applied
    # there, everything before it is too.
    await put(leader, "s/after", "x")
    await caught_up(lagging, leader.applied_wait.applied)
    req = rpc_pb2.RangeRequest(key=b"s/", range_end=b"s0", serializable=True)
    resp = await lagging.kv.range(req)
    values = {kv.key.decode(): kv.value.decode() for kv in resp.kvs}
    assert len(values) == keys + 2
    assert values["s/0299"] == "v299" and values["s/after"] == "x"
    assert "restored backend from snapshot" in c.logs[lagging.member_id].getvalue()
    assert await get(lagging, "s/0000") == "v0"


async def test_snapshot_restore_advances_applied_wait(
    make_cluster: MakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(raft_node, "SNAPSHOT_CATCHUP_ENTRIES", 20)
    c = await make_cluster(snapshot_count=50)
    leader = await c.leader()
    lagging = c.others(leader)[0]
    c.net.isolate(lagging.member_id)
    await asyncio.gather(*(put(leader, f"s/{i:04d}", "v") for i in range(150)))
    c.net.heal()
    rec = await asyncio.wait_for(
        c.net.wait_snapshot(lambda r: r.to == lagging.member_id and r.ok), TIMEOUT
    )
    # No write follows: the snapshot alone must bring the applied index up.
    await asyncio.wait_for(lagging.applied_wait.wait(rec.index), 3.0)
    assert await get(lagging, "s/0149") == "v"


async def test_lost_messages_are_resent(make_cluster: MakeCluster) -> None:
    c = await make_cluster()
    leader = await c.leader()
    f = c.others(leader)[0]
    # Lose every other append to one follower: the leader's probes and retries fill
    # the gaps.
    seen = [0]

    def every_other_append(m: Message) -> bool:
        if m.to != f.member_id or m.type.name != "APP":
            return False
        seen[0] += 1
        return seen[0] % 2 == 1

    c.net.drop_if(every_other_append)
    for i in range(20):
        await put(leader, f"lossy/{i}", str(i))
    await caught_up(f, leader.applied_wait.applied)
    assert await get(f, "lossy/19", serializable=True) == "19"
    assert seen[0] > 0


async def test_commit_index_rides_on_the_next_append(make_cluster: MakeCluster) -> None:
    """Sequential puts: a follower learns each put's commit with the next put's append,
    not from a commit-only MsgApp of its own (raft_node's CommitNotices). With the
    notices' timer out of the way, an empty append can only go out taken along by a
    heartbeat, so there are at most as many as heartbeats; before, one per put."""
    c = await make_cluster()
    leader = await c.leader()
    leader.raft._notices._delay = 3600.0  # only heartbeats take held notices along
    followers = {f.member_id for f in c.others(leader)}
    empty = dict.fromkeys(followers, 0)
    beats = dict.fromkeys(followers, 0)
    appends = dict.fromkeys(followers, 0)

    def observe(m: Message) -> bool:
        if m.frm == leader.member_id and m.to in followers:
            if m.type.name == "HEARTBEAT":
                beats[m.to] += 1
            elif m.type.name == "APP":
                (appends if m.entries else empty)[m.to] += 1
        return False  # lose nothing

    c.net.drop_if(observe)
    puts = 30
    for i in range(puts):
        await put(leader, f"seq/{i}", str(i))
    for f in c.others(leader):
        assert appends[f.member_id] >= puts
        assert empty[f.member_id] <= beats[f.member_id], (empty, beats)
        # ...and the last put's commit still reaches it, with a heartbeat.
        await caught_up(f, leader.applied_wait.applied)
    print(f"{puts} puts: empty appends {empty}, heartbeats {beats}")


async def test_membership_changes_checked_at_apply(make_cluster: MakeCluster) -> None:
    c = await make_cluster()
    leader = await c.leader()
    learner = Member(0x99, "", ("http://192.0.2.99:2380",), (), True)
    await leader.proposer.propose_conf_change(ConfChangeType.ADD_LEARNER_NODE, learner)
    # etcd 3.5 allows one learner
    second = Member(0x98, "", ("http://192.0.2.98:2380",), (), True)
    with pytest.raises(TooManyLearnersError):
        await leader.proposer.propose_conf_change(ConfChangeType.ADD_LEARNER_NODE, second)
    # a new voter that got the learner's ID (same URLs, same second) is a duplicate,
    # not a promotion of the learner
    with pytest.raises(MemberExistsError):
        await leader.proposer.propose_conf_change(
            ConfChangeType.ADD_NODE, replace(learner, is_learner=False)
        )
    assert leader.stores.membership.members[0x99].is_learner
    for s in c.servers:
        await caught_up(s, leader.applied_wait.applied)
        added = [
            rec
            for rec in map(json.loads, c.logs[s.member_id].getvalue().splitlines())
            if rec["msg"] == "added member" and rec["added-peer-id"] == "99"
        ]
        assert len(added) == 1, added
        assert added[0]["local-member-id"] == f"{s.member_id:x}"
        assert added[0]["added-peer-peer-urls"] == ["http://192.0.2.99:2380"]


class ShiftedClock:
    """The monotonic clock plus an offset a test moves forward (the lessors' time)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


async def _lease_across_leader_change(
    c: Cluster, checkpointed: bool
) -> tuple[rpc_pb2.LeaseTimeToLiveResponse, list[EtcdServer]]:
    """Grant a 1000 s lease, let 301 s pass on the lessors' clock (etcd's checkpoint
    interval is 5 minutes), move the leadership, and ask the new leader its TTL."""
    leader = await c.leader()
    clock = ShiftedClock()
    for s in c.servers:
        s.stores.lessor.clock = clock
    grant = await leader.lease.lease_grant(rpc_pb2.LeaseGrantRequest(TTL=1000))
    clock.offset += 301
    if checkpointed:
        # the leader's expiry loop proposes the checkpoint; every member applies it
        async with asyncio.timeout(TIMEOUT):
            for s in c.servers:
                while (lease := s.stores.lessor.lookup(grant.ID)) and lease.remaining_ttl == 0:
                    await s.applied_wait.wait(s.applied_wait.applied + 1)
    target = c.others(leader)[0]
    await leader.cluster.move_leader(target.member_id)
    async with asyncio.timeout(TIMEOUT):
        await target.wait_leader()
    assert target.is_leader
    ttl = await target.lease.lease_time_to_live(rpc_pb2.LeaseTimeToLiveRequest(ID=grant.ID))
    assert ttl.grantedTTL == 1000
    return ttl, c.servers


@pytest.mark.parametrize("persist", [False, True])
async def test_lease_checkpoint_keeps_remaining_ttl_across_leader_change(
    make_cluster: MakeCluster, persist: bool
) -> None:
    """--experimental-enable-lease-checkpoint: the new leader resumes from the remaining
    TTL the old one checkpointed through Raft (699 s + the election timeout), not from
    the full 1000 s; with -persist the remainder is in every member's lease record."""
    c = await make_cluster(
        experimental_enable_lease_checkpoint=True,
        experimental_enable_lease_checkpoint_persist=persist,
    )
    ttl, servers = await _lease_across_leader_change(c, checkpointed=True)
    assert 690 <= ttl.TTL <= 700, ttl
    # 699 unless the loop was a second late to checkpoint
    leases = [s.stores.lessor.lookup(ttl.ID) for s in servers]
    remaining = {lease.remaining_ttl for lease in leases if lease is not None}
    assert None not in leases and len(remaining) == 1 and 690 <= min(remaining) <= 699
    for s in servers:
        s.stores.kv.commit()
        assert s.stores.kv.backend.leases() == [(ttl.ID, 1000, min(remaining) if persist else 0)]


async def test_without_lease_checkpoint_a_new_leader_resets_the_ttl(
    make_cluster: MakeCluster,
) -> None:
    """etcd's default: no checkpoints, so a new leader gives every lease its full TTL."""
    c = await make_cluster()
    ttl, servers = await _lease_across_leader_change(c, checkpointed=False)
    assert ttl.TTL >= 999, ttl
    for s in servers:
        lease = s.stores.lessor.lookup(ttl.ID)
        assert lease is not None and lease.remaining_ttl == 0
