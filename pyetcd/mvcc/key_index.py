"""The in-memory key index: for every key, its generations of revisions.

A generation is one life of a key: from the put that created it to the
delete that ended it (the tombstone is the generation's last revision). The
last generation of a key is the live one and may be empty (the key is
currently deleted). Example, key ``foo`` put at 1, 2, deleted at 3, put at 4::

    closed = [{created 1, ver 3, revs [1, 2, 3(t)]}]; live: created 4, ver 1, revs [4]

The index holds revisions only, never values: a value is read from the backend
by its revision (issue 22: at 1,000,000 keys the values kept in memory were a third
of the member's RSS, and building them a large part of the restart). A KeyIndex is
kept small because there is one per key: the live generation lives in the KeyIndex
itself and only closed generations, which most keys never have, are objects of
their own.

The tree index keeps every KeyIndex in a SortedDict ordered by key, so a
range is a slice of it; point lookups are plain dict lookups.

Range ends inside this module use etcd's internal convention: ``None`` means
"only ``key``", ``b""`` means "to the end of the key space".
"""

from __future__ import annotations

from collections.abc import Iterator

from sortedcontainers import SortedDict

from pyetcd.mvcc.revision import Revision

__all__ = ["Generation", "KeyIndex", "TreeIndex", "index_end"]

_NO_REV: Revision = (0, 0)


def index_end(range_end: bytes) -> bytes | None:
    """Wire range_end -> index end: b"" -> None (one key), b"\\0" -> b"" (no bound)."""
    if not range_end:
        return None
    if range_end == b"\x00":
        return b""
    return range_end


class Generation:
    """One closed life of a key (its last revision is the tombstone); ``revs`` are
    ascending, ``ver`` is the version of ``revs[-1]``."""

    __slots__ = ("created", "revs", "ver")

    def __init__(self, created: Revision, ver: int, revs: list[Revision]) -> None:
        self.created = created
        self.ver = ver
        self.revs = revs


