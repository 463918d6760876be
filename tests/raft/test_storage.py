"""MemoryStorage: the Storage interface and the application-side writes."""

from __future__ import annotations

import pytest

from pyetcd.raft import (
    CompactedError,
    ConfState,
    Entry,
    HardState,
    MemoryStorage,
    SnapOutOfDateError,
    Snapshot,
    SnapshotMetadata,
    UnavailableError,
)
from pyetcd.raft.storage import limit_size


def ents(*pairs: tuple[int, int]) -> list[Entry]:
    return [Entry(term=t, index=i) for i, t in pairs]


def storage_with(*pairs: tuple[int, int]) -> MemoryStorage:
    """A storage whose dummy entry is the first pair and the rest are entries."""
    s = MemoryStorage()
    (i0, t0), rest = pairs[0], pairs[1:]
    if i0:
        s.apply_snapshot(Snapshot(metadata=SnapshotMetadata(index=i0, term=t0)))
    s.append(ents(*rest))
    return s


def test_empty_storage() -> None:
    s = MemoryStorage()
    assert (s.first_index(), s.last_index()) == (1, 0)
    assert s.term(0) == 0
    assert s.initial_state() == (HardState(), ConfState())
    with pytest.raises(UnavailableError):
        s.entries(1, 2, 100)


def test_term_and_bounds() -> None:
    s = storage_with((3, 3), (4, 4), (5, 5))
    assert (s.first_index(), s.last_index()) == (4, 5)
    assert s.term(3) == 3 and s.term(5) == 5
    with pytest.raises(CompactedError):
        s.term(2)
    with pytest.raises(UnavailableError):
        s.term(6)


def test_entries_respects_bounds_and_size() -> None:
    s = storage_with((3, 3), (4, 4), (5, 5), (6, 6))
    assert [e.index for e in s.entries(4, 7, 1 << 30)] == [4, 5, 6]
    with pytest.raises(CompactedError):
        s.entries(3, 5, 1 << 30)
    with pytest.raises(UnavailableError):
        s.entries(4, 8, 1 << 30)
    # Each empty entry counts 24 bytes; the first is always returned.
    assert [e.index for e in s.entries(4, 7, 0)] == [4]
    assert [e.index for e in s.entries(4, 7, 48)] == [4, 5]


def test_append_truncates_conflicting_suffix() -> None:
    s = storage_with((3, 3), (4, 4), (5, 5))
    s.append(ents((5, 6), (6, 6)))
    assert [(e.index, e.term) for e in s.entries(4, 7, 1 << 30)] == [(4, 4), (5, 6), (6, 6)]
    # Entries entirely below the first index are ignored, partial overlap is cut.
    s.append(ents((2, 3), (3, 3)))
    assert s.last_index() == 6
    s.append(ents((3, 3), (4, 4), (5, 7)))
    assert [(e.index, e.term) for e in s.entries(4, 6, 1 << 30)] == [(4, 4), (5, 7)]
    with pytest.raises(UnavailableError):
        s.append(ents((9, 7)))


def test_compact() -> None:
    s = storage_with((3, 3), (4, 4), (5, 5), (6, 6))
    s.compact(5)
    assert (s.first_index(), s.last_index(), s.term(5)) == (6, 6, 5)
    with pytest.raises(CompactedError):
        s.compact(5)
    with pytest.raises(UnavailableError):
        s.compact(7)


def test_create_and_apply_snapshot() -> None:
    s = storage_with((3, 3), (4, 4), (5, 5))
    cs = ConfState(voters=(1, 2, 3))
    snap = s.create_snapshot(4, cs, b"data")
    assert snap.metadata == SnapshotMetadata(conf_state=cs, index=4, term=4)
    assert s.snapshot() is snap
    with pytest.raises(SnapOutOfDateError):
        s.create_snapshot(4, cs, b"")
    with pytest.raises(UnavailableError):
        s.create_snapshot(6, cs, b"")
    # Applying a snapshot replaces the whole log.
    newer = Snapshot(data=b"x", metadata=SnapshotMetadata(conf_state=cs, index=10, term=7))
    s.apply_snapshot(newer)
    assert (s.first_index(), s.last_index(), s.term(10)) == (11, 10, 7)
    assert s.initial_state()[1] == cs
    with pytest.raises(SnapOutOfDateError):
        s.apply_snapshot(Snapshot(metadata=SnapshotMetadata(index=10, term=7)))


def test_limit_size() -> None:
    es = [Entry(index=i, data=b"x" * 6) for i in range(1, 5)]  # 30 bytes each
    assert limit_size([], 0) == []
    assert len(limit_size(es, 0)) == 1
    assert len(limit_size(es, 60)) == 2
    assert len(limit_size(es, 1 << 20)) == 4
