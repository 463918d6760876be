"""EtcdServer's v3 API operations: KV, leases and maintenance, protobuf in and out."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from pyetcd import __version__
from pyetcd.mvcc import types as mt
from pyetcd.pb import raft_internal_pb2, rpc_pb2
from pyetcd.raft import NONE
from pyetcd.server.auth.check import check_lease_time_to_live, check_range, check_txn
from pyetcd.server.auth.store import AuthInfo
from pyetcd.server.etcdserver import pbconv, txn
from pyetcd.server.etcdserver.validate import (
    check_delete_request,
    check_put_request,
    check_range_request,
    check_txn_request,
)

from .errors import (
    BadLeaderTransfereeError,
    RequestTimeoutError,
)
from .membership import Member
from .state import ServerState

if TYPE_CHECKING:
    pass

__all__ = ["CLUSTER_VERSION", "SERVER_VERSION", "V3Ops"]

#: The etcd API version pyetcd implements, as /version and Status report it.
SERVER_VERSION = "3.5.1"
CLUSTER_VERSION = "3.5.0"


class V3Ops(ServerState):
    """Mixed into EtcdServer."""

    # -- KV --------------------------------------------------------------------------------------

    # ``auth``: who asks (None with auth disabled); reads are checked here, writes at apply.

    async def range(
        self, req: rpc_pb2.RangeRequest, auth: AuthInfo | None = None
    ) -> rpc_pb2.RangeResponse:
        r = pbconv.range_from_pb(req)
        check_range_request(r)
        if not req.serializable:
            await self.read_indexer.wait_linearizable()
        if self.auth_store.enabled:
            check_range(self.auth_store, auth, req)
        resp = pbconv.range_to_pb(txn.range_(self.store, r))
        self._fill(resp.header)
        return resp

    async def put(
        self, req: rpc_pb2.PutRequest, auth: AuthInfo | None = None
    ) -> rpc_pb2.PutResponse:
        check_put_request(pbconv.put_from_pb(req))
        result = await self.propose(raft_internal_pb2.InternalRaftRequest(put=req), auth)
        assert isinstance(result, mt.PutResponse)
        resp = pbconv.put_to_pb(result)
        self._fill(resp.header)
        return resp

    async def delete_range(
        self, req: rpc_pb2.DeleteRangeRequest, auth: AuthInfo | None = None
    ) -> rpc_pb2.DeleteRangeResponse:
        check_delete_request(pbconv.delete_range_from_pb(req))
        result = await self.propose(raft_internal_pb2.InternalRaftRequest(delete_range=req), auth)
        assert isinstance(result, mt.DeleteRangeResponse)
        resp = pbconv.delete_range_to_pb(result)
        self._fill(resp.header)
        return resp

    async def txn(
        self, req: rpc_pb2.TxnRequest, auth: AuthInfo | None = None
    ) -> rpc_pb2.TxnResponse:
        t = pbconv.txn_from_pb(req)
        check_txn_request(t, self.cfg.max_txn_ops)
        if _txn_read_only(req):
            # A read-only txn is a read: linearizable through ReadIndex, not the log.
            await self.read_indexer.wait_linearizable()
            if self.auth_store.enabled:
                check_txn(self.auth_store, auth, req)
            result: object = txn.txn(self.store, t)
        else:
            result = await self.propose(raft_internal_pb2.InternalRaftRequest(txn=req), auth)
        assert isinstance(result, mt.TxnResponse)
        resp = pbconv.txn_to_pb(result)
        self._fill(resp.header)
        return resp

    async def compact(
        self, req: rpc_pb2.CompactionRequest, auth: AuthInfo | None = None
    ) -> rpc_pb2.CompactionResponse:
        result = await self.propose(raft_internal_pb2.InternalRaftRequest(compaction=req), auth)
        assert isinstance(result, mt.CompactionResponse)
        return rpc_pb2.CompactionResponse(header=self.header(result.header.revision))

    # -- leases -----------------------------------------------------------------------------------

    async def lease_grant(
        self, req: rpc_pb2.LeaseGrantRequest, auth: AuthInfo | None = None
    ) -> rpc_pb2.LeaseGrantResponse:
        grant = rpc_pb2.LeaseGrantRequest(TTL=req.TTL, ID=req.ID or self.idgen.next())
        ttl = await self.propose(raft_internal_pb2.InternalRaftRequest(lease_grant=grant), auth)
        assert isinstance(ttl, int)
        return rpc_pb2.LeaseGrantResponse(header=self.header(), ID=grant.ID, TTL=ttl)

    async def lease_revoke(
        self, req: rpc_pb2.LeaseRevokeRequest, auth: AuthInfo | None = None
    ) -> rpc_pb2.LeaseRevokeResponse:
        await self.propose(raft_internal_pb2.InternalRaftRequest(lease_revoke=req), auth)
        return rpc_pb2.LeaseRevokeResponse(header=self.header())

    async def lease_renew(self, lease_id: int) -> int:
        """KeepAlive: the new TTL, or raises the lessor's errors."""
        await self.wait_leader()
        return self.lessor.renew(lease_id)

    async def lease_time_to_live(
        self, req: rpc_pb2.LeaseTimeToLiveRequest, auth: AuthInfo | None = None
    ) -> rpc_pb2.LeaseTimeToLiveResponse:
        await self.read_indexer.wait_linearizable()
        ttl = self.lessor.time_to_live(req.ID)
        if self.auth_store.enabled:
            # READ on every attached key, whether or not the keys are asked for
            # (etcd's fix for CVE-2023-32082).
            check_lease_time_to_live(self.auth_store, auth, ttl[2] if ttl else ())
        if ttl is None:
            return rpc_pb2.LeaseTimeToLiveResponse(header=self.header(), ID=req.ID, TTL=-1)
        remaining, granted, keys = ttl
        resp = rpc_pb2.LeaseTimeToLiveResponse(
            header=self.header(), ID=req.ID, TTL=remaining, grantedTTL=granted
        )
        if req.keys:
            resp.keys.extend(keys)
        return resp

    async def lease_leases(self) -> rpc_pb2.LeaseLeasesResponse:
        await self.read_indexer.wait_linearizable()
        resp = rpc_pb2.LeaseLeasesResponse(header=self.header())
        # The lessor lists leases soonest expiry first, as etcd's LeaseLeases does.
        for lease in self.lessor.leases():
            resp.leases.add(ID=lease.id)
        return resp

    # -- cluster & maintenance ---------------------------------------------------------------------

    def member_list(self) -> list[Member]:
        return self.membership.sorted()

    async def alarm(self, req: rpc_pb2.AlarmRequest) -> rpc_pb2.AlarmResponse:
        if req.action == rpc_pb2.AlarmRequest.GET:
            active = sorted(self.applier.alarms)
        else:
            result = await self.propose(raft_internal_pb2.InternalRaftRequest(alarm=req))
            assert isinstance(result, list)
            active = result
        resp = rpc_pb2.AlarmResponse(header=self.header())
        for member_id, alarm in active:
            if req.action == rpc_pb2.AlarmRequest.GET and req.memberID not in (0, member_id):
                continue
            resp.alarms.add(memberID=member_id, alarm=alarm)
        return resp

    def status(self) -> rpc_pb2.StatusResponse:
        log = self.raft.rawnode.raft.raft_log
        # As etcd: the member list says whether we are a learner. A member that just
        # joined knows it from the cluster's /members before its Raft log catches up.
        me = self.membership.members.get(self.member_id)
        learner = me.is_learner if me is not None else self.joined_as_learner
        resp = rpc_pb2.StatusResponse(
            header=self.header(),
            version=SERVER_VERSION,
            dbSize=self.store.db_size,
            leader=self.raft.lead,
            raftIndex=log.committed,
            raftTerm=self.raft.term,
            raftAppliedIndex=self.raft.applied_index,
            dbSizeInUse=self.store.db_size_in_use,
            isLearner=learner,
        )
        if self.raft.lead == NONE:
            resp.errors.append("etcdserver: no leader")
        for _, alarm in sorted(self.applier.alarms):
            resp.errors.append(f"memberID:{self.member_id} alarm:{rpc_pb2.AlarmType.Name(alarm)} ")
        return resp

    async def defragment(self) -> None:
        self.store.defragment()

    def hash(self) -> int:
        return self.store.hash()

    def hash_kv(self, revision: int) -> tuple[int, int, int]:
        return self.store.hash_kv(revision)

    async def move_leader(self, target: int) -> None:
        if target not in self.membership.members or self.membership.members[target].is_learner:
            raise BadLeaderTransfereeError()
        if target == self.raft.lead:
            return
        self.raft.transfer_leader(target)
        deadline = time.monotonic() + self.request_timeout
        while self.raft.lead != target:
            if time.monotonic() > deadline:
                raise RequestTimeoutError()
            await asyncio.sleep(self.heartbeat)

    def version(self) -> dict[str, str]:
        return {"etcdserver": SERVER_VERSION, "etcdcluster": CLUSTER_VERSION, "pyetcd": __version__}


def _txn_read_only(req: rpc_pb2.TxnRequest) -> bool:
    for op in (*req.success, *req.failure):
        which = op.WhichOneof("request")
        if which == "request_range":
            continue
        if which == "request_txn" and _txn_read_only(op.request_txn):
            continue
        return False
    return True
