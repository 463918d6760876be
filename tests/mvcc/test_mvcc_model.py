"""Model-based test: the store and a brute-force model must answer every request alike."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from mvcc_model import Model

from pyetcd.mvcc import (
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    DuplicateKeyError,
    KVStore,
    MvccError,
    PutRequest,
    RangeRequest,
    RequestOp,
    SortOrder,
    SortTarget,
    TxnRequest,
)
from pyetcd.server.etcdserver import txn as kvtxn
from pyetcd.server.etcdserver.validate import check_txn_request

KEYS = [b"a", b"b", b"ba", b"c", b"d"]
keys = st.sampled_from(KEYS)
range_ends = st.sampled_from([b"", b"", b"\x00", b"b", b"c", b"e", b"a"])
values = st.sampled_from([b"", b"x", b"y", b"zz"])
lease_ids = st.sampled_from([0, 0, 7, 8])

puts = st.builds(
    PutRequest,
    key=keys,
    value=values,
    lease=lease_ids,
    prev_kv=st.booleans(),
)
ignore_puts = st.builds(
    PutRequest,
    key=keys,
    prev_kv=st.booleans(),
    ignore_value=st.booleans(),
    ignore_lease=st.booleans(),
)
deletes = st.builds(DeleteRangeRequest, key=keys, range_end=range_ends, prev_kv=st.booleans())
ranges = st.builds(
    RangeRequest,
    key=keys,
    range_end=range_ends,
    limit=st.integers(0, 3),
    # 0: current; 1..7: that many revisions back (+1); 8: one in the future
    revision=st.sampled_from([0, 0, 0, 1, 2, 3, 4, 5, 7, 8]),
    sort_order=st.sampled_from(SortOrder),
    sort_target=st.sampled_from(SortTarget),
    keys_only=st.booleans(),
    count_only=st.booleans(),
    min_mod_revision=st.sampled_from([0, 0, 3]),
    max_mod_revision=st.sampled_from([0, 0, 6]),
    min_create_revision=st.sampled_from([0, 0, 2]),
    max_create_revision=st.sampled_from([0, 0, 5]),
)
compares = st.builds(
    Compare,
    key=keys,
    result=st.sampled_from(CompareResult),
    target=st.sampled_from(CompareTarget),
    version=st.integers(0, 3),
    create_revision=st.integers(0, 6),
    mod_revision=st.integers(0, 8),
    value=values,
    lease=lease_ids,
    range_end=st.sampled_from([b"", b"", b"\x00", b"c"]),
)
simple_ops = st.one_of(
    puts.map(lambda r: RequestOp(request_put=r)),
    deletes.map(lambda r: RequestOp(request_delete_range=r)),
    ranges.map(lambda r: RequestOp(request_range=r)),
)
inner_txns = st.builds(
    TxnRequest,
    compare=st.lists(compares, max_size=2).map(tuple),
    success=st.lists(simple_ops, max_size=2).map(tuple),
    failure=st.lists(simple_ops, max_size=2).map(tuple),
)
ops = st.one_of(simple_ops, simple_ops, inner_txns.map(lambda t: RequestOp(request_txn=t)))
txns = st.builds(
    TxnRequest,
    compare=st.lists(compares, max_size=2).map(tuple),
    success=st.lists(ops, max_size=3).map(tuple),
    failure=st.lists(ops, max_size=3).map(tuple),
)


def outcome(f: Callable[[], Any]) -> Any:
    try:
        return f()
    except MvccError as e:
        return type(e)


class StoreVsModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="mvcc-model-")
        self.path = f"{self.dir}/member/snap/db"
        # a tiny batch limit so commits happen in the middle of the run
        self.store = KVStore(self.path, batch_limit=7)
        self.model = Model()

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def same(self, a: Callable[[], Any], b: Callable[[], Any]) -> None:
        got, want = outcome(a), outcome(b)
        assert got == want, f"store {got!r} != model {want!r}"

    @rule(req=puts)
    def put(self, req: PutRequest) -> None:
        self.same(lambda: kvtxn.put(self.store, req), lambda: self.model.put(req))

    @rule(req=ignore_puts)
    def put_ignore(self, req: PutRequest) -> None:
        self.same(lambda: kvtxn.put(self.store, req), lambda: self.model.put(req))

    @rule(req=deletes)
    def delete(self, req: DeleteRangeRequest) -> None:
        self.same(lambda: kvtxn.delete_range(self.store, req), lambda: self.model.delete_range(req))

    def at_revision(self, req: RangeRequest) -> RangeRequest:
        back = req.revision
        if back == 0:
            return req
        rev = self.model.rev + 1 if back == 8 else max(1, self.model.rev - back + 1)
        return replace(req, revision=rev)

    @rule(req=ranges)
    def range(self, req: RangeRequest) -> None:
        req = self.at_revision(req)
        self.same(lambda: kvtxn.range_(self.store, req), lambda: self.model.range(req))

    @rule(req=txns)
    def txn(self, req: TxnRequest) -> None:
        try:
            check_txn_request(req)
        except DuplicateKeyError:
            return
        self.same(lambda: kvtxn.txn(self.store, req), lambda: self.model.txn(req))

    @rule(back=st.integers(0, 6), gate=st.integers(0, 3))
    def compact(self, back: int, gate: int) -> None:
        if gate:
            return  # compactions are rarer than the other requests
        rev = self.model.rev - back
        self.same(
            lambda: kvtxn.compact(self.store, rev).header.revision,
            lambda: (self.model.compact(rev), self.model.rev)[1],
        )

    @rule(lease_id=lease_ids, ttl=st.integers(1, 5))
    def lease_grant(self, lease_id: int, ttl: int) -> None:
        self.same(
            lambda: kvtxn.lease_grant(self.store, lease_id, ttl),
            lambda: self.model.lease_grant(lease_id, ttl),
        )

    @rule(lease_id=lease_ids, gate=st.integers(0, 1))
    def lease_revoke(self, lease_id: int, gate: int) -> None:
        if gate:
            return
        self.same(
            lambda: self.store.lease_revoke(lease_id), lambda: self.model.lease_revoke(lease_id)
        )

    @precondition(lambda self: self.model.rev > 1)
    @rule()
    def reopen(self) -> None:
        before = self.store.hash_kv(0)
        self.store.close()
        self.store = KVStore(self.path, batch_limit=7)
        assert self.store.hash_kv(0) == before

    @invariant()
    def revisions_agree(self) -> None:
        assert self.store.current_revision == self.model.rev
        assert self.store.compact_revision == self.model.compact_rev
        everything = RangeRequest(b"\x00", b"\x00")
        self.same(
            lambda: kvtxn.range_(self.store, everything), lambda: self.model.range(everything)
        )
        leases = {lease.id: sorted(lease.keys) for lease in self.store.lessor.leases()}
        want = {
            i: sorted(k for k, kv in self.model.state().items() if kv.lease == i)
            for i in self.model.leases
        }
        assert leases == want


StoreVsModel.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=40,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestStoreVsModel = StoreVsModel.TestCase
