"""The safety properties of Raft, checked against everything the simulation observes.

The Checker keeps history (every leader of every term, every entry ever seen at an
(index, term), every committed and applied index, every vote granted) and raises
``InvariantViolation`` the moment an observation contradicts it:

- Election Safety: at most one leader per term, over all history.
- Leader Append-Only: while leader of a term, a member's log only grows.
- Log Matching: an (index, term) pair always names the same entry with the same
  predecessor term, so equal (index, term) implies equal prefixes (by induction).
- Leader Completeness: a leader of term T holds every entry known committed at or
  before term T.
- State Machine Safety: every member, in every incarnation, reaches the same digest
  of applied entries at the same index (the digest chains every entry before it).
- Durability: durable commit <= durable last index; durable term never decreases and
  a durable vote never changes within a term; a member never runs at a term below
  one it already sent messages in, and never votes for two candidates in one term.
- Reads: a read index is never below an index acknowledged to any client before
  the read was requested.
- Commit safety (static membership only): no member that lacks the highest committed
  entry could win an election, i.e. has a log at least as up to date as a quorum's.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyetcd.raft import (
    NONE,
    Entry,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    ReadState,
    StateType,
)
from pyetcd.raft.log import NO_LIMIT, RaftLog
from pyetcd.raft.quorum import JointConfig, VoteResult
from pyetcd.raft.raft import Raft

__all__ = ["Checker", "InvariantViolation", "LogView"]

MT = MessageType


class InvariantViolation(AssertionError):
    """A safety (or liveness) property of Raft does not hold."""


@dataclass(frozen=True, slots=True)
class LogView:
    """A member's log by terms: ``terms[i]`` is the term at index ``base + i``;
    ``base`` is the snapshot (or dummy) index, whose term is ``terms[0]``."""

    base: int
    terms: tuple[int, ...]

    @property
    def last_index(self) -> int:
        return self.base + len(self.terms) - 1

    @property
    def last_term(self) -> int:
        return self.terms[-1]

    def term(self, i: int) -> int | None:
        if self.base <= i <= self.last_index:
            return self.terms[i - self.base]
        return None

    def holds(self, index: int, term: int) -> bool:
        """Whether entry (index, term) is in this log or in the snapshot before it."""
        if index < self.base:
            return True  # compacted: only committed entries are ever compacted
        return self.term(index) == term

    def at_least_as_up_to_date(self, other: LogView) -> bool:
        return self.last_term > other.last_term or (
            self.last_term == other.last_term and self.last_index >= other.last_index
        )

    @staticmethod
    def of_raft_log(rl: RaftLog, ents: list[Entry]) -> LogView:
        base = rl.first_index() - 1
        return LogView(base, (rl.term(base), *(e.term for e in ents)))

    @staticmethod
    def of_storage(s: MemoryStorage) -> LogView:
        base = s.first_index() - 1
        ents = s.entries(base + 1, s.last_index() + 1, NO_LIMIT) if s.last_index() > base else []
        return LogView(base, (s.term(base), *(e.term for e in ents)))


@dataclass(frozen=True, slots=True)
class Committed:
    term: int | None  # the entry's term, None if the member only had it in a snapshot
    known_at: int  # the term of the member that first reported it committed


class Checker:
    """History of the simulated cluster, and the invariants checked against it."""

    def __init__(self, voters: tuple[int, ...]) -> None:
        self.voters = voters
        # Commit safety is checked only while membership never changed.
        self.static_config = True
        self.leaders: dict[int, int] = {}
        self.leader_logs: dict[tuple[int, int], LogView] = {}
        self.entries: dict[tuple[int, int], tuple[int, int, bytes]] = {}
        # committed[i] for every index 1..len-1 known committed; committed[0] unused.
        self.committed: list[Committed] = [Committed(0, 0), Committed(1, 0)]
        self.applied: dict[int, bytes] = {}
        self.applied_entries: dict[int, Entry] = {}
        self.applied_data: set[bytes] = set()
        self.durable: dict[int, HardState] = {}
        self.sent_term: dict[int, int] = {}
        self.votes: dict[tuple[int, int], int] = {}
        self.read_floor: dict[bytes, int] = {}
        self.acked = 0
        # The latest observed log of each live member, and every member's disk.
        self.views: dict[int, LogView] = {}
        self.disks: dict[int, MemoryStorage] = {}
        self.commit_seen: dict[int, int] = {}
        self.voters_before: dict[int, JointConfig] = {}

    # -- observations --------------------------------------------------------------------

    def on_conf_change_proposed(self) -> None:
        self.static_config = False

    def on_start(self, mid: int, r: Raft) -> None:
        self._check_term_and_vote(mid, r, "after restart")

    def before_process(self, mid: int, r: Raft) -> None:
        self.voters_before[mid] = r.trk.config.voters

    def observe(self, mid: int, r: Raft) -> None:
        """Called after every input a live member handled (and its Readies)."""
        self._check_term_and_vote(mid, r, "")
        rl = r.raft_log
        ents = rl.all_entries()
        view = LogView.of_raft_log(rl, ents)
        self.views[mid] = view
        self._check_log_matching(mid, view, ents)
        self._note_committed(mid, r, view)
        if r.state == StateType.LEADER:
            self._check_leader(mid, r.term, view)
        c = rl.committed
        if c > self.commit_seen.get(mid, 0):
            self.commit_seen[mid] = c
            if r.state == StateType.LEADER:
                self._check_commit_durable(mid, r, c)
            self.check_commit_safety(self.all_views())

    def on_send(self, mid: int, msg: Message) -> None:
        # Pre-votes carry the term a future election would use; nothing is promised.
        if msg.type in (MT.PRE_VOTE, MT.PRE_VOTE_RESP):
            return
        if msg.term > self.sent_term.get(mid, 0):
            self.sent_term[mid] = msg.term
        if msg.type == MT.VOTE_RESP and not msg.reject:
            voted = self.votes.setdefault((mid, msg.term), msg.to)
            if voted != msg.to:
                raise InvariantViolation(
                    f"member {mid} voted for {voted} and {msg.to} in term {msg.term}"
                )

    def on_persist(self, mid: int, s: MemoryStorage) -> None:
        hs = s.hard_state
        if hs.commit > s.last_index():
            raise InvariantViolation(
                f"member {mid}: durable commit {hs.commit} beyond durable last index "
                f"{s.last_index()}"
            )
        old = self.durable.get(mid)
        if old is not None:
            if hs.term < old.term or hs.commit < old.commit:
                raise InvariantViolation(f"member {mid}: durable state went back {old} -> {hs}")
            if hs.term == old.term and old.vote != NONE and hs.vote != old.vote:
                raise InvariantViolation(
                    f"member {mid}: durable vote changed in term {hs.term}: {old.vote} -> {hs.vote}"
                )
        self.durable[mid] = hs

    def on_install(self, mid: int, index: int, digest: bytes) -> None:
        self._check_digest(mid, index, digest, None)

    def on_apply(self, mid: int, e: Entry, digest: bytes) -> None:
        self._check_digest(mid, e.index, digest, e)
        self.applied_data.add(e.data)

    def on_ack(self, index: int) -> None:
        self.acked = max(self.acked, index)

    def on_read_request(self, ctx: bytes) -> None:
        self.read_floor[ctx] = self.acked

    def on_read_state(self, mid: int, rs: ReadState) -> None:
        floor = self.read_floor.get(rs.request_ctx, 0)
        if rs.index < floor:
            raise InvariantViolation(
                f"member {mid}: read {rs.request_ctx!r} got index {rs.index}, below {floor} "
                "acknowledged before it was requested"
            )

    def on_read_done(self, applied_index: int) -> None:
        # The client saw the member's state at its applied index.
        self.acked = max(self.acked, applied_index)

    def is_applied(self, data: bytes) -> bool:
        return data in self.applied_data

    # -- the invariants ------------------------------------------------------------------

    def _check_term_and_vote(self, mid: int, r: Raft, when: str) -> None:
        sent = self.sent_term.get(mid, 0)
        if r.term < sent:
            raise InvariantViolation(
                f"member {mid} {when}: term {r.term} is below term {sent} it already sent"
            )
        voted = self.votes.get((mid, r.term))
        if voted is not None and r.vote != voted:
            raise InvariantViolation(
                f"member {mid} {when}: vote {r.vote} in term {r.term}, but it granted its "
                f"vote to {voted}"
            )

    def _check_log_matching(self, mid: int, view: LogView, ents: list[Entry]) -> None:
        reg = self.entries
        prev = view.terms[0]
        for e in ents:
            val = (prev, int(e.type), e.data)
            old = reg.setdefault((e.index, e.term), val)
            if old != val:
                raise InvariantViolation(
                    f"log matching: member {mid} has entry ({e.index}, {e.term}) = {val}, "
                    f"seen before as {old}"
                )
            prev = e.term

    def _note_committed(self, mid: int, r: Raft, view: LogView) -> None:
        c = r.raft_log.committed
        comm = self.committed
        for i in range(len(comm), c + 1):
            comm.append(Committed(view.term(i), r.term))
        # What this member holds as committed must match what was committed before.
        lo = max(view.base, 1)
        for i in range(lo, min(c, view.last_index) + 1):
            t = comm[i].term
            if t is None:
                comm[i] = Committed(view.term(i), comm[i].known_at)
            elif view.term(i) != t:
                raise InvariantViolation(
                    f"member {mid} committed ({i}, {view.term(i)}) but ({i}, {t}) was "
                    "committed before"
                )

    def _check_leader(self, mid: int, term: int, view: LogView) -> None:
        first = self.leaders.setdefault(term, mid)
        if first != mid:
            raise InvariantViolation(f"election safety: {first} and {mid} both led term {term}")
        old = self.leader_logs.get((mid, term))
        if old is not None:
            if view.last_index < old.last_index:
                raise InvariantViolation(
                    f"leader append-only: leader {mid} of term {term} shrank its log from "
                    f"{old.last_index} to {view.last_index}"
                )
            for i in range(max(old.base, view.base), old.last_index + 1):
                if view.term(i) != old.term(i):
                    raise InvariantViolation(
                        f"leader append-only: leader {mid} of term {term} rewrote index {i}"
                    )
        self.leader_logs[(mid, term)] = view
        # Log Matching (checked separately) makes the highest such entry enough.
        for i in range(len(self.committed) - 1, 0, -1):
            ce = self.committed[i]
            if ce.known_at > term or ce.term is None:
                continue
            if not view.holds(i, ce.term):
                raise InvariantViolation(
                    f"leader completeness: leader {mid} of term {term} lacks committed entry "
                    f"({i}, {ce.term}) (known committed at term {ce.known_at}); its log "
                    f"ends at ({view.last_index}, {view.last_term})"
                )
            break

    def _check_commit_durable(self, mid: int, r: Raft, c: int) -> None:
        """A leader's new commit index is on the disks of a quorum of its voters."""
        t = r.raft_log.term(c)
        # The commit moved either in step() under the config of before the Ready was
        # applied, or when an applied conf change re-counted under the new one.
        configs = [r.trk.config.voters]
        before = self.voters_before.get(mid)
        if before is not None:
            configs.append(before)
        for voters in configs:
            holding = {v: self._disk_holds(v, c, t) for v in voters.ids()}
            if voters.vote_result(holding) == VoteResult.WON:
                return
        raise InvariantViolation(
            f"commit durability: leader {mid} of term {r.term} committed ({c}, {t}) but "
            f"only {sorted(v for v, h in holding.items() if h)} of voters {configs!r} "
            "hold it durably"
        )

    def _disk_holds(self, mid: int, index: int, term: int) -> bool:
        s = self.disks.get(mid)
        if s is None or index > s.last_index():
            return False
        if index < s.first_index() - 1:
            return True  # compacted: only applied (so committed) entries are
        return s.term(index) == term

    def all_views(self) -> dict[int, LogView]:
        return {
            mid: self.views[mid] if mid in self.views else LogView.of_storage(s)
            for mid, s in self.disks.items()
        }

    def on_crash(self, mid: int) -> None:
        self.views.pop(mid, None)

    def _check_digest(self, mid: int, index: int, digest: bytes, e: Entry | None) -> None:
        old = self.applied.setdefault(index, digest)
        if e is not None:
            self.applied_entries.setdefault(index, e)
        if old != digest:
            first = self.applied_entries.get(index)
            raise InvariantViolation(
                f"state machine safety: member {mid} reached a different state at index "
                f"{index} (applying {e}) than applied before ({first})"
            )

    def check_commit_safety(self, views: dict[int, LogView]) -> None:
        """No member lacking the highest committed entry is electable (static config)."""
        if not self.static_config:
            return
        for i in range(len(self.committed) - 1, 0, -1):
            t = self.committed[i].term
            if t is not None:
                break
        else:
            return
        quorum = len(self.voters) // 2 + 1
        for cand in self.voters:
            v = views[cand]
            if v.holds(i, t):
                continue
            backers = [o for o in self.voters if v.at_least_as_up_to_date(views[o])]
            if len(backers) >= quorum:
                raise InvariantViolation(
                    f"commit safety: entry ({i}, {t}) is committed, but member {cand} lacks "
                    f"it and would get the votes of {backers}"
                )
