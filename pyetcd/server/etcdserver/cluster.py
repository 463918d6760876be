"""The cluster duties of a member: the member list, membership changes, leader moves,
and keeping the peer transport's peers equal to the applied membership.

Built in two parts because the peer transport sits between them: ``ClusterFace`` is
what the peer port's HTTP endpoints ask (it exists before the transport is built and
is handed to it), ``ClusterServer`` adds what needs the transport (since when each
voting peer has been connected, before a change that could lose quorum: etcd's
strict reconfiguration check).
"""

from __future__ import annotations

import asyncio
import time
from typing import Final, Protocol
from urllib.parse import urlsplit

from pyetcd.ids import member_id as derive_member_id
from pyetcd.logutil import Logger, go_duration
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
    UnhealthyError,
)
from .inbox import RaftInbox
from .leadership import Leadership
from .membership import Member
from .proposer import Proposer
from .stores import Stores
from .transport import Transport
from .wait import AppliedIndex

__all__ = ["HEALTH_INTERVAL", "ClusterFace", "ClusterServer", "Peers"]

#: How long (seconds) every voting peer must have been connected before a
#: reconfiguration is allowed under --strict-reconfig-check (etcd's HealthInterval).
HEALTH_INTERVAL: Final = 5.0


def _started(m: Member) -> bool:
    # etcd's Member.IsStarted: a member is started once it has a name, i.e. it was in
    # --initial-cluster or has published its attributes since it was added.
    return m.name != ""


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
        *,
        strict_reconfig_check: bool = True,
    ) -> None:
        self.cluster_id = cluster_id
        self.stores = stores
        self.rawnode = rawnode
        self.applied = applied
        self.leadership = leadership
        self.proposer = proposer
        self.log = logger
        self.promotions = promotions
        self.strict_reconfig_check = strict_reconfig_check

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
        if self.strict_reconfig_check:
            # etcd's IsReadyToPromoteMember: the learner counts as a started voter.
            voters = [v for v in membership.members.values() if not v.is_learner]
            started = sum(1 for v in voters if _started(v)) + 1
            if started < (len(voters) + 1) // 2 + 1:
                self.log.warn(
                    "rejecting member promote request; not enough healthy members",
                    {
                        "local-member-id": f"{self.leadership.member_id:x}",
                        # etcd's field name here, as it is
                        "requested-member-remove-id": f"{mid:x}",
                        "error": NotEnoughStartedMembersError.message,
                    },
                )
                raise NotEnoughStartedMembersError()
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

