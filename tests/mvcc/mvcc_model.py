"""A deliberately simple reference model of the MVCC store.

It keeps the whole key space after every revision (``history[rev]``) and
answers every request by brute force, so it is easy to believe correct.
"""

from __future__ import annotations

from dataclasses import replace

from pyetcd.mvcc import (
    CompactedError,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    DeleteRangeResponse,
    FutureRevisionError,
    KeyNotFoundError,
    KeyValue,
    LeaseExistsError,
    LeaseNotFoundError,
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

State = dict[bytes, KeyValue]


def in_range(k: bytes, key: bytes, range_end: bytes) -> bool:
    if not range_end:
        return k == key
    if range_end == b"\x00":
        return k >= key
    return key <= k < range_end


class Model:
    def __init__(self) -> None:
        self.history: list[State] = [{}, {}]
        self.compact_rev = -1
        self.leases: dict[int, int] = {}
        # the write in progress
        self.work: State = {}
        self.changed = 0

    @property
    def rev(self) -> int:
        return len(self.history) - 1

    def state(self) -> State:
        return self.history[-1]

    # -- ranges ------------------------------------------------------------

    def range_at(self, req: RangeRequest, state: State | None, cur: int) -> RangeResponse:
        rev = req.revision
        if rev > cur:
            raise FutureRevisionError()
        if rev <= 0:
            rev = cur
        if rev < self.compact_rev:
            raise CompactedError()
        if state is None or req.revision > 0:
            state = self.history[rev]
        kvs = [state[k] for k in sorted(state) if in_range(k, req.key, req.range_end)]
        count = len(kvs)
        if req.count_only:
            kvs = []
        kvs = [
            kv
            for kv in kvs
            if not (req.max_mod_revision and kv.mod_revision > req.max_mod_revision)
            and not (req.min_mod_revision and kv.mod_revision < req.min_mod_revision)
            and not (req.min_create_revision and kv.create_revision < req.min_create_revision)
            and not (req.max_create_revision and kv.create_revision > req.max_create_revision)
        ]
        filtered = (
            req.min_mod_revision
            or req.max_mod_revision
            or req.min_create_revision
            or req.max_create_revision
        )
        if req.sort_order == SortOrder.NONE and req.limit > 0 and not filtered:
            # etcd's quirk: with sort_order NONE and a non-KEY target it sorts
            # only the first limit+1 keys (in key order) it fetched
            kvs = kvs[: req.limit + 1]
        order = req.sort_order
        if req.sort_target != SortTarget.KEY and order == SortOrder.NONE:
            order = SortOrder.ASCEND
        attr = {
            SortTarget.KEY: "key",
            SortTarget.VERSION: "version",
            SortTarget.CREATE: "create_revision",
            SortTarget.MOD: "mod_revision",
            SortTarget.VALUE: "value",
        }[req.sort_target]
        if order != SortOrder.NONE:
            kvs.sort(key=lambda kv: getattr(kv, attr), reverse=order == SortOrder.DESCEND)
        more = False
        if req.limit > 0 and len(kvs) > req.limit:
            kvs = kvs[: req.limit]
            more = True
        if req.keys_only:
            kvs = [replace(kv, value=b"") for kv in kvs]
        return RangeResponse(ResponseHeader(revision=cur), tuple(kvs), more, count)

    def range(self, req: RangeRequest) -> RangeResponse:
        return self.range_at(req, self.state(), self.rev)

    # -- writes ------------------------------------------------------------

    def _begin(self) -> None:
        self.work = dict(self.state())
        self.changed = 0

    def _end(self) -> int:
        if self.changed:
            self.history.append(self.work)
        return self.rev

    def _wrev(self) -> int:
        return self.rev + 1 if self.changed else self.rev

    def _put(self, req: PutRequest) -> PutResponse:
        prev = self.work.get(req.key)
        if (req.ignore_value or req.ignore_lease) and prev is None:
            raise KeyNotFoundError()
        value = prev.value if req.ignore_value and prev else req.value
        lease = prev.lease if req.ignore_lease and prev else req.lease
        rev = self.rev + 1
        if prev is None:
            kv = KeyValue(req.key, rev, rev, 1, value, lease)
        else:
            kv = KeyValue(req.key, prev.create_revision, rev, prev.version + 1, value, lease)
        self.work[req.key] = kv
        self.changed += 1
        return PutResponse(ResponseHeader(revision=rev), prev if req.prev_kv else None)

    def _delete(self, req: DeleteRangeRequest) -> DeleteRangeResponse:
        doomed = sorted(k for k in self.work if in_range(k, req.key, req.range_end))
        prev = tuple(self.work[k] for k in doomed) if req.prev_kv else ()
        for k in doomed:
            del self.work[k]
        self.changed += len(doomed)
        return DeleteRangeResponse(ResponseHeader(revision=self._wrev()), len(doomed), prev)

    def put(self, req: PutRequest) -> PutResponse:
        if req.lease and req.lease not in self.leases:
            raise LeaseNotFoundError()
        if (req.ignore_value or req.ignore_lease) and req.key not in self.state():
            raise KeyNotFoundError()
        self._begin()
        resp = self._put(req)
        self._end()
        return resp

    def delete_range(self, req: DeleteRangeRequest) -> DeleteRangeResponse:
        self._begin()
        resp = self._delete(req)
        self._end()
        return resp

    # -- txn ---------------------------------------------------------------

    def _compare(self, c: Compare) -> bool:
        kvs = [kv for k, kv in sorted(self.state().items()) if in_range(k, c.key, c.range_end)]
        if not kvs:
            if c.target == CompareTarget.VALUE:
                return False
            kvs = [KeyValue(b"")]
        for kv in kvs:
            a, b = {
                CompareTarget.VERSION: (kv.version, c.version),
                CompareTarget.CREATE: (kv.create_revision, c.create_revision),
                CompareTarget.MOD: (kv.mod_revision, c.mod_revision),
                CompareTarget.VALUE: (kv.value, c.value),
                CompareTarget.LEASE: (kv.lease, c.lease),
            }[c.target]
            ok = {
                CompareResult.EQUAL: a == b,
                CompareResult.NOT_EQUAL: a != b,
                CompareResult.GREATER: a > b,  # type: ignore[operator]
                CompareResult.LESS: a < b,  # type: ignore[operator]
            }[c.result]
            if not ok:
                return False
        return True

    def _branch(self, req: TxnRequest) -> tuple[bool, tuple[RequestOp, ...]]:
        ok = all(self._compare(c) for c in req.compare)
        return ok, req.success if ok else req.failure

    def _precheck(self, req: TxnRequest, writes: bool) -> None:
        # etcd (and real etcd 3.5.1, see tests/conformance) checks every put on
        # the chosen path before any range
        if writes:
            self._precheck_ops(req, puts=True)
        self._precheck_ops(req, puts=False)

    def _precheck_ops(self, req: TxnRequest, puts: bool) -> None:
        _, ops = self._branch(req)
        for op in ops:
            if op.request_txn is not None:
                self._precheck_ops(op.request_txn, puts)
            elif op.request_range is not None and not puts:
                r = op.request_range.revision
                if r > self.rev:
                    raise FutureRevisionError()
                if r != 0 and r < self.compact_rev:
                    raise CompactedError()
            elif op.request_put is not None and puts:
                p = op.request_put
                if (p.ignore_value or p.ignore_lease) and p.key not in self.state():
                    raise KeyNotFoundError()
                if p.lease and p.lease not in self.leases:
                    raise LeaseNotFoundError()

    def _apply(self, req: TxnRequest, decided: list[bool], read_only: bool) -> TxnResponse:
        ok = decided.pop(0)
        out = []
        for op in req.success if ok else req.failure:
            if op.request_range is not None:
                cur = self.rev if read_only else self._wrev()
                state = self.state() if read_only else self.work
                out.append(ResponseOp(response_range=self.range_at(op.request_range, state, cur)))
            elif op.request_put is not None:
                out.append(ResponseOp(response_put=self._put(op.request_put)))
            elif op.request_delete_range is not None:
                out.append(ResponseOp(response_delete_range=self._delete(op.request_delete_range)))
            else:
                assert op.request_txn is not None
                out.append(ResponseOp(response_txn=self._apply(op.request_txn, decided, False)))
        return TxnResponse(ResponseHeader(), ok, tuple(out))

    def _decide(self, req: TxnRequest) -> list[bool]:
        ok, ops = self._branch(req)
        path = [ok]
        for op in ops:
            if op.request_txn is not None:
                path += self._decide(op.request_txn)
        return path

    def txn(self, req: TxnRequest) -> TxnResponse:
        read_only = all(o.request_range is not None for o in (*req.success, *req.failure))
        decided = self._decide(req)
        self._precheck(req, not read_only)
        self._begin()
        resp = self._apply(req, decided, read_only)
        rev = self._end()
        return replace(resp, header=ResponseHeader(revision=rev))

    # -- compaction and leases ---------------------------------------------

    def compact(self, rev: int) -> None:
        if rev <= self.compact_rev:
            raise CompactedError()
        if rev > self.rev:
            raise FutureRevisionError()
        self.compact_rev = rev

    def lease_grant(self, lease_id: int, ttl: int) -> int:
        if lease_id == 0:
            raise LeaseNotFoundError()
        if lease_id in self.leases:
            raise LeaseExistsError()
        self.leases[lease_id] = max(ttl, 2)
        return self.leases[lease_id]

    def lease_revoke(self, lease_id: int) -> int:
        if lease_id not in self.leases:
            raise LeaseNotFoundError()
        self._begin()
        for k in sorted(k for k, kv in self.state().items() if kv.lease == lease_id):
            self._delete(DeleteRangeRequest(k))
        del self.leases[lease_id]
        return self._end()
