"""The asyncio driver around the pure Raft core.

One loop, readable in protocol order: wait for a tick, a peer message or a proposal;
feed them to the core; then for each Ready: persist (WAL, group-committed, off the
event loop) -> send -> apply -> advance. Inputs that arrive while a Ready is being
handled are batched into the next one, so one fsync covers many proposals.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Protocol

from pyetcd.logutil import Logger
from pyetcd.raft import (
    NONE,
    ConfChange,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ProposalDroppedError,
    RawNode,
    ReadState,
    Ready,
    Snapshot,
    SnapshotMetadata,
    StateType,
)
from pyetcd.raft.errors import RaftError
from pyetcd.wal import WALStorage

from .transport import Transport

__all__ = ["RaftNode", "StateMachine"]

#: Entries kept in memory behind a snapshot so slow followers catch up without one.
SNAPSHOT_CATCHUP_ENTRIES = 5000
#: A Ready with at most this many entries is written and synced on the event loop's
#: thread (when the WAL writer is idle). One client's sequential writes then skip the
#: two thread hand-offs around the fdatasync; under load, Readies carry many entries
#: and the writer thread syncs while the loop takes in the next requests.
INLINE_SAVE_MAX_ENTRIES = 1
#: ...but only while synced saves take less than this (a moving average): on a slow
#: disk the hand-offs cost little next to the sync, and the loop keeps serving reads,
#: heartbeats and other clients while the writer thread waits for it.
INLINE_SAVE_MAX_SECONDS = 0.002
_SYNC_AVERAGE_WEIGHT = 0.125  # of the newest sample in the moving average


class StateMachine(Protocol):
    """The state machine the driver applies committed entries to."""

    def apply_entries(
        self, entries: Sequence[Entry], apply_conf: Callable[[ConfChange], ConfState]
    ) -> None:
        """Apply ``entries`` in order. Conf changes are handed to ``apply_conf``."""
        ...

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Replace the state with the one in ``snap`` (received from the leader)."""
        ...

    def snapshot_data(self) -> bytes:
        """Make everything applied durable and return the raft snapshot payload."""
        ...


