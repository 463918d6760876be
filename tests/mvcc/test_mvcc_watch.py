"""Watch: every event once, in order, nothing missing — across catch-up,
compaction, victims (slow consumers) and filters."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyetcd.mvcc import (
    DeleteRangeRequest,
    Event,
    EventType,
    KeyValue,
    KVStore,
    PutRequest,
    RangeRequest,
    WatchableStore,
    WatchFilter,
    WatchResponse,
    WatchStream,
    fragment,
)
from pyetcd.server.etcdserver import txn as kvtxn

KEYS = [b"a", b"b", b"c", b"d"]

actions = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from(KEYS), st.sampled_from([b"1", b"2"])),
        st.tuples(st.just("del"), st.sampled_from(KEYS), st.sampled_from([b"", b"c", b"\x00"])),
        st.tuples(
            st.just("watch"),
            st.integers(0, 1),
            st.sampled_from(KEYS),
            st.sampled_from([b"", b"c", b"\x00"]),
            st.integers(0, 8),
        ),
        st.tuples(st.just("drain"), st.integers(0, 1)),
        st.tuples(st.just("sync")),
        st.tuples(st.just("compact"), st.integers(0, 5)),
    ),
    max_size=60,
)


def in_range(k: bytes, key: bytes, end: bytes) -> bool:
    if not end:
        return k == key
    return key <= k and (end == b"\x00" or k < end)


def expected_events(history: list[dict[bytes, KeyValue]], start: int) -> list[Event]:
    out: list[Event] = []
    for rev in range(max(start, 2), len(history)):
        before, after = history[rev - 1], history[rev]
        for k in sorted(set(before) | set(after)):
            if k in after and after[k] != before.get(k):
                out.append(Event(EventType.PUT, after[k]))
            elif k not in after and k in before:
                out.append(Event(EventType.DELETE, KeyValue(k, mod_revision=rev)))
    return out


@settings(
    max_examples=200, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(actions=actions)
def test_every_event_once_in_order(tmp_path_factory: object, actions: list[tuple]) -> None:  # type: ignore[type-arg]
    d = tmp_path_factory.mktemp("watch")  # type: ignore[attr-defined]
    kv = KVStore(str(d / "db"), batch_limit=5)
    ws = WatchableStore(kv)
    streams = [ws.new_stream(capacity=1), ws.new_stream(capacity=1000)]
    got: dict[tuple[int, int], list[WatchResponse]] = {}
    specs: dict[tuple[int, int], tuple[bytes, bytes, int]] = {}
    history: list[dict[bytes, KeyValue]] = [{}, {}]
    compactions: set[int] = set()

    def timing_dependent(e: Event) -> bool:
        # as in etcd, a compaction at revision c drops the tombstones written at
        # c, so a watcher still catching up from c may or may not see them
        return e.type == EventType.DELETE and e.kv.mod_revision in compactions

    def snapshot() -> None:
        while len(history) <= kv.current_revision:
            everything = kvtxn.range_(kv, RangeRequest(b"\x00", b"\x00"))
            history.append({x.key: x for x in everything.kvs})

    def drain(i: int) -> None:
        for resp in streams[i].pop_all():
            got.setdefault((i, resp.watch_id), []).append(resp)

    for act in actions:
        if act[0] == "put":
            kvtxn.put(kv, PutRequest(act[1], act[2]))
        elif act[0] == "del":
            kvtxn.delete_range(kv, DeleteRangeRequest(act[1], act[2]))
        elif act[0] == "watch":
            _, i, key, end, back = act
            start = 0 if back == 0 else max(1, kv.current_revision - back + 2)
            if end not in (b"", b"\x00") and key >= end:
                # etcd refuses an empty range (checked against real etcd in tests/conformance)
                with pytest.raises(ValueError, match="watcher range is empty"):
                    streams[i].watch(key, end, start)
            else:
                wid = streams[i].watch(key, end, start)
                specs[(i, wid)] = (key, end, start or kv.current_revision + 1)
        elif act[0] == "drain":
            drain(act[1])
        elif act[0] == "sync":
            ws.sync()
        elif act[0] == "compact" and kv.current_revision - act[1] > kv.compact_revision:
            kv.compact(kv.current_revision - act[1])
            compactions.add(kv.compact_revision)
        snapshot()
    for _ in range(10_000):
        drain(0)
        drain(1)
        if not ws.sync() and not len(streams[0]) and not len(streams[1]):
            break
    drain(0)
    drain(1)
    for wkey, (key, end, start) in specs.items():
        want = [
            e
            for e in expected_events(history, start)
            if in_range(e.kv.key, key, end) and not timing_dependent(e)
        ]
        resps = got.get(wkey, [])
        events = [e for r in resps for e in r.events if not timing_dependent(e)]
        canceled = [r for r in resps if r.canceled]
        if canceled:
            assert len(canceled) == 1 and resps[-1] is canceled[0]
            assert events == want[: len(events)]
            assert 0 <= canceled[0].compact_revision <= kv.compact_revision
        else:
            assert events == want, (wkey, key, end, start)
        for r in resps:
            assert all(r.revision >= e.kv.mod_revision for e in r.events)
    kv.close()


def test_filters_prev_kv_progress_and_fragment(tmp_path: Path) -> None:
    kv = KVStore(str(tmp_path / "db"))
    ws = WatchableStore(kv)
    s: WatchStream = ws.new_stream()
    kvtxn.put(kv, PutRequest(b"k", b"v1"))
    nodel = s.watch(b"k", filters=[WatchFilter.NODELETE], prev_kv=True)
    noput = s.watch(b"k", filters=[WatchFilter.NOPUT])
    kvtxn.put(kv, PutRequest(b"k", b"v2"))
    kvtxn.delete_range(kv, DeleteRangeRequest(b"k"))
    resps = s.pop_all()
    assert [(r.watch_id, [e.type for e in r.events]) for r in resps] == [
        (nodel, [EventType.PUT]),
        (noput, [EventType.DELETE]),
    ]
    assert resps[0].events[0].prev_kv is not None
    assert resps[0].events[0].prev_kv.value == b"v1"
    s.request_progress(nodel)
    (progress,) = s.pop_all()
    assert progress == WatchResponse(nodel, (), kv.current_revision)
    ev = Event(EventType.PUT, KeyValue(b"k", value=b"x" * 10))
    big = WatchResponse(1, (ev,) * 5, 9)
    parts = fragment(big, 25)
    assert [len(p.events) for p in parts] == [2, 2, 1]
    assert [p.fragment for p in parts] == [True, True, False]
    kv.close()


def test_compacted_start_revision_cancels(tmp_path: Path) -> None:
    kv = KVStore(str(tmp_path / "db"))
    ws = WatchableStore(kv)
    for i in range(5):
        kvtxn.put(kv, PutRequest(b"k", str(i).encode()))
    kv.compact(4)
    s = ws.new_stream()
    wid = s.watch(b"k", start_revision=2)
    ws.sync()
    (resp,) = s.pop_all()
    assert resp.canceled and resp.compact_revision == 4 and resp.watch_id == wid
    assert wid not in s.watchers
    kv.close()


def test_slow_consumer_does_not_block_writers(tmp_path: Path) -> None:
    kv = KVStore(str(tmp_path / "db"))
    ws = WatchableStore(kv)
    s = ws.new_stream(capacity=2)
    s.watch(b"k")
    for i in range(50):
        kvtxn.put(kv, PutRequest(b"k", str(i).encode()))
    assert len(s) == 2 and ws.victims
    seen: list[bytes] = []
    while True:
        seen += [e.kv.value for r in s.pop_all() for e in r.events]
        if not ws.sync() and not len(s):
            break
    assert seen == [str(i).encode() for i in range(50)]
    kv.close()


def test_a_compacted_watcher_that_cannot_be_told_costs_no_one_events(tmp_path: Path) -> None:
    """etcd 3.5.13 (#17612): a compacted unsynced watcher whose cancel could not be
    sent (its stream full) stayed in the group and made the others lose events. Here
    it waits for room, and the watcher beside it gets every event."""
    kv = KVStore(str(tmp_path / "db"))
    ws = WatchableStore(kv)
    for i in range(10):  # revisions 2..11
        kvtxn.put(kv, PutRequest(b"k", str(i).encode()))
    full = ws.new_stream(capacity=1)
    stale = full.watch(b"k", start_revision=2)
    other = full.watch(b"x")
    full.request_progress(other)  # the one slot is taken
    fine = ws.new_stream()
    follower = fine.watch(b"k", start_revision=6)
    kv.compact(5)
    ws.sync()
    assert [e.kv.value for r in fine.pop_all() for e in r.events] == [
        str(i).encode() for i in range(4, 10)
    ]
    assert stale in full.watchers  # not told yet: it waits, unsynced
    assert [r.watch_id for r in full.pop_all()] == [other]
    ws.sync()
    (cancel,) = full.pop_all()
    assert (cancel.watch_id, cancel.canceled, cancel.compact_revision) == (stale, True, 5)
    kvtxn.put(kv, PutRequest(b"k", b"after"))
    assert [e.kv.value for r in fine.pop_all() for e in r.events] == [b"after"]
    assert follower in fine.watchers


def test_key_index_one_and_several_watchers_of_a_key(tmp_path: Path) -> None:
    # The synced index maps a key watched once to the watcher itself and a key watched
    # several times to a set; removals go back from the set to the single watcher.
    kv = KVStore(str(tmp_path / "db"))
    ws = WatchableStore(kv)
    s = ws.new_stream()
    ids = [s.watch(b"k") for _ in range(3)]
    other = s.watch(b"j")
    assert ws.synced_count == 4 and len(ws.synced) == 4
    kvtxn.put(kv, PutRequest(b"k", b"1"))
    assert sorted(r.watch_id for r in s.pop_all()) == ids
    s.cancel(ids[1])
    kvtxn.put(kv, PutRequest(b"k", b"2"))
    assert sorted(r.watch_id for r in s.pop_all()) == [ids[0], ids[2]]
    s.cancel(ids[0])
    kvtxn.put(kv, PutRequest(b"k", b"3"))
    kvtxn.put(kv, PutRequest(b"j", b"3"))
    assert [r.watch_id for r in s.pop_all()] == [ids[2], other]
    s.cancel(ids[2])
    s.cancel(other)
    assert ws.synced_count == 0 and ws.synced == []
    kvtxn.put(kv, PutRequest(b"k", b"4"))
    assert s.pop_all() == []
    kv.close()


def test_adopted_watchers_catch_up_on_the_new_store(tmp_path: Path) -> None:
    # A restored backend replaces the store: its watchers move over unsynced and catch
    # up from their next revision on the new one.
    old_kv = KVStore(str(tmp_path / "old"))
    old = WatchableStore(old_kv)
    s = old.new_stream()
    wid = s.watch(b"k")
    kvtxn.put(old_kv, PutRequest(b"k", b"1"))
    s.pop_all()
    kv = KVStore(str(tmp_path / "new"))
    for v in (b"a", b"b", b"c"):
        kvtxn.put(kv, PutRequest(b"k", v))
    ws = WatchableStore(kv)
    ws.adopt(old)
    assert ws.synced_count == 0 and len(ws.unsynced) == 1
    assert not ws.sync()
    (resp,) = s.pop_all()
    assert resp.watch_id == wid and [e.kv.value for e in resp.events] == [b"b", b"c"]
    assert ws.synced_count == 1
    kvtxn.put(kv, PutRequest(b"k", b"d"))
    assert [e.kv.value for r in s.pop_all() for e in r.events] == [b"d"]
    old_kv.close()
    kv.close()


def test_streams_follow_the_store_that_adopted_theirs(tmp_path: Path) -> None:
    # A stream made on the old store goes on working on the new one: a cancel removes
    # the adopted watcher there, and a watch opened after the restore lives there too
    # (it saw nothing before: the old store gets no more writes).
    old_kv = KVStore(str(tmp_path / "old"))
    old = WatchableStore(old_kv)
    busy, idle = old.new_stream(), old.new_stream()
    adopted = busy.watch(b"k")
    kv = KVStore(str(tmp_path / "new"))
    ws = WatchableStore(kv)
    ws.adopt(old)
    ws.sync()  # the adopted watcher catches up (nothing to send) and is synced
    assert busy.cancel(adopted)
    assert ws.synced_count == 0 and not ws.unsynced
    later = idle.watch(b"j")
    assert idle.store is ws and ws.synced_count == 1
    kvtxn.put(kv, PutRequest(b"j", b"1"))
    (resp,) = idle.pop_all()
    assert resp.watch_id == later and [e.kv.value for e in resp.events] == [b"1"]
    old_kv.close()
    kv.close()
