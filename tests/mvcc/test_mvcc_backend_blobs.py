"""Long values of the key table live in key_blob (backend rule 7): they read back the
same through every reader, a deletion or a replacement drops their blob, a defrag keeps
them, files written with every value inline still read, and the hash does not see where
a value lives."""

from __future__ import annotations

import io
import random
import sqlite3
import threading
from pathlib import Path

import pytest

from pyetcd.bbolt import BoltReader
from pyetcd.mvcc.backend import KEY_INLINE_MAX, Backend
from pyetcd.mvcc.checkpoint import SAFETY_NET_PAGES
from pyetcd.mvcc.revision import encode_kv
from pyetcd.mvcc.types import KeyValue
from pyetcd.server.storage import schema as s
from pyetcd.server.storage import write_snapshot_db

SEED = 2207


def rev(i: int) -> bytes:
    return i.to_bytes(8, "big") + b"_" + bytes(8)


def stored(path: Path) -> dict[bytes, str]:
    """How each key record is stored: 'blob' (an id into key_blob) or 'inline'."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT rev, typeof(value) FROM key ORDER BY rev").fetchall()
        return {bytes(r): "blob" if t == "integer" else "inline" for r, t in rows}
    finally:
        conn.close()


def blob_count(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM key_blob").fetchone()[0])
    finally:
        conn.close()


def test_long_values_read_back_from_every_reader(tmp_path: Path) -> None:
    print("seed", SEED)
    rng = random.Random(SEED)
    path = tmp_path / "db"
    be = Backend(str(path))
    sizes = (10, KEY_INLINE_MAX - 60, KEY_INLINE_MAX - 20, KEY_INLINE_MAX, 1 << 20)
    values = {  # key-table records as the store encodes them, some longer than the limit
        rev(i): encode_kv(KeyValue(b"k%d" % i, i, i, 1, rng.randbytes(rng.choice(sizes))))
        for i in range(1, 40)
    }
    for r, v in values.items():
        be.key_put(r, v)
    assert be.key_range(rev(0)) == sorted(values.items())  # uncommitted: flushed, read
    be.commit()
    assert be.key_range(rev(5), rev(9)) == [(rev(i), values[rev(i)]) for i in range(5, 9)]
    assert all(be.key_get(r) == v for r, v in values.items())
    how = stored(path)
    assert {r for r, h in how.items() if h == "blob"} == {
        r for r, v in values.items() if len(v) > KEY_INLINE_MAX
    }
    assert set(how.values()) == {"blob", "inline"}
    out = io.BytesIO()
    write_snapshot_db(str(path), out)
    snap = tmp_path / "snap.db"
    snap.write_bytes(out.getvalue())
    with BoltReader(snap) as r:
        assert dict(r.items(s.KEY)) == {k: s.kv_to_etcd(v, False) for k, v in values.items()}
    be.close()
    again = Backend(str(path))
    assert again.key_range(rev(0)) == sorted(values.items())
    again.close()


def test_delete_and_replace_drop_the_blob(tmp_path: Path) -> None:
    path = tmp_path / "db"
    be = Backend(str(path))
    big = b"x" * (KEY_INLINE_MAX + 1)
    for i in range(1, 5):
        be.key_put(rev(i), big + bytes([i]))
    be.commit()
    assert blob_count(path) == 4
    be.key_delete([rev(1), rev(2)])
    be.key_put(rev(3), big + b"again")  # the same record written again (a replay)
    be.commit()
    assert blob_count(path) == 2
    assert be.key_range(rev(0)) == [(rev(3), big + b"again"), (rev(4), big + b"\x04")]
    be.close()


def test_hash_does_not_depend_on_where_values_live(tmp_path: Path) -> None:
    values = [(rev(i), bytes([i]) * (200 * i)) for i in range(1, 12)]
    spilled = Backend(str(tmp_path / "a" / "db"))
    for r, v in values:
        spilled.key_put(r, v)
    spilled.commit()
    inline = Backend(str(tmp_path / "b" / "db"))
    inline._write(  # as a file of an earlier version holds them: every value inline
        "INSERT INTO key (rev, value) VALUES (?, ?)", values, many=True
    )
    inline.commit()
    assert "blob" in stored(tmp_path / "a" / "db").values()
    assert set(stored(tmp_path / "b" / "db").values()) == {"inline"}
    assert inline.key_range(rev(0)) == spilled.key_range(rev(0)) == values
    assert inline.hash() == spilled.hash()
    spilled.close()
    inline.close()


def test_defrag_keeps_blobs_written_during_the_copy(tmp_path: Path) -> None:
    print("seed", SEED)
    rng = random.Random(SEED)
    be = Backend(str(tmp_path / "db"))
    want = {}
    for i in range(1, 30):
        want[rev(i)] = rng.randbytes(KEY_INLINE_MAX + rng.randrange(1, 5000))
        be.key_put(rev(i), want[rev(i)])
    be.commit()
    be.key_delete([rev(i) for i in range(1, 30, 3)])
    for i in range(1, 30, 3):
        del want[rev(i)]
    be.commit()
    copy = be.begin_defrag()
    t = threading.Thread(target=copy.run)
    t.start()
    for i in range(30, 40):  # written (and some deleted) while the copy runs
        want[rev(i)] = rng.randbytes(KEY_INLINE_MAX + rng.randrange(1, 5000))
        be.key_put(rev(i), want[rev(i)])
    be.key_delete([rev(2), rev(31)])
    del want[rev(2)], want[rev(31)]
    be.commit()
    t.join()
    be.finish_defrag(copy)()
    assert be.key_range(rev(0)) == sorted(want.items())
    be.key_put(rev(40), b"y" * 2000)  # ids go on from the rebuilt file's
    be.commit()
    assert be.key_get(rev(40)) == b"y" * 2000
    assert blob_count(tmp_path / "db") == len(want) + 1
    be.close()


def test_the_wal_is_checkpointed_by_a_thread_not_the_commit(tmp_path: Path) -> None:
    path = tmp_path / "db"
    be = Backend(str(path))
    cp = be._checkpointer
    assert be._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == SAFETY_NET_PAGES
    before = cp.checkpoints
    for i in range(1, 5):
        be.key_put(rev(i), bytes([i]) * (1 << 20))
    be.commit()
    assert cp.wait(before + 1, timeout=30)
    # the pages are in the file itself now, not only in its WAL (the writer's own
    # checkpoint would wait for 8192 pages)
    assert path.stat().st_size > 4 << 20
    be.close()
    assert not cp._thread.is_alive()
    again = Backend(str(path))
    assert again.key_get(rev(3)) == bytes([3]) * (1 << 20)
    again.close()


@pytest.mark.parametrize("rows", [1, 31, 32, 33, 70, 96])
def test_a_flush_of_any_size_writes_every_row_in_order(tmp_path: Path, rows: int) -> None:
    # A flush writes whole runs of rows as multi-row INSERTs and the rest row by row:
    # every row lands, a later write of the same revision wins, long values spill, and
    # writes made during a defrag reach the rebuilt file through the journal.
    print("seed", SEED)
    rng = random.Random(SEED + rows)
    be = Backend(str(tmp_path / "db"))
    want: dict[bytes, bytes] = {}

    def put_rows(first: int) -> None:
        for i in range(first, first + rows):
            r = rev(rng.randrange(first, first + rows)) if i % 5 == 4 else rev(i)  # repeats
            value = rng.randbytes(KEY_INLINE_MAX + 10 if i % 7 == 0 else rng.randrange(0, 60))
            want[r] = value
            be.key_put(r, value)

    put_rows(1)
    be.commit()
    assert be.key_range(rev(0)) == sorted(want.items())
    copy = be.begin_defrag()
    t = threading.Thread(target=copy.run)
    t.start()
    put_rows(1000)
    be.commit()
    t.join()
    be.finish_defrag(copy)()
    assert be.key_range(rev(0)) == sorted(want.items())
    be.close()
    again = Backend(str(tmp_path / "db"))
    assert again.key_range(rev(0)) == sorted(want.items())
    again.close()
