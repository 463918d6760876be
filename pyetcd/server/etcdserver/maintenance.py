"""The maintenance duties of a member: status, alarms, hashes, defragmentation."""

from __future__ import annotations

from pyetcd import __version__
from pyetcd.pb import raft_internal_pb2, rpc_pb2
from pyetcd.raft import NONE, RawNode

from .events import NO_EVENTS, EventRecorder
from .header import ResponseHeaders
from .leadership import Leadership
from .proposer import Proposer
from .stores import Stores
from .wait import AppliedIndex

__all__ = ["CLUSTER_VERSION", "SERVER_VERSION", "MaintenanceServer"]

#: The etcd API version pyetcd implements, as /version and Status report it.
SERVER_VERSION = "3.5.1"
CLUSTER_VERSION = "3.5.0"


class MaintenanceServer:
    """etcd's Maintenance API on one member (MoveLeader is the ClusterServer's)."""

    def __init__(
        self,
        member_id: int,
        stores: Stores,
        rawnode: RawNode,
        applied: AppliedIndex,
        leadership: Leadership,
        proposer: Proposer,
        headers: ResponseHeaders,
        *,
        joined_as_learner: bool,
        events: EventRecorder = NO_EVENTS,
    ) -> None:
        """``joined_as_learner``: whether the cluster's /members listed this member as a
        learner when it joined, what it is until its own log brings the membership in."""
        self.member_id = member_id
        self.stores = stores
        self.rawnode = rawnode
        self.applied = applied
        self.leadership = leadership
        self.proposer = proposer
        self.headers = headers
        self.joined_as_learner = joined_as_learner
        self.events = events

    async def alarm(self, req: rpc_pb2.AlarmRequest) -> rpc_pb2.AlarmResponse:
        if req.action == rpc_pb2.AlarmRequest.GET:
            active = sorted(self.stores.alarms)
        else:
            result = await self.proposer.propose(raft_internal_pb2.InternalRaftRequest(alarm=req))
            assert isinstance(result, list)
            active = result
        resp = rpc_pb2.AlarmResponse(header=self.headers.header())
        for member_id, alarm in active:
            if req.action == rpc_pb2.AlarmRequest.GET and req.memberID not in (0, member_id):
                continue
            resp.alarms.add(memberID=member_id, alarm=alarm)
        return resp

    def status(self) -> rpc_pb2.StatusResponse:
        stores = self.stores
        kv = stores.kv
        lead = self.leadership.lead
        # As etcd: the member list says whether we are a learner. A member that just
        # joined knows it from the cluster's /members before its Raft log catches up.
        me = stores.membership.members.get(self.member_id)
        learner = me.is_learner if me is not None else self.joined_as_learner
        header = self.headers.header()
        resp = rpc_pb2.StatusResponse(
            header=header,
            version=SERVER_VERSION,
            dbSize=kv.db_size,
            leader=lead,
            raftIndex=self.rawnode.committed,
            raftTerm=header.raft_term,
            raftAppliedIndex=self.applied.applied,
            dbSizeInUse=kv.db_size_in_use,
            isLearner=learner,
        )
        if lead == NONE:
            resp.errors.append("etcdserver: no leader")
        for _, alarm in sorted(stores.alarms):
            resp.errors.append(f"memberID:{self.member_id} alarm:{rpc_pb2.AlarmType.Name(alarm)} ")
        return resp

    async def defragment(self) -> None:
        kv = self.stores.kv
        before = kv.db_size
        kv.defragment()
        self.events.record(
            "defrag",
            f"defragmented the backend: {before} -> {kv.db_size} bytes",
            before=before,
            after=kv.db_size,
        )

    def hash(self) -> int:
        return self.stores.kv.hash()

    def hash_kv(self, revision: int) -> tuple[int, int, int]:
        return self.stores.kv.hash_kv(revision)

    def version(self) -> dict[str, str]:
        return {"etcdserver": SERVER_VERSION, "etcdcluster": CLUSTER_VERSION, "pyetcd": __version__}
