"""ReadIndexer: one round per batch of reads; a one-voter leader needs no round."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from pyetcd.raft import ReadState
from pyetcd.server.etcdserver.read_index import ReadIndexer


class FakeRaft:
    def __init__(self, sole_index: int | None) -> None:
        self.sole_index = sole_index
        self.rounds: list[bytes] = []

    def sole_voter_read_index(self) -> int | None:
        return self.sole_index

    def read_index(self, ctx: bytes) -> None:
        self.rounds.append(ctx)


class FakeAppliedWait:
    def __init__(self) -> None:
        self.applied = 0
        self.changed = asyncio.Event()
        self.asked: list[int] = []

    async def wait(self, index: int) -> None:
        self.asked.append(index)
        while self.applied < index:
            self.changed.clear()
            await self.changed.wait()

    def apply(self, index: int) -> None:
        self.applied = index
        self.changed.set()


class FakeServer:
    request_timeout = 5.0

    def __init__(self, sole_index: int | None) -> None:
        self.raft = FakeRaft(sole_index)
        self.applied_wait = FakeAppliedWait()

    async def wait_leader(self) -> None:
        return None


async def _until(cond: Callable[[], object]) -> None:
    for _ in range(1000):  # loop turns, not time: the fakes answer within a few
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


async def _reads(n: int, ri: ReadIndexer) -> asyncio.Future[list[None]]:
    fut = asyncio.gather(*(ri.wait_linearizable() for _ in range(n)))
    await asyncio.sleep(0)  # every read registered before the round starts
    return fut


async def test_sole_voter_reads_wait_for_applied_without_a_round() -> None:
    server = FakeServer(sole_index=7)
    ri = ReadIndexer(server.raft, server.raft, server.applied_wait, server, server.request_timeout)
    runner = asyncio.ensure_future(ri.run())
    try:
        reads = await _reads(5, ri)
        await _until(lambda: server.applied_wait.asked)
        assert server.applied_wait.asked == [7] and not reads.done()
        server.applied_wait.apply(7)
        await asyncio.wait_for(reads, 5)
        assert server.raft.rounds == []
    finally:
        runner.cancel()


async def test_sole_voter_reads_of_applied_state_go_ahead_at_once() -> None:
    server = FakeServer(sole_index=7)
    server.applied_wait.apply(7)
    ri = ReadIndexer(server.raft, server.raft, server.applied_wait, server, server.request_timeout)
    # no runner: nothing may be waited for
    await asyncio.wait_for(ri.wait_linearizable(), 5)
    assert server.raft.rounds == [] and server.applied_wait.asked == []


async def test_other_members_run_one_round_per_batch() -> None:
    server = FakeServer(sole_index=None)
    ri = ReadIndexer(server.raft, server.raft, server.applied_wait, server, server.request_timeout)
    runner = asyncio.ensure_future(ri.run())
    try:
        reads = await _reads(5, ri)
        await _until(lambda: server.raft.rounds)
        assert len(server.raft.rounds) == 1 and not reads.done()
        ri.on_read_states([ReadState(index=4, request_ctx=server.raft.rounds[0])])
        server.applied_wait.apply(4)
        await asyncio.wait_for(reads, 5)
        assert server.applied_wait.asked == [4]
    finally:
        runner.cancel()
