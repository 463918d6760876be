"""Conversions between etcd's protobuf messages and the MVCC store's plain values.

The two sides have the same field names (see ``pyetcd/mvcc/types.py``), so each
function is a field-by-field copy. This is the only module that knows both shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Generator

from pyetcd.mvcc import types as mt
from pyetcd.mvcc.read_cache import ReadCache
from pyetcd.pb import kv_pb2, rpc_pb2

__all__ = [
    "compaction_from_pb",
    "delete_range_from_pb",
    "delete_range_to_pb",
    "event_to_pb",
    "kv_to_pb",
    "put_from_pb",
    "put_to_pb",
    "range_encode_steps",
    "range_from_pb",
    "range_to_pb",
    "txn_from_pb",
    "txn_to_pb",
]


# -- requests: protobuf -> store ---------------------------------------------------------


# Enum lookups by value: calling the enum class costs a microsecond per request.
_SORT_ORDERS = {int(o): o for o in mt.SortOrder}
_SORT_TARGETS = {int(t): t for t in mt.SortTarget}


def range_from_pb(r: rpc_pb2.RangeRequest) -> mt.RangeRequest:
    order = _SORT_ORDERS.get(r.sort_order)
    if order is None:
        order = mt.SortOrder(r.sort_order)  # an unknown value raises ValueError, as before
    target = _SORT_TARGETS.get(r.sort_target)
    if target is None:
        target = mt.SortTarget(r.sort_target)
    return mt.RangeRequest(
        key=r.key,
        range_end=r.range_end,
        limit=r.limit,
        revision=r.revision,
        sort_order=order,
        sort_target=target,
        serializable=r.serializable,
        keys_only=r.keys_only,
        count_only=r.count_only,
        min_mod_revision=r.min_mod_revision,
        max_mod_revision=r.max_mod_revision,
        min_create_revision=r.min_create_revision,
        max_create_revision=r.max_create_revision,
    )


def put_from_pb(r: rpc_pb2.PutRequest) -> mt.PutRequest:
    return mt.PutRequest(
        key=r.key,
        value=r.value,
        lease=r.lease,
        prev_kv=r.prev_kv,
        ignore_value=r.ignore_value,
        ignore_lease=r.ignore_lease,
    )


def delete_range_from_pb(r: rpc_pb2.DeleteRangeRequest) -> mt.DeleteRangeRequest:
    return mt.DeleteRangeRequest(key=r.key, range_end=r.range_end, prev_kv=r.prev_kv)


def _compare_from_pb(c: rpc_pb2.Compare) -> mt.Compare:
    return mt.Compare(
        key=c.key,
        result=mt.CompareResult(c.result),
        target=mt.CompareTarget(c.target),
        version=c.version,
        create_revision=c.create_revision,
        mod_revision=c.mod_revision,
        value=c.value,
        lease=c.lease,
        range_end=c.range_end,
    )


def _op_from_pb(op: rpc_pb2.RequestOp) -> mt.RequestOp:
    which = op.WhichOneof("request")
    if which == "request_range":
        return mt.RequestOp(request_range=range_from_pb(op.request_range))
    if which == "request_put":
        return mt.RequestOp(request_put=put_from_pb(op.request_put))
    if which == "request_delete_range":
        return mt.RequestOp(request_delete_range=delete_range_from_pb(op.request_delete_range))
    if which == "request_txn":
        return mt.RequestOp(request_txn=txn_from_pb(op.request_txn))
    return mt.RequestOp()


def txn_from_pb(r: rpc_pb2.TxnRequest) -> mt.TxnRequest:
    return mt.TxnRequest(
        compare=tuple(_compare_from_pb(c) for c in r.compare),
        success=tuple(_op_from_pb(op) for op in r.success),
        failure=tuple(_op_from_pb(op) for op in r.failure),
    )


def compaction_from_pb(r: rpc_pb2.CompactionRequest) -> mt.CompactionRequest:
    return mt.CompactionRequest(revision=r.revision, physical=r.physical)


# -- responses: store -> protobuf ----------------------------------------------------------


def kv_to_pb(kv: mt.KeyValue, out: kv_pb2.KeyValue | None = None) -> kv_pb2.KeyValue:
    m = out if out is not None else kv_pb2.KeyValue()
    m.key = kv.key
    if kv.create_revision:
        m.create_revision = kv.create_revision
    if kv.mod_revision:
        m.mod_revision = kv.mod_revision
    if kv.version:
        m.version = kv.version
    if kv.value:
        m.value = kv.value
    if kv.lease:
        m.lease = kv.lease
    return m


def event_to_pb(ev: mt.Event) -> kv_pb2.Event:
    m = kv_pb2.Event(type=int(ev.type))  # type: ignore[arg-type]
    kv_to_pb(ev.kv, m.kv)
    if ev.prev_kv is not None:
        kv_to_pb(ev.prev_kv, m.prev_kv)
    return m


def _header(h: mt.ResponseHeader, out: rpc_pb2.ResponseHeader) -> None:
    if h.cluster_id:
        out.cluster_id = h.cluster_id
    if h.member_id:
        out.member_id = h.member_id
    out.revision = h.revision
    if h.raft_term:
        out.raft_term = h.raft_term


def range_to_pb(r: mt.RangeResponse) -> rpc_pb2.RangeResponse:
    m = rpc_pb2.RangeResponse(more=r.more, count=r.count)
    _header(r.header, m.header)
    for kv in r.kvs:
        kv_to_pb(kv, m.kvs.add())
    return m


def range_encode_steps(
    r: mt.RangeResponse,
    header: rpc_pb2.ResponseHeader,
    slice_kvs: int,
    cache: ReadCache | None = None,
) -> Generator[None, None, bytes]:
    """``r`` serialized as a RangeResponse with ``header``, about ``slice_kvs`` KeyValues
    per step (yields between steps; returns the bytes).

    A message's fields may be serialized piece by piece and concatenated: the header
    (field 1), the kvs (field 2) a run at a time, then more and count (fields 3, 4).
    The result is byte for byte what ``range_to_pb(r).SerializeToString()`` gives
    with that header, without holding the loop for the whole of a large answer.

    With the store's read ``cache`` and ``r.revs`` (the kvs are stored records), each
    KeyValue's field is taken from the cache when it holds it, and kept there when it
    does not: a range read again is a join of stored bytes (issue 22).
    """
    parts = [rpc_pb2.RangeResponse(header=header).SerializeToString()]
    kvs = r.kvs
    step = slice_kvs if slice_kvs > 0 else max(1, len(kvs))
    revs = r.revs if cache is not None else ()
    if revs:
        assert cache is not None
        wire = cache.wire
        # a hit costs a dict lookup, so runs of hits are taken 16 steps' worth at a time
        for i in range(0, len(kvs), step * 16):
            run = [wire.get(rev) for rev in revs[i : i + step * 16]]
            for j, encoded in enumerate(run):
                if encoded is None:
                    encoded = run[j] = _kv_field(kvs[i + j])
                    cache.remember_wire(revs[i + j], encoded)
            parts += run
            yield
    else:
        for i in range(0, len(kvs), step):
            m = rpc_pb2.RangeResponse()
            add = m.kvs.add
            for kv in kvs[i : i + step]:
                _add_kv(add, kv)
            parts.append(m.SerializeToString())
            yield
    parts.append(rpc_pb2.RangeResponse(more=r.more, count=r.count).SerializeToString())
    return b"".join(parts)


def _kv_field(kv: mt.KeyValue) -> bytes:
    # one KeyValue as RangeResponse's field 2 (tag, length, message): what the
    # message-at-a-time encoding above gives for it
    m = rpc_pb2.RangeResponse()
    _add_kv(m.kvs.add, kv)
    encoded: bytes = m.SerializeToString()
    return encoded


def _add_kv(add: Callable[..., object], kv: mt.KeyValue) -> None:
    # all fields in one call: cheaper than kv_to_pb's field by field, and a zero is not
    # serialized either way
    add(
        key=kv.key,
        create_revision=kv.create_revision,
        mod_revision=kv.mod_revision,
        version=kv.version,
        value=kv.value,
        lease=kv.lease,
    )


def put_to_pb(r: mt.PutResponse) -> rpc_pb2.PutResponse:
    m = rpc_pb2.PutResponse()
    _header(r.header, m.header)
    if r.prev_kv is not None:
        kv_to_pb(r.prev_kv, m.prev_kv)
    return m


def delete_range_to_pb(r: mt.DeleteRangeResponse) -> rpc_pb2.DeleteRangeResponse:
    m = rpc_pb2.DeleteRangeResponse(deleted=r.deleted)
    _header(r.header, m.header)
    for kv in r.prev_kvs:
        kv_to_pb(kv, m.prev_kvs.add())
    return m


def txn_to_pb(r: mt.TxnResponse) -> rpc_pb2.TxnResponse:
    m = rpc_pb2.TxnResponse(succeeded=r.succeeded)
    _header(r.header, m.header)
    for op in r.responses:
        out = m.responses.add()
        if op.response_range is not None:
            out.response_range.CopyFrom(range_to_pb(op.response_range))
        elif op.response_put is not None:
            out.response_put.CopyFrom(put_to_pb(op.response_put))
        elif op.response_delete_range is not None:
            out.response_delete_range.CopyFrom(delete_range_to_pb(op.response_delete_range))
        elif op.response_txn is not None:
            out.response_txn.CopyFrom(txn_to_pb(op.response_txn))
    return m
