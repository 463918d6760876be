"""pyetcd/server/etcdserver/wait.py: the request waiters' deadlines, and the expiry
sweep that sleeps while none is pending (an idle member wakes for nothing)."""

from __future__ import annotations

import asyncio

import pytest

from pyetcd.server.etcdserver.errors import RequestTimeoutError
from pyetcd.server.etcdserver.inbox import RaftInbox
from pyetcd.server.etcdserver.proposer import Proposer
from pyetcd.server.etcdserver.wait import RequestWait, set_or_after


async def test_armed_while_a_deadline_is_pending() -> None:
    w = RequestWait()
    assert not w.armed.is_set()
    w.register(1)  # no deadline: nothing to sweep
    assert not w.armed.is_set()
    loop = asyncio.get_running_loop()
    fut = w.register_until(2, 5.0)
    w.register(3, deadline=loop.time() + 10.0)
    assert w.armed.is_set()
    assert w.expire(loop.time(), TimeoutError) == 0 and w.armed.is_set()
    w.trigger(2, "done")  # answered: its deadline stays until it passes
    assert await fut == "done"
    assert w.expire(loop.time() + 6.0, TimeoutError) == 0 and w.armed.is_set()
    assert w.expire(loop.time() + 11.0, TimeoutError) == 1
    assert not w.armed.is_set()
    w.register_until(4, 1.0)
    assert w.armed.is_set()


class _Lead:
    lead = 1  # a leader is known: an expired request is a timeout, not "no leader"


async def test_sweep_fails_a_request_past_its_deadline_after_an_idle_spell() -> None:
    w = RequestWait()
    p = Proposer(
        1, RaftInbox(), w, _Lead(),  # type: ignore[arg-type]  # only .lead is read
        max_request_bytes=1 << 20, request_timeout=0.05,
    )  # fmt: skip
    sweep = asyncio.ensure_future(p.run_expiry())
    try:
        for _ in range(10):  # idle: the sweep waits for a deadline, not a timer
            await asyncio.sleep(0)
        assert not sweep.done()
        fut = w.register_until(7, 0.05)
        with pytest.raises(RequestTimeoutError):
            await asyncio.wait_for(fut, 2.0)
        assert p.proposals_failed == 1
    finally:
        sweep.cancel()


async def test_set_or_after_returns_on_the_event_or_the_time() -> None:
    ev = asyncio.Event()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await set_or_after(ev, 0.05)  # nobody sets it: the time runs out, the event is set
    assert loop.time() - t0 >= 0.04 and ev.is_set()
    ev.clear()
    waiter = asyncio.ensure_future(set_or_after(ev, 60.0))
    await asyncio.sleep(0)
    assert not waiter.done()
    ev.set()  # set early: returns at once, long before the 60 s
    await asyncio.wait_for(waiter, 1.0)
