"""Watch streams on both servers, and how their outputs are compared.

How a stream is read to its end: after the program's writes, a sentinel txn puts
every watched key and a second txn deletes them again. Each watcher's range
contains its own key, so unless it filters out both kinds of event, it must see
the sentinel delete (or, filtering deletes, the sentinel put); that ends its stream.

What is compared, per watcher: the control responses (created / canceled with
watch_id, compact_revision, cancel_reason and header revision) in order, and the
concatenated events. How events are split into responses and the header revision
of an event response depend on timing (etcd batches an unsynced watcher's catch-up
into one response, a synced one gets a response per revision), so they are not
compared; the events themselves are, field by field.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from conformance_client import STATS, Conformance, Mismatch, normalize
from conformance_ops import Op, rev

from pyetcd.pb import rpc_pb2, rpc_pb2_grpc

__all__ = ["Watch", "WatchStream", "run_watch_program"]

NOPUT = rpc_pb2.WatchCreateRequest.NOPUT
NODELETE = rpc_pb2.WatchCreateRequest.NODELETE


@dataclass(frozen=True)
class Watch:
    """One create request; ``start`` is relative to the clean slate (None: now)."""

    key: bytes
    range_end: bytes = b""
    start: int | None = None
    filters: tuple[int, ...] = ()
    prev_kv: bool = False
    watch_id: int = 0

    def request(self, base: int) -> rpc_pb2.WatchRequest:
        return rpc_pb2.WatchRequest(
            create_request=rpc_pb2.WatchCreateRequest(
                key=self.key,
                range_end=self.range_end,
                start_revision=rev(self.start, base),
                filters=list(self.filters),  # type: ignore[arg-type]
                prev_kv=self.prev_kv,
                watch_id=self.watch_id,
            )
        )


#: sees no event at all; see run_watch_program
BARRIER = Watch(b"\x00barrier", filters=(NOPUT, NODELETE))


class WatchStream:
    """A bidi Watch stream read by a background thread into a queue."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._requests: queue.Queue[rpc_pb2.WatchRequest | None] = queue.Queue()
        self.responses: queue.Queue[rpc_pb2.WatchResponse | BaseException] = queue.Queue()
        stub = rpc_pb2_grpc.WatchStub(channel)
        self._call = stub.Watch(self._iter(), timeout=60)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _iter(self) -> Iterator[rpc_pb2.WatchRequest]:
        while True:
            req = self._requests.get()
            if req is None:
                return
            yield req

    def _read(self) -> None:
        try:
            for resp in self._call:
                self.responses.put(resp)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:
                self.responses.put(err)

    def send(self, req: rpc_pb2.WatchRequest) -> None:
        self._requests.put(req)

    def next(self, timeout: float) -> rpc_pb2.WatchResponse | None:
        try:
            item = self.responses.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._requests.put(None)
        self._call.cancel()
        self._reader.join(5)


@dataclass
class _Watcher:
    control: list[dict[str, Any]]
    events: list[dict[str, Any]]
    done_at: int  # the sentinel revision that ends this watcher's stream (0: none)
    done: bool = False


def _control(resp: rpc_pb2.WatchResponse) -> dict[str, Any]:
    return normalize(resp, exclude=("etcdserverpb.WatchResponse.events",))


