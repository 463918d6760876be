"""v3lock and v3election over gRPC (and the gateway), checked against etcd 3.5.1's
observed behaviour: key shapes, header revisions, blocking order, error texts."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator

import grpc
import pytest

from pyetcd.pb import (
    rpc_pb2,
    rpc_pb2_grpc,
    v3election_pb2,
    v3election_pb2_grpc,
    v3lock_pb2,
    v3lock_pb2_grpc,
)

from .conftest import LiveMember, http


class Clients:
    def __init__(self, ch: grpc.aio.Channel) -> None:
        self.kv = rpc_pb2_grpc.KVStub(ch)
        self.lease = rpc_pb2_grpc.LeaseStub(ch)
        self.lock = v3lock_pb2_grpc.LockStub(ch)
        self.election = v3election_pb2_grpc.ElectionStub(ch)

    async def grant(self, ttl: int = 30) -> int:
        return int((await self.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=ttl))).ID)

    async def exists(self, key: bytes) -> bool:
        return bool((await self.kv.Range(rpc_pb2.RangeRequest(key=key))).kvs)


@pytest.fixture
async def c(member: LiveMember) -> AsyncIterator[Clients]:
    async with grpc.aio.insecure_channel(member.target) as ch:
        yield Clients(ch)


async def unknown_error(call: object) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    assert info.value.code() == grpc.StatusCode.UNKNOWN
    return str(info.value.details())


async def test_lock_uncontended(c: Clients) -> None:
    lease = await c.grant()
    r = await c.lock.Lock(v3lock_pb2.LockRequest(name=b"mylock", lease=lease))
    assert r.key == b"mylock/%x" % lease
    kv = (await c.kv.Range(rpc_pb2.RangeRequest(key=r.key))).kvs[0]
    assert (kv.lease, kv.value, kv.create_revision) == (lease, b"", r.header.revision)
    # The same lease locking again finds its key and holds the lock already.
    again = await c.lock.Lock(v3lock_pb2.LockRequest(name=b"mylock", lease=lease))
    assert (again.key, again.header.revision) == (r.key, r.header.revision)
    u = await c.lock.Unlock(v3lock_pb2.UnlockRequest(key=r.key))
    assert u.header.revision == r.header.revision + 1
    assert not await c.exists(r.key)
    # Unlocking a key that does not exist succeeds; an empty key does not.
    await c.lock.Unlock(v3lock_pb2.UnlockRequest(key=b"nokey"))
    err = await unknown_error(c.lock.Unlock(v3lock_pb2.UnlockRequest(key=b"")))
    assert err == "etcdserver: key is not provided"
    err = await unknown_error(c.lock.Lock(v3lock_pb2.LockRequest(name=b"x", lease=12345)))
    assert err == "etcdserver: requested lease not found"


async def test_lock_waits_for_the_holder(c: Clients) -> None:
    l1, l2, l3 = await c.grant(), await c.grant(), await c.grant()
    first = await c.lock.Lock(v3lock_pb2.LockRequest(name=b"q", lease=l1))
    second = asyncio.ensure_future(c.lock.Lock(v3lock_pb2.LockRequest(name=b"q", lease=l2)))
    third = asyncio.ensure_future(c.lock.Lock(v3lock_pb2.LockRequest(name=b"q", lease=l3)))
    # Both wait with their keys in place, queued by create revision.
    while not (await c.exists(b"q/%x" % l2) and await c.exists(b"q/%x" % l3)):
        await asyncio.sleep(0.01)
    assert not second.done() and not third.done()
    u = await c.lock.Unlock(v3lock_pb2.UnlockRequest(key=first.key))
    r2 = await asyncio.wait_for(second, 10)
    assert r2.key == b"q/%x" % l2 and r2.header.revision >= u.header.revision
    assert not third.done()
    # Revoking the holder's lease (a crashed holder) releases the lock too.
    await c.lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=l2))
    r3 = await asyncio.wait_for(third, 10)
    assert r3.key == b"q/%x" % l3


async def test_abandoned_lock_waiter_removes_its_key(c: Clients) -> None:
    l1, l2 = await c.grant(), await c.grant()
    await c.lock.Lock(v3lock_pb2.LockRequest(name=b"ab", lease=l1))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await c.lock.Lock(v3lock_pb2.LockRequest(name=b"ab", lease=l2), timeout=0.5)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    deadline = asyncio.get_running_loop().time() + 5
    while await c.exists(b"ab/%x" % l2):  # the clean-up runs after the client left
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)


async def test_election(c: Clients) -> None:
    el = c.election
    err = await unknown_error(el.Leader(v3election_pb2.LeaderRequest(name=b"e")))
    assert err == "election: no leader"
    l1, l2 = await c.grant(), await c.grant()
    r = await el.Campaign(v3election_pb2.CampaignRequest(name=b"e", lease=l1, value=b"v1"))
    leader = r.leader
    assert (leader.name, leader.key, leader.rev, leader.lease) == (
        b"e",
        b"e/%x" % l1,
        r.header.revision,
        l1,
    )
    got = await el.Leader(v3election_pb2.LeaderRequest(name=b"e"))
    assert (got.kv.key, got.kv.value, got.kv.lease) == (leader.key, b"v1", l1)
    # Campaigning again with a new value proclaims it; the answer keeps the first header.
    again = await el.Campaign(v3election_pb2.CampaignRequest(name=b"e", lease=l1, value=b"v2"))
    assert again.leader == leader and again.header.revision == r.header.revision
    p = await el.Proclaim(v3election_pb2.ProclaimRequest(leader=leader, value=b"v3"))
    got = await el.Leader(v3election_pb2.LeaderRequest(name=b"e"))
    assert (got.kv.value, got.kv.mod_revision) == (b"v3", p.header.revision)
    stale = v3election_pb2.LeaderKey(name=b"e", key=leader.key, rev=1, lease=l1)
    err = await unknown_error(el.Proclaim(v3election_pb2.ProclaimRequest(leader=stale, value=b"x")))
    assert err == "election: not leader"
    err = await unknown_error(el.Resign(v3election_pb2.ResignRequest()))
    assert err == '"leader" field must be provided'
    # A second candidate waits until the leader resigns.
    second = asyncio.ensure_future(
        el.Campaign(v3election_pb2.CampaignRequest(name=b"e", lease=l2, value=b"w"))
    )
    while not await c.exists(b"e/%x" % l2):
        await asyncio.sleep(0.01)
    assert not second.done()
    await el.Resign(v3election_pb2.ResignRequest(leader=stale))  # not the leader: no-op
    assert not second.done() and await c.exists(leader.key)
    await el.Resign(v3election_pb2.ResignRequest(leader=leader))
    r2 = await asyncio.wait_for(second, 10)
    assert r2.leader.key == b"e/%x" % l2
    got = await el.Leader(v3election_pb2.LeaderRequest(name=b"e"))
    assert got.kv.value == b"w"


async def test_observe(c: Clients) -> None:
    el = c.election
    l1, l2 = await c.grant(), await c.grant()
    stream = el.Observe(v3election_pb2.LeaderRequest(name=b"o"))
    seen: list[tuple[bytes, bytes, int]] = []

    async def collect() -> None:
        async for resp in stream:
            seen.append((resp.kv.key, resp.kv.value, resp.header.revision))
            if len(seen) == 3:
                return

    collector = asyncio.ensure_future(collect())
    await asyncio.sleep(0.1)  # let the observer start on an empty election
    a = await el.Campaign(v3election_pb2.CampaignRequest(name=b"o", lease=l1, value=b"a"))
    p = await el.Proclaim(v3election_pb2.ProclaimRequest(leader=a.leader, value=b"b"))
    await el.Resign(v3election_pb2.ResignRequest(leader=a.leader))
    c2 = await el.Campaign(v3election_pb2.CampaignRequest(name=b"o", lease=l2, value=b"c"))
    await asyncio.wait_for(collector, 10)
    stream.cancel()
    assert seen == [
        (b"o/%x" % l1, b"a", a.header.revision),
        (b"o/%x" % l1, b"b", p.header.revision),
        (b"o/%x" % l2, b"c", c2.header.revision),
    ]


async def test_lock_and_election_through_the_gateway(member: LiveMember) -> None:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    r = await http(member, "POST", "/v3/lock/lock", json.dumps({"name": b64(b"gw")}).encode())
    key = base64.b64decode(json.loads(r.body)["key"])
    assert r.status == 200 and key.startswith(b"gw/")
    r = await http(member, "POST", "/v3/election/leader", json.dumps({"name": b64(b"no")}).encode())
    assert (r.status, json.loads(r.body)) == (
        500,
        {"error": "election: no leader", "code": 2, "message": "election: no leader"},
    )
