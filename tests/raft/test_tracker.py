"""Progress, Inflights and the ProgressTracker."""

from __future__ import annotations

from collections.abc import Collection

import pytest

from pyetcd.raft.quorum import JointConfig, VoteResult
from pyetcd.raft.tracker import (
    Inflights,
    Progress,
    ProgressState,
    ProgressTracker,
    TrackerConfig,
)


def test_inflights_window_by_count_and_bytes() -> None:
    inf = Inflights(3)
    for i in (5, 7, 9):
        inf.add(i, 10)
    assert inf.full() and inf.count() == 3
    with pytest.raises(AssertionError):
        inf.add(10)
    inf.free_le(7)
    assert inf.count() == 1 and not inf.full()
    inf.free_le(100)
    assert inf.count() == 0
    by_bytes = Inflights(100, max_bytes=25)
    by_bytes.add(1, 10)
    by_bytes.add(2, 10)
    assert not by_bytes.full()
    by_bytes.add(3, 10)
    assert by_bytes.full()
    by_bytes.free_le(1)
    assert not by_bytes.full()
    c = by_bytes.clone()
    c.reset()
    assert by_bytes.count() == 2 and c.count() == 0


def test_probe_sends_one_append_at_a_time() -> None:
    pr = Progress(match=3, next=4)
    assert pr.state == ProgressState.PROBE and not pr.is_paused()
    pr.update_on_entries_send(2, 0, 4)
    assert pr.is_paused() and pr.next == 4  # probing does not advance next
    assert pr.maybe_update(5)
    assert not pr.is_paused() and (pr.match, pr.next) == (5, 6)
    assert not pr.maybe_update(4)  # stale
    # An empty probe does not pause.
    pr.update_on_entries_send(0, 0, 6)
    assert not pr.is_paused()


def test_replicate_pipelines_until_window_full() -> None:
    pr = Progress(match=3, next=4, inflights=Inflights(2))
    pr.become_replicate()
    pr.update_on_entries_send(2, 0, 4)
    assert pr.next == 6 and not pr.is_paused()
    pr.update_on_entries_send(1, 0, 6)
    assert pr.next == 7 and pr.is_paused()
    # A heartbeat response unpauses; an empty append keeps the window as it is.
    pr.msg_app_flow_paused = False
    pr.update_on_entries_send(0, 0, 7)
    assert pr.is_paused() and pr.inflights.count() == 2
    pr.maybe_update(5)
    pr.inflights.free_le(5)
    pr.update_on_entries_send(0, 0, 7)
    assert not pr.is_paused()


def test_maybe_decr_to() -> None:
    # Replicate: a rejection above match goes back to match + 1.
    pr = Progress(match=5, next=10)
    pr.become_replicate()
    pr.next = 10
    assert not pr.maybe_decr_to(5, 0)  # stale: at or below match
    assert pr.maybe_decr_to(8, 0) and pr.next == 6
    # Probe: only a rejection of the last probe (next - 1) counts; the hint jumps.
    pr = Progress(match=0, next=10)
    assert not pr.maybe_decr_to(5, 2)
    assert pr.maybe_decr_to(9, 3) and pr.next == 4
    pr = Progress(match=2, next=10, msg_app_flow_paused=True)
    assert pr.maybe_decr_to(9, 0) and pr.next == 3 and not pr.is_paused()


def test_snapshot_state() -> None:
    pr = Progress(match=3, next=4)
    pr.become_snapshot(20)
    assert pr.is_paused() and pr.pending_snapshot == 20
    pr.become_probe()
    assert pr.state == ProgressState.PROBE and pr.next == 21 and pr.pending_snapshot == 0
    pr = Progress(match=30, next=31)
    pr.become_snapshot(20)
    pr.become_probe()
    assert pr.next == 31


def test_repr_is_informative() -> None:
    pr = Progress(match=3, next=4, is_learner=True, recent_active=True)
    assert repr(pr) == "PROBE match=3 next=4 learner"
    pr = Progress(match=3, next=4)
    pr.become_snapshot(9)
    assert repr(pr) == "SNAPSHOT match=3 next=4 paused pendingSnap=9 inactive"


def tracker(
    voters: set[int], learners: Collection[int] = (), outgoing: Collection[int] = ()
) -> ProgressTracker:
    t = ProgressTracker(256)
    t.config = TrackerConfig(voters=JointConfig(voters, outgoing), learners=set(learners))
    for n in set(voters) | set(learners) | set(outgoing):
        t.progress[n] = Progress(is_learner=n in learners)
    return t


def test_committed_ignores_learners() -> None:
    t = tracker({1, 2, 3}, {4, 5})
    for n, m in {1: 10, 2: 4, 3: 3, 4: 10, 5: 10}.items():
        t.progress[n].match = m
    assert t.committed() == 4
    joint = tracker({1, 2, 3}, outgoing={1, 4, 5})
    for n, m in {1: 10, 2: 9, 3: 9, 4: 2, 5: 1}.items():
        joint.progress[n].match = m
    assert joint.committed() == 2


def test_votes_and_quorum_active() -> None:
    t = tracker({1, 2, 3}, {4})
    t.record_vote(4, True)  # a learner's vote is never counted
    t.record_vote(1, True)
    assert t.tally_votes() == (1, 0, VoteResult.PENDING)
    t.record_vote(2, False)
    t.record_vote(2, True)  # the first answer sticks
    assert t.tally_votes() == (1, 1, VoteResult.PENDING)
    t.record_vote(3, False)
    assert t.tally_votes()[2] == VoteResult.LOST
    t.reset_votes()
    assert t.tally_votes() == (0, 0, VoteResult.PENDING)
    t.progress[1].recent_active = True
    t.progress[4].recent_active = True
    assert not t.quorum_active()
    t.progress[3].recent_active = True
    assert t.quorum_active()
    assert t.voter_nodes() == [1, 2, 3] and t.learner_nodes() == [4]
    assert [n for n, _ in t.visit()] == [1, 2, 3, 4]
    assert not t.is_singleton() and tracker({1}).is_singleton()
