"""The timeline: what happened on this member, in order, with times.

Two sources feed it. The member's parts record the moments only they see (role
changes, votes, leader changes, snapshots, defragmentation: see
``server/etcdserver/events.py``). :class:`StateDiffer` records what shows in the
member's applied state (members joining, leaving or promoted, compactions, alarms)
by comparing it with what it saw the last time it looked, so that apply needs no
hook.

Rules this module keeps:

1. An event is never changed once recorded; its ``seq`` counts up from 1 per member,
   so (member, seq) names it across the cluster.
2. The ring keeps the newest ``capacity`` events; a reader that asks for the events
   after a ``seq`` it saw gets each newer event exactly once.
3. Recording never blocks and never raises: the Raft driver calls it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Event", "MemberSnapshot", "StateDiffer", "Timeline"]

DEFAULT_CAPACITY = 500


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened on the member at ``time`` (Unix seconds)."""

    seq: int
    time: float
    kind: str
    text: str
    fields: dict[str, int | str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "kind": self.kind,
            "text": self.text,
            **({"fields": self.fields} if self.fields else {}),
        }


class Timeline:
    """A bounded, ordered record of one member's events (an ``EventRecorder``)."""

    def __init__(
        self, capacity: int = DEFAULT_CAPACITY, clock: Callable[[], float] = time.time
    ) -> None:
        self._events: deque[Event] = deque(maxlen=capacity)
        self._seq = 0
        self._clock = clock
        self._listeners: set[asyncio.Event] = set()

    def record(self, kind: str, text: str, **fields: int | str) -> None:
        """Append one event and wake every listener."""
        self._seq += 1
        self._events.append(Event(self._seq, self._clock(), kind, text, fields))
        for listener in self._listeners:
            listener.set()

    @property
    def last_seq(self) -> int:
        return self._seq

    def since(self, seq: int = 0) -> list[Event]:
        """The events after ``seq`` still in the ring, oldest first."""
        return [e for e in self._events if e.seq > seq]

    def recent(self, n: int) -> list[Event]:
        """The newest ``n`` events, oldest first."""
        if n <= 0:
            return []
        events = list(self._events)
        return events[-n:]

    def listen(self) -> asyncio.Event:
        """An event set on every new record (until :meth:`unlisten`)."""
        listener = asyncio.Event()
        self._listeners.add(listener)
        return listener

    def unlisten(self, listener: asyncio.Event) -> None:
        self._listeners.discard(listener)


@dataclass(frozen=True, slots=True)
class MemberSnapshot:
    """What :class:`StateDiffer` compares: the applied state that events show in."""

    members: dict[int, tuple[str, bool]]  # id -> (name, is_learner)
    compact_revision: int
    alarms: frozenset[tuple[int, str]]  # (member id, alarm name)


class StateDiffer:
    """Records the differences between successive :class:`MemberSnapshot`s."""

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self._last: MemberSnapshot | None = None

    def observe(self, now: MemberSnapshot) -> None:
        """Compare ``now`` with the last snapshot seen; the first one records nothing."""
        last, self._last = self._last, now
        if last is None:
            return
        self._members(last.members, now.members)
        if now.compact_revision > last.compact_revision:
            rev = now.compact_revision
            self.timeline.record(
                "compaction", f"compacted history up to revision {rev}", revision=rev
            )
        for member_id, alarm in sorted(now.alarms - last.alarms):
            self.timeline.record(
                "alarm",
                f"alarm {alarm} raised on {member_id:x}",
                alarm=alarm,
                member=f"{member_id:x}",
            )
        for member_id, alarm in sorted(last.alarms - now.alarms):
            self.timeline.record(
                "alarm",
                f"alarm {alarm} cleared on {member_id:x}",
                alarm=alarm,
                member=f"{member_id:x}",
            )

    def _members(self, old: dict[int, tuple[str, bool]], new: dict[int, tuple[str, bool]]) -> None:
        # The text names the member by ID only: a member's name arrives later than its
        # ID (it publishes it), and every member must write the same sentence (the page
        # shows an applied-state change once, and puts names in for IDs).
        record = self.timeline.record
        for member_id in _sorted(new.keys() - old.keys()):
            what = "learner" if new[member_id][1] else "voter"
            record("member", f"member {member_id:x} joined as a {what}", member=f"{member_id:x}")
        for member_id in _sorted(old.keys() - new.keys()):
            record("member", f"member {member_id:x} was removed", member=f"{member_id:x}")
        for member_id in _sorted(old.keys() & new.keys()):
            if old[member_id][1] and not new[member_id][1]:
                record(
                    "member",
                    f"learner {member_id:x} was promoted to a voter",
                    member=f"{member_id:x}",
                )


def _sorted(ids: Iterable[int]) -> list[int]:
    return sorted(ids)
