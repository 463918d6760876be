"""Validation, error texts, quota/NOSPACE, defragment, hashes, txn details."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyetcd.mvcc import (
    CompactedError,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    DuplicateKeyError,
    EmptyKeyError,
    FutureRevisionError,
    KeyNotFoundError,
    KVStore,
    LeaseProvidedError,
    NoSpaceError,
    PutRequest,
    RangeRequest,
    RequestOp,
    TooManyOpsError,
    TxnRequest,
    ValueProvidedError,
)
from pyetcd.server.etcdserver import txn as kvtxn
from pyetcd.server.etcdserver.validate import check_put_request, check_txn_request


def put(k: bytes) -> RequestOp:
    return RequestOp(request_put=PutRequest(k, b"v"))


def delete(k: bytes, end: bytes = b"") -> RequestOp:
    return RequestOp(request_delete_range=DeleteRangeRequest(k, end))


def test_error_texts() -> None:
    assert str(CompactedError()) == "etcdserver: mvcc: required revision has been compacted"
    assert str(FutureRevisionError()) == "etcdserver: mvcc: required revision is a future revision"
    assert str(NoSpaceError()) == "etcdserver: mvcc: database space exceeded"
    assert str(DuplicateKeyError()) == "etcdserver: duplicate key given in txn request"
    assert str(TooManyOpsError()) == "etcdserver: too many operations in txn request"


def test_request_checks() -> None:
    with pytest.raises(EmptyKeyError):
        check_put_request(PutRequest(b""))
    with pytest.raises(ValueProvidedError):
        check_put_request(PutRequest(b"k", b"v", ignore_value=True))
    with pytest.raises(LeaseProvidedError):
        check_put_request(PutRequest(b"k", lease=5, ignore_lease=True))
    with pytest.raises(TooManyOpsError):
        check_txn_request(TxnRequest(success=tuple(put(b"%d" % i) for i in range(3))), 2)
    with pytest.raises(DuplicateKeyError):
        check_txn_request(TxnRequest(success=(put(b"a"), put(b"a"))))
    with pytest.raises(DuplicateKeyError):
        check_txn_request(TxnRequest(success=(delete(b"a", b"c"), put(b"b"))))
    nested = TxnRequest(success=(put(b"a"),), failure=(put(b"a"),))
    check_txn_request(TxnRequest(success=(RequestOp(request_txn=nested),)))
    with pytest.raises(DuplicateKeyError):
        check_txn_request(TxnRequest(success=(put(b"a"), RequestOp(request_txn=nested))))
    with pytest.raises(KeyNotFoundError):
        check_txn_request(TxnRequest(success=(RequestOp(),)))
    check_txn_request(TxnRequest(success=(delete(b"a"), delete(b"a", b"b"))))


def test_quota_nospace_and_defragment(tmp_path: Path) -> None:
    kv = KVStore(str(tmp_path / "db"), quota_bytes=200_000, batch_limit=10)
    with pytest.raises(NoSpaceError):
        for i in range(1000):
            kvtxn.put(kv, PutRequest(b"k%d" % i, b"x" * 1000))
    assert kv.nospace
    with pytest.raises(NoSpaceError):
        kvtxn.put(kv, PutRequest(b"other", b"v"))
    kvtxn.delete_range(kv, DeleteRangeRequest(b"k", b"l"))  # deletes are still allowed
    kv.compact(kv.current_revision)
    kv.commit()
    before = kv.db_size
    assert kv.db_size_in_use < before
    kv.defragment()
    assert kv.db_size < before
    kv.nospace = False  # the server disarms the alarm
    kvtxn.put(kv, PutRequest(b"other", b"v"))
    kv.close()


def test_hashes_equal_for_equal_stores(tmp_path: Path) -> None:
    stores = [KVStore(str(tmp_path / f"db{i}"), batch_limit=3 + i) for i in range(2)]
    for kv in stores:
        for i in range(20):
            kvtxn.put(kv, PutRequest(b"k%d" % (i % 7), b"v%d" % i))
        kvtxn.delete_range(kv, DeleteRangeRequest(b"k3"))
        kv.compact(10)
    assert stores[0].hash() == stores[1].hash()
    assert stores[0].hash_kv(15) == stores[1].hash_kv(15)
    assert stores[0].hash_kv(0) != stores[0].hash_kv(15)
    with pytest.raises(CompactedError):
        stores[0].hash_kv(9)
    kvtxn.put(stores[1], PutRequest(b"k1", b"different"))
    assert stores[0].hash() != stores[1].hash()
    for kv in stores:
        kv.close()


def test_txn_revisions_and_failed_checks_change_nothing(tmp_path: Path) -> None:
    kv = KVStore(str(tmp_path / "db"))
    kvtxn.put(kv, PutRequest(b"a", b"1"))
    cmp = Compare(b"a", CompareResult.EQUAL, CompareTarget.VALUE, value=b"1")
    req = TxnRequest(
        compare=(cmp,),
        success=(
            RequestOp(request_range=RangeRequest(b"a")),
            put(b"b"),
            RequestOp(request_range=RangeRequest(b"b")),
        ),
    )
    resp = kvtxn.txn(kv, req)
    assert resp.succeeded and resp.header.revision == 3
    assert [r.response_range.header.revision for r in resp.responses if r.response_range] == [2, 3]
    bad = TxnRequest(success=(put(b"c"), RequestOp(request_range=RangeRequest(b"a", revision=9))))
    with pytest.raises(FutureRevisionError):
        kvtxn.txn(kv, bad)
    with pytest.raises(KeyNotFoundError):
        kvtxn.txn(
            kv, TxnRequest(success=(RequestOp(request_put=PutRequest(b"z", ignore_value=True)),))
        )
    assert kv.current_revision == 3
    ro = kvtxn.txn(kv, TxnRequest(success=(RequestOp(request_range=RangeRequest(b"a")),)))
    assert ro.header.revision == 3
    kv.close()


def test_reopen_rebuilds_index_of_long_keys_leases_and_history(tmp_path: Path) -> None:
    # The restore reads only each record's head (header and key): keys longer than
    # the head are read again whole. Leases, history and deletes survive a reopen.
    long_key = b"k" * 300
    path = str(tmp_path / "db")
    kv = KVStore(path)
    lease = kv.lessor.grant(7, 60)
    for key, value, lease_id in (
        (b"a", b"1", 0), (long_key, b"2", lease.id), (b"a", b"3", lease.id),
        (long_key + b"x", b"4", 0),
    ):
        kv.begin_write()
        kv.write_put(key, value, lease_id)
        kv.end_write()
    kv.begin_write()
    kv.write_delete_range(long_key + b"x", None)
    kv.end_write()
    before = kv.range_keys(b"\0", b"", 0, kv.current_revision, 0, False)
    old = kv.range_keys(long_key, None, 4, kv.current_revision, 0, False)
    kv.close()
    kv = KVStore(path)
    assert kv.range_keys(b"\0", b"", 0, kv.current_revision, 0, False) == before
    assert kv.range_keys(long_key, None, 4, kv.current_revision, 0, False) == old
    assert [k.value for k in before[0]] == [b"3", b"2"]
    assert sorted(kv.lessor.lookup(7).keys) == [b"a", long_key]  # type: ignore[union-attr]
    assert kv.lease_revoke(7) == 7
    assert kv.range_keys(b"\0", b"", 0, kv.current_revision, 0, False) == ([], 0)
    kv.close()
