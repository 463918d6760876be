"""The storage interface the core reads its stable log through, and an in-memory one.

Rule: the core only *reads* storage. The application writes to it, after a ``Ready``
asked it to persist entries, a hard state or a snapshot; so whatever storage holds is
what a crash keeps.
"""

from __future__ import annotations

from typing import Protocol

from .errors import CompactedError, SnapOutOfDateError, UnavailableError
from .types import (
    EMPTY_HARD_STATE,
    ENTRY_OVERHEAD,
    ConfState,
    Entry,
    HardState,
    Snapshot,
    SnapshotMetadata,
)

__all__ = ["MemoryStorage", "Storage", "limit_size"]


class Storage(Protocol):
    """What the core needs from the application's durable log.

    Invariant: entries ``first_index() .. last_index()`` are all retrievable;
    ``term(first_index() - 1)`` is retrievable too (the snapshot's or a dummy's term).
    """

    def initial_state(self) -> tuple[HardState, ConfState]: ...

    def entries(self, lo: int, hi: int, max_size: int) -> list[Entry]:
        """Entries in [lo, hi), at least one, at most ``max_size`` bytes after the first.

        Raises CompactedError if lo is compacted, UnavailableError past the last index.
        """
        ...

    def term(self, index: int) -> int:
        """The term of the entry at ``index``, for first_index()-1 <= index <= last_index().

        Raises CompactedError below first_index()-1, UnavailableError past last_index()
        (the core relies on these bounds rather than asking for them first).
        """
        ...

    def first_index(self) -> int: ...

    def last_index(self) -> int: ...

    def snapshot(self) -> Snapshot: ...


def limit_size(entries: list[Entry], max_size: int) -> list[Entry]:
    """The longest prefix of ``entries`` within ``max_size`` bytes (never empty)."""
    if len(entries) <= 1:
        return entries
    size = 0
    for i, e in enumerate(entries):
        size += len(e.data) + ENTRY_OVERHEAD
        if size > max_size and i > 0:
            return entries[:i]
    return entries


class MemoryStorage:
    """A Storage held in a list. Used by tests and the simulation as the 'disk'.

    ``_ents[i]`` has log position ``i + _ents[0].index``; ``_ents[0]`` is a dummy
    standing for the last compacted entry (its index and term are the snapshot's).
    """

    def __init__(self) -> None:
        self.hard_state: HardState = EMPTY_HARD_STATE
        self._snapshot = Snapshot()
        self._ents: list[Entry] = [Entry()]

    # -- Storage -----------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self.hard_state, self._snapshot.metadata.conf_state

    def entries(self, lo: int, hi: int, max_size: int) -> list[Entry]:
        offset = self._ents[0].index
        if lo <= offset:
            raise CompactedError(f"requested index {lo} is compacted (first is {offset + 1})")
        if hi > self.last_index() + 1:
            raise UnavailableError(
                f"entries' hi({hi}) is out of bound lastindex({self.last_index()})"
            )
        if len(self._ents) == 1:
            raise UnavailableError("no entries")
        return limit_size(self._ents[lo - offset : hi - offset], max_size)

    def term(self, index: int) -> int:
        offset = self._ents[0].index
        if index < offset:
            raise CompactedError(f"requested index {index} is compacted")
        if index - offset >= len(self._ents):
            raise UnavailableError(f"requested index {index} is unavailable")
        return self._ents[index - offset].term

    def first_index(self) -> int:
        return self._ents[0].index + 1

    def last_index(self) -> int:
        return self._ents[0].index + len(self._ents) - 1

    def snapshot(self) -> Snapshot:
        return self._snapshot

    # -- writes by the application ------------------------------------------

    def set_hard_state(self, hs: HardState) -> None:
        self.hard_state = hs

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Replace everything with ``snap``; refuses a snapshot older than the current one."""
        if snap.metadata.index <= self._snapshot.metadata.index:
            raise SnapOutOfDateError("requested index is older than the existing snapshot")
        self._snapshot = snap
        self._ents = [Entry(term=snap.metadata.term, index=snap.metadata.index)]

    def create_snapshot(self, index: int, conf_state: ConfState | None, data: bytes) -> Snapshot:
        """Record a snapshot of the application's state at ``index`` (<= last index)."""
        if index <= self._snapshot.metadata.index:
            raise SnapOutOfDateError("requested index is older than the existing snapshot")
        if index > self.last_index():
            raise UnavailableError(
                f"snapshot {index} is out of bound lastindex({self.last_index()})"
            )
        offset = self._ents[0].index
        cs = conf_state if conf_state is not None else self._snapshot.metadata.conf_state
        self._snapshot = Snapshot(
            data=data,
            metadata=SnapshotMetadata(
                conf_state=cs, index=index, term=self._ents[index - offset].term
            ),
        )
        return self._snapshot

    def compact(self, compact_index: int) -> None:
        """Drop entries before ``compact_index`` (it becomes the dummy entry)."""
        offset = self._ents[0].index
        if compact_index <= offset:
            raise CompactedError(f"requested index {compact_index} is compacted")
        if compact_index > self.last_index():
            raise UnavailableError(
                f"compact {compact_index} is out of bound lastindex({self.last_index()})"
            )
        i = compact_index - offset
        dummy = Entry(term=self._ents[i].term, index=self._ents[i].index)
        self._ents = [dummy, *self._ents[i + 1 :]]

    def append(self, entries: list[Entry] | tuple[Entry, ...]) -> None:
        """Append ``entries``, truncating any conflicting suffix already stored."""
        if not entries:
            return
        first = self.first_index()
        last = entries[-1].index
        if last < first:
            return  # all compacted already
        if first > entries[0].index:
            entries = list(entries)[first - entries[0].index :]
        offset = entries[0].index - self._ents[0].index
        if offset > len(self._ents):
            raise UnavailableError(
                f"missing log entry [last: {self.last_index()}, append at: {entries[0].index}]"
            )
        # In place: copying the whole log on every append would make appends O(n).
        del self._ents[offset:]
        self._ents.extend(entries)
