"""The backend's failures (issue 17): a file that is not a backend is refused untouched,
and a failed commit sticks, so the member cannot go on as if nothing happened."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from pyetcd.mvcc import Backend, BackendError, KVStore


def test_a_file_that_is_not_a_database_is_refused_untouched(tmp_path: Path) -> None:
    db = tmp_path / "db"
    garbage = b"\x5a" * 40_000
    db.write_bytes(garbage)
    with pytest.raises(BackendError) as exc:
        Backend(str(db))
    assert exc.value.action == "failed to open database"
    assert "file is not a database" in str(exc.value.cause)
    assert db.read_bytes() == garbage
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db"]


def test_a_backend_missing_tables_is_refused_not_refilled(tmp_path: Path) -> None:
    db = tmp_path / "db"
    kv = KVStore(str(db))
    kv.begin_write()
    kv.write_put(b"k", b"v", 0)
    kv.end_write()
    kv.close()
    conn = sqlite3.connect(db)
    conn.execute("DROP TABLE key")
    conn.commit()
    conn.close()
    before = db.read_bytes()
    with pytest.raises(BackendError) as exc:
        Backend(str(db))
    assert exc.value.action == "failed to open database"
    assert "missing tables key" in str(exc.value.cause)
    assert db.read_bytes() == before


class _FullDisk:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "COMMIT":
            raise sqlite3.OperationalError("database or disk is full")
        return self.conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def test_a_failed_commit_sticks(tmp_path: Path) -> None:
    be = Backend(str(tmp_path / "db"))
    real = be._conn
    be._conn = _FullDisk(real)  # type: ignore[assignment]
    be.put("meta", b"a", b"1")
    with pytest.raises(BackendError) as first:
        be.commit()
    assert first.value.action == "failed to commit tx"
    assert be.error is first.value
    be._conn = real  # the disk has room again: the backend stays failed all the same
    for call in (
        be.commit,
        be.maybe_commit,
        lambda: be.put("meta", b"b", b"2"),
        lambda: be.key_range(b""),
    ):
        with pytest.raises(BackendError) as again:
            call()
        assert again.value is first.value
    with pytest.raises(BackendError):
        be.close()  # closed all the same, without committing
    with pytest.raises(sqlite3.ProgrammingError):
        real.execute("SELECT 1")
