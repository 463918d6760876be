"""The follower's and candidate's message handling, and a follower's answers to its
leader (append, heartbeat, snapshot).

Rules:
1. Every function takes the member as a ``FollowerRaft``: exactly the fields and
   methods of ``Raft`` it uses, so this module does not import ``raft`` (no cycle).
2. Role changes still go through the member's ``become_*`` methods; nothing here
   swaps handlers itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .errors import ProposalDroppedError
from .log import RaftLog
from .quorum import VoteResult
from .types import (
    LOCAL_MESSAGES,
    NONE,
    CampaignType,
    Message,
    MessageType,
    ReadState,
    Snapshot,
    StateType,
)

__all__ = [
    "FollowerRaft",
    "handle_append_entries",
    "handle_heartbeat",
    "handle_snapshot",
    "step_candidate",
    "step_follower",
]

MT = MessageType


class FollowerRaft(Protocol):
    """What the follower and candidate handlers use of ``Raft``."""

    id: int
    term: int
    lead: int
    state: StateType
    election_elapsed: int
    disable_proposal_forwarding: bool
    raft_log: RaftLog
    msgs: list[Message]
    read_states: list[ReadState]
    log: Callable[[str], None]

    def send(self, m: Message) -> None: ...

    def msg(self, t: MessageType, to: int, **kw: object) -> Message: ...

    def become_follower(self, term: int, lead: int) -> None: ...

    def become_leader(self) -> None: ...

    def hup(self, t: CampaignType) -> None: ...

    def campaign(self, t: CampaignType) -> None: ...

    def poll(self, node: int, t: MessageType, granted: bool) -> VoteResult: ...

    def bcast_append(self) -> None: ...

    def restore(self, s: Snapshot) -> bool: ...


def step_follower(r: FollowerRaft, m: Message) -> None:
    t = m.type
    if t == MT.APP:  # the usual message, first (the branches below exclude each other)
        r.election_elapsed = 0
        r.lead = m.frm
        handle_append_entries(r, m)
    elif t == MT.PROP:
        if r.lead == NONE:
            raise ProposalDroppedError("raft proposal dropped: no leader")
        if r.disable_proposal_forwarding:
            raise ProposalDroppedError("raft proposal dropped: forwarding disabled")
        r.send(Message(MT.PROP, to=r.lead, frm=r.id, entries=m.entries))
    elif t in (MT.HEARTBEAT, MT.SNAP):
        r.election_elapsed = 0
        r.lead = m.frm
        _handle_leader_message(r, m)
    elif t == MT.TRANSFER_LEADER:
        if r.lead != NONE:
            r.send(Message(MT.TRANSFER_LEADER, to=r.lead, frm=m.frm))
    elif t == MT.TIMEOUT_NOW:
        r.log(f"{r.id:x} [term {r.term}] received TIMEOUT_NOW from {m.frm:x}")
        # A transfer campaign skips pre-vote: the leader asked for it.
        r.hup(CampaignType.TRANSFER)
    elif t == MT.READ_INDEX:
        if r.lead != NONE:
            r.send(Message(MT.READ_INDEX, to=r.lead, frm=m.frm, entries=m.entries))
    elif t == MT.READ_INDEX_RESP:
        if len(m.entries) == 1:
            r.read_states.append(ReadState(m.index, m.entries[0].data))
    elif t in LOCAL_MESSAGES and t != MT.HUP:
        pass  # leader-only local messages (BEAT, CHECK_QUORUM, ...) mean nothing here


def step_candidate(r: FollowerRaft, m: Message) -> None:
    """The step handler of a candidate and of a pre-candidate."""
    my_resp = MT.PRE_VOTE_RESP if r.state == StateType.PRE_CANDIDATE else MT.VOTE_RESP
    t = m.type
    if t == MT.PROP:
        raise ProposalDroppedError("raft proposal dropped: no leader")
    if t in (MT.APP, MT.HEARTBEAT, MT.SNAP):
        # A leader of our term (or later) exists: follow it.
        r.become_follower(m.term, m.frm)
        _handle_leader_message(r, m)
    elif t == my_resp:
        result = r.poll(m.frm, t, not m.reject)
        if result == VoteResult.WON:
            if r.state == StateType.PRE_CANDIDATE:
                r.campaign(CampaignType.ELECTION)
            else:
                r.become_leader()
                r.bcast_append()
        elif result == VoteResult.LOST:
            # Stay at this term: a real election's term bump already happened.
            r.become_follower(r.term, NONE)


def _handle_leader_message(r: FollowerRaft, m: Message) -> None:
    if m.type == MT.APP:
        handle_append_entries(r, m)
    elif m.type == MT.HEARTBEAT:
        handle_heartbeat(r, m)
    else:
        handle_snapshot(r, m)


def handle_append_entries(r: FollowerRaft, m: Message) -> None:
    log = r.raft_log
    if m.index < log.committed:
        r.send(r.msg(MT.APP_RESP, m.frm, index=log.committed))
        return
    last_new = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
    if last_new is not None:
        # r.send(r.msg(MT.APP_RESP, m.frm, index=last_new)), built in one call
        r.msgs.append(Message(MT.APP_RESP, m.frm, r.id, r.term, 0, last_new))
        return
    # Reject, with a hint that lets the leader skip a whole term's entries at a
    # time: the largest index at or below the probe whose term is <= the probe's.
    hint_index = min(m.index, log.last_index())
    hint_index, hint_term = log.find_conflict_by_term(hint_index, m.log_term)
    r.send(
        r.msg(
            MT.APP_RESP,
            m.frm,
            index=m.index,
            reject=True,
            reject_hint=hint_index,
            log_term=hint_term,
        )
    )


def handle_heartbeat(r: FollowerRaft, m: Message) -> None:
    r.raft_log.commit_to(m.commit)
    r.send(r.msg(MT.HEARTBEAT_RESP, m.frm, context=m.context))


def handle_snapshot(r: FollowerRaft, m: Message) -> None:
    snap = m.snapshot
    if snap is None:
        return
    if r.restore(snap):
        r.log(
            f"{r.id:x} [commit: {r.raft_log.committed}] restored snapshot "
            f"[index: {snap.metadata.index}, term: {snap.metadata.term}]"
        )
        r.send(r.msg(MT.APP_RESP, m.frm, index=r.raft_log.last_index()))
    else:
        r.send(r.msg(MT.APP_RESP, m.frm, index=r.raft_log.committed))
