"""Watch streams on etcd and pyetcd: the same creates, the same events."""

from __future__ import annotations

from conformance_client import Conformance
from conformance_ops import KEYS, Compact, Delete, Op, Put, deletes, prefix_end, puts, txns
from conformance_run import budget
from conformance_watch import NODELETE, NOPUT, Watch, run_watch_program
from hypothesis import given
from hypothesis import strategies as st

from pyetcd.pb import rpc_pb2


@st.composite
def watches(draw: st.DrawFn) -> Watch:
    key = draw(st.sampled_from(KEYS))
    return Watch(
        key=key,
        range_end=draw(st.sampled_from((b"", b"", b"\x00", prefix_end(key), key + b"\x00"))),
        start=draw(st.none() | st.integers(-1, 8)),
        filters=draw(st.sampled_from(((), (), (NOPUT,), (NODELETE,), (NOPUT, NODELETE)))),
        prev_kv=draw(st.booleans()),
    )


writes: st.SearchStrategy[Op] = st.one_of(puts(), puts(), deletes(), txns(depth=1))


@budget(80)
@given(
    before=st.lists(writes, max_size=8),
    ws=st.lists(watches(), min_size=1, max_size=4),
    after=st.lists(writes, max_size=6),
)
def test_watch_streams(
    conf: Conformance, before: list[Op], ws: list[Watch], after: list[Op]
) -> None:
    run_watch_program(conf, before, ws, after)


def test_watch_compacted_start_revision(conf: Conformance) -> None:
    ops: list[Op] = [Put(b"a", b"1"), Put(b"a", b"2"), Put(b"b", b"3"), Compact(2)]
    run_watch_program(conf, ops, [Watch(b"a", start=1), Watch(b"a", b"\x00", start=2)], [])


def test_watch_history_with_prev_kv_and_filters(conf: Conformance) -> None:
    ops: list[Op] = [Put(b"a", b"1"), Put(b"a\x00", b"2"), Delete(b"a"), Put(b"a\xff", b"")]
    ws = [
        Watch(b"a", prev_kv=True, start=1),
        Watch(b"a", prefix_end(b"a"), start=1, filters=(NOPUT,), prev_kv=True),
        Watch(b"a", prefix_end(b"a"), start=1, filters=(NODELETE,)),
        Watch(b"\x00", b"\x00", start=2),
    ]
    run_watch_program(conf, ops, ws, [Put(b"a", b"3"), Delete(b"a", b"\x00")])


def test_watch_empty_range_and_future_start(conf: Conformance) -> None:
    ws = [Watch(b"b", b"a"), Watch(b"b", b"b"), Watch(b"a", start=3), Watch(b"a", start=50)]
    run_watch_program(conf, [Put(b"a", b"1")], ws, [Put(b"a", b"2"), Put(b"a", b"3")])


def test_watch_client_chosen_and_duplicate_ids(conf: Conformance) -> None:
    ws = [Watch(b"a", watch_id=7), Watch(b"b", watch_id=7), Watch(b"a"), Watch(b"c", watch_id=1)]
    run_watch_program(conf, [Put(b"a", b"1")], ws, [Put(b"a", b"2"), Put(b"c", b"3")])


def test_watch_all_keys_from_revision_one(conf: Conformance) -> None:
    # key "\0" with range_end "\0" watches every key; the empty key means "\0" too
    ws = [Watch(b"\x00", b"\x00", start=1), Watch(b"", b"\x00", start=1)]
    run_watch_program(conf, [Put(b"\xff", b""), Put(b"\x00", b"x")], ws, [Delete(b"\x00", b"\x00")])


def test_watch_cancel_and_progress_requests(conf: Conformance) -> None:
    cancel = rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=0))
    unknown = rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=42))
    progress = rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest())
    ws = [Watch(b"a"), Watch(b"b")]
    run_watch_program(conf, [Put(b"a")], ws, [Put(b"a"), Put(b"b")], (cancel, unknown, progress))


def test_watch_compacted_start_with_every_event_filtered(conf: Conformance) -> None:
    # found by a long run (harness): the compaction cancel must still be awaited
    f = (NOPUT, NODELETE)
    run_watch_program(conf, [], [Watch(b"a"), Watch(b"a"), Watch(b"a", start=-1, filters=f)], [])
