"""The one-put write transaction (``KVStore.put``, the apply path's common put) against
the general one (``begin_write``, ``write_put``, ``end_write``): same records, index,
leases, metrics and watch events; the watch hook is set only while a watcher is synced."""

from __future__ import annotations

import random
from pathlib import Path

from pyetcd.mvcc import KVStore, WatchableStore
from pyetcd.mvcc.watchable_store import WatchResponse


def _general_put(kv: KVStore, key: bytes, value: bytes, lease: int) -> int:
    kv.begin_write()
    rev = kv.write_put(key, value, lease)
    assert kv.end_write() == rev
    return rev


def _state(kv: KVStore, keys: list[bytes]) -> object:
    rows = kv.backend.key_range(b"")
    index = []
    for k in keys:
        ki = kv.index.get_index(k)
        if ki is None:
            index.append(None)
            continue
        at = [ki.get(r) for r in range(1, kv.current_revision + 1)]
        index.append((ki.created, ki.ver, list(ki.revs), ki.modified, ki.lease, at))
    leases = sorted((le.id, sorted(le.keys)) for le in kv.lessor.leases())
    m = kv.metrics
    return (
        kv.current_revision,
        rows,
        index,
        leases,
        [kv.lessor.lease_of(k) for k in keys],
        (m.puts, m.put_bytes, m.txns, m.deletes),
        kv.hash_kv(0),
    )


def test_one_put_transaction_equals_the_general_one(tmp_path: Path) -> None:
    seed = 23
    print(f"seed {seed}")
    rng = random.Random(seed)
    keys = [b"k%d" % i for i in range(6)]
    stores = [KVStore(str(tmp_path / f"db{i}"), batch_limit=7) for i in range(2)]
    fast, general = stores
    watchables = [WatchableStore(kv) for kv in stores]
    streams = [ws.new_stream(capacity=100_000) for ws in watchables]
    for kv in stores:
        for lease in (7, 8):
            kv.lessor.grant(lease, 100)
    watching = False
    got: list[list[WatchResponse]] = [[], []]
    for step in range(400):
        op = rng.random()
        key = rng.choice(keys)
        if op < 0.1:
            for kv in stores:
                kv.begin_write()
                kv.write_delete_range(key, None)
                kv.end_write()
        elif op < 0.13 and fast.current_revision > 5:
            at = rng.randrange(fast.compact_revision + 1, fast.current_revision)
            for kv in stores:
                kv.compact(at)
        elif op < 0.18:
            # watchers come and go: the fast path builds events only while one is synced
            watching = not watching
            for s in streams:
                if watching:
                    s.watch(b"k", b"l")
                else:
                    s.close()
        else:
            value = b"v%d" % step
            lease = rng.choice((0, 0, 7, 8))
            assert fast.put(key, value, lease) == _general_put(general, key, value, lease)
        for i, s in enumerate(streams):
            got[i] += s.pop_all()
        assert _state(fast, keys) == _state(general, keys), f"step {step}"
    assert got[0] == got[1] and got[0]
    for kv in stores:
        kv.close()
    # and a reopened store rebuilds the same index from what the fast path wrote
    again = [KVStore(str(tmp_path / f"db{i}"), batch_limit=7) for i in range(2)]
    assert _state(again[0], keys) == _state(again[1], keys)
    for kv in again:
        kv.close()


def test_change_hook_set_only_while_a_watcher_is_synced(tmp_path: Path) -> None:
    kv = KVStore(str(tmp_path / "db"))
    ws = WatchableStore(kv)
    assert kv.on_changes is None
    kv.put(b"a", b"1")
    s = ws.new_stream()
    wid = s.watch(b"a")
    assert kv.on_changes is not None
    rev = kv.put(b"a", b"2")
    (resp,) = s.pop_all()
    assert resp.watch_id == wid and resp.revision == rev
    assert [(e.kv.key, e.kv.value, e.kv.version, e.kv.mod_revision) for e in resp.events] == [
        (b"a", b"2", 2, rev)
    ]
    # an unsynced watcher (it starts in the past) does not set the hook
    s.cancel(wid)
    assert kv.on_changes is None
    s.watch(b"a", start_revision=1)
    assert kv.on_changes is None and len(ws.unsynced) == 1
    kv.close()
