"""The read cache: bounded by bytes and entries, oldest read out first; a store serves a
range read twice the same, the second time without the backend."""

from __future__ import annotations

from pathlib import Path

from pyetcd.mvcc import KVStore
from pyetcd.mvcc.read_cache import ReadCache
from pyetcd.mvcc.types import KeyValue, PutRequest
from pyetcd.server.etcdserver import txn as kvtxn


def kv(i: int, size: int = 10) -> KeyValue:
    return KeyValue(b"k%d" % i, i, i, 1, b"v" * size)


def test_bounded_by_entries_oldest_out_first() -> None:
    cache = ReadCache(max_bytes=1 << 20, max_entries=3)
    for i in range(1, 6):
        cache.remember((i, 0), kv(i))
    assert list(cache.kvs) == [(3, 0), (4, 0), (5, 0)]


def test_bounded_by_bytes() -> None:
    cache = ReadCache(max_bytes=100, max_entries=1000)
    for i in range(1, 11):
        cache.remember((i, 0), kv(i, size=30))
    assert cache.size <= 100
    assert (10, 0) in cache.kvs and (1, 0) not in cache.kvs
    assert cache.size == sum(len(v.key) + len(v.value) for v in cache.kvs.values())


def test_a_range_read_again_comes_from_the_cache(tmp_path: Path) -> None:
    store = KVStore(str(tmp_path / "db"))
    for i in range(100):
        kvtxn.put(store, PutRequest(b"k%03d" % i, b"v%d" % i))
    cur = store.current_revision
    first, n = store.range_keys(b"k", b"l", 0, cur, 0, False)
    assert n == 100 and len(store.read_cache) == 100
    store.backend.key_get_many = None  # type: ignore[assignment,method-assign]  # not called again
    again, _ = store.range_keys(b"k", b"l", 0, cur, 0, False)
    assert again == first
    assert store.get(b"k007") == first[7]
    store.close()
