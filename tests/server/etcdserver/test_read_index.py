"""ReadIndexer: one round per batch of reads; a one-voter leader needs no round; slow
and failed rounds are counted as etcd counts them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from pyetcd.raft import ReadState
from pyetcd.server.etcdserver.errors import NoLeaderError, RequestTimeoutError
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


class Tally:
    def __init__(self) -> None:
        self.n = 0

    def inc(self) -> None:
        self.n += 1


class FakeServer:
    """The ReadIndexer's leader wait and counters (etcd_server_*read_indexes*)."""

    request_timeout = 5.0

    def __init__(self, sole_index: int | None) -> None:
        self.raft = FakeRaft(sole_index)
        self.applied_wait = FakeAppliedWait()
        self.slow_read_indexes = Tally()
        self.read_indexes_failed = Tally()
        self.leader = True

    async def wait_leader(self) -> None:
        if not self.leader:
            raise NoLeaderError()


def _indexer(server: FakeServer) -> ReadIndexer:
    return ReadIndexer(
        server.raft, server.raft, server.applied_wait, server, server.request_timeout, server
    )


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
    ri = _indexer(server)
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
    ri = _indexer(server)
    # no runner: nothing may be waited for
    await asyncio.wait_for(ri.wait_linearizable(), 5)
    assert server.raft.rounds == [] and server.applied_wait.asked == []


async def test_other_members_run_one_round_per_batch() -> None:
    server = FakeServer(sole_index=None)
    ri = _indexer(server)
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


async def test_a_timed_out_round_and_a_late_answer_are_slow_read_indexes() -> None:
    server = FakeServer(sole_index=None)
    server.request_timeout = 0.05  # no answer comes: the round gives up after this
    ri = _indexer(server)
    runner = asyncio.ensure_future(ri.run())
    try:
        with pytest.raises(RequestTimeoutError):
            await asyncio.wait_for(ri.wait_linearizable(), 5)
        assert server.slow_read_indexes.n == 1 and server.read_indexes_failed.n == 0
        # The answer to a round given up on comes late: ignored, and counted.
        ri.on_read_states([ReadState(index=1, request_ctx=server.raft.rounds[0])])
        assert server.slow_read_indexes.n == 2
    finally:
        runner.cancel()


async def test_a_round_without_a_leader_is_a_failed_read_index() -> None:
    server = FakeServer(sole_index=None)
    server.leader = False
    ri = _indexer(server)
    runner = asyncio.ensure_future(ri.run())
    try:
        with pytest.raises(NoLeaderError):
            await asyncio.wait_for(ri.wait_linearizable(), 5)
        assert server.read_indexes_failed.n == 1 and server.slow_read_indexes.n == 0
    finally:
        runner.cancel()
