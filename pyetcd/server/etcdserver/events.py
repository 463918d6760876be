"""What the member tells an observer about the moments worth seeing (the dashboard's
timeline): elections, votes, leader changes, snapshots, defragmentation.

The parts that see such a moment are given an :class:`EventRecorder` when they are
built; a member without an observer gets :data:`NO_EVENTS`, which drops everything.
Recording is synchronous and cheap: an observer must not block or raise.
"""

from __future__ import annotations

from typing import Final, Protocol

__all__ = ["NO_EVENTS", "EventRecorder", "NullRecorder"]


class EventRecorder(Protocol):
    """Takes one event: ``kind`` (election, leader, snapshot, defrag, ...), a sentence
    in Raft's words, and the numbers it is about (``term``, ``index``, ...)."""

    def record(self, kind: str, text: str, **fields: int | str) -> None: ...


class NullRecorder:
    """Records nothing."""

    def record(self, kind: str, text: str, **fields: int | str) -> None:
        pass


NO_EVENTS: Final = NullRecorder()
