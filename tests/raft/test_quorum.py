"""Quorum arithmetic for majority and joint configurations."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pyetcd.raft.quorum import INFINITE_INDEX, JointConfig, MajorityConfig, VoteResult

W, P, L = VoteResult.WON, VoteResult.PENDING, VoteResult.LOST


def test_majority_committed_index() -> None:
    c = MajorityConfig({1, 2, 3})
    assert c.committed_index({1: 5, 2: 3, 3: 9}.get) == 5
    assert c.committed_index({1: 5}.get) == 0  # unknown members count as 0
    # Four voters need three acks.
    assert MajorityConfig({1, 2, 3, 4}).committed_index({1: 4, 2: 3, 3: 2, 4: 1}.get) == 2
    assert MajorityConfig().committed_index(lambda _: None) == INFINITE_INDEX


def test_majority_vote_result() -> None:
    c = MajorityConfig({1, 2, 3})
    assert c.vote_result({}) == P
    assert c.vote_result({1: True}) == P
    assert c.vote_result({1: True, 2: True}) == W
    assert c.vote_result({1: True, 2: False}) == P
    assert c.vote_result({1: False, 2: False}) == L
    assert c.vote_result({4: True, 5: True}) == P  # non-members never count
    assert MajorityConfig().vote_result({}) == W


def test_joint_needs_both_halves() -> None:
    j = JointConfig({1, 2, 3}, {3, 4, 5})
    assert j.is_joint() and j.ids() == {1, 2, 3, 4, 5}
    assert j.committed_index({1: 9, 2: 9, 3: 1, 4: 1, 5: 1}.get) == 1
    assert j.committed_index({1: 9, 2: 9, 3: 5, 4: 5, 5: 1}.get) == 5
    assert j.vote_result({1: True, 2: True}) == P
    assert j.vote_result({1: True, 2: True, 4: True, 5: True}) == W
    assert j.vote_result({1: True, 2: True, 4: False, 5: False}) == L
    assert repr(j) == "[1, 2, 3]&&[3, 4, 5]"
    plain = JointConfig({1, 2, 3})
    assert not plain.is_joint()
    assert plain.committed_index({1: 7, 2: 7}.get) == 7
    assert plain.vote_result({1: True, 2: True}) == W


@settings(derandomize=True, max_examples=200)
@given(st.dictionaries(st.integers(1, 7), st.integers(0, 20), min_size=1))
def test_committed_index_is_largest_index_a_majority_has(acked: dict[int, int]) -> None:
    c = MajorityConfig(acked)
    got = c.committed_index(acked.get)
    have = sum(1 for v in acked.values() if v >= got)
    assert have > len(acked) // 2
    assert sum(1 for v in acked.values() if v >= got + 1) <= len(acked) // 2


@settings(derandomize=True, max_examples=200)
@given(
    st.frozensets(st.integers(1, 6), min_size=1),
    st.dictionaries(st.integers(1, 6), st.booleans()),
)
def test_vote_result_matches_counting(voters: frozenset[int], votes: dict[int, bool]) -> None:
    yes = sum(1 for v in voters if votes.get(v) is True)
    no = sum(1 for v in voters if votes.get(v) is False)
    q = len(voters) // 2 + 1
    expected = W if yes >= q else (L if len(voters) - no < q else P)
    assert MajorityConfig(voters).vote_result(votes) == expected