_CONF_CHANGE_NAMES = {
    ConfChangeType.ADD_NODE: "ConfChangeAddNode",
    ConfChangeType.REMOVE_NODE: "ConfChangeRemoveNode",
    ConfChangeType.UPDATE_NODE: "ConfChangeUpdateNode",
    ConfChangeType.ADD_LEARNER_NODE: "ConfChangeAddLearnerNode",
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
        health_interval: float = HEALTH_INTERVAL,
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
        self.health_interval = health_interval
        self.log = face.log

    def member_list(self) -> list[Member]:
        return self.face.member_list()

    async def member_add(
        self, peer_urls: list[str], is_learner: bool
    ) -> tuple[Member, list[Member]]:
        """Add a member (etcd: ID from the peer URLs and the current time).

        Raises:
            InvalidPeerURLsError: a URL is not http(s)://host:port.
            NotEnoughStartedMembersError, UnhealthyError: etcd's strict reconfig check.
        """
        if not peer_urls:
            raise InvalidPeerURLsError()
        for url in peer_urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.port is None:
                raise InvalidPeerURLsError()
        new_id = derive_member_id(peer_urls, "", int(time.time()))
        member = Member(new_id, "", tuple(peer_urls), (), is_learner)
        self._may_add(member)
        cc_type = ConfChangeType.ADD_LEARNER_NODE if is_learner else ConfChangeType.ADD_NODE
        await self.proposer.propose_conf_change(cc_type, member)
        self._log_applied(cc_type, new_id)
        return member, self.member_list()

    async def member_remove(self, mid: int) -> list[Member]:
        m = self.stores.membership.members.get(mid)
        if m is None:
            raise MemberNotFoundError()
        self._may_remove(m)
        await self.proposer.propose_conf_change(ConfChangeType.REMOVE_NODE, m)
        self._log_applied(ConfChangeType.REMOVE_NODE, mid)
        return self.member_list()

    async def member_update(self, mid: int, peer_urls: list[str]) -> list[Member]:
        m = self.stores.membership.members.get(mid)
        if m is None:
            raise MemberNotFoundError()
        await self.proposer.propose_conf_change(
            ConfChangeType.UPDATE_NODE,
            Member(mid, m.name, tuple(peer_urls), m.client_urls, m.is_learner),
        )
        self._log_applied(ConfChangeType.UPDATE_NODE, mid)
        return self.member_list()

    async def member_promote(self, mid: int) -> list[Member]:
        members = await self.face.member_promote(mid)
        self._log_applied(ConfChangeType.ADD_NODE, mid)
        return members

    def voters(self) -> list[int]:
        return [i for i, m in self.stores.membership.members.items() if not m.is_learner]

    # -- etcd's strict reconfiguration check (--strict-reconfig-check) ----------------------

    def _may_add(self, member: Member) -> None:
        """etcd's mayAddMember: a voter may not leave fewer started voters than a
        quorum (growing a one-member cluster excepted), and no member is added until
        every voting peer has been connected for the health interval."""
        if not self.strict_reconfig_check:
            return
        voters = [m for m in self.stores.membership.members.values() if not m.is_learner]
        if not member.is_learner:
            total, started = len(voters) + 1, sum(1 for m in voters if _started(m))
            if not (total == 2 and started == 1) and started < total // 2 + 1:
                self._refuse("add", member, NotEnoughStartedMembersError())
        if self._connected_since(voters) < len(voters):
            self._refuse("add", member, UnhealthyError())

    def _may_remove(self, m: Member) -> None:
        """etcd's mayRemoveMember: learners go freely; otherwise the started voters
        left must be a quorum, and unless the member is down (safe to remove), the
        voters connected for the health interval without it must be one too."""
        if not self.strict_reconfig_check or m.is_learner:
            return
        voters = [v for v in self.stores.membership.members.values() if not v.is_learner]
        others = [v for v in voters if v.id != m.id]
        if sum(1 for v in others if _started(v)) < len(others) // 2 + 1:
            self._refuse("remove", m, NotEnoughStartedMembersError())
        if m.id != self.member_id and self.transport.active_since(m.id) is None:
            return
        active = self._connected_since(voters)
        if active - 1 < 1 + (len(voters) - 1) // 2:
            self._refuse("remove", m, UnhealthyError(), active)

    def _connected_since(self, voters: list[Member]) -> int:
        """How many of ``voters`` are this member or peers connected for the whole
        health interval (etcd's numConnectedSince)."""
        since = time.monotonic() - self.health_interval
        n = 0
        for v in voters:
            if v.id == self.member_id:
                n += 1
            else:
                t = self.transport.active_since(v.id)
                n += t is not None and t < since
        return n

    def _refuse(self, op: str, m: Member, err: Exception, active: int | None = None) -> None:
        # etcd's warnings, word for word, with the main fields.
        fields: dict[str, object] = {"local-member-id": f"{self.member_id:x}"}
        if isinstance(err, UnhealthyError):
            msg = (
                f"rejecting member {op} request; local member has not been connected "
                "to all peers, reconfigure breaks active quorum"
            )
        else:
            msg = f"rejecting member {op} request; not enough healthy members"
        if op == "add":
            fields["requested-member-add"] = (
                f"{{ID:{m.id:x} RaftAttributes:{{PeerURLs:[{' '.join(m.peer_urls)}] "
                f"IsLearner:{str(m.is_learner).lower()}}} Attributes:{{Name: ClientURLs:[]}}}}"
            )
        elif isinstance(err, UnhealthyError):
            fields["requested-member-remove"] = f"{m.id:x}"
            fields["active-peers"] = active
        else:
            fields["requested-member-remove-id"] = f"{m.id:x}"
        fields["error"] = str(err)
        self.log.warn(msg, fields)
        raise err

    def _log_applied(self, cc_type: ConfChangeType, node: int) -> None:
        self.log.info(
            "applied a configuration change through raft",
            {
                "local-member-id": f"{self.member_id:x}",
                "raft-conf-change": _CONF_CHANGE_NAMES[cc_type],
                "raft-conf-change-node-id": f"{node:x}",
            },
        )

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
        log, me = self.face.log, f"{self.member_id:x}"
        if not self.leadership.is_leader:
            log.info(
                "skipped leadership transfer; local server is not leader",
                {"local-member-id": me, "current-leader-member-id": f"{self.leadership.lead:x}"},
            )
            return
        if not voters:
            log.info(
                "skipped leadership transfer for single voting member cluster",
                {"local-member-id": me, "current-leader-member-id": me},
            )
            return
        progress = self.face.rawnode.status().progress
        target = max(voters, key=lambda v: progress[v].match if v in progress else -1)
        log.info(
            "leadership transfer starting",
            {
                "local-member-id": me,
                "current-leader-member-id": me,
                "transferee-member-id": f"{target:x}",
            },
        )
        started = time.monotonic()
        self.inbox.transfer_leader(target)
        deadline = started + timeout
        while self.leadership.lead in (self.member_id, NONE) and time.monotonic() < deadline:
            await asyncio.sleep(self.heartbeat / 4)
        log.info(
            "leadership transfer finished",
            {
                "local-member-id": me,
                "old-leader-member-id": me,
                "new-leader-member-id": f"{self.leadership.lead:x}",
                "took": go_duration(time.monotonic() - started),
            },
        )
