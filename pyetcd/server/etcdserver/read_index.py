"""Linearizable reads: one ReadIndex round serves every read that arrived before it.

A read waits until (1) the leader confirmed, with a quorum of heartbeats, that it was
still leader when the round began and told us its commit index, and (2) this member
has applied up to that index. Reads arriving during a round join the next one.

A leader that is the only voter needs no round: its read index is its commit index
(the Raft core answers the same at once), and a read whose index is already applied
goes ahead without waiting at all.

Counted as etcd counts them: an answer to a round given up on (it came too late) and
a round that timed out are slow read indexes; a round that failed otherwise (no
leader) is a failed read index.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Sequence
from typing import Protocol

from pyetcd.raft import ReadState

from .errors import RequestTimeoutError

__all__ = ["ReadIndexer"]


class SoleVoterIndex(Protocol):
    def sole_voter_read_index(self) -> int | None:
        """The read index a one-voter leader answers at once (RawNode's); else None."""
        ...


class ReadIndexRequests(Protocol):
    def read_index(self, ctx: bytes) -> None:
        """Start a ReadIndex round named ``ctx`` (the driver's inbox)."""


class Applied(Protocol):
    @property
    def applied(self) -> int: ...

    def wait(self, index: int) -> Awaitable[None]: ...


class LeaderWait(Protocol):
    async def wait_leader(self) -> None: ...


class Count(Protocol):
    def inc(self) -> None: ...


class ReadIndexCounts(Protocol):
    """Where read index rounds are counted (see the module docstring)."""

    @property
    def slow_read_indexes(self) -> Count: ...

    @property
    def read_indexes_failed(self) -> Count: ...


class ReadIndexer:
    """Batches linearizable reads into ReadIndex rounds; ``on_read_states`` is told the
    rounds' answers (by the Raft driver)."""

    def __init__(
        self,
        core: SoleVoterIndex,
        requests: ReadIndexRequests,
        applied: Applied,
        leader: LeaderWait,
        request_timeout: float,
        counts: ReadIndexCounts,
    ) -> None:
        self.core = core
        self.requests = requests
        self.applied = applied
        self.leader = leader
        self.request_timeout = request_timeout
        self.slow = counts.slow_read_indexes
        self.failed = counts.read_indexes_failed
        self._waiting: list[asyncio.Future[None]] = []
        self._trigger = asyncio.Event()
        self._rounds: dict[bytes, asyncio.Future[int]] = {}
        self._ids = itertools.count(1)

    async def wait_linearizable(self) -> None:
        index = self.core.sole_voter_read_index()
        if index is not None and index <= self.applied.applied:
            # A one-voter leader's read index is its commit index, and everything up to
            # it is applied: the read may go ahead now, without a batch to wait for.
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        self._trigger.set()
        await fut

    def on_read_states(self, states: Sequence[ReadState]) -> None:
        for rs in states:
            fut = self._rounds.pop(rs.request_ctx, None)
            if fut is None:
                self.slow.inc()  # a round already given up on and retried
            elif not fut.done():
                fut.set_result(rs.index)

    async def run(self) -> None:
        while True:
            await self._trigger.wait()
            self._trigger.clear()
            batch, self._waiting = self._waiting, []
            if not batch:
                continue
            try:
                index = await self._round()
                await self.applied.wait(index)
            except Exception as err:
                if not isinstance(err, RequestTimeoutError):
                    self.failed.inc()
                for fut in batch:
                    if not fut.done():
                        fut.set_exception(err)
                continue
            for fut in batch:
                if not fut.done():
                    fut.set_result(None)

    async def _round(self) -> int:
        await self.leader.wait_leader()
        index = self.core.sole_voter_read_index()
        if index is not None:
            return index
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request_timeout
        # Retry a lost round (e.g. a dropped heartbeat) until the deadline.
        while loop.time() < deadline:
            ctx = next(self._ids).to_bytes(8, "big")
            fut: asyncio.Future[int] = loop.create_future()
            self._rounds[ctx] = fut
            self.requests.read_index(ctx)
            try:
                return await asyncio.wait_for(fut, min(1.0, max(0.01, deadline - loop.time())))
            except TimeoutError:
                self._rounds.pop(ctx, None)
        self.slow.inc()
        raise RequestTimeoutError()
