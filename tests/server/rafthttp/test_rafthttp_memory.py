"""The in-memory transport: delivery order, the fault knobs, snapshots with a database."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pyetcd.logutil import Logger
from pyetcd.raft import Message, MessageType, Snapshot, SnapshotMetadata
from pyetcd.server.rafthttp.memory import MemoryNetwork, MemoryTransport

MT = MessageType
A, B, C = 0xA, 0xB, 0xC


@dataclass
class Recorder:
    """A ``Raft`` that records what its transport hands it."""

    received: list[Message] = field(default_factory=list)
    unreachable: list[int] = field(default_factory=list)
    snap_status: list[tuple[int, bool]] = field(default_factory=list)
    removed: set[int] = field(default_factory=set)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def step(self, m: Message) -> None:
        self.received.append(m)
        self.changed.set()

    def report_unreachable(self, peer_id: int) -> None:
        self.unreachable.append(peer_id)

    def report_snapshot(self, peer_id: int, ok: bool) -> None:
        self.snap_status.append((peer_id, ok))
        self.changed.set()

    def is_removed(self, peer_id: int) -> bool:
        return peer_id in self.removed


@dataclass
class Member:
    raft: Recorder
    saved: list[tuple[Message, str | None]]
    stepped_before_hook: list[int] = field(default_factory=list)
    tr: MemoryTransport = field(init=False)

    def on_snapshot(self, m: Message, path: str | None) -> None:
        self.saved.append((m, path))
        self.stepped_before_hook.append(len(self.raft.received))


async def settle() -> None:
    # Deliveries are call_soon callbacks: one turn of the loop hands them all over.
    await asyncio.sleep(0)


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[tuple[MemoryNetwork, dict[int, Member]]]:
    network = MemoryNetwork()
    members: dict[int, Member] = {}
    for mid in (A, B, C):
        raft = Recorder()
        saved: list[tuple[Message, str | None]] = []
        snap_dir = tmp_path / f"{mid:x}"
        snap_dir.mkdir()

        async def db(m: Message, mid: int = mid) -> AsyncIterator[bytes]:
            yield f"db of {mid:x} ".encode() * 1000
            yield b"tail"

        member = Member(raft, saved)
        member.tr = network.transport(
            mid,
            [A, B, C],
            raft,
            Logger([io.StringIO()]),
            open_snapshot_db=db,
            on_snapshot=member.on_snapshot,
            snapshot_dir=str(snap_dir),
        )
        await member.tr.start()
        members[mid] = member
    yield network, members
    for m in members.values():
        await m.tr.close()


def hb(frm: int, to: int, commit: int = 0) -> Message:
    return Message(MT.HEARTBEAT, to=to, frm=frm, term=1, commit=commit)


async def test_messages_arrive_in_order_on_a_later_turn(
    net: tuple[MemoryNetwork, dict[int, Member]],
) -> None:
    _, ms = net
    ms[A].tr.send([hb(A, B, commit=i) for i in range(5)] + [hb(A, C)])
    assert ms[B].raft.received == []  # send never calls into the receiver
    await settle()
    assert [m.commit for m in ms[B].raft.received] == [0, 1, 2, 3, 4]
    assert len(ms[C].raft.received) == 1
    assert ms[A].tr.peer_active(B) and ms[A].raft.unreachable == []


async def test_isolated_member_is_unreachable_both_ways(
    net: tuple[MemoryNetwork, dict[int, Member]],
) -> None:
    network, ms = net
    network.isolate(B)
    ms[A].tr.send([hb(A, B), hb(A, B), hb(A, C)])
    ms[B].tr.send([hb(B, A)])
    await settle()
    assert ms[A].raft.unreachable == [B]  # once per send call
    assert ms[B].raft.unreachable == [A]
    assert ms[B].raft.received == [] and [m.frm for m in ms[A].raft.received] == []
    assert len(ms[C].raft.received) == 1
    assert not ms[A].tr.peer_active(B)
    assert ms[A].tr.active_since(B) is None and ms[A].tr.active_since(C) is not None
    network.heal()
    ms[A].tr.send([hb(A, B)])
    await settle()
    assert len(ms[B].raft.received) == 1
    assert ms[A].tr.active_since(B) is not None


async def test_link_cut_while_in_flight_drops_the_message(
    net: tuple[MemoryNetwork, dict[int, Member]],
) -> None:
    network, ms = net
    ms[A].tr.send([hb(A, B)])
    network.cut(A, B)
    await settle()
    assert ms[B].raft.received == []
    ms[B].tr.send([hb(B, A)])  # the other direction still works
    await settle()
    assert len(ms[A].raft.received) == 1


async def test_partition_and_drop_if(net: tuple[MemoryNetwork, dict[int, Member]]) -> None:
    network, ms = net
    network.partition([A, B], [C])
    assert network.link_up(A, B) and not network.link_up(A, C) and not network.link_up(C, B)
    network.heal()
    network.drop_if(lambda m: m.commit == 1)
    ms[A].tr.send([hb(A, B, commit=0), hb(A, B, commit=1), hb(A, B, commit=2)])
    await settle()
    assert [m.commit for m in ms[B].raft.received] == [0, 2]
    assert ms[A].raft.unreachable == []  # a lost message is not a broken link


async def test_removed_sender_is_not_heard(net: tuple[MemoryNetwork, dict[int, Member]]) -> None:
    _, ms = net
    ms[B].tr.remove_peer(A)
    ms[C].raft.removed.add(A)
    ms[A].tr.send([hb(A, B), hb(A, C)])
    await settle()
    assert ms[B].raft.received == [] and ms[C].raft.received == []
    ms[B].tr.add_peer(A, ["http://192.0.2.1:2380"])  # a removed id stays removed
    assert not ms[B].tr.has_peer(A)


async def test_closed_member_is_unreachable(net: tuple[MemoryNetwork, dict[int, Member]]) -> None:
    _, ms = net
    await ms[B].tr.close()
    ms[A].tr.send([hb(A, B)])
    assert ms[A].raft.unreachable == [B]


def snap_msg(frm: int, to: int, index: int) -> Message:
    md = SnapshotMetadata(index=index, term=1)
    return Message(MT.SNAP, to=to, frm=frm, term=1, snapshot=Snapshot(data=b"", metadata=md))


async def test_snapshot_carries_the_database(net: tuple[MemoryNetwork, dict[int, Member]]) -> None:
    network, ms = net
    ms[A].tr.send([snap_msg(A, B, 42)])
    rec = await asyncio.wait_for(network.wait_snapshot(lambda r: r.to == B), 5)
    assert (rec.frm, rec.index, rec.ok) == (A, 42, True)
    assert ms[A].raft.snap_status == [(B, True)]
    [(m, path)] = ms[B].saved
    assert m.snapshot is not None and m.snapshot.metadata.index == 42
    assert path is not None and os.path.basename(path) == f"{42:016x}.snap.db"
    data = Path(path).read_bytes()
    assert hashlib.sha256(data).digest() == hashlib.sha256(b"db of a " * 1000 + b"tail").digest()
    # The hook heard of the database before the MsgSnap was stepped.
    assert ms[B].stepped_before_hook == [0]
    assert [x.type for x in ms[B].raft.received] == [MT.SNAP]
    assert [p.name for p in Path(path).parent.iterdir()] == [Path(path).name]


async def test_snapshot_to_an_isolated_member_fails(
    net: tuple[MemoryNetwork, dict[int, Member]],
) -> None:
    network, ms = net
    network.isolate(C)
    ms[A].tr.send([snap_msg(A, C, 7)])
    rec = await asyncio.wait_for(network.wait_snapshot(lambda r: r.to == C), 5)
    assert not rec.ok
    assert ms[A].raft.snap_status == [(C, False)] and C in ms[A].raft.unreachable
    assert ms[C].saved == [] and ms[C].raft.received == []
