"""RawNode: the one entry point of the Raft core, and the Ready contract.

The application drives a RawNode in a loop::

    node.tick()  /  node.step(msg)  /  node.propose(data)  ...
    if node.has_ready():
        rd = node.ready()
        persist(rd.hard_state, rd.entries, rd.snapshot)   # durable first
        send(rd.messages)                                 # then talk
        apply(rd.snapshot, rd.committed_entries)          # then apply
        node.advance()

Rule: between ``ready()`` and ``advance()`` the application may keep calling inputs
(``step``, ``tick``, ``propose``...), but a second ``ready()`` raises
ReadyContractError, and so does ``advance()`` without a ``ready()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import (
    ReadyContractError,
    StepLocalMsgError,
    StepPeerNotFoundError,
)
from .raft import Config, Raft
from .tracker import Progress
from .types import (
    LOCAL_MESSAGES,
    NONE,
    RESPONSE_MESSAGES,
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
    value_type,
)

__all__ = ["RawNode", "Ready", "Status"]

MT = MessageType


@value_type
class Ready:
    """What the core asks the application to do, field by field.

    soft_state: the leader and role, if they changed since the last Ready. Not
        persisted; for logging, metrics and leader-only duties.
    hard_state: term, vote and commit, if they changed. Must be durable BEFORE any of
        ``messages`` is sent (a vote must never be granted twice in one term).
    entries: entries to append to stable storage, in order, replacing any stored
        entries at the same indexes. Durable BEFORE ``messages`` are sent.
    snapshot: a snapshot to persist (and to install in the state machine) if not None.
        Durable before ``messages`` are sent.
    committed_entries: entries to apply to the state machine, in order, AFTER
        ``entries`` and ``hard_state`` are durable: some may be among this Ready's own
        ``entries`` (a sole voter commits a proposal in the Ready that persists it).
        A CONF_CHANGE_V2 entry is applied by calling ``RawNode.apply_conf_change``
        with its decoded ConfChange.
    messages: messages to send once the above is durable. A failure to deliver one is
        reported with ``report_unreachable``; a SNAP message's outcome with
        ``report_snapshot``.
    read_states: linearizable reads that are safe once ``index`` has been applied.
    must_sync: whether persisting requires an fsync (entries, term or vote changed).
    """

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    entries: tuple[Entry, ...] = ()
    snapshot: Snapshot | None = None
    committed_entries: tuple[Entry, ...] = ()
    messages: tuple[Message, ...] = ()
    read_states: tuple[ReadState, ...] = ()
    must_sync: bool = False


@dataclass(frozen=True, slots=True)
class Status:
    id: int
    term: int
    vote: int
    commit: int
    lead: int
    raft_state: StateType
    applied: int
    lead_transferee: int
    progress: dict[int, Progress] = field(default_factory=dict)


class RawNode:
    """The Raft core's only public object. See the module docstring for the loop."""

    def __init__(self, config: Config) -> None:
        self.raft = Raft(config)
        self._prev_soft = self.raft.soft_state()
        self._prev_hard = self.raft.hard_state()
        self._in_progress: Ready | None = None

    # -- inputs --------------------------------------------------------------------------

    def tick(self) -> None:
        """Advance the logical clock by one tick."""
        self.raft.tick()

    def campaign(self) -> None:
        """Start an election now (pre-vote first if enabled)."""
        self.raft.step(Message(MT.HUP, frm=self.raft.id))

    def propose(self, data: bytes) -> None:
        """Propose ``data`` to be appended to the log.

        Raises ProposalDroppedError when there is no leader to take it, a leadership
        transfer is in progress, or the uncommitted budget is exhausted.
        """
        self.raft.step(
            Message(MT.PROP, frm=self.raft.id, entries=(Entry(type=EntryType.NORMAL, data=data),))
        )

    def propose_many(self, datas: list[bytes]) -> None:
        """Propose a batch as one message: one append, one broadcast."""
        if not datas:
            return
        ents = (Entry(data=datas[0]),) if len(datas) == 1 else tuple([Entry(data=d) for d in datas])
        self.raft.step(Message(MT.PROP, frm=self.raft.id, entries=ents))

    def propose_conf_change(self, cc: ConfChange) -> None:
        """Propose a membership change; it takes effect when applied."""
        self.raft.step(
            Message(
                MT.PROP,
                frm=self.raft.id,
                entries=(Entry(type=EntryType.CONF_CHANGE_V2, data=cc.encode()),),
            )
        )

    def step(self, m: Message) -> None:
        """Feed a message received from a peer."""
        if m.type in LOCAL_MESSAGES:
            raise StepLocalMsgError(f"raft: cannot step raft local message {m.type.name}")
        if m.type in RESPONSE_MESSAGES and m.frm not in self.raft.trk.progress:
            raise StepPeerNotFoundError(f"raft: cannot step as peer not found ({m.frm:x})")
        self.raft.step(m)

    def read_index(self, ctx: bytes) -> None:
        """Request a linearizable read; a ReadState with ``ctx`` appears in a Ready."""
        self.raft.step(Message(MT.READ_INDEX, frm=self.raft.id, entries=(Entry(data=ctx),)))

    def transfer_leader(self, transferee: int) -> None:
        self.raft.step(Message(MT.TRANSFER_LEADER, frm=transferee))

    def report_unreachable(self, node: int) -> None:
        self.raft.step(Message(MT.UNREACHABLE, frm=node))

    def report_snapshot(self, node: int, ok: bool) -> None:
        self.raft.step(Message(MT.SNAP_STATUS, frm=node, reject=not ok))

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        """Apply a committed conf change to the membership; returns the new ConfState."""
        return self.raft.apply_conf_change(cc)

    # -- outputs -------------------------------------------------------------------------

    def has_ready(self) -> bool:
        # The driver asks this at least twice per Ready: it compares fields in place
        # rather than building the soft and hard states it would compare, and reads the
        # unstable tail and the indexes itself (the answers of ``Unstable.next_snapshot``,
        # ``RaftLog.has_next_unstable_ents`` and ``has_next_committed_ents``).
        r = self.raft
        if self._in_progress is not None:
            return False
        if r.msgs or r.read_states:
            return True
        soft = self._prev_soft
        if r.lead != soft.lead or r.state != soft.raft_state:
            return True
        hard, log = self._prev_hard, r.raft_log
        term, vote, commit = r.term, r.vote, log.committed
        if (term != hard.term or vote != hard.vote or commit != hard.commit) and (
            term != 0 or vote != NONE or commit != 0  # not an empty hard state
        ):
            return True
        u = log.unstable
        if u.snapshot is not None:
            # a snapshot not handed out yet; committed entries wait behind any snapshot
            return not u.snapshot_in_progress or u.offset_in_progress - u.offset < len(
                u.entries
            )
        if u.entries and u.offset_in_progress - u.offset < len(u.entries):
            return True
        if log.applying >= commit:
            return False
        # Committed entries to apply, unless all of them are still in flight (handed
        # out in an earlier Ready not yet acknowledged; ``_max_appliable_index``).
        # ``commit <= last_index()`` always (the log's rule 2).
        return u.offset_in_progress <= u.offset or log.applying < min(commit, u.offset - 1)

    def ready(self) -> Ready:
        """Collect everything the application must do now. See ``Ready``."""
        if self._in_progress is not None:
            raise ReadyContractError("ready() called again before advance()")
        r = self.raft
        log, prev_soft, prev_hard = r.raft_log, self._prev_soft, self._prev_hard
        # The states are built only when they changed (most Readies change neither,
        # or only the commit index).
        soft = (
            r.soft_state() if r.lead != prev_soft.lead or r.state != prev_soft.raft_state else None
        )
        term_vote_changed = r.term != prev_hard.term or r.vote != prev_hard.vote
        commit = log.committed
        hard = (
            HardState(r.term, r.vote, commit)  # (Raft.hard_state())
            if term_vote_changed or commit != prev_hard.commit
            else None
        )
        # Unstable.next_entries / next_snapshot / accept_in_progress, read in place.
        u = log.unstable
        ents = u.entries
        start = u.offset_in_progress - u.offset
        if start < len(ents):
            entries: tuple[Entry, ...] = tuple(ents[start:]) if start else tuple(ents)
        else:
            entries = ()
        # (the committed entries are read before the new entries count as in flight)
        committed = (
            tuple(log.next_committed_ents())
            if log.applying < log.committed and u.snapshot is None
            else ()
        )
        if ents:
            u.offset_in_progress = ents[-1].index + 1
        snap = u.snapshot
        if snap is not None:
            if u.snapshot_in_progress:
                snap = None
            else:
                u.snapshot_in_progress = True
        msgs, read_states = r.msgs, r.read_states
        rd = Ready(
            soft,
            hard,
            entries,
            snap,
            committed,
            tuple(msgs) if msgs else (),
            tuple(read_states) if read_states else (),
            bool(entries) or term_vote_changed,
        )
        if msgs:
            r.msgs = []
        if read_states:
            r.read_states = []
        if committed:
            log.applying = committed[-1].index  # (RaftLog.accept_applying's)
        if soft is not None:
            self._prev_soft = soft
        self._in_progress = rd
        return rd

    def advance(self) -> None:
        """Acknowledge that the last Ready was persisted, sent and applied."""
        rd = self._in_progress
        if rd is None:
            raise ReadyContractError("advance() called without a ready()")
        self._in_progress = None
        r = self.raft
        if rd.hard_state is not None:
            self._prev_hard = rd.hard_state
        if rd.entries:
            last = rd.entries[-1]
            u = r.raft_log.unstable
            k = last.index - u.offset
            # Unstable.stable_to's usual case in place: all handed-out entries written
            # and still of their term, nothing appended since
            if k == len(u.entries) - 1 and k >= 0 and u.entries[k].term == last.term:
                u.entries = []
                u.offset = u.offset_in_progress = last.index + 1
            else:
                u.stable_to(last.index, last.term)  # (RaftLog.stable_to's)
        if rd.snapshot is not None:
            r.raft_log.stable_snap_to(rd.snapshot.metadata.index)
            r.raft_log.applied_to(rd.snapshot.metadata.index)
        committed = rd.committed_entries
        if committed:
            size = 0
            for e in committed:
                size += len(e.data)
            r.applied_to(committed[-1].index, size)

    # -- inspection (read-only; cheap enough for a driver's every turn) -----------------------

    @property
    def id(self) -> int:
        return self.raft.id

    @property
    def term(self) -> int:
        """The current term (possibly not yet durable)."""
        return self.raft.term

    @property
    def vote(self) -> int:
        return self.raft.vote

    @property
    def state(self) -> StateType:
        return self.raft.state

    @property
    def committed(self) -> int:
        """The highest log index known to be committed."""
        return self.raft.raft_log.committed

    def last_index(self) -> int:
        return self.raft.raft_log.last_index()

    def term_at(self, index: int) -> int:
        """The term of the entry at ``index``, or 0 if it is compacted or not in the log."""
        return self.raft.raft_log.zero_term_on_out_of_range(index)

    def is_sole_voter(self) -> bool:
        """Whether this node is the only voter (and the configuration is not joint)."""
        r = self.raft
        return r.trk.is_singleton() and r.id in r.trk.config.voters.incoming

    def status(self) -> Status:
        """A snapshot of the node's state; ``progress`` (a copy) only on the leader."""
        r = self.raft
        return Status(
            id=r.id,
            term=r.term,
            vote=r.vote,
            commit=r.raft_log.committed,
            lead=r.lead,
            raft_state=r.state,
            applied=r.raft_log.applied,
            lead_transferee=r.lead_transferee,
            progress=dict(r.trk.progress) if r.state == StateType.LEADER else {},
        )

    def is_leader(self) -> bool:
        return self.raft.state == StateType.LEADER and self.raft.lead != NONE

    def sole_voter_read_index(self) -> int | None:
        """The index a ReadIndex request would be answered with now, if this node leads
        and is the only voter (the core answers such a request without asking anyone);
        None otherwise. Lets a driver serve linearizable reads without a Ready round."""
        r = self.raft
        if r.state == StateType.LEADER and r.trk.is_singleton():
            return r.raft_log.committed
        return None
