"""A simulated Raft cluster in one process: members, their disks, and the network.

Each member is a RawNode over a MemoryStorage that plays the member's DURABLE disk,
plus volatile state (the RawNode itself and a tiny state machine). The driver keeps
the Ready contract: persist (snapshot, entries, hard state) BEFORE sending messages,
then apply committed entries, then advance. A crash throws away everything but the
MemoryStorage; a restart builds a new RawNode over it and re-applies from its snapshot.

The network is a list of in-flight messages that the test drives one by one:
deliver any of them (so reordering is free), drop, duplicate; links can be cut.

Every observable event is reported to a ``Checker`` (see sim_invariants.py), which
raises ``InvariantViolation`` the moment a safety property breaks.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from sim_invariants import Checker, InvariantViolation

from pyetcd.raft import (
    ConfChange,
    Config,
    ConfState,
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    ProposalDroppedError,
    RawNode,
    ReadState,
    Ready,
    Snapshot,
    SnapshotMetadata,
    StateType,
    StepPeerNotFoundError,
)
from pyetcd.raft.confchange import Changer, ConfChangeError

__all__ = ["GENESIS", "Cluster", "InvariantViolation", "Member", "SimOptions"]

#: The state machine's digest before any entry was applied (index 1, the bootstrap).
GENESIS = b"genesis"


@dataclass(frozen=True, slots=True)
class SimOptions:
    """How the simulated cluster is built."""

    size: int = 3
    # Members that start with an empty disk and join only through conf changes.
    spares: int = 2
    election_tick: int = 5
    heartbeat_tick: int = 1
    # 1 sends one entry per append, which makes commit-by-counting bugs reachable.
    max_size_per_msg: int = 1 << 20
    max_inflight_msgs: int = 256
    # Fault injection (test_simulation_catches_bugs): make a Ready's term and vote
    # durable only at the member's NEXT Ready, after its messages went out; a crash
    # in between loses them.
    vote_after_send: bool = False


@dataclass(slots=True)
class InFlight:
    msg: Message
    # The sender's incarnation: a snapshot's outcome is reported only to the very
    # RawNode that sent it.
    incarnation: int


def chain(digest: bytes, e: Entry) -> bytes:
    """The state machine: a hash chain over every applied entry."""
    h = hashlib.blake2b(digest, digest_size=8)
    h.update(f"{e.index}/{e.term}/{int(e.type)}/".encode())
    h.update(e.data)
    return h.digest()


@dataclass(slots=True)
class Member:
    id: int
    storage: MemoryStorage  # the durable disk: the only thing a crash keeps
    node: RawNode | None = None  # None while crashed
    incarnation: int = 0
    # The volatile state machine: digest of the applied entries, and its position.
    applied_index: int = 0
    digest: bytes = GENESIS
    conf_state: ConfState = field(default_factory=ConfState)
    # vote_after_send mode: a hard state whose messages went out, not yet durable.
    pending_hs: HardState | None = None
    reads: list[ReadState] = field(default_factory=list)


class Cluster:
    """Members 1..size bootstrapped as voters; ``spares`` more with empty disks."""

    def __init__(
        self, opts: SimOptions, seed: int, logger: Callable[[str], None] | None = None
    ) -> None:
        self.opts = opts
        self.seed = seed
        self.logger = logger
        self.voters = tuple(range(1, opts.size + 1))
        self.ids = tuple(range(1, opts.size + opts.spares + 1))
        self.net: list[InFlight] = []
        self.cut: set[frozenset[int]] = set()
        self.check = Checker(self.voters)
        self.members: dict[int, Member] = {}
        # Client writes in flight: payload -> the member it was proposed at.
        self.proposed_at: dict[bytes, int] = {}
        self._seq = 0
        for i in self.ids:
            s = MemoryStorage()
            if i in self.voters:
                s.apply_snapshot(
                    Snapshot(
                        data=GENESIS,
                        metadata=SnapshotMetadata(ConfState(voters=self.voters), index=1, term=1),
                    )
                )
                s.set_hard_state(HardState(term=1, commit=1))
            self.members[i] = Member(i, s)
            self.check.disks[i] = s
        for i in self.ids:
            self.start(i)

    # -- lifecycle -----------------------------------------------------------------

    def live(self) -> list[Member]:
        return [m for m in self.members.values() if m.node is not None]

    def start(self, mid: int) -> None:
        """(Re)start a member from its disk alone."""
        m = self.members[mid]
        assert m.node is None
        m.incarnation += 1
        snap = m.storage.snapshot()
        m.applied_index = snap.metadata.index
        m.digest = snap.data if not snap.is_empty() else GENESIS
        m.conf_state = snap.metadata.conf_state
        m.pending_hs = None
        m.reads = []
        rng = random.Random(f"{self.seed}/{mid}/{m.incarnation}")
        log = None if self.logger is None else self._member_logger(mid)
        cfg = Config(
            id=mid,
            storage=m.storage,
            election_tick=self.opts.election_tick,
            heartbeat_tick=self.opts.heartbeat_tick,
            max_size_per_msg=self.opts.max_size_per_msg,
            max_inflight_msgs=self.opts.max_inflight_msgs,
            rng=rng,
        )
        if log is not None:
            cfg.logger = log
        m.node = RawNode(cfg)
        self.check.on_start(m.id, m.node.raft)
        self.process(m)

    def _member_logger(self, mid: int) -> Callable[[str], None]:
        out = self.logger
        assert out is not None
        return lambda line: out(f"[{mid}] {line}")

    def crash(self, mid: int) -> None:
        """Lose everything that was not made durable."""
        m = self.members[mid]
        m.node = None
        m.pending_hs = None
        m.reads = []
        self.check.on_crash(mid)

    def restart(self, mid: int) -> None:
        if self.members[mid].node is None:
            self.start(mid)

    # -- the Ready loop ----------------------------------------------------------------

    def process(self, m: Member) -> None:
        """Handle every Ready the member has, keeping the contract."""
        node = m.node
        assert node is not None
        self.check.before_process(m.id, node.raft)
        if m.pending_hs is not None:
            m.storage.set_hard_state(m.pending_hs)
            m.pending_hs = None
            self.check.on_persist(m.id, m.storage)
        while node.has_ready():
            self._handle(m, node.ready())
        self.check.observe(m.id, node.raft)

    def _handle(self, m: Member, rd: Ready) -> None:
        node = m.node
        assert node is not None
        s = m.storage
        if rd.snapshot is not None:
            s.apply_snapshot(rd.snapshot)
        if rd.entries:
            s.append(rd.entries)
        if rd.hard_state is not None:
            if self.opts.vote_after_send:
                # The fault: only the commit index is made durable now.
                s.set_hard_state(replace(s.hard_state, commit=rd.hard_state.commit))
                m.pending_hs = rd.hard_state
            else:
                s.set_hard_state(rd.hard_state)
        self.check.on_persist(m.id, s)
        self._send(m, rd.messages)
        if rd.snapshot is not None:
            self._install(m, rd.snapshot)
        for e in rd.committed_entries:
            self._apply(m, e)
        for rs in rd.read_states:
            self.check.on_read_state(m.id, rs)
            m.reads.append(rs)
        self._complete_reads(m)
        node.advance()

    def _send(self, m: Member, msgs: tuple[Message, ...]) -> None:
        for msg in msgs:
            if msg.type == MessageType.SNAP:
                msg = self._merged_snapshot(m, msg)
            self.check.on_send(m.id, msg)
            self.net.append(InFlight(msg, m.incarnation))

    def _merged_snapshot(self, m: Member, msg: Message) -> Message:
        """Send the state machine as applied now, as etcd's server does: the stored
        snapshot may predate the conf change that added the receiver, who would
        refuse it (and the leader would resend it forever)."""
        assert m.node is not None and msg.snapshot is not None
        if m.applied_index <= msg.snapshot.metadata.index:
            return msg
        term = m.node.raft.raft_log.term(m.applied_index)
        md = SnapshotMetadata(conf_state=m.conf_state, index=m.applied_index, term=term)
        return replace(msg, snapshot=Snapshot(data=m.digest, metadata=md))

    def _install(self, m: Member, snap: Snapshot) -> None:
        md = snap.metadata
        self.check.on_install(m.id, md.index, snap.data)
        m.applied_index = md.index
        m.digest = snap.data
        m.conf_state = md.conf_state

    def _apply(self, m: Member, e: Entry) -> None:
        assert m.node is not None
        if e.index != m.applied_index + 1:
            raise InvariantViolation(
                f"member {m.id} applied index {e.index} after {m.applied_index}"
            )
        if e.type == EntryType.CONF_CHANGE_V2:
            m.conf_state = m.node.apply_conf_change(ConfChange.decode(e.data))
        m.digest = chain(m.digest, e)
        m.applied_index = e.index
        self.check.on_apply(m.id, e, m.digest)
        if e.type == EntryType.NORMAL and self.proposed_at.get(e.data) == m.id:
            # The write's proposer applied it: the client gets its answer now.
            del self.proposed_at[e.data]
            self.check.on_ack(e.index)

    def _complete_reads(self, m: Member) -> None:
        done = [rs for rs in m.reads if rs.index <= m.applied_index]
        if done:
            m.reads = [rs for rs in m.reads if rs.index > m.applied_index]
            for rs in done:
                self.check.on_read_done(rs.index)

    # -- the network -------------------------------------------------------------------

    def deliver(self, pick: int) -> None:
        if self.net:
            self._deliver(self.net.pop(pick % len(self.net)))

    def drop(self, pick: int) -> None:
        if self.net:
            self._lost(self.net.pop(pick % len(self.net)))

    def duplicate(self, pick: int) -> None:
        if self.net:
            f = self.net[pick % len(self.net)]
            self.net.append(InFlight(f.msg, f.incarnation))

    def _reachable(self, msg: Message) -> bool:
        return (
            self.members[msg.to].node is not None and frozenset((msg.frm, msg.to)) not in self.cut
        )

    def _deliver(self, f: InFlight) -> None:
        msg = f.msg
        if not self._reachable(msg):
            self._lost(f)
            return
        to = self.members[msg.to]
        assert to.node is not None
        # A real transport drops these too.
        with contextlib.suppress(ProposalDroppedError, StepPeerNotFoundError):
            to.node.step(msg)
        self.process(to)
        if msg.type == MessageType.SNAP:
            self._report_snapshot(f, ok=True)

    def _lost(self, f: InFlight) -> None:
        if f.msg.type == MessageType.SNAP:
            self._report_snapshot(f, ok=False)

    def _report_snapshot(self, f: InFlight, ok: bool) -> None:
        sender = self.members[f.msg.frm]
        if sender.node is None or sender.incarnation != f.incarnation:
            return
        sender.node.report_snapshot(f.msg.to, ok)
        self.process(sender)

    def isolate(self, mid: int) -> None:
        for other in self.ids:
            if other != mid:
                self.cut.add(frozenset((mid, other)))

    def partition(self, group: set[int]) -> None:
        """Split the network in two: ``group`` and everyone else (replaces all cuts)."""
        self.cut = {frozenset((a, b)) for a in group for b in self.ids if b not in group}

    def cut_link(self, a: int, b: int) -> None:
        if a != b:
            self.cut.add(frozenset((a, b)))

    def heal(self) -> None:
        self.cut.clear()

    def deliver_kind(self, kinds: frozenset[MessageType], max_rounds: int = 50) -> None:
        """Deliver, oldest first, every message of ``kinds`` (and those it causes),
        leaving the rest in flight: e.g. run an election without its appends."""
        for _ in range(max_rounds):
            batch = [f for f in self.net if f.msg.type in kinds]
            if not batch:
                return
            self.net = [f for f in self.net if f.msg.type not in kinds]
            for f in batch:
                self._deliver(f)

    def stabilize(self, max_rounds: int = 200) -> None:
        """Deliver (or lose to a cut link) every message until the network is quiet."""
        for _ in range(max_rounds):
            if not self.net:
                return
            batch, self.net = self.net, []
            for f in batch:
                self._deliver(f)
        # Without ticks, every exchange ends: an endless one is a livelock.
        raise InvariantViolation(
            f"liveness: the network did not quiesce within {max_rounds} rounds; " + self.describe()
        )

    # -- client and operator inputs ------------------------------------------------------

    def tick(self, mid: int) -> None:
        m = self.members[mid]
        if m.node is not None:
            m.node.tick()
            self.process(m)

    def tick_all(self) -> None:
        for m in self.live():
            self.tick(m.id)

    def _unique(self, kind: str) -> bytes:
        self._seq += 1
        return f"{kind}{self._seq}".encode()

    def propose(self, mid: int) -> bytes | None:
        m = self.members[mid]
        if m.node is None:
            return None
        data = self._unique("put")
        self.proposed_at[data] = mid
        try:
            m.node.propose(data)
        except ProposalDroppedError:
            del self.proposed_at[data]
            return None
        finally:
            self.process(m)
        return data

    def read_index(self, mid: int) -> None:
        m = self.members[mid]
        if m.node is not None:
            ctx = self._unique("read")
            self.check.on_read_request(ctx)
            m.node.read_index(ctx)
            self.process(m)

    def campaign(self, mid: int) -> None:
        m = self.members[mid]
        if m.node is not None:
            m.node.campaign()
            self.process(m)

    def transfer_leader(self, mid: int, transferee: int) -> None:
        m = self.members[mid]
        if m.node is not None:
            m.node.transfer_leader(transferee)
            self.process(m)

    def leader(self) -> Member | None:
        """The live leader of the highest term, if any."""
        best: Member | None = None
        for m in self.live():
            assert m.node is not None
            r = m.node.raft
            if r.state == StateType.LEADER and (best is None or r.term > _term(best)):
                best = m
        return best

    def propose_conf_change(self, cc: ConfChange) -> bool:
        """Propose ``cc`` at the leader if it is valid in the leader's config.

        The core checks only that no other change is pending (a refused change is
        replaced by an empty entry); that the change itself is valid is the
        application's job, as in etcd. Since no conf change is pending when the
        leader accepts one, its config is the one the change will apply to.
        """
        m = self.leader()
        if m is None or m.node is None:
            return False
        r = m.node.raft
        changer = Changer(r.trk.config, r.trk.progress, r.raft_log.last_index(), r.trk.max_inflight)
        try:
            if cc.leave_joint():
                changer.leave_joint()
            else:
                enter, auto_leave = cc.enter_joint()
                if enter:
                    changer.enter_joint(auto_leave, cc.changes)
                else:
                    changer.simple(cc.changes)
        except ConfChangeError:
            return False
        self.check.on_conf_change_proposed()
        try:
            m.node.propose_conf_change(cc)
        except ProposalDroppedError:
            return False
        finally:
            self.process(m)
        return True

    def compact(self, mid: int) -> None:
        """Snapshot the member's state machine at its applied index; drop the log before."""
        m = self.members[mid]
        s = m.storage
        if m.node is None or m.applied_index <= s.snapshot().metadata.index:
            return
        s.create_snapshot(m.applied_index, m.conf_state, m.digest)
        s.compact(m.applied_index)

    # -- invariants that need the whole cluster -------------------------------------------

    def check_all(self) -> None:
        """Checks over all members at once (live ones as last observed, crashed ones
        as their disks would restart them)."""
        self.check.check_commit_safety(self.check.all_views())

    # -- liveness ----------------------------------------------------------------------

    def check_liveness(self, max_ticks: int) -> int:
        """After healing and restarting everyone: a leader is elected and a fresh
        proposal commits within ``max_ticks`` ticks. Returns the ticks it took."""
        self.heal()
        for mid in self.ids:
            self.restart(mid)
        self.stabilize()
        # A client re-proposes whenever leadership changes: an entry appended by a
        # stale leader may legitimately be truncated away.
        proposed: set[bytes] = set()
        proposed_to: tuple[int, int] | None = None
        for t in range(max_ticks):
            lead = self.leader()
            if lead is not None:
                if proposed_to != (lead.id, _term(lead)):
                    data = self.propose(lead.id)
                    if data is not None:
                        proposed.add(data)
                        proposed_to = (lead.id, _term(lead))
                    self.stabilize()
                if any(self.check.is_applied(d) for d in proposed):
                    return t
            self.tick_all()
            self.stabilize()
        raise InvariantViolation(
            f"liveness: no commit within {max_ticks} ticks after healing "
            f"(proposed {sorted(proposed)} to {proposed_to}); " + self.describe()
        )

    def describe(self) -> str:
        parts = []
        for m in self.members.values():
            if m.node is None:
                parts.append(f"{m.id}:down")
                continue
            r = m.node.raft
            parts.append(
                f"{m.id}:{r.state.name} term={r.term} lead={r.lead} "
                f"commit={r.raft_log.committed} last={r.raft_log.last_index()} "
                f"cfg={r.trk.config!r}"
            )
        return "; ".join(parts)


def _term(m: Member) -> int:
    assert m.node is not None
    return m.node.raft.term
