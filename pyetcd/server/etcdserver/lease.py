"""The lease duties of a member: grant, revoke, keep-alive, time-to-live, and the
leader's expiry of leases and checkpoints of their remaining TTLs."""


from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Protocol

from prometheus_client import Counter

from pyetcd.pb import raft_internal_pb2, rpc_pb2
from pyetcd.server.auth.check import check_lease_time_to_live
from pyetcd.server.auth.store import AuthInfo

from .errors import ServerError
from .header import ResponseHeaders
from .leadership import Leadership
from .proposer import Proposer
from .read_index import ReadIndexer
from .stores import Stores

__all__ = ["ApplyWait", "LeaseServer"]


class ApplyWait(Protocol):
    """etcd's ApplyWait: what the leader does before it looks a lease up."""

    async def wait_committed_applied(self) -> None: ...


class LeaseServer:
    """etcd's lease API on one member."""

    def __init__(
        self,
        stores: Stores,
        proposer: Proposer,
        read_indexer: ReadIndexer,
        leadership: Leadership,
        headers: ResponseHeaders,
        apply_wait: ApplyWait,
        expired: Counter | None = None,
    ) -> None:
        """``expired``: counts the expired leases this member (as leader) revokes."""
        self.apply_wait = apply_wait
        self.expired = expired
        self.stores = stores
        self.proposer = proposer
        self.read_indexer = read_indexer
        self.leadership = leadership
        self.headers = headers
        self._background: set[asyncio.Future[None]] = set()

    async def lease_grant(
        self, req: rpc_pb2.LeaseGrantRequest, auth: AuthInfo | None = None
    ) -> rpc_pb2.LeaseGrantResponse:
        grant = rpc_pb2.LeaseGrantRequest(TTL=req.TTL, ID=req.ID or self.proposer.idgen.next())
        ttl = await self.proposer.propose(
            raft_internal_pb2.InternalRaftRequest(lease_grant=grant), auth
        )
        assert isinstance(ttl, int)
        return rpc_pb2.LeaseGrantResponse(header=self.headers.header(), ID=grant.ID, TTL=ttl)

    async def lease_revoke(
        self, req: rpc_pb2.LeaseRevokeRequest, auth: AuthInfo | None = None
    ) -> rpc_pb2.LeaseRevokeResponse:
        await self.proposer.propose(raft_internal_pb2.InternalRaftRequest(lease_revoke=req), auth)
        return rpc_pb2.LeaseRevokeResponse(header=self.headers.header())

    async def lease_renew(self, lease_id: int) -> int:
        """KeepAlive: the new TTL, or raises the lessor's errors."""
        await self.leadership.wait_leader()
        if self.leadership.is_leader:
            # etcd 3.5.3 (#13932): a grant committed but not applied yet is found, not
            # answered TTL 0, so the leader applies what it knows committed first
            await self.apply_wait.wait_committed_applied()
        return self.stores.lessor.renew(lease_id)

    async def lease_time_to_live(
        self, req: rpc_pb2.LeaseTimeToLiveRequest, auth: AuthInfo | None = None
    ) -> rpc_pb2.LeaseTimeToLiveResponse:
        await self.read_indexer.wait_linearizable()
        ttl = self.stores.lessor.time_to_live(req.ID)
        if req.keys:
            # READ on every key listed (etcd 3.5.9, CVE-2023-32082)
            check_lease_time_to_live(self.stores.auth, auth, ttl[2] if ttl else ())
        header = self.headers.header()
        if ttl is None:
            return rpc_pb2.LeaseTimeToLiveResponse(header=header, ID=req.ID, TTL=-1)
        remaining, granted, keys = ttl
        resp = rpc_pb2.LeaseTimeToLiveResponse(
            header=header, ID=req.ID, TTL=remaining, grantedTTL=granted
        )
        if req.keys:
            resp.keys.extend(keys)
        return resp

    async def lease_leases(self) -> rpc_pb2.LeaseLeasesResponse:
        await self.read_indexer.wait_linearizable()
        resp = rpc_pb2.LeaseLeasesResponse(header=self.headers.header())
        # The lessor lists leases soonest expiry first, as etcd's LeaseLeases does.
        for lease in self.stores.lessor.leases():
            resp.leases.add(ID=lease.id)
        return resp

    # -- the leader's duties ------------------------------------------------------------------

    async def run_expiry(self) -> None:
        """On the leader: revoke expired leases, checkpoint remaining TTLs."""
        while True:
            await asyncio.sleep(0.5)
            await self.expire_once()

    async def expire_once(self) -> None:
        """One pass of ``run_expiry``."""
        if not self.leadership.is_leader:
            return
        lessor = self.stores.lessor
        expired = lessor.expired_leases()
        # etcd 3.5.13 (#17425): a leader cut off from the others still thinks it leads
        # and its leases look expired (nobody could reach it to renew them); its
        # revocations would be forwarded to the real leader once it rejoins. So it first
        # confirms with a quorum that it still leads, as etcd's ensureLeadership.
        if expired and await self._still_leader():
            for lease_id in expired:
                if self.expired is not None:
                    self.expired.inc()
                req = raft_internal_pb2.InternalRaftRequest(
                    lease_revoke=rpc_pb2.LeaseRevokeRequest(ID=lease_id)
                )
                # An expired lease is revoked as root (etcd's WithRoot), whatever its keys.
                self._spawn_quiet(self.proposer.propose(req, self.stores.root_auth()))
        if self.leadership.is_leader:
            cps = lessor.due_checkpoints()
            if cps:
                req = raft_internal_pb2.InternalRaftRequest()
                for lease_id, remaining in cps:
                    req.lease_checkpoint.checkpoints.add(ID=lease_id, remaining_TTL=remaining)
                self._spawn_quiet(self.proposer.propose(req))

    async def _still_leader(self) -> bool:
        # a read index confirmed by a quorum, and this member still the leader after it
        # (the read index round times out by itself after the request timeout)
        try:
            await self.read_indexer.wait_linearizable()
        except ServerError:
            return False
        return self.leadership.is_leader

    def _spawn_quiet(self, coro: Awaitable[object]) -> None:
        async def run() -> None:
            with contextlib.suppress(Exception):
                await coro

        task = asyncio.ensure_future(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
