"""A user's permissions merged into sorted, disjoint key intervals (etcd's rangePermCache).

Rules this module keeps (etcd's, from its interval-tree based permission cache):

1. A permission covers ``[key, range_end)``; an empty ``range_end`` is the
   single key (the interval ``[key, key + b"\\0")``); ``range_end == b"\\0"`` is
   every key from ``key`` on. An empty ``key`` or an empty/inverted range covers
   no key (etcd 3.5 stores such grants but they match nothing).
2. A user's grants from all roles are merged per type (READ, WRITE; READWRITE
   counts as both) into a union of intervals; touching intervals join.
3. A request over a range is permitted when the union covers the WHOLE range:
   a single-key grant never permits a from-key or prefix request. A request
   whose range is empty or inverted (``range_end <= key``) touches no key; etcd
   then asks only for its start key, and so do we.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pyetcd.pb import auth_pb2

__all__ = [
    "FROM_KEY",
    "IntervalSet",
    "RangePermissions",
    "merged_permissions",
    "perm_interval",
]

#: the range_end meaning "every key from key on"
FROM_KEY = b"\x00"

# [begin, end); end None = unbounded
Interval = tuple[bytes, bytes | None]


def perm_interval(key: bytes, range_end: bytes) -> Interval | None:
    """The keys one granted permission covers, or None when it covers none."""
    if not key:
        return None
    if not range_end:
        return (key, key + b"\x00")
    if range_end == FROM_KEY:
        return (key, None)
    if range_end <= key:
        return None
    return (key, range_end)


def _end_lt(a: bytes | None, b: bytes | None) -> bool:
    """a < b where None is +infinity."""
    if a is None:
        return False
    return b is None or a < b


@dataclass(frozen=True, slots=True)
class IntervalSet:
    """A union of key intervals, kept as sorted, disjoint, non-touching runs."""

    # begins[i] < ends[i] <= begins[i + 1] is impossible: runs never touch
    begins: tuple[bytes, ...] = ()
    ends: tuple[bytes | None, ...] = ()

    @classmethod
    def of(cls, intervals: Iterable[Interval]) -> IntervalSet:
        """Merge intervals (in any order, overlapping or touching) into one set."""
        begins: list[bytes] = []
        ends: list[bytes | None] = []
        for begin, end in sorted(intervals, key=lambda iv: iv[0]):
            if begins and not _end_lt(ends[-1], begin):
                # overlaps or touches the last run: extend it
                if _end_lt(ends[-1], end):
                    ends[-1] = end
                continue
            begins.append(begin)
            ends.append(end)
        return cls(tuple(begins), tuple(ends))

    def _run_of(self, key: bytes) -> int:
        """Index of the run containing ``key``, or -1."""
        i = bisect_right(self.begins, key) - 1
        if i < 0 or not _end_lt(key, self.ends[i]):
            return -1
        return i

    def contains_key(self, key: bytes) -> bool:
        """Whether ``key`` lies in the set."""
        return self._run_of(key) >= 0

    def covers(self, begin: bytes, end: bytes | None) -> bool:
        """Whether every key of ``[begin, end)`` (end None: unbounded) lies in the set."""
        i = self._run_of(begin)
        if i < 0:
            return False
        return not _end_lt(self.ends[i], end)

    def covers_request(self, key: bytes, range_end: bytes) -> bool:
        """Whether the set covers a request's ``key``/``range_end`` (etcd's conventions)."""
        if not range_end:
            return self.contains_key(key)
        if range_end == FROM_KEY:
            return self.covers(key, None)
        if range_end <= key:
            return self.contains_key(key)
        return self.covers(key, range_end)


@dataclass(frozen=True, slots=True)
class RangePermissions:
    """One user's merged READ and WRITE permissions."""

    read: IntervalSet
    write: IntervalSet


def merged_permissions(user: auth_pb2.User, roles: Mapping[str, auth_pb2.Role]) -> RangePermissions:
    """Merge the permissions of every role granted to ``user`` (unknown roles add nothing)."""
    read: list[Interval] = []
    write: list[Interval] = []
    for name in user.roles:
        role = roles.get(name)
        if role is None:
            continue
        for perm in role.keyPermission:
            iv = perm_interval(perm.key, perm.range_end)
            if iv is None:
                continue
            if perm.permType in (auth_pb2.Permission.READ, auth_pb2.Permission.READWRITE):
                read.append(iv)
            if perm.permType in (auth_pb2.Permission.WRITE, auth_pb2.Permission.READWRITE):
                write.append(iv)
    return RangePermissions(IntervalSet.of(read), IntervalSet.of(write))
