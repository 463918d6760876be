"""The in-memory key index: for every key, its generations of revisions.

A generation is one life of a key: from the put that created it to the
delete that ended it (the tombstone is the generation's last revision). The
last generation of a key is the live one and may be empty (the key is
currently deleted). Example, key ``foo`` put at 1, 2, deleted at 3, put at 4::

    generations = [{created 1, ver 3, revs [1, 2, 3(t)]}, {created 4, ver 1, revs [4]}]

The tree index keeps every KeyIndex in a SortedDict ordered by key, so a
range is a slice of it; point lookups are plain dict lookups.

Range ends inside this module use etcd's internal convention: ``None`` means
"only ``key``", ``b""`` means "to the end of the key space".
"""

from __future__ import annotations

from collections.abc import Iterator

from sortedcontainers import SortedDict

from pyetcd.mvcc.revision import Revision, decode_kv
from pyetcd.mvcc.types import KeyValue

__all__ = ["Generation", "KeyIndex", "TreeIndex", "index_end"]


def index_end(range_end: bytes) -> bytes | None:
    """Wire range_end -> index end: b"" -> None (one key), b"\\0" -> b"" (no bound)."""
    if not range_end:
        return None
    if range_end == b"\x00":
        return b""
    return range_end


class Generation:
    """One life of a key; ``revs`` are ascending, ``ver`` is the version of ``revs[-1]``."""

    __slots__ = ("created", "revs", "ver")

    def __init__(self, created: Revision = (0, 0), ver: int = 0) -> None:
        self.created = created
        self.ver = ver
        self.revs: list[Revision] = []


class KeyIndex:
    """All revisions of one key still known to the store.

    ``latest`` caches the KeyValue written at ``modified`` when that write was
    a put (``None`` after a delete), so reads at the newest revision never
    touch the backend.
    """

    __slots__ = ("_latest", "generations", "key", "modified")

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.modified: Revision = (0, 0)
        self.generations: list[Generation] = [Generation()]
        # A KeyValue, or its backend encoding until first read: a restart sets the
        # encoding, and building 100,000s of KeyValues up front was a third of it.
        self._latest: KeyValue | bytes | None = None

    @property
    def latest(self) -> KeyValue | None:
        kv = self._latest
        if isinstance(kv, bytes):
            kv = self._latest = decode_kv(kv)
        return kv

    @latest.setter
    def latest(self, kv: KeyValue | bytes | None) -> None:
        self._latest = kv

    def is_empty(self) -> bool:
        """True when no revision at all is left (the key can be dropped)."""
        return len(self.generations) == 1 and not self.generations[0].revs

    def put(self, rev: Revision) -> None:
        """Record a put at ``rev`` (must be newer than every known revision)."""
        if rev <= self.modified:
            raise ValueError(f"put at {rev} not after {self.modified} for {self.key!r}")
        g = self.generations[-1]
        if not g.revs:
            g.created = rev
        g.revs.append(rev)
        g.ver += 1
        self.modified = rev

    def restore(self, created: Revision, modified: Revision, ver: int) -> None:
        """Start a generation mid-way, as read back from a compacted backend."""
        g = self.generations[-1]
        g.created = created
        g.ver = ver
        g.revs.append(modified)
        self.modified = modified

    def tombstone(self, rev: Revision) -> None:
        """Record a delete at ``rev``: it closes the live generation."""
        if not self.generations[-1].revs:
            raise ValueError(f"tombstone on deleted key {self.key!r}")
        self.put(rev)
        self.generations.append(Generation())
        self.latest = None

    def _find_generation(self, at_rev: int) -> Generation | None:
        last = len(self.generations) - 1
        for i in range(last, -1, -1):
            g = self.generations[i]
            if not g.revs:
                continue
            # a closed generation whose tombstone is at or before at_rev means
            # the key was deleted at at_rev
            if i != last and g.revs[-1][0] <= at_rev:
                return None
            if g.revs[0][0] <= at_rev:
                return g
        return None

    def get(self, at_rev: int) -> tuple[Revision, Revision, int] | None:
        """(mod revision, create revision, version) of the key at ``at_rev``, or None."""
        g = self._find_generation(at_rev)
        if g is None:
            return None
        revs = g.revs
        n = len(revs) - 1
        while revs[n][0] > at_rev:
            n -= 1
        return revs[n], g.created, g.ver - (len(revs) - 1 - n)

    def mod_at(self, at_rev: int) -> Revision | None:
        """The revision of the key's value at ``at_rev``, or None when it was not alive
        then: ``get`` without the rest, and at once when nothing changed since."""
        m = self.modified
        if m[0] <= at_rev:
            return m if self.generations[-1].revs else None
        got = self.get(at_rev)
        return None if got is None else got[0]

    def _compact_point(self, at_rev: int) -> tuple[int, int]:
        # the first generation that is alive at at_rev or created after it,
        # and the index in it of the newest revision <= at_rev (-1: none)
        gi = 0
        while gi < len(self.generations) - 1:
            if self.generations[gi].revs[-1][0] > at_rev:
                break
            gi += 1
        revs = self.generations[gi].revs
        ri = len(revs) - 1
        while ri >= 0 and revs[ri][0] > at_rev:
            ri -= 1
        return gi, ri

    def keep(self, at_rev: int, available: set[Revision]) -> None:
        """Add to ``available`` the revision a compaction at ``at_rev`` would keep."""
        if self.is_empty():
            return
        gi, ri = self._compact_point(at_rev)
        g = self.generations[gi]
        if ri != -1 and not (ri == len(g.revs) - 1 and gi != len(self.generations) - 1):
            available.add(g.revs[ri])

    def compact(self, at_rev: int, available: set[Revision]) -> None:
        """Drop every revision a read at >= ``at_rev`` cannot need.

        The newest revision <= ``at_rev`` of a live generation survives (and
        is added to ``available`` so the backend keeps it); generations whose
        tombstone is <= ``at_rev`` disappear.
        """
        gi, ri = self._compact_point(at_rev)
        g = self.generations[gi]
        if g.revs:
            if ri != -1:
                available.add(g.revs[ri])
                del g.revs[:ri]
            # a lone tombstone left in a closed generation is dropped with it
            if len(g.revs) == 1 and gi != len(self.generations) - 1:
                available.discard(g.revs[0])
                gi += 1
        del self.generations[:gi]


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
