"""The maintenance duties of a member: status, alarms, hashes, defragmentation."""

from __future__ import annotations

import asyncio
import time

from pyetcd import __version__
from pyetcd.logutil import Logger, go_duration
from pyetcd.pb import raft_internal_pb2, rpc_pb2
from pyetcd.raft import NONE, RawNode
from pyetcd.version import CLUSTER_VERSION, SERVER_VERSION

from .events import NO_EVENTS, EventRecorder
from .header import ResponseHeaders
from .leadership import Leadership
from .metrics import Metrics
from .proposer import Proposer
from .stores import Stores
from .wait import AppliedIndex

__all__ = ["MaintenanceServer"]



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
        logger: Logger,
        *,
        joined_as_learner: bool,
        events: EventRecorder = NO_EVENTS,
        metrics: Metrics | None = None,
    ) -> None:
        """``metrics``: where defragmentations are timed; ``joined_as_learner``: whether
        the cluster's /members listed this member as a learner when it joined, what it
        is until its own log brings the membership in."""
        self.member_id = member_id
        self.stores = stores
        self.rawnode = rawnode
        self.applied = applied
        self.leadership = leadership
        self.proposer = proposer
        self.headers = headers
        self.log = logger
        self.joined_as_learner = joined_as_learner
        self.events = events
        self.metrics = metrics or Metrics()

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
        """Rebuild the backend compactly while the member goes on serving: the copy
        runs in a worker thread from a pinned snapshot, the writes made meanwhile are
        replayed into it, and only that replay and the file swap run on the loop."""
        async with self.stores.file_lock:
            be = self.stores.kv.backend
            before, before_in_use = be.size, be.size_in_use
            self.log.info(
                "defragmenting",
                {
                    "path": be.path,
                    "current-db-size-bytes": before,
                    "current-db-size-in-use-bytes": before_in_use,
                },
            )
            start = time.monotonic()
            self.metrics.defrag_inflight.set(1)
            try:
                copy = be.begin_defrag()
                try:
                    await asyncio.to_thread(copy.run)
                except BaseException:
                    be.abort_defrag(copy)
                    raise
                # A snapshot install may have closed this backend meanwhile: the copy is
                # then dropped by finish_defrag.
                cleanup = be.finish_defrag(copy)
                await asyncio.to_thread(cleanup)
            finally:
                self.metrics.defrag_inflight.set(0)
                self.metrics.backend_defrag.observe(time.monotonic() - start)
            self.log.info(
                "finished defragmenting directory",
                {
                    "path": be.path,
                    "current-db-size-bytes-diff": be.size - before,
                    "current-db-size-bytes": be.size,
                    "current-db-size-in-use-bytes-diff": be.size_in_use - before_in_use,
                    "current-db-size-in-use-bytes": be.size_in_use,
                    "took": go_duration(time.monotonic() - start),
                },
            )
            self.events.record(
                "defrag",
                f"defragmented the backend: {before} -> {be.size} bytes",
                before=before,
                after=be.size,
            )

    def hash(self) -> int:
        return self.stores.kv.hash()

    def hash_kv(self, revision: int) -> tuple[int, int, int]:
        return self.stores.kv.hash_kv(revision)

    def version(self) -> dict[str, str]:
        return {"etcdserver": SERVER_VERSION, "etcdcluster": CLUSTER_VERSION, "pyetcd": __version__}
