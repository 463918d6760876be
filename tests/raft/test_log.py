"""RaftLog and Unstable: positions, appends with conflicts, commit and apply."""

from __future__ import annotations

import pytest

from pyetcd.raft import CompactedError, Entry, MemoryStorage, Snapshot, SnapshotMetadata
from pyetcd.raft.errors import UnavailableError
from pyetcd.raft.log import RaftLog, Unstable


def ents(*pairs: tuple[int, int]) -> tuple[Entry, ...]:
    return tuple(Entry(term=t, index=i) for i, t in pairs)


def log_with(*pairs: tuple[int, int], stable: bool = True) -> RaftLog:
    """A log holding (index, term) pairs from index 1, in storage or unstable."""
    s = MemoryStorage()
    if stable:
        s.append(list(ents(*pairs)))
        return RaftLog(s)
    log = RaftLog(s)
    log.append(list(ents(*pairs)))
    return log


@pytest.mark.parametrize("stable", [True, False])
def test_positions_and_terms(stable: bool) -> None:
    log = log_with((1, 1), (2, 2), (3, 2), stable=stable)
    assert (log.first_index(), log.last_index(), log.last_term()) == (1, 3, 2)
    assert log.term(0) == 0 and log.term(2) == 2
    with pytest.raises(UnavailableError):
        log.term(4)
    assert log.zero_term_on_out_of_range(4) == 0
    assert log.match_term(3, 2) and not log.match_term(3, 1)


def test_is_up_to_date() -> None:
    log = log_with((1, 1), (2, 2), (3, 2))
    assert log.is_up_to_date(3, 2)
    assert log.is_up_to_date(1, 3)  # higher last term wins regardless of length
    assert log.is_up_to_date(4, 2)
    assert not log.is_up_to_date(2, 2)
    assert not log.is_up_to_date(9, 1)


def test_find_conflict() -> None:
    log = log_with((1, 1), (2, 2), (3, 3))
    assert log.find_conflict(ents((1, 1), (2, 2))) == 0
    assert log.find_conflict(ents((2, 2), (3, 3), (4, 4))) == 4
    assert log.find_conflict(ents((2, 2), (3, 4), (4, 4))) == 3
    assert log.find_conflict(()) == 0


def test_find_conflict_by_term() -> None:
    log = log_with((1, 1), (2, 1), (3, 2), (4, 2), (5, 4))
    assert log.find_conflict_by_term(5, 3) == (4, 2)
    assert log.find_conflict_by_term(5, 4) == (5, 4)
    assert log.find_conflict_by_term(4, 1) == (2, 1)
    assert log.find_conflict_by_term(5, 0) == (0, 0)


def test_maybe_append_truncates_conflicting_suffix() -> None:
    log = log_with((1, 1), (2, 1), (3, 1))
    assert log.maybe_append(1, 1, 2, ents((2, 2), (3, 2), (4, 2))) == 4
    assert [(e.index, e.term) for e in log.all_entries()] == [(1, 1), (2, 2), (3, 2), (4, 2)]
    assert log.committed == 2
    # The commit index never goes beyond the last entry this message vouched for.
    assert log.maybe_append(2, 2, 9, ()) == 2
    assert log.committed == 2
    # Mismatching previous entry: rejected, nothing changes.
    assert log.maybe_append(4, 3, 4, ents((5, 3))) is None
    assert log.last_index() == 4


def test_maybe_append_refuses_to_overwrite_committed() -> None:
    log = log_with((1, 1), (2, 1))
    log.commit_to(2)
    with pytest.raises(AssertionError):
        log.maybe_append(1, 1, 2, ents((2, 2)))
    with pytest.raises(AssertionError):
        log.commit_to(3)


