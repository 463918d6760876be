"""The asyncio driver around the pure Raft core.

One loop, readable in protocol order: wait for a tick, a peer message or a proposal
(all queued in the RaftInbox); feed them to the core; then for each Ready: persist
(WAL, group-committed, off the event loop) -> send -> apply -> advance. Inputs that
arrive while a Ready is being handled are batched into the next one, so one fsync
covers many proposals. The driver reads the core only through RawNode.

A failure to persist or apply ends the member (see fatal.py): the loop raises a
FatalError with etcd's message for the step that failed, and stops. Nothing after
that step (a message depending on it, an apply, an answer to a client) happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import replace
from typing import Protocol

from pyetcd.logutil import Logger, go_duration
from pyetcd.mvcc import BackendError
from pyetcd.raft import (
    NONE,
    ConfChange,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    RawNode,
    ReadState,
    Ready,
    Snapshot,
    SnapshotMetadata,
    StateType,
)
from pyetcd.wal import WALStorage

from .events import NO_EVENTS, EventRecorder
from .fatal import Fatal, FatalError
from .inbox import RaftInbox
from .metrics import Metrics
from .transport import CommitNotices, Transport
from .wait import AppliedIndex

__all__ = ["RaftNode", "StateMachine"]

#: Entries kept in memory behind a snapshot so slow followers catch up without one.
SNAPSHOT_CATCHUP_ENTRIES = 5000
#: A Ready with at most this many entries is written and synced on the event loop's
#: thread (when the WAL writer is idle). One client's sequential writes then skip the
#: two thread hand-offs around the fdatasync; under load, Readies carry many entries
#: and the writer thread syncs while the loop takes in the next requests.
INLINE_SAVE_MAX_ENTRIES = 1
#: ...but only while the WAL's fdatasync calls take less than this (a moving average
#: of the sync alone, ``WALStorage.sync_seconds_average``): on a slow disk the hand-offs
#: cost little next to the sync, and the loop keeps serving reads, heartbeats and other
#: clients while the writer thread waits for it. Measured around the save and its
#: await instead, a busy CPU (the hand-off's wake-ups late by milliseconds) kept a fast
#: disk's saves on the writer thread, paying those wake-ups on every put.
INLINE_SAVE_MAX_SECONDS = 0.002
#: ...and only while its entry is small: a large one (1 MiB values) is written and
#: synced by the writer thread while the loop takes in the next requests.
INLINE_SAVE_MAX_BYTES = 64 * 1024


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
    """Drives ``rawnode`` over ``storage`` and ``transport``; applies through ``applier``.

    Inputs arrive through ``inbox``; ``applied`` is advanced after each applied batch.
    ``on_leader_change(old, new)`` and ``on_read_states(states)`` are told what the
    Readies bring; ``events`` hears of role changes, votes, leader changes and snapshots.
    """

    def __init__(
        self,
        rawnode: RawNode,
        inbox: RaftInbox,
        storage: WALStorage,
        transport: Transport,
        applier: StateMachine,
        applied: AppliedIndex,
        *,
        tick_interval: float,
        snapshot_count: int,
        conf_state: ConfState,
        logger: Logger,
        fatal: Fatal,
        on_leader_change: Callable[[int, int], None] | None = None,
        on_read_states: Callable[[Sequence[ReadState]], None] | None = None,
        events: EventRecorder = NO_EVENTS,
        metrics: Metrics | None = None,
    ) -> None:
        self.rawnode = rawnode
        self.metrics = metrics or Metrics()
        # etcd's timeout detector: a heartbeat to a peer sent more than twice the
        # heartbeat interval after the previous one counts as a send failure.
        self._heartbeat_sent: dict[int, float] = {}
        self.inbox = inbox
        self.storage = storage
        self.transport = transport
        # the leader's commit-only appends ride on the next append (see CommitNotices)
        self._notices = CommitNotices(transport)
        self.applier = applier
        self.applied = applied
        self.tick_interval = tick_interval
        self.snapshot_count = snapshot_count
        self.conf_state = conf_state
        self.log = logger
        self.fatal = fatal
        self.lead = NONE
        self._id = rawnode.id
        self.term = rawnode.term
        # (term, vote) as last written to the WAL
        self._durable_term_vote = (rawnode.term, rawnode.vote)
        self.snapshot_index = storage.snapshot().metadata.index
        self._on_leader_change = on_leader_change
        self._on_read_states = on_read_states
        self.events = events
        self._role = rawnode.state
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.leader_changed_at = time.monotonic()

    @property
    def sync_seconds_average(self) -> float:
        """Moving average of the WAL's fdatasync calls (see INLINE_SAVE_MAX_SECONDS)."""
        return self.storage.sync_seconds_average

    @property
    def is_leader(self) -> bool:
        return self.lead != NONE and self.lead == self.rawnode.id

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        # The core may already have something to hand out (a sole voter elects itself
        # while starting): the loop must not wait for the first tick to see it.
        self.inbox.wake.set()
        self._loop = asyncio.get_running_loop()
        self._task = self.fatal.spawn(self._run(), "raft-node", "failed to run the Raft loop")
        self._ticker = self.fatal.spawn(self._tick_loop(), "raft-ticker", "failed to tick Raft")

    async def stop(self) -> None:
        self._stopping = True
        self._notices.flush()
        self.inbox.wake.set()
        for task in (self._ticker, self._task):
            if task is not None:
                task.cancel()
                # A task that failed has told Fatal already.
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            self.inbox.tick()

    async def _run(self) -> None:
        inbox, node, log = self.inbox, self.rawnode, self.log
        wake = inbox.wake
        while not self._stopping:
            if not wake.is_set():
                await wake.wait()
            wake.clear()
            inbox.feed(node, log)
            while node.has_ready():
                rd = node.ready()
                await self._handle_ready(rd)
                node.advance()
                if self.applied.applied - self.snapshot_index > self.snapshot_count:
                    self._snapshot()
                inbox.feed(node, log)

    # -- the loop's steps ---------------------------------------------------------------------

    async def _handle_ready(self, rd: Ready) -> None:
        hard = rd.hard_state
        if hard is not None:
            self.term = hard.term
            if hard.vote != self._id and hard.vote != NONE:  # (most carry no new vote)
                self._record_vote(hard)
        if rd.soft_state is not None:
            self._soft_state_changed(rd.soft_state.lead, rd.soft_state.raft_state)
        if rd.snapshot is not None:
            self.metrics.snapshot_apply_in_progress.set(1)
            try:
                await asyncio.to_thread(self.storage.apply_snapshot, rd.snapshot)
            except Exception as err:
                raise FatalError("failed to save Raft snapshot", err) from err
            try:
                self.applier.apply_snapshot(rd.snapshot)
            except Exception as err:
                raise FatalError("failed to open snapshot backend", err) from err
            finally:
                self.metrics.snapshot_apply_in_progress.set(0)
            index = rd.snapshot.metadata.index
            self.events.record(
                "snapshot", f"applied a snapshot from the leader at index {index}", index=index
            )
            self.conf_state = rd.snapshot.metadata.conf_state
            self.snapshot_index = rd.snapshot.metadata.index
            self.applied.advance(rd.snapshot.metadata.index)
        # A leader sends before its own write is durable (etcd does the same): its
        # messages carry no vote or term that is not on disk yet, and nothing they
        # bring back is stepped before this write completes, so an entry still
        # commits only once a quorum, the leader counted, has it on disk. Followers
        # and candidates answer only with what is durable.
        messages = rd.messages
        early = bool(messages) and self._may_send_before_persisting(rd)
        if early:
            self._send(messages)
        if rd.entries or hard is not None:
            t0 = time.perf_counter() if rd.must_sync else 0.0
            try:
                hs = hard or HardState()
                if not rd.must_sync or self._save_inline(rd):
                    # None: written (and synced) on this thread, already.
                    fut = self.storage.save_inline(hs, rd.entries)
                else:
                    fut = self.storage.save(hs, rd.entries)
                if rd.must_sync and fut is not None:
                    await asyncio.wrap_future(fut)
            except Exception as err:
                raise FatalError("failed to save Raft hard state and entries", err) from err
            if rd.must_sync:
                self.metrics.wal_fsync.observe(time.perf_counter() - t0)
            elif fut is not None:
                # Nobody waits for a commit-only write; its failure still ends the member
                # (the WAL's error sticks, but the next synced save may be far away).
                fut.add_done_callback(self._unsynced_saved)
            if hard is not None:
                self._durable_term_vote = (hard.term, hard.vote)
        if not early and messages:
            self._send(messages)
        if rd.committed_entries:
            try:
                self.applier.apply_entries(rd.committed_entries, self._apply_conf_change)
            except BackendError as err:
                raise FatalError(err.action, err.cause) from err
            self.applied.advance(rd.committed_entries[-1].index)
        if rd.read_states and self._on_read_states is not None:
            self._on_read_states(rd.read_states)

    def _unsynced_saved(self, fut: Future[None]) -> None:
        # Runs on the WAL writer's thread (or here, if the save was inline).
        err = fut.exception()
        if err is not None and self._loop is not None:
            self.fatal.fail_threadsafe(
                self._loop, "failed to save Raft hard state and entries", err
            )

    def _save_inline(self, rd: Ready) -> bool:
        if not rd.must_sync:
            return True  # one write(), no fdatasync: always cheaper than a hand-off
        entries = rd.entries
        if len(entries) > INLINE_SAVE_MAX_ENTRIES:
            return False
        size = 0
        for e in entries:
            size += len(e.data)
        return (
            size <= INLINE_SAVE_MAX_BYTES
            and self.storage.sync_seconds_average < INLINE_SAVE_MAX_SECONDS
        )

    def _may_send_before_persisting(self, rd: Ready) -> bool:
        # ``_role`` is the core's role as of this Ready (its soft state, handled first;
        # nothing steps the core between ``ready()`` and here).
        if not rd.messages or self._role != StateType.LEADER:
            return False
        hs = rd.hard_state
        return hs is None or (hs.term, hs.vote) == self._durable_term_vote

    def _send(self, msgs: Sequence[Message]) -> None:
        if not msgs:
            return
        # One pass over the messages for the two kinds that need more than a send.
        snap = beat = False
        for m in msgs:
            if m.type == MessageType.SNAP:
                snap = True
            elif m.type == MessageType.HEARTBEAT:
                beat = True
        if snap:
            msgs = tuple(self._merged_snapshot(m) for m in msgs)
            for m in msgs:
                if m.type == MessageType.SNAP and m.snapshot is not None:
                    index = m.snapshot.metadata.index
                    self.events.record(
                        "snapshot",
                        f"sent a snapshot at index {index} to {m.to:x}",
                        index=index,
                        to=f"{m.to:x}",
                    )
        if beat and self.is_leader:
            self._time_heartbeats(msgs)  # (it looks at heartbeats only)
        self._notices.send(msgs)

    def _time_heartbeats(self, msgs: Sequence[Message]) -> None:
        now = 0.0
        for m in msgs:
            if m.type != MessageType.HEARTBEAT:
                continue
            now = now or time.monotonic()
            last = self._heartbeat_sent.get(m.to)
            self._heartbeat_sent[m.to] = now
            if last is not None and now - last > 2 * self.tick_interval:
                self.metrics.heartbeat_send_failures.inc()
                self.log.warn(
                    "leader failed to send out heartbeat on time; took too long, leader is "
                    "overloaded likely from slow disk",
                    {
                        "to": f"{m.to:x}",
                        "heartbeat-interval": go_duration(self.tick_interval),
                        "expected-duration": go_duration(2 * self.tick_interval),
                        "exceeded-duration": go_duration(now - last - 2 * self.tick_interval),
                    },
                )

    def _merged_snapshot(self, m: Message) -> Message:
        """A MsgSnap describes the state the backend sent with it has: the applied index
        and the current membership (etcd's merged snapshot). The stored snapshot may
        predate a member that joined since, which would refuse it forever."""
        if m.type != MessageType.SNAP:
            return m
        index = self.applied.applied
        term = self.rawnode.term_at(index)
        if term == 0 or m.snapshot is None or index < m.snapshot.metadata.index:
            return m
        md = SnapshotMetadata(conf_state=self.conf_state, index=index, term=term)
        return replace(m, snapshot=Snapshot(data=m.snapshot.data, metadata=md))

    def _apply_conf_change(self, cc: ConfChange) -> ConfState:
        self.conf_state = self.rawnode.apply_conf_change(cc)
        return self.conf_state

    def _record_vote(self, hs: HardState) -> None:
        # most hard states change the commit only, or carry this member's own vote
        if hs.vote not in (NONE, self._id) and (hs.term, hs.vote) != self._durable_term_vote:
            self.events.record(
                "election",
                f"voted for {hs.vote:x} at term {hs.term}",
                term=hs.term,
                vote=f"{hs.vote:x}",
            )

    def _soft_state_changed(self, lead: int, state: StateType) -> None:
        if state != self._role:
            self._role = state
            role = state.name.lower().replace("_", "-")
            self.events.record(
                "election", f"became {role} at term {self.term}", term=self.term, role=role
            )
        if lead != self.lead:
            old, self.lead = self.lead, lead
            self.leader_changed_at = time.monotonic()
            self._heartbeat_sent.clear()
            if lead != NONE:
                self.inbox.leader_found()
            if self._on_leader_change is not None:
                self._on_leader_change(old, lead)
            text = f"leader is now {lead:x}" if lead != NONE else f"lost leader {old:x}"
            self.events.record(
                "leader", f"{text} at term {self.term}", term=self.term, leader=f"{lead:x}"
            )

    def _snapshot(self) -> None:
        index = self.applied.applied
        try:
            data = self.applier.snapshot_data()
        except BackendError as err:
            raise FatalError(err.action, err.cause) from err
        try:
            self.storage.create_snapshot(index, self.conf_state, data)
        except Exception as err:
            raise FatalError("failed to save snapshot", err) from err
        self.snapshot_index = index
        compact_to = index - SNAPSHOT_CATCHUP_ENTRIES
        if compact_to > self.storage.first_index():
            self.storage.compact(compact_to)
        self.log.info("saved snapshot", {"snapshot-index": index})
        self.events.record("snapshot", f"saved a snapshot at index {index}", index=index)


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
