"""The Raft driver's inbox: every input to the core, queued until the driver's next turn.

Why an object of its own: the peer transport delivers received messages to the driver,
and the driver sends through the transport. Built in dependency order, the inbox comes
first: the transport is given the inbox's ``step`` / ``report_*`` methods, the driver
is given the transport and the inbox, and nothing is wired after construction. The same
inbox takes proposals, conf changes, read-index requests and leader transfers from the
server's parts (etcd's node channels: propc, recvc, confc, readIndex...).

Rules:
1. Any coroutine may call the input methods; they never block and never touch the core.
2. Only the driver calls ``feed``, between two Readies: that is where inputs reach the
   core, in a fixed order (ticks, messages, reports, proposals, conf changes, reads,
   transfers), so every transition is visible in the driver's loop.
"""

from __future__ import annotations

import asyncio
from collections import deque

from pyetcd.logutil import Logger
from pyetcd.raft import ConfChange, Message, ProposalDroppedError, RaftError, RawNode

__all__ = ["RaftInbox", "Wake"]


class Wake:
    """``asyncio.Event``'s set / clear / wait for its one waiter, the driver, without
    Event's waiter list and loop lookups: every proposal sets it."""

    __slots__ = ("_set", "_waiter")

    def __init__(self) -> None:
        self._set = False
        self._waiter: asyncio.Future[None] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if not self._set:
            self._set = True
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        """Return once set (at once if it is); one waiter at a time."""
        if self._set:
            return
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None


class RaftInbox:
    """Inputs for one RawNode, and the event that wakes its driver."""

    def __init__(self) -> None:
        self.wake = Wake()
        self._proposals: list[bytes] = []
        # Proposals the core refused (no leader yet): they wait here for one (or for
        # their waiters' deadlines), see ``leader_found``.
        self._no_leader_backlog: list[bytes] = []
        self._conf_changes: list[ConfChange] = []
        self._messages: deque[Message] = deque()
        self._read_ctxs: list[bytes] = []
        self._transfers: list[int] = []
        self._reports: list[tuple[int, bool | None]] = []
        self._ticks = 0

    # -- inputs ------------------------------------------------------------------------------

    def tick(self) -> None:
        self._ticks += 1
        self.wake.set()

    def propose(self, data: bytes) -> None:
        self._proposals.append(data)
        self.wake.set()

    def propose_conf_change(self, cc: ConfChange) -> None:
        self._conf_changes.append(cc)
        self.wake.set()

    def step(self, m: Message) -> None:
        """A raft message received from a peer (the transport's ``on_message``)."""
        self._messages.append(m)
        self.wake.set()

    def read_index(self, ctx: bytes) -> None:
        self._read_ctxs.append(ctx)
        self.wake.set()

    def transfer_leader(self, transferee: int) -> None:
        self._transfers.append(transferee)
        self.wake.set()

    def report_unreachable(self, node: int) -> None:
        self._reports.append((node, None))
        self.wake.set()

    def report_snapshot(self, node: int, ok: bool) -> None:
        self._reports.append((node, ok))
        self.wake.set()

    # -- the driver's side ---------------------------------------------------------------------

    def leader_found(self) -> None:
        """A leader appeared: propose again what was dropped while there was none."""
        if self._no_leader_backlog:
            self._proposals[:0] = self._no_leader_backlog
            self._no_leader_backlog = []
            self.wake.set()

    def feed(self, node: RawNode, log: Logger) -> None:
        """Hand everything queued to ``node`` (rule 2)."""
        while self._ticks:
            self._ticks -= 1
            node.tick()
        while self._messages:
            m = self._messages.popleft()
            try:
                node.step(m)
            except RaftError as err:
                log.debug(
                    "dropped message",
                    {"type": m.type.name, "from": f"{m.frm:x}", "error": str(err)},
                )
        # Each kind is looked at only when queued: the driver feeds twice per Ready,
        # and most turns bring one kind (a proposal, or a peer's message).
        if self._reports:
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
            except ProposalDroppedError:
                self._no_leader_backlog.extend(batch)
        # Dropped conf changes (no leader) are kept and proposed again on the next turn;
        # their waiters time out if no leader appears. They must never reach the normal
        # proposal backlog, whose entries are applied as InternalRaftRequests.
        if self._conf_changes:
            pending, self._conf_changes = self._conf_changes, []
            for i, cc in enumerate(pending):
                try:
                    node.propose_conf_change(cc)
                except ProposalDroppedError:
                    self._conf_changes.extend(pending[i:])
                    break
        if self._read_ctxs:
            for ctx in self._read_ctxs:
                node.read_index(ctx)
            self._read_ctxs.clear()
        if self._transfers:
            for transferee in self._transfers:
                node.transfer_leader(transferee)
            self._transfers.clear()
