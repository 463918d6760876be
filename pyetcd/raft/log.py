"""The Raft log: the stable part (Storage) plus the unstable tail not yet persisted.

Rules:
1. ``unstable.entries[i]`` has log position ``i + unstable.offset``.
2. ``committed <= last_index()`` and ``applied <= committed`` at all times.
3. Entries are handed to the application for persistence in order, and each
   entry is handed out once; ``stable_to`` acknowledges them.
"""

from __future__ import annotations

from .errors import CompactedError, UnavailableError
from .storage import Storage, limit_size
from .types import Entry, Snapshot

__all__ = ["RaftLog", "Unstable"]

NO_LIMIT = 1 << 62


class Unstable:
    """Entries (and possibly a snapshot) not yet written to storage."""

    def __init__(self, offset: int) -> None:
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []
        self.offset = offset
        # Entries [offset, offset_in_progress) were handed out in a Ready.
        self.offset_in_progress = offset
        self.snapshot_in_progress = False

    def maybe_first_index(self) -> int | None:
        if self.snapshot is not None:
            return self.snapshot.metadata.index + 1
        return None

    def maybe_last_index(self) -> int | None:
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.metadata.index
        return None

    def maybe_term(self, i: int) -> int | None:
        if i < self.offset:
            if self.snapshot is not None and self.snapshot.metadata.index == i:
                return self.snapshot.metadata.term
            return None
        last = self.maybe_last_index()
        if last is None or i > last:
            return None
        return self.entries[i - self.offset].term

    def next_entries(self) -> list[Entry]:
        """Entries not yet handed out for persistence."""
        start = self.offset_in_progress - self.offset
        return self.entries[start:] if start < len(self.entries) else []

    def next_snapshot(self) -> Snapshot | None:
        if self.snapshot is None or self.snapshot_in_progress:
            return None
        return self.snapshot

    def accept_in_progress(self) -> None:
        if self.entries:
            self.offset_in_progress = self.entries[-1].index + 1
        if self.snapshot is not None:
            self.snapshot_in_progress = True

    def stable_to(self, index: int, term: int) -> None:
        k = index - self.offset
        if not 0 <= k < len(self.entries):
            return  # maybe_term would find it in the snapshot at best: below offset
        got = self.entries[k].term
        # Only drop the entries if the term still matches: a newer leader may
        # have replaced them while they were being written.
        if got == term:
            num = index + 1 - self.offset
            self.entries = self.entries[num:]
            self.offset = index + 1
            if self.offset_in_progress < self.offset:
                self.offset_in_progress = self.offset

    def stable_snap_to(self, index: int) -> None:
        if self.snapshot is not None and self.snapshot.metadata.index == index:
            self.snapshot = None
            self.snapshot_in_progress = False

    def restore(self, snap: Snapshot) -> None:
        self.offset = snap.metadata.index + 1
        self.offset_in_progress = self.offset
        self.entries = []
        self.snapshot = snap
        self.snapshot_in_progress = False

    def truncate_and_append(self, ents: list[Entry]) -> None:
        from_index = ents[0].index
        if from_index == self.offset + len(self.entries):
            self.entries.extend(ents)
        elif from_index <= self.offset:
            # Replace the whole unstable tail; storage keeps what precedes.
            self.entries = list(ents)
            self.offset = from_index
            self.offset_in_progress = self.offset
        else:
            self.entries = self.entries[: from_index - self.offset] + list(ents)
            self.offset_in_progress = min(self.offset_in_progress, from_index)


