"""Lessor: grants, expiry on the primary only, promote/demote, renew, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyetcd.mvcc import (
    DeleteRangeRequest,
    IDGenerator,
    KVStore,
    LeaseExistsError,
    LeaseExpiredError,
    LeaseNotFoundError,
    LeaseNotPrimaryError,
    LeaseTTLTooLargeError,
    Lessor,
    PutRequest,
    RangeRequest,
)
from pyetcd.server.etcdserver import txn as kvtxn


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_grant_errors_and_min_ttl() -> None:
    le = Lessor(None, clock=Clock(), min_lease_ttl=2)
    assert le.grant(5, 1).ttl == 2
    with pytest.raises(LeaseExistsError):
        le.grant(5, 10)
    with pytest.raises(LeaseNotFoundError):
        le.grant(0, 10)
    with pytest.raises(LeaseTTLTooLargeError):
        le.grant(6, 9_000_000_001)
    assert str(LeaseExistsError()) == "etcdserver: lease already exists"


def test_only_primary_expires_and_promote_extends() -> None:
    clock = Clock()
    le = Lessor(None, clock=clock)
    le.grant(1, 5)
    clock.now += 100
    assert le.expired_leases() == []  # a follower never expires leases
    le.promote(extend=3.0)
    clock.now += 7.9
    assert le.expired_leases() == []
    clock.now += 0.2
    assert le.expired_leases() == [1]
    assert le.expired_leases() == []  # reported again only after the retry interval
    clock.now += 3.1
    assert le.expired_leases() == [1]
    le.demote()
    clock.now += 100
    assert le.expired_leases() == []


def test_renew_and_time_to_live() -> None:
    clock = Clock()
    le = Lessor(None, clock=clock)
    le.grant(1, 10)
    with pytest.raises(LeaseNotPrimaryError):
        le.renew(1)
    le.promote(0.0)
    le.attach(1, b"k2")
    le.attach(1, b"k1")
    clock.now += 4.5
    assert le.time_to_live(1) == (5, 10, [b"k1", b"k2"])
    assert le.renew(1) == 10
    assert le.time_to_live(1) == (10, 10, [b"k1", b"k2"])
    assert le.time_to_live(99) is None
    with pytest.raises(LeaseNotFoundError):
        le.renew(99)
    clock.now += 11
    with pytest.raises(LeaseExpiredError):
        le.renew(1)


def test_checkpoints() -> None:
    clock = Clock()
    le = Lessor(None, clock=clock, checkpoint_interval=60.0)
    le.promote(0.0)
    le.grant(1, 300)
    le.grant(2, 30)  # shorter than the interval: never checkpointed
    clock.now += 61
    assert le.due_checkpoints() == [(1, 239)]
    le.checkpoint(1, 239)
    le.demote()
    le.promote(0.0)
    assert le.time_to_live(1) == (239, 300, [])
    le.renew(1)  # clears the checkpointed remainder through Raft
    assert le.due_checkpoints() == [(1, 0)]


@pytest.mark.parametrize("persist", [False, True])
def test_checkpoint_persisted_only_with_persist(tmp_path: Path, persist: bool) -> None:
    """etcd 3.5: a checkpoint reaches the lease's backend record only with
    --experimental-enable-lease-checkpoint-persist; a reopened store then resumes from it."""
    path = str(tmp_path / "db")
    kv = KVStore(path, lease_checkpoint_interval=60.0, lease_checkpoint_persist=persist)
    kvtxn.lease_grant(kv, 7, 300)
    kv.lease_checkpoint(7, 120)
    kv.commit()
    assert kv.backend.leases() == [(7, 300, 120 if persist else 0)]
    kv.close()
    kv = KVStore(path, lease_checkpoint_interval=60.0, lease_checkpoint_persist=persist)
    kv.lessor.promote(0.0)
    remaining, granted, _ = kv.lessor.time_to_live(7) or (0, 0, [])
    assert granted == 300 and remaining == (119 if persist else 299)
    kv.close()


def test_renewal_clears_no_checkpoint_when_checkpoints_are_off() -> None:
    clock = Clock()
    le = Lessor(None, clock=clock)
    le.grant(1, 300)
    le.checkpoint(1, 100)  # applied from a leader that had them on
    le.promote(0.0)
    le.renew(1)
    assert le.due_checkpoints() == []


def test_id_generator_scheme() -> None:
    gen = IDGenerator(member_id=0x4F6E8CDFFEBD6727, now_ms=1_700_000_000_123)
    first = gen.next()
    assert first >> 48 == 0x6727
    assert (first & ((1 << 48) - 1)) == (((1_700_000_000_123 & ((1 << 40) - 1)) << 8) + 1)
    assert gen.next() == first + 1
    assert IDGenerator(0xFFFF, 0).next() > 0


def test_revoke_deletes_keys_in_one_revision_and_survives_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    kv = KVStore(path)
    kvtxn.lease_grant(kv, 7, 60)
    kvtxn.put(kv, PutRequest(b"a", b"1", lease=7))
    kvtxn.put(kv, PutRequest(b"b", b"2", lease=7))
    kvtxn.put(kv, PutRequest(b"c", b"3"))
    kv.close()
    kv = KVStore(path)
    lease = kv.lessor.lookup(7)
    assert lease is not None and lease.keys == {b"a", b"b"}
    rev = kv.lease_revoke(7)
    assert rev == 5
    assert [x.key for x in kvtxn.range_(kv, RangeRequest(b"\x00", b"\x00")).kvs] == [b"c"]
    with pytest.raises(LeaseNotFoundError):
        kv.lease_revoke(7)
    with pytest.raises(LeaseNotFoundError):
        kvtxn.put(kv, PutRequest(b"d", lease=7))
    kv.close()
    kv = KVStore(path)
    assert kv.lessor.lookup(7) is None and kv.current_revision == 5
    kv.close()


def test_reopen_attaches_only_the_newest_put_of_each_key(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    kv = KVStore(path)
    kvtxn.lease_grant(kv, 7, 60)
    kvtxn.lease_grant(kv, 8, 60)
    kvtxn.put(kv, PutRequest(b"moved", b"1", lease=7))
    kvtxn.put(kv, PutRequest(b"moved", b"2", lease=8))
    kvtxn.put(kv, PutRequest(b"dropped", b"1", lease=7))
    kvtxn.put(kv, PutRequest(b"dropped", b"2"))
    kvtxn.put(kv, PutRequest(b"deleted", b"1", lease=8))
    kvtxn.delete_range(kv, DeleteRangeRequest(b"deleted"))
    kvtxn.put(kv, PutRequest(b"kept", b"1", lease=7))
    kv.close()
    kv = KVStore(path)
    leases = {i: kv.lessor.lookup(i) for i in (7, 8)}
    assert {i: lease.keys for i, lease in leases.items() if lease} == {
        7: {b"kept"},
        8: {b"moved"},
    }
    got = kvtxn.range_(kv, RangeRequest(b"\x00", b"\x00")).kvs
    assert [(x.key, x.value, x.lease, x.version) for x in got] == [
        (b"dropped", b"2", 0, 2),
        (b"kept", b"1", 7, 1),
        (b"moved", b"2", 8, 2),
    ]
    kv.close()
