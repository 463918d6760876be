"""Long reads in slices, so that they cannot hold the event loop (issue 17).

Everything of a member runs on one event loop: Raft ticks, heartbeats, peer messages,
the WAL's hand-offs, applies, and every client's calls. A range over 100,000 keys
built in one go held the loop for most of a second: heartbeats went out late enough
for an election, and every other client's put waited behind it.

The request code is written as generators of steps (``txn.range_steps``,
``pbconv.range_encode_steps``): each step is a small, bounded piece of work, and the
store keeps a read consistent across steps (``mvcc.RangeCursor``). ``ReadPacer``
drives them:

1. A read's first steps run at once, for up to ``slice_seconds``: a small read ends
   there and costs no extra loop turn.
2. A read that needs more queues for the pacer's turn (one FIFO lock), runs steps for
   up to ``slice_seconds``, rests (still holding the turn) so that long reads take at
   most ``share`` of the loop's time, lets go, and yields to the loop. So each loop
   turn runs at most one slice of the long reads in flight, however many there are,
   besides their first slices: the rest of the turn (I/O, timers, the Raft driver,
   short calls) is never behind more than ``slice_seconds`` of long reads, and long
   reads share their turns in arrival order.

Why the rest (measured with ``bench/isolation.py``, 4 readers of 100,000 keys on the
leader of 3 members, this 2-core machine shared with other work): with slices alone
the loop was never idle, the kernel preempted its thread like any CPU-bound one, and
the loop's lateness (a 2 ms timer) was p50 10-20 ms: a put, which crosses the loop
several times, took p50 68-90 ms, p99 181-231 ms. Resting as long as each slice ran
(``share`` 0.5) gave a lateness of p50 0.2-2 ms and puts p50 9-17 ms, p99 85-120 ms,
for 20-50% fewer ranges per second.

3. The rest is for others: a read rests only while the member has other work that
   the loop must let through (``OtherWork``: requests waiting for their entries to
   apply, or peers to answer). A lone member serving only reads has nobody to give
   those turns to: resting there only left the process idle, a 10k-key range taking
   twice its CPU time (issue 22: 49.7 ms for 26.6 ms of CPU, one client).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator, Sized
from typing import Protocol, TypeVar

__all__ = ["READ_SHARE", "SLICE_SECONDS", "OtherWork", "ReadPacer", "Rivals"]

#: How long one slice of a long read may hold the loop.
SLICE_SECONDS = 0.001
#: The share of the loop's time that long reads may take (after their first slice).
READ_SHARE = 0.5

_T = TypeVar("_T")


class Rivals(Protocol):
    """What else wants the loop besides long reads."""

    def waiting(self) -> bool:
        """Whether there is work that long reads should rest for now."""
        ...


class _Members(Protocol):
    @property
    def members(self) -> Sized: ...


class OtherWork:
    """A member's work besides long reads: requests waiting for their entries to be
    applied (puts, txns, lease grants...: ``waits``), and, in a cluster of more than
    one member, the peers (heartbeats, appends and their answers cross the loop all
    the time, so long reads always rest there, as before issue 22)."""

    __slots__ = ("_membership", "_waits")

    def __init__(self, waits: Sized, membership: _Members) -> None:
        self._waits = waits
        self._membership = membership

    def waiting(self) -> bool:
        return len(self._waits) > 0 or len(self._membership.members) > 1


class ReadPacer:
    """Runs generators of steps a slice at a time, one slice per loop turn (see above).

    ``rivals``: when to rest (None: after every slice).
    """

    def __init__(
        self,
        slice_seconds: float = SLICE_SECONDS,
        share: float = READ_SHARE,
        rivals: Rivals | None = None,
    ) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], not {share}")
        self.slice_seconds = slice_seconds
        self._rest_per_second = (1 - share) / share
        self._rivals = rivals
        #: Rests taken so far.
        self.rests = 0
        self._turn = asyncio.Lock()
        #: Slices run under the turn lock so far (long reads' work after their first slice).
        self.slices = 0

    async def run(self, steps: Generator[None, None, _T]) -> _T:
        """Run ``steps`` to its end; returns what it returns, raises what it raises.

        Cancelled while waiting, the generator is closed.
        """
        clock = time.perf_counter
        try:
            deadline = clock() + self.slice_seconds
            while True:
                next(steps)
                if clock() >= deadline:
                    break
            while True:
                async with self._turn:
                    self.slices += 1
                    start = clock()
                    deadline = start + self.slice_seconds
                    while True:
                        next(steps)
                        if clock() >= deadline:
                            break
                    rest = (clock() - start) * self._rest_per_second
                    rivals = self._rivals
                    if rest > 0 and (rivals is None or rivals.waiting()):
                        self.rests += 1
                        await asyncio.sleep(rest)
                # Lets the loop turn: I/O, timers and whatever else is ready run before
                # this read's next slice (and the next long read in line takes the turn).
                await asyncio.sleep(0)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        finally:
            steps.close()
