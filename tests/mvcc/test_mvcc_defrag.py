"""Defragmentation without a stall: the copy is built from a pinned snapshot while the
live connection goes on writing and committing; the writes made meanwhile reach the
rebuilt file; a close during the copy drops it and leaves the database intact."""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path

from pyetcd.mvcc.backend import Backend

SEED = 1919


def rev(i: int) -> bytes:
    return i.to_bytes(8, "big") + b"_" + bytes(8)


def fill(be: Backend, rng: random.Random, n: int) -> None:
    for i in range(n):
        be.key_put(rev(i), rng.randbytes(300))
    be.put("meta", b"m", b"1")
    be.lease_put(7, 60, 60)
    be.lease_put(8, 60, 60)
    be.commit()
    be.key_delete([rev(i) for i in range(0, n, 2)])
    be.commit()


def mutate(be: Backend, rng: random.Random, base: int) -> None:
    """Writes of every kind, some committed, some left in the open transaction."""
    for i in range(base, base + 200):
        be.key_put(rev(i), rng.randbytes(50))
    be.key_delete([rev(1), rev(3)])
    be.put("meta", b"m", b"2")
    be.put("alarm", b"a", b"")
    be.delete("alarm", b"a")
    be.lease_delete(7)
    be.lease_put(9, 30, 20)
    be.commit()
    be.key_put(rev(base + 500), b"uncommitted")
    be.put("auth", b"enabled", b"1")


def test_writes_during_copy_reach_the_rebuilt_file(tmp_path: Path) -> None:
    print("seed", SEED)
    live = Backend(str(tmp_path / "live" / "db"))
    ref = Backend(str(tmp_path / "ref" / "db"))
    for be in (live, ref):
        fill(be, random.Random(SEED), 5000)
    size_before = live.size
    copy = live.begin_defrag()
    assert live.defragmenting
    # the copy runs in a thread while the live connection writes and commits
    t = threading.Thread(target=copy.run)
    t.start()
    for be in (live, ref):
        mutate(be, random.Random(SEED + 1), 10_000)
    t.join()
    live.finish_defrag(copy)()
    assert not live.defragmenting
    assert live.size < size_before
    assert live.hash() == ref.hash()
    assert live.key_get(rev(10_500)) == b"uncommitted"
    assert live.get("auth", b"enabled") == b"1"
    assert live.leases() == [(8, 60, 60), (9, 30, 20)]
    assert not os.path.exists(str(tmp_path / "live" / "db.defrag"))
    h = live.hash()
    live.close()
    reopened = Backend(str(tmp_path / "live" / "db"))
    assert reopened.hash() == h
    reopened.close()
    ref.close()


def test_close_during_copy_drops_it(tmp_path: Path) -> None:
    be = Backend(str(tmp_path / "db"))
    fill(be, random.Random(SEED), 2000)
    copy = be.begin_defrag()
    be.key_put(rev(99_999), b"after")
    h = be.hash()
    t = threading.Thread(target=copy.run)
    t.start()
    be.close()  # waits for the copy's connection, then closes
    t.join()
    be.finish_defrag(copy)()  # a no-op for a dropped copy
    assert not os.path.exists(str(tmp_path / "db.defrag"))
    again = Backend(str(tmp_path / "db"))
    assert again.hash() == h
    again.close()


def test_defragment_in_one_call_and_twice(tmp_path: Path) -> None:
    be = Backend(str(tmp_path / "db"))
    fill(be, random.Random(SEED), 3000)
    h, size = be.hash(), be.size
    be.defragment()
    assert be.hash() == h and be.size < size
    be.defragment()
    assert be.hash() == h
    be.close()
