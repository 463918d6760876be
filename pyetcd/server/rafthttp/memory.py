"""An in-memory peer transport: members in one process, on one event loop.

``MemoryNetwork`` connects ``MemoryTransport``s, one per member, the way etcd's
``rafttest`` network connects raft nodes: a message sent by one member is handed to
its receiver's ``Raft.step`` on a later turn of the event loop, in the order sent
on each link. A MsgSnap carries the sender's backend database, as on the TCP
transport: it is copied into the receiver's snapshot directory (``%016x.snap.db``,
durably) before the receiver's ``on_snapshot`` hook and ``step`` hear of it, and the
sender learns the outcome through ``report_snapshot``.

Faults are knobs on the network: ``cut``/``isolate``/``partition`` take links down
(messages over a down link are dropped and the sender hears its peer is
unreachable, like a TCP stream that broke), ``drop_if`` loses chosen messages
silently (like a lossy network), ``heal`` brings every link back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from dataclasses import dataclass

from pyetcd.logutil import Logger
from pyetcd.raft import Message, MessageType

from .snapshot import DBFile, OnSnapshot, OpenSnapshotDB, db_chunks, open_db_source
from .transport import Raft

__all__ = ["MemoryNetwork", "MemoryTransport", "SnapshotRecord"]

#: Bytes per piece when a database is copied into the receiver's directory.
_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    """One MsgSnap transfer and how it ended."""

    frm: int
    to: int
    index: int
    ok: bool


class MemoryNetwork:
    """The links between in-memory transports, and the knobs to break them."""

    def __init__(self) -> None:
        self._members: dict[int, MemoryTransport] = {}
        # Directed links (from, to) that are down.
        self._down: set[tuple[int, int]] = set()
        self._drop: Callable[[Message], bool] | None = None
        #: Every finished snapshot transfer, oldest first.
        self.snapshots: list[SnapshotRecord] = []
        self._snapshot_done = asyncio.Event()

    def transport(
        self,
        member_id: int,
        peers: Iterable[int],
        raft: Raft,
        logger: Logger,
        *,
        open_snapshot_db: OpenSnapshotDB | None = None,
        on_snapshot: OnSnapshot | None = None,
        snapshot_dir: str | None = None,
    ) -> MemoryTransport:
        """The transport of member ``member_id``; it joins the network on ``start()``.

        Args:
            peers: the other members it talks to at first (more come with ``add_peer``).
            raft: where received messages and send outcomes go.
            open_snapshot_db, on_snapshot, snapshot_dir: as for ``PeerTransport``.
        """
        return MemoryTransport(
            self,
            member_id,
            peers,
            raft,
            logger,
            open_snapshot_db=open_snapshot_db,
            on_snapshot=on_snapshot,
            snapshot_dir=snapshot_dir,
        )

    # -- faults ------------------------------------------------------------------------------

    def cut(self, frm: int, to: int) -> None:
        """Take the link from ``frm`` to ``to`` down (one direction)."""
        self._link_down(frm, to)

    def isolate(self, member_id: int) -> None:
        """Take every link to and from ``member_id`` down."""
        for other in self._members:
            if other != member_id:
                self._link_down(member_id, other)
                self._link_down(other, member_id)

    def partition(self, *groups: Iterable[int]) -> None:
        """Take down every link between members of different ``groups``."""
        sets = [set(g) for g in groups]
        for i, a in enumerate(sets):
            for b in sets[i + 1 :]:
                for x in a:
                    for y in b:
                        self._link_down(x, y)
                        self._link_down(y, x)

    def drop_if(self, pred: Callable[[Message], bool] | None) -> None:
        """Silently lose every message for which ``pred`` is true (None: lose nothing)."""
        self._drop = pred

    def heal(self) -> None:
        """Bring every link back and stop losing messages."""
        self._down.clear()
        self._drop = None

    def link_up(self, frm: int, to: int) -> bool:
        """Whether ``frm`` can reach ``to`` now (both running, link not cut)."""
        return frm in self._members and to in self._members and (frm, to) not in self._down

    async def wait_snapshot(self, pred: Callable[[SnapshotRecord], bool]) -> SnapshotRecord:
        """The first recorded transfer matching ``pred``, waiting for it if need be."""
        while True:
            for rec in self.snapshots:
                if pred(rec):
                    return rec
            self._snapshot_done.clear()
            await self._snapshot_done.wait()

    # -- the transports' side ------------------------------------------------------------------

    def _attach(self, tr: MemoryTransport) -> None:
        if tr.member_id in self._members:
            raise ValueError(f"member {tr.member_id:x} is already on the network")
        self._members[tr.member_id] = tr

    def _detach(self, tr: MemoryTransport) -> None:
        if self._members.get(tr.member_id) is tr:
            del self._members[tr.member_id]
            for other in self._members.values():
                other._since.pop(tr.member_id, None)

    def _link_down(self, frm: int, to: int) -> None:
        self._down.add((frm, to))
        sender = self._members.get(frm)
        if sender is not None:
            # A broken stream: the peer's active time starts again when the link is back.
            sender._since.pop(to, None)

    def _receiver(self, frm: int, to: int) -> MemoryTransport | None:
        return self._members.get(to) if self.link_up(frm, to) else None

    def _lost(self, m: Message) -> bool:
        return self._drop is not None and self._drop(m)

    def _record(self, rec: SnapshotRecord) -> None:
        self.snapshots.append(rec)
        self._snapshot_done.set()


class MemoryTransport:
    """One member's end of a ``MemoryNetwork``; the driver's ``Transport``."""

    def __init__(
        self,
        network: MemoryNetwork,
        member_id: int,
        peers: Iterable[int],
        raft: Raft,
        logger: Logger,
        *,
        open_snapshot_db: OpenSnapshotDB | None = None,
        on_snapshot: OnSnapshot | None = None,
        snapshot_dir: str | None = None,
    ) -> None:
        self.network = network
        self.member_id = member_id
        self.raft = raft
        self.log = logger
        self.open_snapshot_db = open_snapshot_db
        self.on_snapshot = on_snapshot
        self.snapshot_dir = snapshot_dir
        self.peers: set[int] = {p for p in peers if p != member_id}
        self.removed: set[int] = set()
        # peer -> since when (time.monotonic()) its link has been seen up; an entry is
        # made when asked while the link is up and dropped when the link goes down.
        self._since: dict[int, float] = {}
        self._running = False
        self._snap_tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self.network._attach(self)
        self._running = True

    async def close(self) -> None:
        self._running = False
        self.network._detach(self)
        tasks = list(self._snap_tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- membership ----------------------------------------------------------------------------

    def add_peer(self, peer_id: int, urls: Sequence[str]) -> None:
        if peer_id != self.member_id and peer_id not in self.removed:
            self.peers.add(peer_id)

    def remove_peer(self, peer_id: int) -> None:
        self.removed.add(peer_id)
        self.peers.discard(peer_id)
        self._since.pop(peer_id, None)

    def update_peer(self, peer_id: int, urls: Sequence[str]) -> None:
        pass  # a member's address on this network is its id

    def has_peer(self, peer_id: int) -> bool:
        return peer_id in self.peers

    def peer_active(self, peer_id: int) -> bool:
        return peer_id in self.peers and self.network.link_up(self.member_id, peer_id)

    def active_since(self, peer_id: int) -> float | None:
        if not self.peer_active(peer_id):
            self._since.pop(peer_id, None)
            return None
        return self._since.setdefault(peer_id, time.monotonic())

    # -- sending -------------------------------------------------------------------------------

    def send(self, msgs: Sequence[Message]) -> None:
        """Hand ``msgs`` to their receivers on a later turn of the loop; never blocks.

        A message over a down link is dropped and its peer reported unreachable (once
        per call); one lost by ``drop_if`` is dropped silently.
        """
        if not self._running:
            return
        loop = asyncio.get_running_loop()
        unreachable: set[int] = set()
        for m in msgs:
            if m.to not in self.peers:
                continue
            if m.type == MessageType.SNAP:
                self._start_snapshot(m)
                continue
            if self.network._receiver(self.member_id, m.to) is None:
                unreachable.add(m.to)
                continue
            if not self.network._lost(m):
                loop.call_soon(self._deliver, m)
        for peer_id in unreachable:
            self.raft.report_unreachable(peer_id)

    def _deliver(self, m: Message) -> None:
        # The link may have gone down while the message was "on the wire".
        receiver = self.network._receiver(self.member_id, m.to)
        if receiver is not None:
            receiver.receive(m)

    def receive(self, m: Message) -> None:
        """A message from a peer arrived: step it, unless its sender was removed."""
        if not self._running or m.frm in self.removed or self.raft.is_removed(m.frm):
            return
        try:
            self.raft.step(m)
        except Exception as exc:  # the driver's bug must not break the sender's loop
            self.log.warn(
                "failed to process Raft message",
                {"local-member-id": f"{self.member_id:x}", "error": repr(exc)},
            )

    # -- snapshots -----------------------------------------------------------------------------

    def _start_snapshot(self, m: Message) -> None:
        task = asyncio.create_task(self._send_snapshot(m), name=f"mem-snap-to-{m.to:x}")
        self._snap_tasks.add(task)
        task.add_done_callback(self._snap_tasks.discard)

    async def _send_snapshot(self, m: Message) -> None:
        index = m.snapshot.metadata.index if m.snapshot is not None else 0
        fields = {
            "local-member-id": f"{self.member_id:x}",
            "remote-peer-id": f"{m.to:x}",
            "snapshot-index": index,
        }
        ok = False
        try:
            receiver = self.network._receiver(self.member_id, m.to)
            if receiver is None:
                raise ConnectionError("peer unreachable")
            source = await open_db_source(self.open_snapshot_db, m)
            self.log.info("sending database snapshot", fields)
            ok = await receiver._receive_snapshot(self.member_id, m, db_chunks(source, _CHUNK))
        except Exception as exc:  # I/O and the application's hooks: all mean "failed"
            self.log.warn("failed to send database snapshot", {**fields, "error": repr(exc)})
        if ok:
            self.log.info("sent database snapshot", fields)
        else:
            self.raft.report_unreachable(m.to)
        self.network._record(SnapshotRecord(self.member_id, m.to, index, ok))
        if self._running:
            self.raft.report_snapshot(m.to, ok)

    async def _receive_snapshot(
        self, frm: int, m: Message, chunks: AsyncGenerator[bytes, None]
    ) -> bool:
        """Save the database from ``chunks`` durably, then tell the application and step
        ``m``; False if the link went down meanwhile.

        Raises:
            OSError: the database cannot be saved.
        """
        index = m.snapshot.metadata.index if m.snapshot is not None else 0
        path: str | None = None
        db: DBFile | None = None
        try:
            async with contextlib.aclosing(chunks) as pieces:
                async for piece in pieces:
                    if db is None:
                        if self.snapshot_dir is None:
                            raise OSError("no snapshot directory to save into")
                        db = await asyncio.to_thread(DBFile, self.snapshot_dir, index)
                    await asyncio.to_thread(db.write, [piece])
            if db is not None:
                path = await asyncio.to_thread(db.commit)
                db = None
        finally:
            if db is not None:
                db.discard()
        if not self._running or self.network._receiver(frm, self.member_id) is None:
            return False
        if self.on_snapshot is not None:
            self.on_snapshot(m, path)
        self.receive(m)
        return True
