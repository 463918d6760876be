"""CommitNotices: a leader's commit-only appends ride on the next append to the same
follower, or go out on their own once the delay ends. A recording transport stands in
for the peers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pyetcd.raft import Entry, Message, MessageType
from pyetcd.server.etcdserver.transport import CommitNotices

MT = MessageType


class Recorder:
    def __init__(self) -> None:
        self.calls: list[list[Message]] = []

    def send(self, msgs: Sequence[Message]) -> None:
        self.calls.append(list(msgs))


def app(to: int, index: int, commit: int, entries: int = 0) -> Message:
    ents = tuple(Entry(term=2, index=index + i + 1, data=b"x") for i in range(entries))
    return Message(
        type=MT.APP, to=to, frm=1, term=2, index=index, log_term=2, entries=ents, commit=commit
    )


def primed(rec: Recorder, delay: float) -> CommitNotices:
    """CommitNotices whose followers 2 and 3 have seen an append follow a notice at once
    (so their notices are held), with the recorder emptied."""
    notices = CommitNotices(rec, delay=delay, close=3600.0)
    for f in (2, 3):
        notices.send([app(f, 0, 0)])
        notices.send([app(f, 0, 0, entries=1)])
    rec.calls.clear()
    return notices


def beat(to: int, commit: int) -> Message:
    return Message(type=MT.HEARTBEAT, to=to, frm=1, term=2, commit=commit)


async def test_a_notice_is_dropped_for_the_next_append_which_carries_its_commit() -> None:
    rec = Recorder()
    notices = primed(rec, 10.0)
    first = [app(2, 4, 4, entries=1), app(3, 4, 4, entries=1)]
    notices.send(first)
    notices.send([app(2, 5, 5), app(3, 5, 5)])  # put 5 committed: both notices held
    assert rec.calls == [first]
    assert notices.held == 2
    second = [app(2, 5, 5, entries=1), app(3, 5, 5, entries=1)]
    notices.send(second)
    assert rec.calls == [first, second]  # the notices never went out
    assert second[0].commit == 5
    assert notices.held == 0
    notices.flush()
    assert rec.calls == [first, second]


async def test_another_message_to_the_follower_takes_the_notice_along_first() -> None:
    rec = Recorder()
    notices = primed(rec, 10.0)
    notices.send([app(2, 5, 5), app(3, 5, 5)])
    notices.send([beat(2, 5)])
    assert rec.calls == [[app(2, 5, 5), beat(2, 5)]]
    assert notices.held == 1  # follower 3's notice still waits
    notices.flush()
    assert rec.calls[-1] == [app(3, 5, 5)]


async def test_a_newer_notice_replaces_the_held_one() -> None:
    rec = Recorder()
    notices = primed(rec, 10.0)
    notices.send([app(2, 5, 5)])
    notices.send([app(2, 5, 6)])
    notices.flush()
    assert rec.calls == [[app(2, 5, 6)]]


async def test_a_held_notice_goes_out_when_the_delay_ends() -> None:
    rec = Recorder()
    notices = primed(rec, 0.01)
    loop = asyncio.get_running_loop()
    held_at = loop.time()
    notices.send([app(2, 5, 5)])
    while not rec.calls:
        await asyncio.sleep(0.002)  # polls the recorder: the timer is what is tested
        assert loop.time() - held_at < 5.0
    assert loop.time() - held_at >= 0.01
    assert rec.calls == [[app(2, 5, 5)]]
    assert notices.held == 0


async def test_a_notice_held_after_others_went_out_waits_its_own_delay() -> None:
    rec = Recorder()
    notices = primed(rec, 0.05)
    loop = asyncio.get_running_loop()
    notices.send([app(2, 5, 5)])  # arms the timer
    notices.send([app(2, 5, 5, entries=1)])  # drops it: nothing held
    await asyncio.sleep(0.03)
    held_at = loop.time()
    notices.send([app(2, 6, 6)])  # held 30 ms into the first delay
    while not any(c == [app(2, 6, 6)] for c in rec.calls):
        await asyncio.sleep(0.002)
        assert loop.time() - held_at < 5.0
    assert loop.time() - held_at >= 0.05


async def test_a_batch_without_empty_appends_passes_unchanged() -> None:
    rec = Recorder()
    notices = primed(rec, 10.0)
    msgs = [app(2, 4, 4, entries=2), beat(3, 4)]
    notices.send(msgs)
    assert rec.calls == [msgs]
    assert notices.held == 0


async def test_a_notice_is_held_only_while_appends_follow_commits_closely() -> None:
    """An isolated put's commit leaves at once, as etcd's does; a stream of sequential
    puts, whose next append follows each commit within ``close``, holds them."""
    rec = Recorder()
    notices = CommitNotices(rec, delay=10.0, close=3600.0)
    notices.send([app(2, 5, 5)])  # nothing known of this follower yet: sent now
    assert rec.calls == [[app(2, 5, 5)]] and notices.held == 0
    notices.send([app(2, 5, 5, entries=1)])  # the next append, at once: a close gap
    notices.send([app(2, 6, 6)])
    assert notices.held == 1
    lone = CommitNotices(Recorder(), delay=10.0, close=0.0)  # nothing is ever close
    lone.send([app(2, 5, 5)])
    lone.send([app(2, 5, 5, entries=1)])
    lone.send([app(2, 6, 6)])
    assert lone.held == 0
