"""etcd's HashKV building blocks: CRC-32C and KeyValue marshalling as Go does it."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyetcd.mvcc import CompactedError, KVStore
from pyetcd.mvcc.hash import HashStorage, KeyValueHash, crc32c, crc32c_python, marshal_kv
from pyetcd.mvcc.types import KeyValue
from pyetcd.pb import kv_pb2


def test_crc32c_check_value() -> None:
    # The standard check value of CRC-32C (Castagnoli).
    assert crc32c(b"123456789") == 0xE3069283


def test_crc32c_continues_like_one_pass() -> None:
    assert crc32c(b"world", crc32c(b"hello ")) == crc32c(b"hello world")


@settings(max_examples=200, derandomize=True)
@given(st.binary(max_size=300), st.integers(min_value=0, max_value=2**32 - 1))
def test_c_and_python_crc32c_agree(data: bytes, crc: int) -> None:
    assert crc32c(data, crc) == crc32c_python(data, crc)
    assert crc32c_python(b"123456789") == 0xE3069283


i64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@settings(max_examples=300, derandomize=True)
@given(st.binary(max_size=40), i64, i64, i64, st.binary(max_size=40), i64)
def test_marshal_kv_is_protobufs(
    key: bytes, create: int, mod: int, version: int, value: bytes, lease: int
) -> None:
    kv = KeyValue(key, create, mod, version, value, lease)
    want = kv_pb2.KeyValue(
        key=key,
        create_revision=create,
        mod_revision=mod,
        version=version,
        value=value,
        lease=lease,
    ).SerializeToString()
    assert marshal_kv(kv) == want


def test_tombstone_holds_only_the_key() -> None:
    kv = KeyValue(b"k", mod_revision=7)
    assert marshal_kv(kv, tombstone=True) == kv_pb2.KeyValue(key=b"k").SerializeToString()


def _store_with_history(path: str, compaction_hashes: bool) -> KVStore:
    store = KVStore(path, compaction_hashes=compaction_hashes, compaction_batch_limit=3)
    rng = random.Random(19)
    print("seed 19")
    for i in range(60):
        store.begin_write()
        key = b"k%d" % rng.randrange(8)
        if rng.random() < 0.2:
            store.write_delete_range(key, None)
        else:
            store.write_put(key, b"v%d" % i, 0)
        store.end_write()
    return store


def test_compaction_hash_is_hashkv_at_its_revision_before_it(tmp_path: Path) -> None:
    """etcd's kvHasher: the hash a compaction takes is HashKV(rev) just before it."""
    store = _store_with_history(str(tmp_path / "db"), compaction_hashes=True)
    want = []
    for rev in (20, 35, 50):
        h, _, crev = store.hash_kv(rev)
        want.append(KeyValueHash(h, crev, rev))
        store.compact(rev)
    assert store.hashes.hashes() == want
    # HashKV at a compacted revision answers the kept hash instead of ErrCompacted
    current = store.current_revision
    assert store.hash_kv(35) == (want[1].hash, current, want[1].compact_revision)
    with pytest.raises(CompactedError):
        store.hash_kv(30)
    store.close()


def test_no_compaction_hashes_without_the_check(tmp_path: Path) -> None:
    store = _store_with_history(str(tmp_path / "db"), compaction_hashes=False)
    store.compact(20)
    assert store.hashes.hashes() == []
    with pytest.raises(CompactedError):
        store.hash_kv(20)
    store.close()


def test_hash_storage_keeps_the_last_ten() -> None:
    hs = HashStorage()
    for rev in range(15, 0, -1):
        hs.store(KeyValueHash(rev * 7, rev - 1, rev))
    assert [h.revision for h in hs.hashes()] == list(range(6, 16))
    assert hs.get(5) is None and hs.get(6) == KeyValueHash(42, 5, 6)
