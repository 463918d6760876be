"""Ranges read a slice at a time (issue 17) answer exactly what one read in one go
answers at the same revision, while puts, deletes and compactions land between the
slices; a compaction above the read's revision, or a store closed under it, stops it.

Seeds are fixed and named in every assertion message.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyetcd.mvcc import KVStore, RangeRequest, RangeResponse, SortOrder, SortTarget
from pyetcd.mvcc.errors import CompactedError
from pyetcd.server.etcdserver import txn

SEEDS = range(12)
KEYS = [b"k%03d" % i for i in range(120)]


@pytest.fixture
def kv(tmp_path: Path) -> Iterator[KVStore]:
    store = KVStore(str(tmp_path / "db"))
    yield store
    if not store.closed:
        store.close()


def _write(kv: KVStore, rng: random.Random) -> None:
    """One random write transaction: a put, a single delete or a range delete."""
    kv.begin_write()
    r = rng.random()
    key = rng.choice(KEYS)
    if r < 0.7:
        kv.write_put(key, b"v%d" % rng.randrange(1000), 0)
    elif r < 0.9:
        kv.write_delete_range(key, None)
    else:
        kv.write_delete_range(key, key + b"\xff")
    kv.end_write()


def _history(kv: KVStore, rng: random.Random, n: int) -> None:
    for _ in range(n):
        _write(kv, rng)


def _request(kv: KVStore, rng: random.Random) -> RangeRequest:
    lo, hi = sorted(rng.sample(range(len(KEYS) + 1), 2))
    end = rng.choice([KEYS[hi] if hi < len(KEYS) else b"\x00", b"\x00", b"k1"])
    past = rng.randrange(max(1, kv.compact_revision), kv.current_revision + 1)
    filters = rng.random() < 0.25
    return RangeRequest(
        key=KEYS[lo],
        range_end=end,
        limit=rng.choice([0, 0, 1, 5, 40]),
        revision=rng.choice([0, 0, past]),
        sort_order=rng.choice(list(SortOrder)),
        sort_target=rng.choice(list(SortTarget)),
        keys_only=rng.random() < 0.3,
        count_only=rng.random() < 0.15,
        min_mod_revision=rng.randrange(0, kv.current_revision) if filters else 0,
        max_create_revision=kv.current_revision - rng.randrange(0, 20) if filters else 0,
    )


def _sliced(
    kv: KVStore, req: RangeRequest, rng: random.Random, slice_keys: int, compact_ok: bool
) -> RangeResponse:
    """The range in steps, with writes (and compactions at or below the read's
    revision when ``compact_ok``) between the steps."""
    cur = kv.current_revision
    read_rev = req.revision or cur
    steps = txn.range_steps(kv, req, cur, slice_keys)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            resp: RangeResponse = done.value
            return resp
        for _ in range(rng.randrange(3)):
            _write(kv, rng)
        if compact_ok and rng.random() < 0.2 and kv.compact_revision < read_rev:
            kv.compact(rng.randrange(max(kv.compact_revision + 1, 1), read_rev + 1))


@pytest.mark.parametrize("seed", SEEDS)
def test_sliced_range_equals_one_read(kv: KVStore, seed: int) -> None:
    rng = random.Random(seed)
    _history(kv, rng, 400)
    kv.compact(kv.current_revision - 150)
    for trial in range(25):
        req = _request(kv, rng)
        want = txn.range_(kv, req)
        got = _sliced(kv, req, rng, rng.choice([1, 2, 3, 7, 16]), compact_ok=True)
        assert got == want, f"seed {seed} trial {trial}: {req}"


@pytest.mark.parametrize("seed", SEEDS[:4])
def test_compaction_above_the_read_stops_it(kv: KVStore, seed: int) -> None:
    rng = random.Random(seed)
    _history(kv, rng, 300)
    req = RangeRequest(key=b"k", range_end=b"l")
    steps = txn.range_steps(kv, req, kv.current_revision, 4)
    next(steps)
    _history(kv, rng, 5)
    kv.compact(kv.current_revision)  # above the read's revision
    with pytest.raises(CompactedError):
        txn.run_steps(steps)


def test_store_closed_under_a_read_stops_it(kv: KVStore) -> None:
    _history(kv, random.Random(1), 200)
    steps = txn.range_steps(kv, RangeRequest(key=b"k", range_end=b"l"), kv.current_revision, 4)
    next(steps)
    kv.close()
    with pytest.raises(CompactedError):
        txn.run_steps(steps)


def test_cursor_limit_and_count(kv: KVStore) -> None:
    kv.begin_write()
    for k in KEYS[:50]:
        kv.write_put(k, b"x", 0)
    kv.end_write()
    rev = kv.current_revision
    kv.begin_write()
    kv.write_delete_range(KEYS[10], KEYS[20])  # 10 keys gone after rev
    kv.end_write()
    cursor = kv.range_cursor(b"k", b"l", rev, kv.current_revision, 7, False)
    slices = 0
    while not cursor.done:
        cursor.next_slice(3)
        slices += 1
    assert [x.key for x in cursor.kvs] == KEYS[:7]
    assert cursor.count == 50  # every key alive at rev, not only the first 7
    assert slices == 17  # 50 keys, 3 at a time, the last slice finds the end
    now = kv.range_cursor(b"k", b"l", 0, kv.current_revision, 0, True)
    now.next_slice(0)
    assert now.done and now.count == 40 and now.kvs == []
