"""Per-follower replication progress and the configuration that tracks it.

A follower's Progress is in one of three states:
- PROBE: the leader sends at most one append per heartbeat interval to find the
  match point; after a rejection it backs off.
- REPLICATE: the leader pipelines appends optimistically, bounded by Inflights.
- SNAPSHOT: the leader sent a snapshot and waits for it to be applied.
Rule: ``match < next`` always; ``match`` never decreases.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field

from .quorum import JointConfig, VoteResult
from .types import ConfState

__all__ = ["Inflights", "Progress", "ProgressState", "ProgressTracker", "TrackerConfig"]


class ProgressState(enum.IntEnum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2


class Inflights:
    """A bounded window of in-flight append messages, by their last index."""

    __slots__ = ("_buf", "_bytes", "max_bytes", "size")

    def __init__(self, size: int, max_bytes: int = 0) -> None:
        self.size = size
        self.max_bytes = max_bytes  # 0 = no byte limit
        self._buf: list[tuple[int, int]] = []  # (last index, bytes), increasing index
        self._bytes = 0

    def clone(self) -> Inflights:
        c = Inflights(self.size, self.max_bytes)
        c._buf = list(self._buf)
        c._bytes = self._bytes
        return c

    def add(self, index: int, nbytes: int = 0) -> None:
        if self.full():
            raise AssertionError("cannot add into a full inflights")
        self._buf.append((index, nbytes))
        self._bytes += nbytes

    def free_le(self, to: int) -> None:
        """Free every in-flight message whose last index is <= ``to``."""
        i = 0
        while i < len(self._buf) and self._buf[i][0] <= to:
            self._bytes -= self._buf[i][1]
            i += 1
        if i:
            del self._buf[:i]

    def full(self) -> bool:
        return len(self._buf) >= self.size or (self.max_bytes > 0 and self._bytes >= self.max_bytes)

    def count(self) -> int:
        return len(self._buf)

    def reset(self) -> None:
        self._buf.clear()
        self._bytes = 0


@dataclass(slots=True)
class Progress:
    """The leader's view of one follower's log."""

    match: int = 0
    next: int = 1
    state: ProgressState = ProgressState.PROBE
    # In SNAPSHOT state: the index of the snapshot in flight.
    pending_snapshot: int = 0
    # True if the follower was heard from since the last check-quorum round.
    recent_active: bool = False
    # In PROBE state: an append was sent and the leader waits before the next one.
    msg_app_flow_paused: bool = False
    inflights: Inflights = field(default_factory=lambda: Inflights(256))
    is_learner: bool = False

    def reset_state(self, state: ProgressState) -> None:
        self.msg_app_flow_paused = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state == ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self.reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self.reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self.reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self.reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def update_on_entries_send(self, entries: int, nbytes: int, next_index: int) -> None:
        """Account for an append of ``entries`` entries starting at ``next_index``."""
        if self.state == ProgressState.REPLICATE:
            if entries:
                last = next_index + entries - 1
                self.next = last + 1
                self.inflights.add(last, nbytes)
            # A full window pauses the flow until an ack or a heartbeat response
            # (which lets one empty append through, so lost appends cannot stall us).
            self.msg_app_flow_paused = self.inflights.full()
        elif self.state == ProgressState.PROBE and entries:
            self.msg_app_flow_paused = True

    def maybe_update(self, n: int) -> bool:
        """Record that the follower has ``n``; False if the news is stale."""
        updated = False
        if self.match < n:
            self.match = n
            updated = True
            self.msg_app_flow_paused = False
        if self.next <= n:  # next = max(next, n + 1)
            self.next = n + 1
        return updated

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """Handle a rejected append of index ``rejected``; False if the rejection is stale."""
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.msg_app_flow_paused = False
        return True

    def is_paused(self) -> bool:
        if self.state == ProgressState.PROBE:
            return self.msg_app_flow_paused
        if self.state == ProgressState.REPLICATE:
            return self.msg_app_flow_paused
        return True

    def __repr__(self) -> str:
        s = f"{self.state.name} match={self.match} next={self.next}"
        if self.is_learner:
            s += " learner"
        if self.is_paused():
            s += " paused"
        if self.pending_snapshot:
            s += f" pendingSnap={self.pending_snapshot}"
        if not self.recent_active:
            s += " inactive"
        if self.inflights.count():
            s += f" inflight={self.inflights.count()}"
            if self.inflights.full():
                s += "[full]"
        return s


@dataclass(slots=True)
class TrackerConfig:
    """The active membership: voters (maybe joint), learners, and learners-to-be."""

    voters: JointConfig = field(default_factory=JointConfig)
    learners: set[int] = field(default_factory=set)
    # Outgoing voters that become learners when the joint config is left.
    learners_next: set[int] = field(default_factory=set)
    auto_leave: bool = False

    def clone(self) -> TrackerConfig:
        return TrackerConfig(
            voters=JointConfig(self.voters.incoming, self.voters.outgoing),
            learners=set(self.learners),
            learners_next=set(self.learners_next),
            auto_leave=self.auto_leave,
        )

    def conf_state(self) -> ConfState:
        return ConfState(
            voters=tuple(sorted(self.voters.incoming)),
            learners=tuple(sorted(self.learners)),
            voters_outgoing=tuple(sorted(self.voters.outgoing)),
            learners_next=tuple(sorted(self.learners_next)),
            auto_leave=self.auto_leave,
        )

    def __repr__(self) -> str:
        s = f"voters={self.voters!r}"
        if self.learners:
            s += f" learners={sorted(self.learners)}"
        if self.learners_next:
            s += f" learners_next={sorted(self.learners_next)}"
        if self.auto_leave:
            s += " autoleave"
        return s


class ProgressTracker:
    """The config plus a Progress per member, and the votes of the current election."""

    def __init__(self, max_inflight: int, max_inflight_bytes: int = 0) -> None:
        self.config = TrackerConfig()
        self.progress: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        self.max_inflight = max_inflight
        self.max_inflight_bytes = max_inflight_bytes

    def new_inflights(self) -> Inflights:
        return Inflights(self.max_inflight, self.max_inflight_bytes)

    def is_singleton(self) -> bool:
        return len(self.config.voters.incoming) == 1 and not self.config.voters.outgoing

    def committed(self) -> int:
        voters, prs = self.config.voters, self.progress
        if not voters.outgoing and voters.incoming:
            # The usual (not joint) config, run on every proposal and acknowledgement:
            # MajorityConfig.committed_index without the callback per voter.
            inc = voters.incoming
            if len(inc) == 1:  # a sole voter: its own match
                for v in inc:
                    return prs[v].match if v in prs else 0
            idx = sorted([prs[v].match if v in prs else 0 for v in inc], reverse=True)
            return idx[len(inc) // 2]

        def acked(node: int) -> int | None:
            pr = self.progress.get(node)
            return pr.match if pr is not None else None

        return self.config.voters.committed_index(acked)

    def visit(self) -> Iterator[tuple[int, Progress]]:
        """Members in id order, for deterministic message order."""
        for node in sorted(self.progress):
            yield node, self.progress[node]

    def voter_nodes(self) -> list[int]:
        return sorted(self.config.voters.ids())

    def learner_nodes(self) -> list[int]:
        return sorted(self.config.learners)

    def quorum_active(self) -> bool:
        votes = {node: pr.recent_active for node, pr in self.progress.items() if not pr.is_learner}
        return self.config.voters.vote_result(votes) == VoteResult.WON

    def reset_votes(self) -> None:
        self.votes = {}

    def record_vote(self, node: int, granted: bool) -> None:
        self.votes.setdefault(node, granted)

    def tally_votes(self) -> tuple[int, int, VoteResult]:
        granted = rejected = 0
        for node, pr in self.progress.items():
            if pr.is_learner or node not in self.votes:
                continue
            if self.votes[node]:
                granted += 1
            else:
                rejected += 1
        return granted, rejected, self.config.voters.vote_result(self.votes)