class RaftNode:
    """Drives ``rawnode`` over ``storage`` and ``transport``; applies through ``applier``."""

    def __init__(
        self,
        rawnode: RawNode,
        storage: WALStorage,
        transport: Transport,
        applier: StateMachine,
        *,
        tick_interval: float,
        snapshot_count: int,
        conf_state: ConfState,
        logger: Logger,
        on_leader_change: Callable[[int, int], None] | None = None,
        on_read_states: Callable[[Sequence[ReadState]], None] | None = None,
        on_dropped: Callable[[list[bytes], RaftError], None] | None = None,
    ) -> None:
        self.rawnode = rawnode
        self.storage = storage
        self.transport = transport
        self.applier = applier
        self.tick_interval = tick_interval
        self.snapshot_count = snapshot_count
        self.conf_state = conf_state
        self.log = logger
        self.lead = NONE
        self.term = rawnode.raft.term
        # (term, vote) as last written to the WAL
        self._durable_term_vote = (rawnode.raft.term, rawnode.raft.vote)
        self.applied_index = rawnode.raft.raft_log.applied
        self.snapshot_index = storage.snapshot().metadata.index
        self._on_leader_change = on_leader_change
        self._on_read_states = on_read_states
        self._on_dropped = on_dropped
        self._proposals: list[bytes] = []
        self._conf_changes: list[ConfChange] = []
        self._inbox: deque[Message] = deque()
        self._read_ctxs: list[bytes] = []
        self._transfers: list[int] = []
        self._reports: list[tuple[int, bool | None]] = []
        self._ticks = 0
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        #: Called with the applied index after every batch of committed entries.
        self.on_applied: Callable[[int], None] | None = None
        self.leader_changed_at = time.monotonic()
        self.fsync_seconds: list[float] = []
        #: Moving average of synced saves' durations (see INLINE_SAVE_MAX_SECONDS).
        self.sync_seconds_average = 0.0

    # -- inputs (any coroutine may call these; the loop picks them up) ------------------------

    def propose(self, data: bytes) -> None:
        self._proposals.append(data)
        self._wake.set()

    def propose_conf_change(self, cc: ConfChange) -> None:
        self._conf_changes.append(cc)
        self._wake.set()

    def step(self, m: Message) -> None:
        self._inbox.append(m)
        self._wake.set()

    def read_index(self, ctx: bytes) -> None:
        self._read_ctxs.append(ctx)
        self._wake.set()

    def transfer_leader(self, transferee: int) -> None:
        self._transfers.append(transferee)
        self._wake.set()

    def report_unreachable(self, node: int) -> None:
        self._reports.append((node, None))
        self._wake.set()

    def report_snapshot(self, node: int, ok: bool) -> None:
        self._reports.append((node, ok))
        self._wake.set()

    @property
    def is_leader(self) -> bool:
        return self.lead != NONE and self.lead == self.rawnode.raft.id

    def sole_voter_read_index(self) -> int | None:
        """See ``RawNode.sole_voter_read_index``: linearizable reads of a one-voter
        cluster need no round trip through this loop."""
        return self.rawnode.sole_voter_read_index()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        # The core may already have something to hand out (a sole voter elects itself
        # while starting): the loop must not wait for the first tick to see it.
        self._wake.set()
        self._task = asyncio.create_task(self._run(), name="raft-node")
        self._ticker = asyncio.create_task(self._tick_loop(), name="raft-ticker")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        for task in (self._ticker, self._task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            self._ticks += 1
            self._wake.set()

    async def _run(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            self._feed()
            while self.rawnode.has_ready():
                rd = self.rawnode.ready()
                await self._handle_ready(rd)
                self.rawnode.advance()
                self._after_advance()
                self._feed()

    # -- the loop's steps ---------------------------------------------------------------------

    def _feed(self) -> None:
        node = self.rawnode
        while self._ticks:
            self._ticks -= 1
            node.tick()
        while self._inbox:
            m = self._inbox.popleft()
            try:
                node.step(m)
            except RaftError as err:
                self.log.debug(
                    "dropped message",
                    {"type": m.type.name, "from": f"{m.frm:x}", "error": str(err)},
                )
        for node_id, ok in self._reports:
            if ok is None:
                node.report_unreachable(node_id)
            else:
                node.report_snapshot(node_id, ok)
        self._reports.clear()
        if self._proposals:
            batch, self._proposals = self._proposals, []
            try:
                node.propose_many(batch)
            except ProposalDroppedError as err:
                if self._on_dropped is not None:
                    self._on_dropped(batch, err)
        # Dropped conf changes (no leader) are kept and proposed again on the next turn;
        # their waiters time out if no leader appears. They must never reach the normal
        # proposal backlog, whose entries are applied as InternalRaftRequests.
        pending, self._conf_changes = self._conf_changes, []
        for i, cc in enumerate(pending):
            try:
                node.propose_conf_change(cc)
            except ProposalDroppedError:
                self._conf_changes.extend(pending[i:])
                break
        for ctx in self._read_ctxs:
            node.read_index(ctx)
        self._read_ctxs.clear()
        for transferee in self._transfers:
            node.transfer_leader(transferee)
        self._transfers.clear()

    async def _handle_ready(self, rd: Ready) -> None:
        if rd.hard_state is not None:
            self.term = rd.hard_state.term
        if rd.soft_state is not None:
            self._soft_state_changed(rd.soft_state.lead, rd.soft_state.raft_state)
        if rd.snapshot is not None:
            await asyncio.to_thread(self.storage.apply_snapshot, rd.snapshot)
            self.applier.apply_snapshot(rd.snapshot)
            self.conf_state = rd.snapshot.metadata.conf_state
            self.snapshot_index = rd.snapshot.metadata.index
            self.applied_index = rd.snapshot.metadata.index
        # A leader sends before its own write is durable (etcd does the same): its
        # messages carry no vote or term that is not on disk yet, and nothing they
        # bring back is stepped before this write completes, so an entry still
        # commits only once a quorum, the leader counted, has it on disk. Followers
        # and candidates answer only with what is durable.
        early = self._may_send_before_persisting(rd)
        if early:
            self._send(rd.messages)
        if rd.entries or rd.hard_state is not None:
            t0 = time.perf_counter()
            fut = self.storage.save(
                rd.hard_state or HardState(), rd.entries, inline=self._save_inline(rd)
            )
            if rd.must_sync:
                if fut.done():
                    fut.result()  # raises what the write raised
                else:
                    await asyncio.wrap_future(fut)
                took = time.perf_counter() - t0
                self.fsync_seconds.append(took)
                self.sync_seconds_average += (
                    took - self.sync_seconds_average
                ) * _SYNC_AVERAGE_WEIGHT
            if rd.hard_state is not None:
                self._durable_term_vote = (rd.hard_state.term, rd.hard_state.vote)
        if not early:
            self._send(rd.messages)
        if rd.committed_entries:
            self.applier.apply_entries(rd.committed_entries, self._apply_conf_change)
            self.applied_index = rd.committed_entries[-1].index
            if self.on_applied is not None:
                self.on_applied(self.applied_index)
        if rd.read_states and self._on_read_states is not None:
            self._on_read_states(rd.read_states)

    def _save_inline(self, rd: Ready) -> bool:
        if not rd.must_sync:
            return True  # one write(), no fdatasync: always cheaper than a hand-off
        return (
            len(rd.entries) <= INLINE_SAVE_MAX_ENTRIES
            and self.sync_seconds_average < INLINE_SAVE_MAX_SECONDS
        )

    def _may_send_before_persisting(self, rd: Ready) -> bool:
        if not rd.messages or self.rawnode.raft.state != StateType.LEADER:
            return False
        hs = rd.hard_state
        return hs is None or (hs.term, hs.vote) == self._durable_term_vote

    def _send(self, msgs: Sequence[Message]) -> None:
        if not msgs:
            return
        if any(m.type == MessageType.SNAP for m in msgs):
            msgs = tuple(self._merged_snapshot(m) for m in msgs)
        self.transport.send(msgs)

    def _merged_snapshot(self, m: Message) -> Message:
        """A MsgSnap describes the state the backend sent with it has: the applied index
        and the current membership (etcd's merged snapshot). The stored snapshot may
        predate a member that joined since, which would refuse it forever."""
        if m.type != MessageType.SNAP:
            return m
        index = self.applied_index
        term = self.rawnode.raft.raft_log.zero_term_on_out_of_range(index)
        if term == 0 or m.snapshot is None or index < m.snapshot.metadata.index:
            return m
        md = SnapshotMetadata(conf_state=self.conf_state, index=index, term=term)
        return replace(m, snapshot=Snapshot(data=m.snapshot.data, metadata=md))

    def _apply_conf_change(self, cc: ConfChange) -> ConfState:
        self.conf_state = self.rawnode.apply_conf_change(cc)
        return self.conf_state

    def _soft_state_changed(self, lead: int, state: StateType) -> None:
        if lead != self.lead:
            old, self.lead = self.lead, lead
            self.leader_changed_at = time.monotonic()
            if self._on_leader_change is not None:
                self._on_leader_change(old, lead)

    def _after_advance(self) -> None:
        if self.applied_index - self.snapshot_index > self.snapshot_count:
            self._snapshot()

    def _snapshot(self) -> None:
        index = self.applied_index
        data = self.applier.snapshot_data()
        self.storage.create_snapshot(index, self.conf_state, data)
        self.snapshot_index = index
        compact_to = index - SNAPSHOT_CATCHUP_ENTRIES
        if compact_to > self.storage.first_index():
            self.storage.compact(compact_to)
        self.log.info("saved snapshot", {"snapshot-index": index})


def conf_change_entries(members: Sequence[tuple[int, bytes]]) -> list[Entry]:
    """The bootstrap log of a new cluster: one add-voter conf change per member, at term 1."""
    from pyetcd.raft import ConfChangeSingle, ConfChangeType

    return [
        Entry(
            term=1,
            index=i,
            type=EntryType.CONF_CHANGE_V2,
            data=ConfChange(
                changes=(ConfChangeSingle(ConfChangeType.ADD_NODE, member_id),), context=ctx
            ).encode(),
        )
        for i, (member_id, ctx) in enumerate(members, 1)
    ]
