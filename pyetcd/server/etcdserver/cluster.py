"""The cluster duties of a member: the member list, membership changes, leader moves,
and keeping the peer transport's peers equal to the applied membership.

Built in two parts because the peer transport sits between them: ``ClusterFace`` is
what the peer port's HTTP endpoints ask (it exists before the transport is built and
is handed to it), ``ClusterServer`` adds what needs the transport (whether voters are
started, before a change that could lose quorum).
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol
from urllib.parse import urlsplit

from pyetcd.ids import member_id as derive_member_id
from pyetcd.logutil import Logger
from pyetcd.mvcc import Lessor
from pyetcd.raft import NONE, ConfChangeType, RawNode
from pyetcd.server.rafthttp.handler import PeerHTTP

from .errors import (
    BadLeaderTransfereeError,
    InvalidPeerURLsError,
    LearnerNotReadyError,
    MemberNotFoundError,
    MemberNotLearnerError,
    NotEnoughStartedMembersError,
    NotLeaderError,
    RequestTimeoutError,
    ServerError,
)
from .inbox import RaftInbox
from .leadership import Leadership
from .membership import Member
from .proposer import Proposer
from .stores import Stores
from .transport import Transport
from .wait import AppliedIndex

__all__ = ["ClusterFace", "ClusterServer", "Peers"]


class Count(Protocol):
    def inc(self) -> None: ...


class LabelledCount(Protocol):
    def labels(self, *values: str) -> Count: ...


class PromotionCounts(Protocol):
    """Where learner promotions asked of this member are counted, as etcd counts them."""

    @property
    def learner_promote_successes(self) -> Count: ...

    @property
    def learner_promote_failures(self) -> LabelledCount:
        """By ``Reason``: the error's text."""
        ...


