"""Waiting for applied entries: by request ID, and by applied index."""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable

__all__ = ["AppliedIndex", "RequestWait", "set_or_after"]


class RequestWait:
    """Futures keyed by request ID, resolved by the apply loop.

    A waiter registered with a deadline is failed by ``expire`` once it passes: one
    periodic sweep instead of a timer per request keeps the hot path cheap. The sweep
    need not wake while no deadline is pending (an idle member): ``armed`` is set when
    the first deadline is pushed, and cleared by the ``expire`` that pops the last.
    """

    def __init__(self) -> None:
        self._futs: dict[int, asyncio.Future[object]] = {}
        self._deadlines: list[tuple[float, int]] = []
        # The store request each waiter's entry carries, converted from protobuf once
        # when proposed: the apply loop takes it instead of converting again.
        self._requests: dict[int, object] = {}
        #: set while ``_deadlines`` is not empty (what the sweep waits for when idle)
        self.armed = asyncio.Event()

    def register(
        self, req_id: int, deadline: float | None = None, request: object = None
    ) -> asyncio.Future[object]:
        """A future for request ``req_id``; ``request``: its converted store request."""
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._futs[req_id] = fut
        if deadline is not None:
            if not self._deadlines:
                self.armed.set()
            heapq.heappush(self._deadlines, (deadline, req_id))
        if request is not None:
            self._requests[req_id] = request
        return fut

    def register_until(
        self, req_id: int, timeout: float, request: object = None
    ) -> asyncio.Future[object]:
        """``register`` with a deadline ``timeout`` seconds from now (the loop's clock)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[object] = loop.create_future()
        self._futs[req_id] = fut
        if not self._deadlines:
            self.armed.set()
        heapq.heappush(self._deadlines, (loop.time() + timeout, req_id))
        if request is not None:
            self._requests[req_id] = request
        return fut

    def take_request(self, req_id: int) -> object:
        """The store request registered with ``req_id`` (None if none is waiting)."""
        return self._requests.pop(req_id, None)

    def waiting(self, req_id: int) -> bool:
        """Whether a waiter for ``req_id`` is registered."""
        return req_id in self._futs

    def expire(self, now: float, err: Callable[[], BaseException]) -> int:
        """Fail every waiter whose deadline is at or before ``now``; returns how many."""
        n = 0
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            _, req_id = heapq.heappop(heap)
            self._requests.pop(req_id, None)
            fut = self._futs.pop(req_id, None)
            if fut is not None and not fut.done():
                fut.set_exception(err())
                n += 1
        if not heap:
            self.armed.clear()
        return n

    def cancel(self, req_id: int) -> None:
        self._futs.pop(req_id, None)
        self._requests.pop(req_id, None)

    def trigger(self, req_id: int, result: object) -> None:
        fut = self._futs.pop(req_id, None)
        if fut is not None and not fut.done():
            fut.set_result(result)

    def fail(self, req_id: int, err: BaseException) -> None:
        self._requests.pop(req_id, None)
        fut = self._futs.pop(req_id, None)
        if fut is not None and not fut.done():
            fut.set_exception(err)

    def fail_all(self, err: BaseException) -> None:
        for req_id in list(self._futs):
            self.fail(req_id, err)

    def __len__(self) -> int:
        return len(self._futs)


async def set_or_after(event: asyncio.Event, seconds: float) -> None:
    """Return once ``event`` is set or ``seconds`` have passed, whichever comes first.

    What ``wait_for(event.wait(), seconds)`` does, without the task it makes and
    cancels at every timeout: a loop that wakes ten times a second on an idle member
    pays that ten times a second. The event is left set when the time ran out.
    """
    if event.is_set():
        return
    timer = asyncio.get_running_loop().call_later(seconds, event.set)
    try:
        await event.wait()
    finally:
        timer.cancel()


class AppliedIndex:
    """The member's applied index, and futures that resolve once it reaches theirs.

    The one owner of the applied index: the Raft driver advances it after applying,
    everyone else (reads, snapshots, Status) asks it.
    """

    def __init__(self, applied: int = 0) -> None:
        #: Every committed entry up to here is applied (or was, before a restart: the
        #: backend's consistent index).
        self.applied = applied
        self._heap: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = 0

    def wait(self, index: int) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if index <= self.applied:
            fut.set_result(None)
        else:
            self._seq += 1
            heapq.heappush(self._heap, (index, self._seq, fut))
        return fut

    def advance(self, applied: int) -> None:
        """Entries up to ``applied`` are applied; wake who waited for them."""
        self.applied = max(self.applied, applied)
        heap = self._heap
        while heap and heap[0][0] <= self.applied:
            _, _, fut = heapq.heappop(heap)
            if not fut.done():
                fut.set_result(None)
