"""ReadPacer (issue 17): long reads run a slice per loop turn, share their turns, and
leave the loop to everything else in between; a range's answer encoded in steps is
byte for byte the one-go encoding."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator
from types import SimpleNamespace

import pytest

from pyetcd.mvcc import types as mt
from pyetcd.pb import rpc_pb2
from pyetcd.server.etcdserver import pbconv
from pyetcd.server.etcdserver.pacer import OtherWork, ReadPacer
from pyetcd.server.etcdserver.txn import run_steps


def _busy_steps(name: str, n: int, trace: list[str]) -> Generator[None, None, str]:
    for _ in range(n):
        end = time.perf_counter() + 0.0005
        while time.perf_counter() < end:
            pass
        trace.append(name)
        yield
    return name


def test_short_read_needs_no_turn() -> None:
    async def main() -> None:
        pacer = ReadPacer(slice_seconds=1.0)
        assert await pacer.run(_busy_steps("a", 3, [])) == "a"
        assert pacer.slices == 0

    asyncio.run(main())


def test_long_reads_share_turns_and_leave_the_loop_between_slices() -> None:
    async def main() -> None:
        pacer = ReadPacer(slice_seconds=0.001, share=1.0)
        trace: list[str] = []
        stop = False

        async def other_work() -> None:
            while not stop:
                trace.append("loop")
                await asyncio.sleep(0)

        ticker = asyncio.create_task(other_work())
        got = await asyncio.gather(
            pacer.run(_busy_steps("a", 40, trace)), pacer.run(_busy_steps("b", 40, trace))
        )
        stop = True
        await ticker
        assert got == ["a", "b"]
        assert pacer.slices >= 10
        reads = [t for t in trace if t != "loop"]
        # the two reads alternate by slices: neither runs to its end first
        assert reads.index("b") < len(reads) - 1 - reads[::-1].index("a")
        # between two slices, other work always ran: never more than one slice's
        # steps (~2 at 0.5 ms each in a 1 ms slice, a few more on a slow machine)
        # without the loop turning
        run = longest = 0
        for t in trace:
            run = 0 if t == "loop" else run + 1
            longest = max(longest, run)
        assert longest <= 8, trace

    asyncio.run(main())


def test_rest_gives_the_loop_its_share() -> None:
    async def main() -> None:
        pacer = ReadPacer(slice_seconds=0.002, share=0.5)
        t0 = time.perf_counter()
        await pacer.run(_busy_steps("a", 40, []))
        took = time.perf_counter() - t0
        # 20 ms of steps, as long again at rest
        assert took >= 0.035

    asyncio.run(main())


class Switch:
    def __init__(self) -> None:
        self.on = False
        self.asked = 0

    def waiting(self) -> bool:
        self.asked += 1
        return self.on


def test_rest_only_while_others_wait() -> None:
    async def main() -> None:
        rivals = Switch()
        pacer = ReadPacer(slice_seconds=0.002, share=0.5, rivals=rivals)
        await pacer.run(_busy_steps("a", 40, []))
        assert rivals.asked > 0 and pacer.rests == 0  # nobody waited: no rest
        rivals.on = True
        t0 = time.perf_counter()
        await pacer.run(_busy_steps("b", 40, []))
        assert pacer.rests > 0 and time.perf_counter() - t0 >= 0.035

    asyncio.run(main())


def test_other_work_is_waiting_requests_or_peers() -> None:
    waits: dict[int, object] = {}
    membership = SimpleNamespace(members={1: "me"})
    work = OtherWork(waits, membership)
    assert not work.waiting()
    waits[7] = "a put waiting for its apply"
    assert work.waiting()
    waits.clear()
    membership.members[2] = "a peer"
    assert work.waiting()


def test_errors_propagate_and_cancel_closes_the_steps() -> None:
    closed: list[bool] = []

    def failing() -> Generator[None, None, int]:
        yield
        raise KeyError("boom")

    def endless() -> Generator[None, None, int]:
        try:
            while True:
                time.sleep(0.0005)
                yield
        finally:
            closed.append(True)

    async def main() -> None:
        pacer = ReadPacer(slice_seconds=0.0001)
        with pytest.raises(KeyError):
            await pacer.run(failing())
        task = asyncio.create_task(pacer.run(endless()))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert closed == [True]

    asyncio.run(main())


def test_range_encoded_in_steps_is_the_one_go_encoding() -> None:
    kvs = tuple(
        mt.KeyValue(b"k%05d" % i, 3 + i, 5 + i, i % 4, b"v" * (i % 7), i % 3)
        for i in range(1000)
    )
    header = rpc_pb2.ResponseHeader(cluster_id=1, member_id=2, revision=1005, raft_term=3)
    for resp in (
        mt.RangeResponse(mt.ResponseHeader(revision=1005), kvs, True, 2000),
        mt.RangeResponse(mt.ResponseHeader(revision=1005)),
        mt.RangeResponse(mt.ResponseHeader(revision=1005), kvs[:1], False, 1),
    ):
        want = pbconv.range_to_pb(resp)
        want.header.CopyFrom(header)
        for step in (0, 1, 7, 256):
            got = run_steps(pbconv.range_encode_steps(resp, header, step))
            assert got == want.SerializeToString()