class KeyIndex:
    """All revisions of one key still known to the store.

    The live generation is ``created``, ``ver`` (the version of ``revs[-1]``) and
    ``revs`` (ascending; empty while the key is deleted); ``closed`` holds the
    older generations, oldest first (None when there are none). ``lease`` is the
    lease the live value is attached to (0: none, and always 0 while deleted).
    """

    __slots__ = ("closed", "created", "key", "lease", "modified", "revs", "ver")

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.modified: Revision = _NO_REV
        self.created: Revision = _NO_REV
        self.ver = 0
        self.revs: list[Revision] = []
        self.closed: list[Generation] | None = None
        self.lease = 0

    @staticmethod
    def restored(
        key: bytes, modified: Revision, created: Revision, ver: int, lease: int
    ) -> KeyIndex:
        """A KeyIndex whose live generation holds just ``modified`` (``restore`` on a new
        KeyIndex, in one call: a restart builds one per key)."""
        ki = _new_key_index(KeyIndex)
        ki.key = key
        ki.modified = modified
        ki.created = created
        ki.ver = ver
        ki.revs = [modified]
        ki.closed = None
        ki.lease = lease
        return ki

    def is_empty(self) -> bool:
        """True when no revision at all is left (the key can be dropped)."""
        return not self.revs and not self.closed

    def put(self, rev: Revision) -> None:
        """Record a put at ``rev`` (must be newer than every known revision)."""
        if rev <= self.modified:
            raise ValueError(f"put at {rev} not after {self.modified} for {self.key!r}")
        revs = self.revs
        if revs:
            revs.append(rev)
        else:
            # a list of exactly one: most keys never get a second revision
            self.created = rev
            self.revs = [rev]
        self.ver += 1
        self.modified = rev

    def restore(self, created: Revision, modified: Revision, ver: int) -> None:
        """Start the live generation mid-way, as read back from a compacted backend."""
        self.created = created
        self.ver = ver
        self.revs = [modified]
        self.modified = modified

    def tombstone(self, rev: Revision) -> None:
        """Record a delete at ``rev``: it closes the live generation."""
        if not self.revs:
            raise ValueError(f"tombstone on deleted key {self.key!r}")
        self.put(rev)
        g = Generation(self.created, self.ver, self.revs)
        if self.closed is None:
            self.closed = [g]
        else:
            self.closed.append(g)
        self.created, self.ver, self.revs, self.lease = _NO_REV, 0, [], 0

    def _find_closed(self, at_rev: int) -> Generation | None:
        # the closed generation alive at at_rev, if the live one was not yet
        for g in reversed(self.closed or ()):
            # a tombstone at or before at_rev means the key was deleted at at_rev
            if g.revs[-1][0] <= at_rev:
                return None
            if g.revs[0][0] <= at_rev:
                return g
        return None

    def get(self, at_rev: int) -> tuple[Revision, Revision, int] | None:
        """(mod revision, create revision, version) of the key at ``at_rev``, or None."""
        revs = self.revs
        if revs and revs[0][0] <= at_rev:
            created, ver = self.created, self.ver
        else:
            g = self._find_closed(at_rev)
            if g is None:
                return None
            created, ver, revs = g.created, g.ver, g.revs
        n = len(revs) - 1
        while revs[n][0] > at_rev:
            n -= 1
        return revs[n], created, ver - (len(revs) - 1 - n)

    def mod_at(self, at_rev: int) -> Revision | None:
        """The revision of the key's value at ``at_rev``, or None when it was not alive
        then: ``get`` without the rest, and at once when nothing changed since."""
        m = self.modified
        if m[0] <= at_rev:
            return m if self.revs else None
        got = self.get(at_rev)
        return None if got is None else got[0]

    def _generations(self) -> list[Generation]:
        # every generation, the live one last (a view sharing its revs list)
        live = Generation(self.created, self.ver, self.revs)
        return [*self.closed, live] if self.closed else [live]

    @staticmethod
    def _compact_point(gens: list[Generation], at_rev: int) -> tuple[int, int]:
        # the first generation that is alive at at_rev or created after it,
        # and the index in it of the newest revision <= at_rev (-1: none)
        gi = 0
        while gi < len(gens) - 1:
            if gens[gi].revs[-1][0] > at_rev:
                break
            gi += 1
        revs = gens[gi].revs
        ri = len(revs) - 1
        while ri >= 0 and revs[ri][0] > at_rev:
            ri -= 1
        return gi, ri

    def keep(self, at_rev: int, available: set[Revision]) -> None:
        """Add to ``available`` the revision a compaction at ``at_rev`` would keep."""
        if self.is_empty():
            return
        gens = self._generations()
        gi, ri = self._compact_point(gens, at_rev)
        g = gens[gi]
        if ri != -1 and not (ri == len(g.revs) - 1 and gi != len(gens) - 1):
            available.add(g.revs[ri])

    def compact(self, at_rev: int, available: set[Revision]) -> None:
        """Drop every revision a read at >= ``at_rev`` cannot need.

        The newest revision <= ``at_rev`` of a live generation survives (and
        is added to ``available`` so the backend keeps it); generations whose
        tombstone is <= ``at_rev`` disappear.
        """
        gens = self._generations()
        gi, ri = self._compact_point(gens, at_rev)
        g = gens[gi]
        if g.revs:
            if ri != -1:
                available.add(g.revs[ri])
                del g.revs[:ri]
            # a lone tombstone left in a closed generation is dropped with it
            if len(g.revs) == 1 and gi != len(gens) - 1:
                available.discard(g.revs[0])
                gi += 1
        # the live generation (last) is never dropped; its revs list is shared
        self.closed = gens[gi:-1] or None


_new_key_index = KeyIndex.__new__


