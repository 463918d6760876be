"""Applying conf changes: simple changes, joint consensus, and restoring a ConfState."""

from __future__ import annotations

import pytest

from pyetcd.raft import ConfChangeSingle, ConfChangeType, ConfState
from pyetcd.raft.confchange import Changer, ConfChangeError, restore
from pyetcd.raft.tracker import Progress, TrackerConfig

V, L, R = ConfChangeType.ADD_NODE, ConfChangeType.ADD_LEARNER_NODE, ConfChangeType.REMOVE_NODE
ProgressMap = dict[int, Progress]


def ccs(*changes: tuple[ConfChangeType, int]) -> tuple[ConfChangeSingle, ...]:
    return tuple(ConfChangeSingle(t, n) for t, n in changes)


def changer(cs: ConfState, last_index: int = 10) -> Changer:
    cfg, prs = restore(cs, last_index, 256)
    return Changer(cfg, prs, last_index, 256)


def state(cfg: TrackerConfig) -> ConfState:
    return cfg.conf_state()


def test_simple_add_voter_and_learner() -> None:
    c = changer(ConfState(voters=(1, 2, 3)))
    cfg, prs = c.simple(ccs((V, 4)))
    assert state(cfg) == ConfState(voters=(1, 2, 3, 4))
    # A new member is probed from the last index and counts as recently active.
    assert (prs[4].match, prs[4].next, prs[4].recent_active) == (0, 10, True)
    cfg, prs = c.simple(ccs((L, 5)))
    assert state(cfg) == ConfState(voters=(1, 2, 3), learners=(5,))
    assert prs[5].is_learner
    # The inputs were not touched.
    assert state(c.config) == ConfState(voters=(1, 2, 3)) and 4 not in c.progress


def test_promote_demote_remove() -> None:
    c = changer(ConfState(voters=(1, 2), learners=(3,)))
    cfg, prs = c.simple(ccs((V, 3)))
    assert state(cfg) == ConfState(voters=(1, 2, 3)) and not prs[3].is_learner
    cfg, prs = c.simple(ccs((L, 2)))
    assert state(cfg) == ConfState(voters=(1,), learners=(2, 3)) and prs[2].is_learner
    cfg, prs = c.simple(ccs((R, 3)))
    assert state(cfg) == ConfState(voters=(1, 2)) and 3 not in prs
    # Removing an unknown member or adding an existing learner again changes nothing.
    cfg, _ = c.simple(ccs((R, 9), (L, 3)))
    assert state(cfg) == ConfState(voters=(1, 2), learners=(3,))


def test_simple_refuses_unsafe_changes() -> None:
    c = changer(ConfState(voters=(1, 2, 3)))
    with pytest.raises(ConfChangeError, match="more than one voter"):
        c.simple(ccs((V, 4), (V, 5)))
    with pytest.raises(ConfChangeError, match="more than one voter"):
        c.simple(ccs((R, 1), (V, 4)))
    with pytest.raises(ConfChangeError, match="removed all voters"):
        changer(ConfState(voters=(1,))).simple(ccs((R, 1)))


def test_joint_enter_and_leave_with_learners_next() -> None:
    c = changer(ConfState(voters=(1, 2, 3)))
    cfg, prs = c.enter_joint(True, ccs((V, 4), (L, 3), (R, 2)))
    assert state(cfg) == ConfState(
        voters=(1, 4),
        voters_outgoing=(1, 2, 3),
        learners_next=(3,),
        auto_leave=True,
    )
    # 2 and 3 are still voters of the outgoing half: both keep their progress.
    assert set(prs) == {1, 2, 3, 4} and not prs[3].is_learner
    j = Changer(cfg, prs, 10, 256)
    with pytest.raises(ConfChangeError, match="already joint"):
        j.enter_joint(False, ccs((V, 5)))
    with pytest.raises(ConfChangeError, match="in joint config"):
        j.simple(ccs((V, 5)))
    cfg2, prs2 = j.leave_joint()
    assert state(cfg2) == ConfState(voters=(1, 4), learners=(3,))
    assert set(prs2) == {1, 3, 4} and prs2[3].is_learner
    # The joint input is unchanged (a failed or repeated apply must not leak state).
    assert state(cfg).voters_outgoing == (1, 2, 3) and not prs[3].is_learner
    with pytest.raises(ConfChangeError, match="non-joint"):
        Changer(cfg2, prs2, 10, 256).leave_joint()


def test_joint_refuses_zero_voters() -> None:
    with pytest.raises(ConfChangeError, match="zero-voter"):
        Changer(TrackerConfig(), {}, 0, 256).enter_joint(False, ccs((V, 1)))
    with pytest.raises(ConfChangeError, match="removed all voters"):
        changer(ConfState(voters=(1, 2))).enter_joint(False, ccs((R, 1), (R, 2)))


@pytest.mark.parametrize(
    "cs",
    [
        ConfState(voters=(1,)),
        ConfState(voters=(1, 2, 3), learners=(4, 5)),
        ConfState(voters=(1, 4), voters_outgoing=(1, 2, 3), learners_next=(3,), auto_leave=True),
        ConfState(voters=(2, 3), voters_outgoing=(1, 2), learners=(5,)),
    ],
)
def test_restore_round_trips(cs: ConfState) -> None:
    cfg, prs = restore(cs, 7, 256)
    assert state(cfg).equivalent(cs)
    assert set(prs) == set(cs.voters) | set(cs.learners) | set(cs.voters_outgoing)
    for node in cs.learners:
        assert prs[node].is_learner