class _Collector:
    """Reads one server's stream after creation and sorts responses per watcher."""

    def __init__(self, stream: WatchStream) -> None:
        self.stream = stream
        self.creates: list[dict[str, Any]] = []
        self.watchers: dict[int, _Watcher] = {}
        self.other: list[dict[str, Any]] = []

    def created(self, n: int, timeout: float) -> None:
        """Take responses until ``n`` create answers were seen (events may interleave)."""
        deadline = time.monotonic() + timeout
        while len(self.creates) < n:
            resp = self.stream.next(max(0.0, deadline - time.monotonic()))
            if resp is None:
                return
            self._take(resp)

    def _take(self, resp: rpc_pb2.WatchResponse) -> None:
        if resp.created:
            self.creates.append(_control(resp))
            if not resp.canceled:
                self.watchers[resp.watch_id] = _Watcher([], [], 0)
            return
        w = self.watchers.get(resp.watch_id)
        if w is None:
            self.other.append(_control(resp))
            return
        if resp.canceled or resp.compact_revision:
            w.control.append(_control(resp))
            w.done = True
        for ev in resp.events:
            w.events.append(normalize(ev))
            if w.done_at and ev.kv.mod_revision >= w.done_at:
                w.done = True

    def finish(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not all(w.done for w in self.watchers.values()):
            resp = self.stream.next(max(0.0, deadline - time.monotonic()))
            if resp is None:
                return
            self._take(resp)


def run_watch_program(
    conf: Conformance,
    before: list[Op],
    watches: list[Watch],
    after: list[Op],
    then: tuple[rpc_pb2.WatchRequest, ...] = (),
) -> None:
    """Writes, then watches (historical or from now), the requests ``then``
    (cancels, progress requests), more writes, the sentinel; compare the streams
    per watcher. The writes are compared as usual."""
    from conformance_run import run_program

    run_program(conf, before)
    hkv = conf.ok("Maintenance", "HashKV", rpc_pb2.HashKVRequest())
    compact_rev = int(hkv.compact_revision)
    streams = [WatchStream(s.grpc_channel()) for s in conf.pair.servers]
    try:
        cols = [_Collector(s) for s in streams]
        for w in watches:
            req = w.request(conf.base)
            for s in streams:
                s.send(req)
        list(conf.pool.map(lambda c: c.created(len(watches), 10.0), cols))
        STATS.add(len(watches))
        if cols[0].creates != cols[1].creates:
            raise Mismatch(_diff("create responses", cols[0].creates, cols[1].creates, conf))
        created = list(watches)
        if then:
            # A create after ``then`` is a barrier: requests on a stream are answered
            # in order, so once it is created every answer to ``then`` has arrived
            # (and the revisions in those answers cannot race with later writes).
            created.append(BARRIER)
            for req in (*then, BARRIER.request(conf.base)):
                for s in streams:
                    s.send(req)
            list(conf.pool.map(lambda c: c.created(len(created), 10.0), cols))
            STATS.add(len(then))
            if cols[0].creates != cols[1].creates:
                raise Mismatch(_diff("barrier create", cols[0].creates, cols[1].creates, conf))
        run_program(conf, after, reset=False)
        sentinel_put, sentinel_del = _sentinel(conf, watches)
        for col in cols:
            _arm(col, created, sentinel_put, sentinel_del, conf.base, compact_rev)
        list(conf.pool.map(lambda c: c.finish(5.0), cols))
        _compare(cols, conf)
    finally:
        for s in streams:
            s.close()


def _sentinel(conf: Conformance, watches: list[Watch]) -> tuple[int, int]:
    keys = sorted({w.key or b"\x00" for w in watches})  # etcd watches "" as "\0"
    put = rpc_pb2.TxnRequest(
        success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, value=b"s")) for k in keys]
    )
    delete = rpc_pb2.TxnRequest(
        success=[
            rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=k)) for k in keys
        ]
    )
    a = conf.ok("KV", "Txn", put)
    b = conf.ok("KV", "Txn", delete)
    return int(a.header.revision), int(b.header.revision)


def _arm(
    col: _Collector, watches: list[Watch], put_rev: int, del_rev: int, base: int, compact: int
) -> None:
    # watch IDs are handed out in creation order for the successful creates
    ok = [c for c in col.creates if not c.get("canceled")]
    by_id = {c.get("watch_id", 0): w for c, w in zip(ok, _successful(col, watches), strict=False)}
    for wid, watcher in col.watchers.items():
        w = by_id.get(wid)
        if w is None:
            continue
        last = put_rev if NODELETE in w.filters else del_rev
        if 0 < rev(w.start, base) < compact:
            continue  # ends with its compaction cancel (see _Collector._take)
        if (NOPUT in w.filters and NODELETE in w.filters) or rev(w.start, base) > last:
            watcher.done = True  # can see nothing of the sentinel; compare what it has
        else:
            watcher.done_at = last
            watcher.done = watcher.done or any(
                e.get("kv", {}).get("mod_revision", 0) >= watcher.done_at for e in watcher.events
            )


def _successful(col: _Collector, watches: list[Watch]) -> list[Watch]:
    return [w for c, w in zip(col.creates, watches, strict=False) if not c.get("canceled")]


def _compare(cols: list[_Collector], conf: Conformance) -> None:
    e, p = cols
    STATS.add(0, events=sum(len(w.events) for w in e.watchers.values()))
    if sorted(e.watchers) != sorted(p.watchers):
        raise Mismatch(_diff("watch ids", sorted(e.watchers), sorted(p.watchers), conf))
    for wid in e.watchers:
        we, wp = e.watchers[wid], p.watchers[wid]
        if not we.done:
            raise AssertionError(f"etcd's watcher {wid} never reached the sentinel")
        if we.control != wp.control:
            raise Mismatch(_diff(f"watcher {wid} control responses", we.control, wp.control, conf))
        if we.events != wp.events:
            raise Mismatch(_diff(f"watcher {wid} events", we.events, wp.events, conf))
    if e.other != p.other:
        raise Mismatch(_diff("responses for unknown watch ids", e.other, p.other, conf))


def _diff(what: str, a: object, b: object, conf: Conformance) -> str:
    return f"{what} differ\netcd:   {a}\npyetcd: {b}\nhistory:\n  " + "\n  ".join(conf.log[-30:])
