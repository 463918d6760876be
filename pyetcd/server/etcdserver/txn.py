"""Request semantics of the KV API on top of the store's primitives (etcd's
``etcdserver/txn``): sorting and filtering of ranges, prev_kv, ignore_value and
ignore_lease, compares, txn branch selection, quota costs, and which revision each
response header carries. The store (:class:`~pyetcd.mvcc.KVStore`) knows nothing
of requests; these functions call its ``begin_write`` / ``write_*`` / ``end_write``.

Rule: every check that can fail runs before ``begin_write`` (compares, lease
existence, ignore_value on a missing key, revisions of ranges), so a request that
fails changes nothing and every member applies it alike.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import replace
from typing import TypeVar

from pyetcd.mvcc import KVStore
from pyetcd.mvcc.errors import CompactedError, FutureRevisionError, KeyNotFoundError
from pyetcd.mvcc.errors import LeaseNotFoundError as _LeaseNotFound
from pyetcd.mvcc.key_index import index_end
from pyetcd.mvcc.revision import Revision
from pyetcd.mvcc.types import (
    CompactionResponse,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    DeleteRangeResponse,
    KeyValue,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    RequestOp,
    ResponseHeader,
    ResponseOp,
    SortOrder,
    SortTarget,
    TxnRequest,
    TxnResponse,
)

__all__ = [
    "LEASE_GRANT_COST",
    "RangeSteps",
    "compact",
    "cost_put",
    "cost_put_kv",
    "cost_txn",
    "delete_range",
    "is_txn_readonly",
    "lease_grant",
    "put",
    "put_plain",
    "range_",
    "range_steps",
    "run_steps",
    "txn",
]

# etcd's quota estimates: per-key overhead and a lease's cost
_KV_OVERHEAD = 256
LEASE_GRANT_COST = 64
_EMPTY_KV = KeyValue(b"")
_NO_HEADER = ResponseHeader()
_T = TypeVar("_T")

_SORT_KEYS: dict[SortTarget, Callable[[KeyValue], int | bytes]] = {
    SortTarget.KEY: lambda kv: kv.key,
    SortTarget.VERSION: lambda kv: kv.version,
    SortTarget.CREATE: lambda kv: kv.create_revision,
    SortTarget.MOD: lambda kv: kv.mod_revision,
    SortTarget.VALUE: lambda kv: kv.value,
}


def _plain(req: RangeRequest) -> bool:
    return not (
        req.min_mod_revision
        or req.max_mod_revision
        or req.min_create_revision
        or req.max_create_revision
    )


#: What :func:`range_steps` yields between slices: nothing; the caller decides when to go on.
RangeSteps = Generator[None, None, RangeResponse]


def _range(kv: KVStore, req: RangeRequest, cur_rev: int) -> RangeResponse:
    """A Range as etcd applies it, seen at ``cur_rev`` (the header's revision)."""
    return run_steps(range_steps(kv, req, cur_rev, 0))


def run_steps(steps: Generator[None, None, _T]) -> _T:
    """Run a generator of steps to its end in one go; returns what it returns."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


def range_steps(kv: KVStore, req: RangeRequest, cur_rev: int, slice_keys: int) -> RangeSteps:
    """A Range seen at ``cur_rev``, in steps of about ``slice_keys`` keys (0: one step).

    Yields between steps (the store may change in between: see ``mvcc.RangeCursor``)
    and returns the RangeResponse. A point read of the newest revision is one step.

    Raises:
        FutureRevisionError, CompactedError (also from a later step: the history at
        the read's revision was compacted, or the store replaced, under it).
    """
    kv.count_range()
    header = ResponseHeader(revision=cur_rev)
    if not req.range_end and req.revision == 0 and not req.count_only and _plain(req):
        # point read of the newest revision: one index lookup, one backend read
        latest = kv.get(req.key)
        if latest is None:
            return RangeResponse(header)
        if req.keys_only:
            latest = replace(latest, value=b"")
        return RangeResponse(header, (latest,), False, 1)
    limit = req.limit
    order = req.sort_order
    if order != SortOrder.NONE or not _plain(req):
        limit = 0  # sort/filter everything, truncate afterwards
    if limit > 0:
        limit += 1  # one more to learn whether there is more
    cursor = kv.range_cursor(
        req.key, index_end(req.range_end), req.revision, cur_rev, limit, req.count_only
    )
    while True:
        cursor.next_slice(slice_keys)
        if cursor.done:
            break
        yield
    kvs, count = cursor.kvs, cursor.count
    # the revision of each of kvs while they stay the records as read, in their order
    revs: list[Revision] | None = cursor.revs
    if not _plain(req):
        revs = None
        kept: list[KeyValue] = []
        for part in _parts(kvs, slice_keys):
            kept += [x for x in part if _passes_filters(req, x)]
            yield
        kvs = kept
    if req.sort_target != SortTarget.KEY and order == SortOrder.NONE:
        order = SortOrder.ASCEND
    if order == SortOrder.DESCEND:
        if req.sort_target == SortTarget.KEY:
            kvs.reverse()  # already in key order, and keys are unique
            if revs is not None:
                revs.reverse()
        else:
            kvs.sort(key=_SORT_KEYS[req.sort_target], reverse=True)
            revs = None
    elif order == SortOrder.ASCEND and req.sort_target != SortTarget.KEY:
        kvs.sort(key=_SORT_KEYS[req.sort_target])
        revs = None
    more = False
    if 0 < req.limit < len(kvs):
        kvs = kvs[: req.limit]
        if revs is not None:
            revs = revs[: req.limit]
        more = True
    if req.keys_only:
        revs = None
        bare: list[KeyValue] = []
        for part in _parts(kvs, slice_keys):
            bare += [
                KeyValue(x.key, x.create_revision, x.mod_revision, x.version, b"", x.lease)
                for x in part
            ]
            yield
        kvs = bare
    return RangeResponse(header, tuple(kvs), more, count, tuple(revs) if revs else ())


def _parts(kvs: list[KeyValue], size: int) -> Iterator[list[KeyValue]]:
    """``kvs`` in runs of ``size`` (0: one run)."""
    if size <= 0 or len(kvs) <= size:
        yield kvs
        return
    for i in range(0, len(kvs), size):
        yield kvs[i : i + size]


def _passes_filters(req: RangeRequest, kv: KeyValue) -> bool:
    if req.max_mod_revision and kv.mod_revision > req.max_mod_revision:
        return False
    if req.min_mod_revision and kv.mod_revision < req.min_mod_revision:
        return False
    if req.min_create_revision and kv.create_revision < req.min_create_revision:
        return False
    return not (req.max_create_revision and kv.create_revision > req.max_create_revision)


def _put(kv: KVStore, req: PutRequest) -> PutResponse:
    """A Put inside the store's running write transaction."""
    value, lease = req.value, req.lease
    prev = None
    if req.ignore_value or req.ignore_lease or req.prev_kv:
        prev = kv.get(req.key)
        if prev is None and (req.ignore_value or req.ignore_lease):
            raise KeyNotFoundError()
        if prev is not None:
            if req.ignore_value:
                value = prev.value
            if req.ignore_lease:
                lease = prev.lease
    rev = kv.write_put(req.key, value, lease)
    return PutResponse(ResponseHeader(revision=rev), prev if req.prev_kv else None)


def _delete_range(kv: KVStore, req: DeleteRangeRequest) -> DeleteRangeResponse:
    """A DeleteRange inside the store's running write transaction."""
    end = index_end(req.range_end)
    prev_kvs: tuple[KeyValue, ...] = ()
    if req.prev_kv:
        kvs, _ = kv.range_keys(req.key, end, 0, kv.txn_rev(), 0, False)
        prev_kvs = tuple(kvs)
    n = kv.write_delete_range(req.key, end)
    return DeleteRangeResponse(ResponseHeader(revision=kv.txn_rev()), n, prev_kvs)


def _compare_kv(c: Compare, kv: KeyValue) -> bool:
    t = c.target
    a: int | bytes
    b: int | bytes
    if t == CompareTarget.VALUE:
        a, b = kv.value, c.value
    elif t == CompareTarget.CREATE:
        a, b = kv.create_revision, c.create_revision
    elif t == CompareTarget.MOD:
        a, b = kv.mod_revision, c.mod_revision
    elif t == CompareTarget.VERSION:
        a, b = kv.version, c.version
    else:
        a, b = kv.lease, c.lease
    r = c.result
    if r == CompareResult.EQUAL:
        return a == b
    if r == CompareResult.NOT_EQUAL:
        return a != b
    if r == CompareResult.GREATER:
        return a > b  # type: ignore[operator]
    return a < b  # type: ignore[operator]


def _compare(kv: KVStore, c: Compare, cur_rev: int) -> bool:
    """One compare: true iff it holds for every key in its range.

    No key: a VALUE compare fails; others compare against zeros.
    """
    kvs, _ = kv.range_keys(c.key, index_end(c.range_end), 0, cur_rev, 0, False)
    if not kvs:
        return c.target != CompareTarget.VALUE and _compare_kv(c, _EMPTY_KV)
    return all(_compare_kv(c, x) for x in kvs)


def _compare_path(kv: KVStore, req: TxnRequest) -> list[bool]:
    """Evaluate the compares of ``req`` and of every nested txn on the chosen
    branches, all against the state before the txn (depth-first order)."""
    cur = kv.current_revision
    ok = all(_compare(kv, c, cur) for c in req.compare)
    path = [ok]
    for op in req.success if ok else req.failure:
        if op.request_txn is not None:
            path.extend(_compare_path(kv, op.request_txn))
    return path


def is_txn_readonly(req: TxnRequest) -> bool:
    """True when both branches hold only ranges (a nested txn counts as a write)."""
    return all(op.request_range is not None for op in (*req.success, *req.failure))


_OpCheck = Callable[[KVStore, RequestOp], None]


def _check_txn_branches(kv: KVStore, req: TxnRequest, path: list[bool], writes: bool) -> None:
    """Checks etcd makes on the chosen branches before changing anything.

    Raises:
        FutureRevisionError, CompactedError: a range at an unusable revision.
        LeaseNotFoundError, KeyNotFoundError: a put that cannot be applied.
    """
    # etcd checks every put on the path first, then every range: a txn with
    # both a bad put and a bad range fails with the put's error
    if writes:
        _check_branch(kv, req, iter(path), _check_put)
    _check_branch(kv, req, iter(path), _check_range)


def _check_branch(kv: KVStore, req: TxnRequest, path: Iterator[bool], check: _OpCheck) -> None:
    for op in req.success if next(path) else req.failure:
        if op.request_txn is not None:
            _check_branch(kv, op.request_txn, path, check)
        else:
            check(kv, op)


def _check_range(kv: KVStore, op: RequestOp) -> None:
    if op.request_range is None:
        return
    rev = op.request_range.revision
    if rev > kv.current_revision:
        raise FutureRevisionError()
    if rev != 0 and rev < kv.compact_revision:
        raise CompactedError()


def _check_put(kv: KVStore, op: RequestOp) -> None:
    p = op.request_put
    if p is None:
        return
    if (p.ignore_value or p.ignore_lease) and kv.get(p.key) is None:
        raise KeyNotFoundError()
    if p.lease and kv.lessor.lookup(p.lease) is None:
        raise _LeaseNotFound()


def _op(kv: KVStore, op: RequestOp, path: Iterator[bool], read_rev: int | None) -> ResponseOp:
    """One op of a txn branch; ``read_rev`` is set for read-only txns."""
    if op.request_range is not None:
        cur = kv.txn_rev() if read_rev is None else read_rev
        return ResponseOp(response_range=_range(kv, op.request_range, cur))
    if op.request_put is not None:
        return ResponseOp(response_put=_put(kv, op.request_put))
    if op.request_delete_range is not None:
        return ResponseOp(response_delete_range=_delete_range(kv, op.request_delete_range))
    if op.request_txn is not None:
        return ResponseOp(response_txn=_txn(kv, op.request_txn, path, read_rev, top=False))
    raise KeyNotFoundError()


def _txn(
    kv: KVStore, req: TxnRequest, path: Iterator[bool], read_rev: int | None, *, top: bool
) -> TxnResponse:
    """Apply the branch ``path`` chose; nested txn responses carry an empty header."""
    ok = next(path)
    branch = req.success if ok else req.failure
    resps = tuple(_op(kv, op, path, read_rev) for op in branch)
    header = ResponseHeader(revision=read_rev) if top and read_rev is not None else _NO_HEADER
    return TxnResponse(header, ok, resps)


def cost_put(req: PutRequest) -> int:
    """Quota cost of a put (etcd: the marshalled KeyValue plus an overhead)."""
    return cost_put_kv(req.key, req.value)


def cost_put_kv(key: bytes, value: bytes) -> int:
    """Quota cost of a put of ``key`` = ``value`` (see ``cost_put``)."""
    return len(key) + len(value) + 16 + _KV_OVERHEAD


def cost_txn(req: TxnRequest) -> int:
    """Quota cost of a txn: the costlier of its two branches."""

    def branch(branch_ops: tuple[RequestOp, ...]) -> int:
        total = 0
        for op in branch_ops:
            if op.request_put is not None:
                total += cost_put(op.request_put)
            elif op.request_txn is not None:
                total += cost_txn(op.request_txn)
        return total

    return max(branch(req.success), branch(req.failure))


# -- the requests, each in its own write transaction -------------------------------------


def range_(kv: KVStore, req: RangeRequest) -> RangeResponse:
    """A Range at ``req.revision`` (0: current), with etcd's sort/filter/limit rules.

    Raises:
        FutureRevisionError, CompactedError.
    """
    return _range(kv, req, kv.current_revision)


def put(kv: KVStore, req: PutRequest) -> PutResponse:
    """Apply a Put.

    Raises:
        NoSpaceError, LeaseNotFoundError, KeyNotFoundError (ignore_* on a missing key).
    """
    over = kv.check_space(cost_put(req))
    if req.lease and kv.lessor.lookup(req.lease) is None:
        raise _LeaseNotFound()
    if req.ignore_value or req.ignore_lease or req.prev_kv:
        if (req.ignore_value or req.ignore_lease) and kv.get(req.key) is None:
            raise KeyNotFoundError()
        kv.begin_write()
        resp = _put(kv, req)
        kv.end_write()
    else:
        # the common put: the store's one-put write transaction, in one call
        resp = PutResponse(ResponseHeader(0, 0, kv.put(req.key, req.value, req.lease)))
    if over:
        kv.exceed_quota()
    return resp


def put_plain(kv: KVStore, key: bytes, value: bytes) -> int:
    """Apply a Put of ``key`` without lease, prev_kv or ignore_* (``put`` of that
    request, without building the response); returns its revision.

    Raises:
        NoSpaceError.
    """
    over = kv.check_space(cost_put_kv(key, value))
    rev = kv.put(key, value)
    if over:
        kv.exceed_quota()
    return rev


def delete_range(kv: KVStore, req: DeleteRangeRequest) -> DeleteRangeResponse:
    """Apply a DeleteRange."""
    kv.begin_write()
    resp = _delete_range(kv, req)
    kv.end_write()
    return resp


def txn(kv: KVStore, req: TxnRequest) -> TxnResponse:
    """Apply a Txn: compares first, then one branch, all in one revision.

    Raises:
        NoSpaceError, LeaseNotFoundError, KeyNotFoundError,
        FutureRevisionError, CompactedError (nothing is changed on error).
    """
    path = _compare_path(kv, req)
    writes = not is_txn_readonly(req)
    # Only what costs space meets the quota: a txn that only deletes is applied even
    # under NOSPACE, as etcd's quota and capped applier cost it at 0.
    cost = cost_txn(req) if writes else 0
    over = cost > 0 and kv.check_space(cost)
    _check_txn_branches(kv, req, path, writes)
    if not writes:
        return _txn(kv, req, iter(path), kv.current_revision, top=True)
    kv.begin_write()
    resp = _txn(kv, req, iter(path), None, top=True)
    rev = kv.end_write()
    if over:
        kv.exceed_quota()
    return TxnResponse(ResponseHeader(revision=rev), resp.succeeded, resp.responses)


def compact(kv: KVStore, rev: int) -> CompactionResponse:
    """Apply a Compaction.

    Raises:
        CompactedError: ``rev`` <= the compaction revision.
        FutureRevisionError: ``rev`` > the current revision.
    """
    return CompactionResponse(ResponseHeader(revision=kv.compact(rev)))


def lease_grant(kv: KVStore, lease_id: int, ttl: int) -> int:
    """Apply a LeaseGrant; returns the granted TTL.

    Raises:
        NoSpaceError, LeaseNotFoundError (ID 0), LeaseExistsError, LeaseTTLTooLargeError.
    """
    kv.check_space(LEASE_GRANT_COST)
    return kv.lessor.grant(lease_id, ttl).ttl