class ClusterFace:
    """Membership reads and learner promotion: what the peer endpoints need."""

    def __init__(
        self,
        cluster_id: int,
        stores: Stores,
        rawnode: RawNode,
        applied: AppliedIndex,
        leadership: Leadership,
        proposer: Proposer,
        logger: Logger,
        promotions: PromotionCounts,
    ) -> None:
        self.cluster_id = cluster_id
        self.stores = stores
        self.rawnode = rawnode
        self.applied = applied
        self.leadership = leadership
        self.proposer = proposer
        self.log = logger
        self.promotions = promotions

    @property
    def lessor(self) -> Lessor:
        return self.stores.lessor

    def member_list(self) -> list[Member]:
        return self.stores.membership.sorted()

    async def wait_committed_applied(self) -> None:
        """Return once this member applied all it knows committed (etcd's ApplyWait)."""
        await self.applied.wait(self.rawnode.committed)

    def hash_kv(self, revision: int) -> tuple[int, int, int]:
        return self.stores.kv.hash_kv(revision)

    async def member_promote(self, mid: int) -> list[Member]:
        """Promote learner ``mid`` (this member must lead; NotLeaderError otherwise).
        Counted as etcd counts it: a success, or a failure by its error's text
        (not when this member does not lead: the leader it is forwarded to counts)."""
        try:
            members = await self._promote(mid)
        except NotLeaderError:
            raise
        except ServerError as err:
            reason = _PROMOTE_REASONS.get(type(err)) or str(err)
            self.promotions.learner_promote_failures.labels(reason).inc()
            raise
        self.promotions.learner_promote_successes.inc()
        return members

    async def _promote(self, mid: int) -> list[Member]:
        membership = self.stores.membership
        m = membership.members.get(mid)
        if m is None:
            raise MemberNotFoundError()
        if not m.is_learner:
            raise MemberNotLearnerError()
        if not self.leadership.is_leader:
            # Only the leader knows whether the learner has caught up.
            raise NotLeaderError()
        pr = self.rawnode.status().progress.get(mid)
        last = self.rawnode.last_index()
        if pr is None or pr.match < last * 0.9:
            raise LearnerNotReadyError()
        await self.proposer.propose_conf_change(ConfChangeType.ADD_NODE, m)
        return membership.sorted()

    async def serve_peer_http(
        self, first: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """One HTTP request on the peer port (``first``: its first 4 bytes, already read)."""
        await PeerHTTP(self, self.log).serve(first, reader, writer)


#: The failure reasons etcd counts in its membership package's words (the client is
#: told the etcdserver text).
_PROMOTE_REASONS: dict[type[ServerError], str] = {
    MemberNotLearnerError: "membership: can only promote a learner member",
    MemberNotFoundError: "membership: ID not found",
}


class RemovedListener(Protocol):
    def removed(self) -> None:
        """This member was removed from the cluster."""


class Peers:
    """Keeps the transport's peers equal to the applied membership."""

    def __init__(
        self, member_id: int, transport: Transport, stores: Stores, on_removed: RemovedListener
    ) -> None:
        self.member_id = member_id
        self.transport = transport
        self.stores = stores
        self.on_removed = on_removed

    def sync(self) -> None:
        tr = self.transport
        membership = self.stores.membership
        for m in membership.members.values():
            if m.id != self.member_id and m.peer_urls:
                if tr.has_peer(m.id):
                    tr.update_peer(m.id, m.peer_urls)
                else:
                    tr.add_peer(m.id, m.peer_urls)
        for member_id in membership.removed:
            tr.remove_peer(member_id)
        if self.member_id in membership.removed:
            self.on_removed.removed()


class ClusterServer:
    """etcd's Cluster API and MoveLeader on one member."""

    def __init__(
        self,
        member_id: int,
        face: ClusterFace,
        transport: Transport,
        inbox: RaftInbox,
        *,
        strict_reconfig_check: bool,
        heartbeat: float,
    ) -> None:
        self.member_id = member_id
        self.face = face
        self.stores = face.stores
        self.proposer = face.proposer
        self.leadership = face.leadership
        self.transport = transport
        self.inbox = inbox
        self.strict_reconfig_check = strict_reconfig_check
        self.heartbeat = heartbeat

    def member_list(self) -> list[Member]:
        return self.face.member_list()

    async def member_add(
        self, peer_urls: list[str], is_learner: bool
    ) -> tuple[Member, list[Member]]:
        """Add a member (etcd: ID from the peer URLs and the current time)."""
        if not peer_urls:
            raise InvalidPeerURLsError()
        for url in peer_urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.port is None:
                raise InvalidPeerURLsError()
        new_id = derive_member_id(peer_urls, "", int(time.time()))
        member = Member(new_id, "", tuple(peer_urls), (), is_learner)
        if not is_learner:
            voters, started = len(self.voters()) + 1, len(self._started_voters())
            # etcd's IsReadyToAddVotingMember: growing a one-member cluster is allowed
            # (the new member cannot have started before it is added)
            if not (voters == 2 and started == 1):
                self._check_quorum_after(voters, started)
        cc_type = ConfChangeType.ADD_LEARNER_NODE if is_learner else ConfChangeType.ADD_NODE
        await self.proposer.propose_conf_change(cc_type, member)
        return member, self.member_list()

    async def member_remove(self, mid: int) -> list[Member]:
        m = self.stores.membership.members.get(mid)
        if m is None:
            raise MemberNotFoundError()
        if not m.is_learner:
            voters = self.voters()
            started = [v for v in self._started_voters() if v != mid]
            self._check_quorum_after(len(voters) - 1, len(started))
        await self.proposer.propose_conf_change(ConfChangeType.REMOVE_NODE, m)
        return self.member_list()

    async def member_update(self, mid: int, peer_urls: list[str]) -> list[Member]:
        m = self.stores.membership.members.get(mid)
        if m is None:
            raise MemberNotFoundError()
        await self.proposer.propose_conf_change(
            ConfChangeType.UPDATE_NODE,
            Member(mid, m.name, tuple(peer_urls), m.client_urls, m.is_learner),
        )
        return self.member_list()

    async def member_promote(self, mid: int) -> list[Member]:
        return await self.face.member_promote(mid)

    def voters(self) -> list[int]:
        return [i for i, m in self.stores.membership.members.items() if not m.is_learner]

    def _started_voters(self) -> list[int]:
        # A member counts as started when it is this member or its stream is up.
        return [i for i in self.voters() if i == self.member_id or self.transport.peer_active(i)]

    def _check_quorum_after(self, voters: int, started: int) -> None:
        if self.strict_reconfig_check and started < voters // 2 + 1:
            raise NotEnoughStartedMembersError()

    # -- leadership moves ------------------------------------------------------------------------

    async def move_leader(self, target: int) -> None:
        members = self.stores.membership.members
        if target not in members or members[target].is_learner:
            raise BadLeaderTransfereeError()
        if target == self.leadership.lead:
            return
        self.inbox.transfer_leader(target)
        deadline = time.monotonic() + self.proposer.request_timeout
        while self.leadership.lead != target:
            if time.monotonic() > deadline:
                raise RequestTimeoutError()
            await asyncio.sleep(self.heartbeat)

    async def transfer_leadership_on_stop(self, timeout: float) -> None:
        """A leader hands over before it stops, so writes go on without an election."""
        voters = [v for v in self.voters() if v != self.member_id]
        if not self.leadership.is_leader or not voters:
            return
        progress = self.face.rawnode.status().progress
        target = max(voters, key=lambda v: progress[v].match if v in progress else -1)
        log = self.face.log
        log.info(
            "leadership transfer starting",
            {"local-member-id": f"{self.member_id:x}", "transferee": f"{target:x}"},
        )
        self.inbox.transfer_leader(target)
        deadline = time.monotonic() + timeout
        while self.leadership.lead in (self.member_id, NONE) and time.monotonic() < deadline:
            await asyncio.sleep(self.heartbeat / 4)
        log.info(
            "leadership transfer finished",
            {"local-member-id": f"{self.member_id:x}", "new-leader": f"{self.leadership.lead:x}"},
        )