def test_committed_entries_go_out_with_their_unstable_entries() -> None:
    log = log_with((1, 1), stable=True)
    log.append(list(ents((2, 1), (3, 1))))
    log.commit_to(3)
    # Not handed out yet: they go out in the same Ready as the committed ones, whose
    # contract makes them durable before anything is applied.
    assert [e.index for e in log.next_committed_ents()] == [1, 2, 3]
    assert [e.index for e in log.next_unstable_ents()] == [2, 3]


def test_committed_entries_wait_for_entries_in_flight() -> None:
    log = log_with((1, 1), stable=True)
    log.append(list(ents((2, 1), (3, 1))))
    log.unstable.accept_in_progress()  # handed out in a Ready not yet acknowledged
    log.append(list(ents((4, 1))))
    log.commit_to(4)
    # Only the stable entry may be applied while 2 and 3 may still be in flight.
    assert [e.index for e in log.next_committed_ents()] == [1]
    assert log.has_next_committed_ents()
    assert [e.index for e in log.next_unstable_ents()] == [4]
    # The application writes them, then acknowledges.
    st = log.storage
    assert isinstance(st, MemoryStorage)
    st.append(list(ents((2, 1), (3, 1))))
    log.stable_to(3, 1)
    assert [e.index for e in log.next_committed_ents()] == [1, 2, 3, 4]
    log.accept_applying(4)
    assert not log.has_next_committed_ents()
    log.applied_to(4)
    assert log.applied == 4
    with pytest.raises(AssertionError):
        log.applied_to(3)


def test_unstable_stable_to_ignores_a_replaced_entry() -> None:
    u = Unstable(5)
    u.truncate_and_append(list(ents((5, 1), (6, 1), (7, 1))))
    u.accept_in_progress()
    # A newer leader replaced 6..7 while they were being written: the ack for (7, 1)
    # must not drop the new (7, 2).
    u.truncate_and_append(list(ents((6, 2), (7, 2))))
    assert u.offset_in_progress == 6
    u.stable_to(7, 1)
    assert u.offset == 5 and len(u.entries) == 3
    u.stable_to(5, 1)
    assert u.offset == 6 and [e.term for e in u.entries] == [2, 2]
    # Replacing from before the offset resets the tail.
    u.truncate_and_append(list(ents((4, 3))))
    assert u.offset == 4 and u.maybe_last_index() == 4


def test_slice_with_size_limit_across_storage_and_unstable() -> None:
    s = MemoryStorage()
    s.append([Entry(term=1, index=i, data=b"x" * 6) for i in (1, 2)])
    log = RaftLog(s)
    log.append([Entry(term=1, index=i, data=b"x" * 6) for i in (3, 4)])
    assert [e.index for e in log.slice(1, 5)] == [1, 2, 3, 4]
    assert [e.index for e in log.slice(1, 5, 90)] == [1, 2, 3]
    assert [e.index for e in log.slice(2, 4, 0)] == [2]
    assert log.entries(5) == []
    with pytest.raises(AssertionError):
        log.slice(1, 6)


def test_restore_from_snapshot() -> None:
    log = log_with((1, 1), (2, 1))
    snap = Snapshot(metadata=SnapshotMetadata(index=10, term=3))
    log.restore(snap)
    assert (log.first_index(), log.last_index(), log.committed, log.term(10)) == (11, 10, 10, 3)
    assert log.has_next_or_in_progress_snapshot() and log.next_committed_ents() == []
    assert log.unstable.next_snapshot() is snap
    log.unstable.accept_in_progress()
    assert log.unstable.next_snapshot() is None
    log.stable_snap_to(10)
    assert not log.has_next_or_in_progress_snapshot()


def test_compacted_term() -> None:
    s = MemoryStorage()
    s.apply_snapshot(Snapshot(metadata=SnapshotMetadata(index=5, term=2)))
    log = RaftLog(s)
    assert (log.first_index(), log.committed, log.applied, log.term(5)) == (6, 5, 5, 2)
    with pytest.raises(CompactedError):
        log.term(4)
