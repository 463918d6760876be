"""The Raft state machine: one member's view of the cluster.

Rules:
1. Everything that changes this member's consensus state happens in ``step`` (and the
   tick handlers, which only ever step local messages). No I/O, no clock: time is
   ``tick()``; randomness is the ``random.Random`` in the Config.
2. Outgoing messages are appended to ``msgs``; the application sends them only after
   it has made the Ready's hard state and entries durable.
3. Role changes go through ``become_*``, which swap the step and tick handlers and log
   one line of fixed format.
4. Leader-side handling lives in ``leader.py``, one small function per message type;
   the follower's and candidate's in ``follower.py``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Final

from . import follower, leader
from .confchange import Changer, restore
from .errors import ProposalDroppedError, StepLocalMsgError
from .log import NO_LIMIT, RaftLog
from .quorum import VoteResult
from .read_only import ReadOnly
from .storage import Storage
from .tracker import Progress, ProgressTracker, TrackerConfig
from .types import (
    LOCAL_MESSAGES,
    NONE,
    CampaignType,
    ConfChange,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Snapshot,
    SoftState,
    StateType,
    vote_response_type,
)

__all__ = ["CampaignType", "Config", "Raft"]

MT = MessageType
_VOTE_REQUESTS = frozenset((MT.VOTE, MT.PRE_VOTE))

#: Context of a vote request sent because of a leadership transfer: it overrides the lease.
CAMPAIGN_TRANSFER: Final = b"CampaignTransfer"


def _no_log(line: str) -> None:
    pass


@dataclass(slots=True)
class Config:
    """How to build a Raft member. Ticks are the only unit of time."""

    id: int
    storage: Storage
    election_tick: int = 10
    heartbeat_tick: int = 1
    # Last applied index; only set when restarting a member.
    applied: int = 0
    max_size_per_msg: int = 1 << 20
    max_committed_size_per_ready: int = NO_LIMIT
    # Bytes of proposed-but-uncommitted entries the leader accepts; 0 = no limit.
    max_uncommitted_entries_size: int = 0
    max_inflight_msgs: int = 256
    max_inflight_bytes: int = 0
    check_quorum: bool = True
    pre_vote: bool = True
    disable_proposal_forwarding: bool = False
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    logger: Callable[[str], None] = _no_log

    def validate(self) -> None:
        if self.id == NONE:
            raise ValueError("cannot use none as id")
        if self.heartbeat_tick <= 0:
            raise ValueError("heartbeat tick must be greater than 0")
        if self.election_tick <= self.heartbeat_tick:
            raise ValueError("election tick must be greater than heartbeat tick")
        if self.max_inflight_msgs <= 0:
            raise ValueError("max inflight messages must be greater than 0")


class Raft:
    """One member's consensus state. Drive it through ``RawNode``."""

    def __init__(self, c: Config) -> None:
        c.validate()
        self.id = c.id
        self.raft_log = RaftLog(c.storage, c.max_committed_size_per_ready)
        hs, cs = c.storage.initial_state()
        self.term = 0
        self.vote = NONE
        self.lead = NONE
        self.state = StateType.FOLLOWER
        self.is_learner = False
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.max_msg_size = c.max_size_per_msg
        self.max_uncommitted_size = c.max_uncommitted_entries_size
        self.uncommitted_size = 0
        self.trk = ProgressTracker(c.max_inflight_msgs, c.max_inflight_bytes)
        self.read_only = ReadOnly()
        self.pending_read_index_messages: list[Message] = []
        # Index of the latest conf change in the log; no new one is accepted while
        # it is not yet applied.
        self.pending_conf_index = 0
        self.lead_transferee = NONE
        self.check_quorum = c.check_quorum
        self.pre_vote = c.pre_vote
        self.disable_proposal_forwarding = c.disable_proposal_forwarding
        self.heartbeat_timeout = c.heartbeat_tick
        self.election_timeout = c.election_tick
        self.randomized_election_timeout = c.election_tick
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.rng = c.rng
        self.log = c.logger
        # The role's step handler, bound to this Raft with functools.partial (a C call:
        # one Python frame less per message than a method forwarding to the module).
        self._step: Callable[[Message], None] = partial(follower.step_follower, self)
        self._tick: Callable[[], None] = self._tick_election

        cfg, prs = restore(cs, self.raft_log.last_index(), c.max_inflight_msgs)
        self.switch_to_config(cfg, prs)
        if not hs.is_empty():
            self._load_state(hs)
        if c.applied > 0:
            self.raft_log.applied_to(c.applied)
        self.become_follower(self.term, NONE)
        self.log(
            f"newRaft {self.id:x} [peers: {self.trk.voter_nodes()}, term: {self.term}, "
            f"commit: {self.raft_log.committed}, applied: {self.raft_log.applied}, "
            f"lastindex: {self.raft_log.last_index()}, lastterm: {self.raft_log.last_term()}]"
        )

    # -- state snapshots ---------------------------------------------------------

    def soft_state(self) -> SoftState:
        return SoftState(lead=self.lead, raft_state=self.state)

    def hard_state(self) -> HardState:
        return HardState(term=self.term, vote=self.vote, commit=self.raft_log.committed)

    def _load_state(self, hs: HardState) -> None:
        if hs.commit < self.raft_log.committed or hs.commit > self.raft_log.last_index():
            raise AssertionError(
                f"{self.id:x} state.commit {hs.commit} is out of range "
                f"[{self.raft_log.committed}, {self.raft_log.last_index()}]"
            )
        self.raft_log.committed = hs.commit
        self.term = hs.term
        self.vote = hs.vote

    # -- sending -----------------------------------------------------------------

    def send(self, m: Message) -> None:
        """Queue ``m``; the caller has set every field but ``frm`` (and ``term`` is
        filled in for all but proposals, read-index requests and vote traffic)."""
        self.msgs.append(m)

    def msg(self, t: MessageType, to: int, **kw: object) -> Message:
        """Build a message from this member at the current term."""
        return Message(t, to=to, frm=self.id, term=kw.pop("term", self.term), **kw)  # type: ignore[arg-type]

    # -- ticks -------------------------------------------------------------------

    def tick(self) -> None:
        self._tick()

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable() and self.past_election_timeout():
            self.election_elapsed = 0
            self.step(Message(MT.HUP, frm=self.id))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.election_timeout:
            self.election_elapsed = 0
            if self.check_quorum:
                self.step(Message(MT.CHECK_QUORUM, frm=self.id))
            # A transfer that did not finish within an election timeout is abandoned.
            if self.state == StateType.LEADER and self.lead_transferee != NONE:
                self.abort_leader_transfer()
        if self.state != StateType.LEADER:
            return
        if self.heartbeat_elapsed >= self.heartbeat_timeout:
            self.heartbeat_elapsed = 0
            self.step(Message(MT.BEAT, frm=self.id))

    def past_election_timeout(self) -> bool:
        return self.election_elapsed >= self.randomized_election_timeout

    def reset_randomized_election_timeout(self) -> None:
        self.randomized_election_timeout = self.election_timeout + self.rng.randrange(
            self.election_timeout
        )

    # -- roles -------------------------------------------------------------------

    def _reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.reset_randomized_election_timeout()
        self.abort_leader_transfer()
        self.trk.reset_votes()
        last = self.raft_log.last_index()
        for node, pr in self.trk.progress.items():
            self.trk.progress[node] = Progress(
                match=last if node == self.id else 0,
                next=last + 1,
                inflights=self.trk.new_inflights(),
                is_learner=pr.is_learner,
            )
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self.read_only = ReadOnly()

    def become_follower(self, term: int, lead: int) -> None:
        self._step = partial(follower.step_follower, self)
        self._reset(term)
        self._tick = self._tick_election
        self.lead = lead
        self.state = StateType.FOLLOWER
        self.log(f"{self.id:x} became follower at term {self.term}")

    def become_candidate(self) -> None:
        if self.state == StateType.LEADER:
            raise AssertionError("invalid transition [leader -> candidate]")
        self._step = partial(follower.step_candidate, self)
        self._reset(self.term + 1)
        self._tick = self._tick_election
        self.vote = self.id
        self.state = StateType.CANDIDATE
        self.log(f"{self.id:x} became candidate at term {self.term}")

    def become_pre_candidate(self) -> None:
        if self.state == StateType.LEADER:
            raise AssertionError("invalid transition [leader -> pre-candidate]")
        # A pre-candidate changes neither its term nor its vote.
        self._step = partial(follower.step_candidate, self)
        self.trk.reset_votes()
        self._tick = self._tick_election
        self.lead = NONE
        self.state = StateType.PRE_CANDIDATE
        self.log(f"{self.id:x} became pre-candidate at term {self.term}")

    def become_leader(self) -> None:
        if self.state == StateType.FOLLOWER:
            raise AssertionError("invalid transition [follower -> leader]")
        self._step = partial(leader.step_leader, self)
        self._reset(self.term)
        self._tick = self._tick_heartbeat
        self.lead = self.id
        self.state = StateType.LEADER
        pr = self.trk.progress[self.id]
        pr.become_replicate()
        # The leader is always active for check-quorum; otherwise a lone leader
        # (or one that lost a single follower) would step down at the first check.
        pr.recent_active = True
        # Conf changes already in the log might be pending; be conservative.
        self.pending_conf_index = self.raft_log.last_index()
        # The empty entry of the new term lets the leader commit earlier terms' entries.
        if not self.append_entries([Entry(type=EntryType.NORMAL)]):
            raise AssertionError("empty entry was dropped")
        self.log(f"{self.id:x} became leader at term {self.term}")

    def promotable(self) -> bool:
        pr = self.trk.progress.get(self.id)
        return (
            pr is not None
            and not pr.is_learner
            and not self.raft_log.has_next_or_in_progress_snapshot()
        )

    # -- elections -----------------------------------------------------------------

    def hup(self, t: CampaignType) -> None:
        if self.state == StateType.LEADER:
            return
        if not self.promotable():
            self.log(f"{self.id:x} is unpromotable and can not campaign")
            return
        if self._has_unapplied_conf_change():
            self.log(f"{self.id:x} cannot campaign at term {self.term}: unapplied conf change")
            return
        self.campaign(t)

    def _has_unapplied_conf_change(self) -> bool:
        lo, hi = self.raft_log.applied + 1, self.raft_log.committed + 1
        if lo >= hi:
            return False
        ents = self.raft_log.slice(lo, hi)
        return any(e.type != EntryType.NORMAL for e in ents)

    def campaign(self, t: CampaignType) -> None:
        if t == CampaignType.PRE_ELECTION:
            self.become_pre_candidate()
            vote_msg = MT.PRE_VOTE
            # Pre-votes ask about the term a real election would use.
            term = self.term + 1
        else:
            self.become_candidate()
            vote_msg = MT.VOTE
            term = self.term
        if self.poll(self.id, vote_response_type(vote_msg), True) == VoteResult.WON:
            # A single-voter cluster wins at once.
            if t == CampaignType.PRE_ELECTION:
                self.campaign(CampaignType.ELECTION)
            else:
                self.become_leader()
            return
        ctx = CAMPAIGN_TRANSFER if t == CampaignType.TRANSFER else b""
        last_index, last_term = self.raft_log.last_index(), self.raft_log.last_term()
        for node in self.trk.voter_nodes():
            if node == self.id:
                continue
            self.send(
                self.msg(
                    vote_msg, node, term=term, index=last_index, log_term=last_term, context=ctx
                )
            )

    def poll(self, node: int, t: MessageType, granted: bool) -> VoteResult:
        self.trk.record_vote(node, granted)
        _, _, result = self.trk.tally_votes()
        return result

    # -- step ----------------------------------------------------------------------

    def step(self, m: Message) -> None:
        """Feed one message (local or from a peer) into the state machine."""
        if m.term == 0:
            pass  # local message (or a proposal / read index forwarded within a term)
        elif m.term > self.term:
            if not self._step_higher_term(m):
                return
        elif m.term < self.term:
            self._step_lower_term(m)
            return

        if m.type == MT.HUP:
            self.hup(CampaignType.PRE_ELECTION if self.pre_vote else CampaignType.ELECTION)
        elif m.type in _VOTE_REQUESTS:
            self._step_vote_request(m)
        else:
            self._step(m)

    def _step_higher_term(self, m: Message) -> bool:
        """Handle a message from a later term; False if it is to be ignored."""
        if m.type in (MT.VOTE, MT.PRE_VOTE):
            force = m.context == CAMPAIGN_TRANSFER
            in_lease = (
                self.check_quorum
                and self.lead != NONE
                and self.election_elapsed < self.election_timeout
            )
            if not force and in_lease:
                # We heard from a leader within the minimum election timeout: a
                # disruptive candidate (e.g. a partitioned member) is ignored.
                self.log(
                    f"{self.id:x} [term: {self.term}] ignored {m.type.name} from {m.frm:x} "
                    f"at term {m.term}: lease is not expired"
                )
                return False
        if m.type == MT.PRE_VOTE:
            return True  # never change our term in response to a pre-vote
        if m.type == MT.PRE_VOTE_RESP and not m.reject:
            # The term in a granted pre-vote response is the future term we asked
            # about; it is adopted when the pre-election is won.
            return True
        self.log(
            f"{self.id:x} [term: {self.term}] received a {m.type.name} message with "
            f"higher term from {m.frm:x} [term: {m.term}]"
        )
        if m.type in (MT.APP, MT.HEARTBEAT, MT.SNAP):
            self.become_follower(m.term, m.frm)
        else:
            self.become_follower(m.term, NONE)
        return True

    def _step_lower_term(self, m: Message) -> None:
        if (self.check_quorum or self.pre_vote) and m.type in (MT.HEARTBEAT, MT.APP):
            # A stale leader cut off by a partition: answer so it learns the newer
            # term and steps down (with check-quorum or pre-vote it would never see
            # a higher-term vote request that would tell it).
            self.send(self.msg(MT.APP_RESP, m.frm))
        elif m.type == MT.PRE_VOTE:
            self.send(self.msg(MT.PRE_VOTE_RESP, m.frm, reject=True))

    def _step_vote_request(self, m: Message) -> None:
        can_vote = (
            self.vote == m.frm
            or (self.vote == NONE and self.lead == NONE)
            or (m.type == MT.PRE_VOTE and m.term > self.term)
        )
        if can_vote and self.raft_log.is_up_to_date(m.index, m.log_term):
            self.log(
                f"{self.id:x} [term: {self.term}] cast {m.type.name} for {m.frm:x} "
                f"[logterm: {m.log_term}, index: {m.index}]"
            )
            # The response carries the request's term: for a pre-vote that is the
            # future term, which the pre-candidate checks against.
            self.send(self.msg(vote_response_type(m.type), m.frm, term=m.term))
            if m.type == MT.VOTE:
                self.election_elapsed = 0
                self.vote = m.frm
        else:
            self.send(self.msg(vote_response_type(m.type), m.frm, reject=True))

    # -- role step handlers ------------------------------------------------------------

    def bcast_append(self) -> None:
        """Send every follower the entries it is missing (leader only)."""
        leader.bcast_append(self)

    def restore(self, s: Snapshot) -> bool:
        """Replace the log with snapshot ``s``; False if it is stale or not for us."""
        md = s.metadata
        if md.index <= self.raft_log.committed:
            return False
        if self.state != StateType.FOLLOWER:
            # Only a leader of this term sends snapshots; defend against a bug anyway.
            self.become_follower(self.term + 1, NONE)
            return False
        cs = md.conf_state
        if self.id not in (*cs.voters, *cs.learners, *cs.voters_outgoing):
            return False
        if self.raft_log.match_term(md.index, md.term):
            # We already have the snapshot's last entry: just fast-forward the commit.
            self.raft_log.commit_to(md.index)
            return False
        self.raft_log.restore(s)
        self.trk = ProgressTracker(self.trk.max_inflight, self.trk.max_inflight_bytes)
        cfg, prs = restore(cs, self.raft_log.last_index(), self.trk.max_inflight)
        self.switch_to_config(cfg, prs)
        return True

    # -- proposals -------------------------------------------------------------------

    def append_entries(self, es: list[Entry]) -> bool:
        """Append proposals to the leader's log; False if the uncommitted budget is full."""
        log = self.raft_log
        li = log.last_index()
        term = self.term
        ents = [Entry(term, i, e.type, e.data) for i, e in enumerate(es, li + 1)]
        if not self._increase_uncommitted_size(ents):
            return False
        li = log.append(ents)
        # The leader's own entries count towards the quorum; the application makes
        # them durable before it sends any message carrying them.
        self.trk.progress[self.id].maybe_update(li)
        log.maybe_commit(self.trk.committed(), term)  # (self.maybe_commit())
        return True

    def maybe_commit(self) -> bool:
        return self.raft_log.maybe_commit(self.trk.committed(), self.term)

    def _increase_uncommitted_size(self, ents: list[Entry]) -> bool:
        s = 0
        for e in ents:
            s += len(e.data)
        if (
            self.uncommitted_size > 0
            and s > 0
            and self.max_uncommitted_size > 0
            and self.uncommitted_size + s > self.max_uncommitted_size
        ):
            return False
        self.uncommitted_size += s
        return True

    def reduce_uncommitted_size(self, s: int) -> None:
        self.uncommitted_size = max(0, self.uncommitted_size - s)

    def committed_entry_in_current_term(self) -> bool:
        return self.raft_log.zero_term_on_out_of_range(self.raft_log.committed) == self.term

    # -- leadership transfer -----------------------------------------------------------

    def abort_leader_transfer(self) -> None:
        self.lead_transferee = NONE

    # -- membership --------------------------------------------------------------------

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        changer = Changer(
            self.trk.config, self.trk.progress, self.raft_log.last_index(), self.trk.max_inflight
        )
        if cc.leave_joint():
            cfg, prs = changer.leave_joint()
        else:
            enter, auto_leave = cc.enter_joint()
            if enter:
                cfg, prs = changer.enter_joint(auto_leave, cc.changes)
            else:
                cfg, prs = changer.simple(cc.changes)
        return self.switch_to_config(cfg, prs)

    def switch_to_config(self, cfg: TrackerConfig, prs: dict[int, Progress]) -> ConfState:
        self.trk.config = cfg
        self.trk.progress = prs
        cs = cfg.conf_state()
        self.log(f"{self.id:x} switched to configuration {cfg!r}")
        pr = prs.get(self.id)
        self.is_learner = pr is not None and pr.is_learner
        if (pr is None or self.is_learner) and self.state == StateType.LEADER:
            # Removed or demoted: a leader that is not a voter steps down so the
            # remaining voters elect one of themselves.
            self.become_follower(self.term, NONE)
            return cs
        if self.state != StateType.LEADER or not cs.voters:
            return cs
        if self.maybe_commit():
            # The quorum changed; the commit index may have moved with it.
            leader.bcast_append(self)
        else:
            for node, _ in self.trk.visit():
                if node != self.id:
                    leader.maybe_send_append(self, node, send_if_empty=False)
        if self.lead_transferee != NONE and self.lead_transferee not in cfg.voters.ids():
            self.abort_leader_transfer()
        return cs

    def applied_to(self, index: int, size: int) -> None:
        """The application applied up to ``index`` (``size`` bytes of proposals)."""
        log = self.raft_log
        new = log.applied
        if index > new:  # (applied_to(max(index, applied)) changes nothing otherwise)
            # RaftLog.applied_to(index), in place
            if log.committed < index:
                raise AssertionError(
                    f"applied({index}) is out of range [prevApplied({new}), "
                    f"committed({log.committed})]"
                )
            log.applied = new = index
            if log.applying < index:
                log.applying = index
        if size:
            left = self.uncommitted_size - size
            self.uncommitted_size = left if left > 0 else 0
        if (
            self.trk.config.auto_leave
            and new >= self.pending_conf_index
            and self.state == StateType.LEADER
        ):
            # The joint config was applied: leave it automatically with an empty change.
            try:
                self.step(
                    Message(
                        MT.PROP,
                        frm=self.id,
                        entries=(Entry(type=EntryType.CONF_CHANGE_V2, data=ConfChange().encode()),),
                    )
                )
                self.log(
                    "initiating automatic transition out of joint configuration "
                    f"{self.trk.config!r}"
                )
            except ProposalDroppedError:
                self.log("not initiating automatic transition out of joint configuration: dropped")

    def check_local(self, m: Message) -> None:
        if m.type in LOCAL_MESSAGES:
            raise StepLocalMsgError(f"raft: cannot step raft local message {m.type.name}")