class TreeIndex:
    """Every key's KeyIndex, ordered by key."""

    __slots__ = ("_tree",)

    def __init__(self) -> None:
        self._tree: SortedDict = SortedDict()

    def __len__(self) -> int:
        return len(self._tree)

    def get_index(self, key: bytes) -> KeyIndex | None:
        """The KeyIndex of ``key`` (live, deleted or compacted-to-empty), or None."""
        ki: KeyIndex | None = self._tree.get(key)
        return ki

    def put(self, key: bytes, rev: Revision) -> KeyIndex:
        """Record a put of ``key`` at ``rev``; returns its KeyIndex."""
        ki: KeyIndex | None = self._tree.get(key)
        if ki is None:
            ki = KeyIndex(key)
            self._tree[key] = ki
        ki.put(rev)
        return ki

    def put_live(self, key: bytes, rev: Revision, lease: int) -> tuple[int, int, int]:
        """Record a put of ``key`` at ``rev`` (newer than every revision of the key)
        attached to ``lease``: :meth:`put` plus what a write needs to know, in one call.

        Returns:
            (create main revision, version, lease before): the created revision and
            version of the value now put, and the lease the key's live value had (0
            when it had none or the key was not alive).
        """
        ki: KeyIndex | None = self._tree.get(key)
        if ki is None:
            ki = KeyIndex(key)
            self._tree[key] = ki
        elif rev <= ki.modified:
            raise ValueError(f"put at {rev} not after {ki.modified} for {key!r}")
        revs = ki.revs
        if revs:
            old_lease = ki.lease
            revs.append(rev)
        else:
            # a new life (see KeyIndex.put): a list of exactly one
            old_lease = 0
            ki.created = rev
            ki.revs = [rev]
        ki.ver += 1
        ki.modified = rev
        ki.lease = lease
        return ki.created[0], ki.ver, old_lease

    def load(self, keys: dict[bytes, KeyIndex]) -> None:
        """Add every KeyIndex of ``keys`` (restored from the backend) at once: sorted in
        one go."""
        self._tree.update(keys)

    def visit(
        self, key: bytes, end: bytes | None, after: bytes | None = None
    ) -> Iterator[KeyIndex]:
        """Every KeyIndex with key in [key, end) (see the module doc for ``end``), in key
        order; with ``after``, only those whose key is greater (a resumed walk)."""
        if end is None:
            ki: KeyIndex | None = self._tree.get(key)
            if ki is not None and (after is None or key > after):
                yield ki
            return
        if end and end <= key:
            return
        lo, lo_inclusive = (key, True) if after is None or after < key else (after, False)
        keys = self._tree.irange(
            minimum=lo, maximum=end or None, inclusive=(lo_inclusive, False)
        )
        tree = self._tree
        for k in keys:
            yield tree[k]

    def walk(
        self, key: bytes, end: bytes | None, after: bytes | None, n: int
    ) -> list[KeyIndex]:
        """Up to ``n`` (0: all) KeyIndexes of :meth:`visit` in key order, as a list: a
        slice of the tree at once, cheaper per key than the iterator."""
        tree = self._tree
        if end is None or (end and end <= key):
            return list(self.visit(key, end, after))
        lo = tree.bisect_left(key) if after is None or after < key else tree.bisect_right(after)
        hi = len(tree) if end == b"" else tree.bisect_left(end)
        if n > 0:
            hi = min(hi, lo + n)
        if hi <= lo:
            return []
        return list(map(tree.__getitem__, tree.keys()[lo:hi]))

    def compact(self, at_rev: int) -> set[Revision]:
        """Compact every key at ``at_rev``; returns the revisions the backend must keep."""
        available: set[Revision] = set()
        empty: list[bytes] = []
        for k, ki in self._tree.items():
            ki.compact(at_rev, available)
            if ki.is_empty():
                empty.append(k)
        for k in empty:
            del self._tree[k]
        return available

    def keep(self, at_rev: int) -> set[Revision]:
        """The revisions a compaction at ``at_rev`` would keep, changing nothing."""
        available: set[Revision] = set()
        for ki in self._tree.values():
            ki.keep(at_rev, available)
        return available
