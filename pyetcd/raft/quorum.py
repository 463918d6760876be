"""Quorum arithmetic: committed indexes and vote outcomes for majority and joint configs.

Pure functions over sets of ids; no state. A joint configuration needs a majority in
BOTH halves, so its committed index is the smaller of the two halves' indexes.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping

__all__ = ["JointConfig", "MajorityConfig", "VoteResult"]

#: Index of a config with no voters: it never limits commitment.
INFINITE_INDEX = (1 << 64) - 1


class VoteResult(enum.IntEnum):
    PENDING = 1
    LOST = 2
    WON = 3


class MajorityConfig(frozenset[int]):
    """A set of voter ids deciding by simple majority."""

    def committed_index(self, acked: Callable[[int], int | None]) -> int:
        """The largest index acknowledged by a majority (``acked`` returns None if unknown)."""
        n = len(self)
        if n == 0:
            return INFINITE_INDEX
        idx = sorted((acked(v) or 0 for v in self), reverse=True)
        return idx[n // 2]

    def vote_result(self, votes: Mapping[int, bool]) -> VoteResult:
        if not self:
            return VoteResult.WON  # an empty config "wins" so joint configs reduce cleanly
        granted = rejected = 0
        for v in self:
            got = votes.get(v)
            if got is True:
                granted += 1
            elif got is False:
                rejected += 1
        q = len(self) // 2 + 1
        if granted >= q:
            return VoteResult.WON
        if granted + (len(self) - granted - rejected) >= q:
            return VoteResult.PENDING
        return VoteResult.LOST


class JointConfig:
    """Two majority configs; ``outgoing`` is empty unless the config is joint."""

    __slots__ = ("incoming", "outgoing")

    def __init__(self, incoming: Iterable[int] = (), outgoing: Iterable[int] = ()) -> None:
        self.incoming = MajorityConfig(incoming)
        self.outgoing = MajorityConfig(outgoing)

    def ids(self) -> frozenset[int]:
        return self.incoming | self.outgoing

    def is_joint(self) -> bool:
        return bool(self.outgoing)

    def committed_index(self, acked: Callable[[int], int | None]) -> int:
        return min(self.incoming.committed_index(acked), self.outgoing.committed_index(acked))

    def vote_result(self, votes: Mapping[int, bool]) -> VoteResult:
        r1 = self.incoming.vote_result(votes)
        r2 = self.outgoing.vote_result(votes)
        if r1 == r2:
            return r1
        if VoteResult.LOST in (r1, r2):
            return VoteResult.LOST
        return VoteResult.PENDING

    def __repr__(self) -> str:
        inc = sorted(self.incoming)
        if self.outgoing:
            return f"{inc}&&{sorted(self.outgoing)}"
        return f"{inc}"
