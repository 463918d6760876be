"""pyetcd/api/dashboard/timeline.py: the ring of events and the applied-state differ."""

from __future__ import annotations

import itertools

from pyetcd.api.dashboard.timeline import MemberSnapshot, StateDiffer, Timeline


def _clock() -> itertools.count[float]:
    return itertools.count(1000.0, 0.5)


def test_record_numbers_events_and_keeps_the_newest() -> None:
    ticks = _clock()
    t = Timeline(capacity=3, clock=lambda: next(ticks))
    for i in range(5):
        t.record("election", f"e{i}", term=i)
    assert t.last_seq == 5
    assert [e.seq for e in t.since(0)] == [3, 4, 5]  # the two oldest fell out of the ring
    assert [e.text for e in t.since(4)] == ["e4"]
    assert t.since(5) == []
    assert [e.seq for e in t.recent(2)] == [4, 5]
    assert t.recent(0) == []
    e = t.since(4)[0]
    assert e.to_json() == {
        "seq": 5,
        "time": 1002.0,
        "kind": "election",
        "text": "e4",
        "fields": {"term": 4},
    }


def test_listeners_are_woken_by_each_record() -> None:
    t = Timeline()
    a, b = t.listen(), t.listen()
    t.record("leader", "x")
    assert a.is_set() and b.is_set()
    a.clear()
    t.unlisten(a)
    t.record("leader", "y")
    assert not a.is_set()


def _snap(
    members: dict[int, tuple[str, bool]],
    compact: int = 0,
    alarms: frozenset[tuple[int, str]] = frozenset(),
) -> MemberSnapshot:
    return MemberSnapshot(members=members, compact_revision=compact, alarms=alarms)


def test_differ_records_membership_compaction_and_alarms() -> None:
    t = Timeline()
    d = StateDiffer(t)
    d.observe(_snap({1: ("a", False), 2: ("b", False)}))
    assert t.since(0) == []  # the first look is the baseline
    d.observe(_snap({1: ("a", False), 2: ("b", False), 0x3F: ("c", True)}))
    d.observe(_snap({1: ("a", False), 2: ("b", False), 0x3F: ("c", False)}))
    d.observe(_snap({1: ("a", False), 0x3F: ("c", False)}, compact=7))
    d.observe(
        _snap({1: ("a", False), 0x3F: ("c", False)}, compact=7, alarms=frozenset({(1, "NOSPACE")}))
    )
    d.observe(_snap({1: ("a", False), 0x3F: ("c", False)}, compact=7))
    texts = [(e.kind, e.text) for e in t.since(0)]
    assert texts == [
        ("member", "member 3f joined as a learner"),
        ("member", "learner 3f was promoted to a voter"),
        ("member", "member 2 was removed"),
        ("compaction", "compacted history up to revision 7"),
        ("alarm", "alarm NOSPACE raised on 1"),
        ("alarm", "alarm NOSPACE cleared on 1"),
    ]


def test_differ_is_quiet_when_nothing_changed() -> None:
    t = Timeline()
    d = StateDiffer(t)
    for _ in range(3):
        d.observe(_snap({1: ("a", False)}, compact=3))
    assert t.last_seq == 0