class RaftLog:
    """Log positions, commit and applied indexes over storage + unstable."""

    def __init__(self, storage: Storage, max_applying_size: int = NO_LIMIT) -> None:
        self.storage = storage
        first = storage.first_index()
        last = storage.last_index()
        self.unstable = Unstable(last + 1)
        # Highest index known committed / handed out for applying / applied.
        self.committed = first - 1
        self.applying = first - 1
        self.applied = first - 1
        self.max_applying_size = max_applying_size

    def __repr__(self) -> str:
        return (
            f"committed={self.committed}, applied={self.applied}, "
            f"unstable.offset={self.unstable.offset}, len(unstable)={len(self.unstable.entries)}"
        )

    # -- positions -----------------------------------------------------------

    # ``last_index`` and ``term`` run several times per proposal: they read the unstable
    # tail in place (same answers as ``Unstable.maybe_*``, without the calls). Nothing is
    # cached: the application writes storage between Readies.

    def first_index(self) -> int:
        snap = self.unstable.snapshot
        if snap is not None:
            return snap.metadata.index + 1
        return self.storage.first_index()

    def last_index(self) -> int:
        u = self.unstable
        if u.entries:
            return u.offset + len(u.entries) - 1
        if u.snapshot is not None:
            return u.snapshot.metadata.index
        return self.storage.last_index()

    def term(self, i: int) -> int:
        """The term at ``i``; raises CompactedError / UnavailableError outside the log."""
        u = self.unstable
        k = i - u.offset
        if 0 <= k < len(u.entries):
            return u.entries[k].term
        if k < 0 and u.snapshot is None:
            # Below the unstable tail: storage's, whose ``term`` checks the same bounds
            # as below (compacted under first_index()-1, unavailable past its last index,
            # which is the log's when the tail is empty and under the tail otherwise).
            return self.storage.term(i)
        t = u.maybe_term(i)
        if t is not None:
            return t
        if i < self.first_index() - 1:
            raise CompactedError(f"index {i} is compacted")
        if i > self.last_index():
            raise UnavailableError(f"index {i} is unavailable")
        return self.storage.term(i)

    def zero_term_on_out_of_range(self, i: int) -> int:
        try:
            return self.term(i)
        except (CompactedError, UnavailableError):
            return 0

    def last_term(self) -> int:
        return self.term(self.last_index())

    def match_term(self, i: int, term: int) -> bool:
        try:
            return self.term(i) == term
        except (CompactedError, UnavailableError):
            return False

    def is_up_to_date(self, last_index: int, term: int) -> bool:
        """Whether a log ending at (last_index, term) is at least as up to date as ours."""
        lt = self.last_term()
        return term > lt or (term == lt and last_index >= self.last_index())

    # -- appending -----------------------------------------------------------

    def maybe_append(
        self, index: int, log_term: int, committed: int, ents: tuple[Entry, ...]
    ) -> int | None:
        """Append ``ents`` following (index, log_term) if it matches; returns the new
        last index, or None if the preceding entry does not match."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(ents)
        ci = self.find_conflict(ents) if ents else 0
        if ci:
            if ci <= self.committed:
                raise AssertionError(
                    f"entry {ci} conflict with committed entry [committed({self.committed})]"
                )
            self.append(list(ents[ci - index - 1 :]))
        # commit_to(min(committed, last_new)): every index up to last_new is now in the
        # log (matched or appended), so commit_to's bound holds without asking for it.
        tocommit = committed if committed < last_new else last_new
        if self.committed < tocommit:
            self.committed = tocommit
        return last_new

    def append(self, ents: list[Entry]) -> int:
        if not ents:
            return self.last_index()
        after = ents[0].index - 1
        if after < self.committed:
            raise AssertionError(f"after({after}) is out of range [committed({self.committed})]")
        u = self.unstable
        if after + 1 == u.offset + len(u.entries):  # truncate_and_append's usual case
            u.entries.extend(ents)
            return after + len(ents)
        u.truncate_and_append(ents)
        return self.last_index()

    def find_conflict(self, ents: tuple[Entry, ...] | list[Entry]) -> int:
        """The index of the first entry that is new or conflicts; 0 if all match."""
        last = self.last_index()
        if ents and ents[0].index > last:
            return ents[0].index  # the usual append: every entry is new
        for e in ents:
            # An entry past our last index is new: match_term's answer, without the
            # UnavailableError it raises and catches (every append a follower takes).
            if e.index > last or not self.match_term(e.index, e.term):
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest (index, term) at or below ``index`` whose term is <= ``term``."""
        while index > 0:
            try:
                our = self.term(index)
            except (CompactedError, UnavailableError):
                return index, 0
            if our <= term:
                return index, our
            index -= 1
        return 0, 0

    # -- reading -------------------------------------------------------------

    def next_unstable_ents(self) -> list[Entry]:
        return self.unstable.next_entries()

    def has_next_unstable_ents(self) -> bool:
        u = self.unstable  # next_entries() without copying them out
        return u.offset_in_progress - u.offset < len(u.entries)

    def has_next_or_in_progress_snapshot(self) -> bool:
        return self.unstable.snapshot is not None

    def next_committed_ents(self) -> list[Entry]:
        """Committed entries ready to apply: those persisted locally, and those handed
        out for persistence in the same Ready (which makes them durable first)."""
        u = self.unstable
        if self.applying >= self.committed or u.snapshot is not None:
            return []
        lo = self.applying + 1
        # min(committed, _max_appliable_index()) + 1, with committed <= last_index() (rule 2)
        hi = self.committed + 1
        if u.offset_in_progress > u.offset and u.offset < hi:
            hi = u.offset
        if lo >= hi:
            return []
        return self.slice(lo, hi, self.max_applying_size)

    def has_next_committed_ents(self) -> bool:
        if self.applying >= self.committed:  # the common answer, without the log's bounds
            return False
        if self.has_next_or_in_progress_snapshot():
            return False
        return self.applying < min(self.committed, self._max_appliable_index())

    def _max_appliable_index(self) -> int:
        # Entries handed out in an earlier Ready and not yet acknowledged may still be
        # in flight: applying them could let a crash lose an applied entry. Entries not
        # handed out yet go out with the committed ones, in one Ready whose contract
        # makes them durable before anything is applied (a sole voter commits a
        # proposal in the Ready that persists it, as etcd's raft does).
        u = self.unstable
        if u.offset_in_progress > u.offset:
            return u.offset - 1
        return self.last_index()

    def snapshot(self) -> Snapshot:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    def entries(self, i: int, max_size: int = NO_LIMIT) -> list[Entry]:
        last = self.last_index()
        if i > last:
            return []
        return self.slice(i, last + 1, max_size)

    def all_entries(self) -> list[Entry]:
        while True:
            try:
                return self.entries(self.first_index())
            except CompactedError:
                continue  # raced with compaction; retry from the new first index

    def slice(self, lo: int, hi: int, max_size: int = NO_LIMIT) -> list[Entry]:
        """Entries in [lo, hi) within ``max_size`` bytes (at least one)."""
        u = self.unstable
        uoff = u.offset
        if uoff <= lo < hi <= uoff + len(u.entries) and u.snapshot is None:
            # All in the unstable tail (the usual case: a just-committed proposal),
            # which is within bounds by construction.
            tail = u.entries[lo - uoff : hi - uoff]
            return tail if hi - lo == 1 else limit_size(tail, max_size)
        self._must_check_out_of_bounds(lo, hi)
        if lo == hi:
            return []
        ents: list[Entry] = []
        if lo < uoff:
            stored = self.storage.entries(lo, min(hi, uoff), max_size)
            # A short read from storage means the size limit cut it: stop there; so does
            # a read that is all from storage (storage applied the same limit).
            if hi <= uoff or len(stored) < uoff - lo:
                return stored
            ents = stored
        if hi > uoff:
            tail = u.entries[max(lo, uoff) - uoff : hi - uoff]
            ents = ents + tail if ents else tail
        return limit_size(ents, max_size)

    def _must_check_out_of_bounds(self, lo: int, hi: int) -> None:
        if lo > hi:
            raise AssertionError(f"invalid slice {lo} > {hi}")
        fi = self.first_index()
        if lo < fi:
            raise CompactedError(f"index {lo} is compacted")
        if hi > self.last_index() + 1:
            raise AssertionError(f"slice[{lo},{hi}) out of bound [{fi},{self.last_index()}]")

    # -- commit / apply / stable -----------------------------------------------

    def commit_to(self, tocommit: int) -> None:
        if self.committed < tocommit:
            if tocommit > self.last_index():
                raise AssertionError(
                    f"tocommit({tocommit}) is out of range [lastIndex({self.last_index()})]"
                )
            self.committed = tocommit

    def maybe_commit(self, max_index: int, term: int) -> bool:
        """Commit ``max_index`` if the entry there is of ``term`` (the leader's term)."""
        if max_index <= self.committed:
            return False
        u = self.unstable
        k = max_index - u.offset
        if 0 <= k < len(u.entries):  # in the unstable tail: in the log, no bounds to check
            if u.entries[k].term != term:
                return False
            self.committed = max_index
            return True
        if self.zero_term_on_out_of_range(max_index) == term:
            # (term > 0 was found at max_index: it is in the log, within commit_to's bound)
            self.committed = max_index
            return True
        return False

    def accept_applying(self, index: int) -> None:
        self.applying = index

    def applied_to(self, index: int) -> None:
        if index == 0:
            return
        if self.committed < index or index < self.applied:
            raise AssertionError(
                f"applied({index}) is out of range [prevApplied({self.applied}), "
                f"committed({self.committed})]"
            )
        self.applied = index
        if self.applying < index:
            self.applying = index

    def stable_to(self, index: int, term: int) -> None:
        self.unstable.stable_to(index, term)

    def stable_snap_to(self, index: int) -> None:
        self.unstable.stable_snap_to(index)

    def restore(self, snap: Snapshot) -> None:
        self.committed = snap.metadata.index
        self.unstable.restore(snap)
