"""The sqlite3 backend: etcd's bbolt buckets as tables in ``member/snap/db``.

Rules this module keeps:

1. There is always one open sqlite transaction. Writes go into it; a commit
   ends it and opens the next one. Readers on this connection see the
   uncommitted writes, which is what etcd's read buffer gives.
2. Writes are batched: :meth:`Backend.maybe_commit` commits when
   ``batch_limit`` writes are pending or ``batch_interval`` seconds passed
   since the last commit (etcd's backend batch limit/interval). Durability
   comes from the Raft WAL, which is replayed from the consistent index.
3. The pre-commit hook runs inside the transaction being committed, so the
   consistent index it writes covers exactly the changes committed with it.
4. Key-table puts are buffered in memory and flushed with one executemany
   before any read of the key table and before every commit.
5. A failed write or commit (disk full, read-only file system, I/O error) may have
   rolled the open transaction back: the backend no longer holds what the store
   applied. It raises ``BackendError`` then and on every later write or commit
   (the error sticks), and the member must end (etcd: "failed to commit tx").
"""

from __future__ import annotations

import os
import sqlite3
import struct
import time
import zlib
from collections.abc import Callable, Iterable

from pyetcd.mvcc.errors import BackendError

__all__ = ["BLOB_TABLES", "Backend"]

# etcd's buckets that hold opaque key/value blobs (the server owns their content)
BLOB_TABLES = (
    "meta",
    "auth",
    "auth_users",
    "auth_roles",
    "members",
    "members_removed",
    "cluster",
    "alarm",
)

_U64 = struct.Struct(">Q")

# meta keys excluded from hash(): they differ between members with equal data
_HASH_IGNORED_META = (b"consistent_index", b"term")


class Backend:
    """One sqlite3 database with etcd's tables and batched commits."""

    def __init__(
        self,
        path: str,
        *,
        batch_limit: int = 10000,
        batch_interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Open (creating if needed) the database at ``path``.

        Args:
            path: the db file, normally ``<data-dir>/member/snap/db``.
            batch_limit: commit once this many writes are pending.
            batch_interval: commit once this many seconds passed since the last commit.
            clock: monotonic seconds; injected so tests control batching.
        """
        self.path = path
        self.batch_limit = batch_limit
        self.batch_interval = batch_interval
        self._clock = clock
        d = os.path.dirname(path)
        if d:
            os.makedirs(d, exist_ok=True)
        self._error: BackendError | None = None
        self._pending_keys: list[tuple[bytes, bytes]] = []
        self._pending = 0
        self._last_commit = clock()
        self._size = 0
        self._size_in_use = 0
        self.pre_commit_hook: Callable[[Backend], None] | None = None
        self.commits = 0
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            try:
                self._open()
            except BaseException:
                self._conn.close()
                raise
        except sqlite3.Error as err:
            raise BackendError("failed to open database", err) from err

    def _open(self) -> None:
        c = self._conn
        # A file that is not a database fails here, before anything is written to it.
        tables = {row[0] for row in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        ours = {"key", "lease", *BLOB_TABLES}
        if tables and not ours <= tables:
            # Tables were lost: never fill the gap with empty ones.
            missing = ", ".join(sorted(ours - tables))
            raise sqlite3.DatabaseError(f"not an etcd backend: missing tables {missing}")
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=NORMAL")
        self._create_tables()
        self._refresh_size()
        c.execute("BEGIN")

    @property
    def error(self) -> BackendError | None:
        """The failure that broke this backend (rule 5), if one did."""
        return self._error

    def _fail(self, action: str, err: sqlite3.Error) -> BackendError:
        if self._error is None:
            self._error = BackendError(action, err)
        return self._error

    def _create_tables(self) -> None:
        c = self._conn
        c.execute("CREATE TABLE IF NOT EXISTS key (rev BLOB PRIMARY KEY, value BLOB) WITHOUT ROWID")
        c.execute(
            "CREATE TABLE IF NOT EXISTS lease (id INTEGER PRIMARY KEY, ttl INTEGER, "
            "remaining_ttl INTEGER)"
        )
        for t in BLOB_TABLES:
            c.execute(f"CREATE TABLE IF NOT EXISTS {t} (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")

    # -- key table --------------------------------------------------------

    def key_put(self, rev_bytes: bytes, value: bytes) -> None:
        """Write one record of the key table (buffered until the next flush)."""
        self._pending_keys.append((rev_bytes, value))
        self._pending += 1

    def key_range(
        self, lo: bytes, hi: bytes | None = None, limit: int = 0
    ) -> list[tuple[bytes, bytes]]:
        """Records with lo <= rev < hi (hi None: to the end), in revision order.

        ``limit`` > 0 caps the number of records returned.
        """
        self._flush()
        lim = limit if limit > 0 else -1
        if hi is None:
            cur = self._conn.execute(
                "SELECT rev, value FROM key WHERE rev >= ? ORDER BY rev LIMIT ?", (lo, lim)
            )
        else:
            cur = self._conn.execute(
                "SELECT rev, value FROM key WHERE rev >= ? AND rev < ? ORDER BY rev LIMIT ?",
                (lo, hi, lim),
            )
        return cur.fetchall()

    def key_get(self, rev_bytes: bytes) -> bytes | None:
        """One record of the key table by its exact backend key."""
        self._flush()
        row = self._conn.execute("SELECT value FROM key WHERE rev = ?", (rev_bytes,)).fetchone()
        return None if row is None else bytes(row[0])

    def key_delete(self, revs: Iterable[bytes]) -> None:
        """Delete records of the key table by backend key."""
        self._flush()
        rows = [(r,) for r in revs]
        if self._error is not None:
            raise self._error
        try:
            self._conn.executemany("DELETE FROM key WHERE rev = ?", rows)
        except sqlite3.Error as err:
            raise self._fail("failed to write to backend", err) from err
        self._pending += len(rows)

    def key_last(self) -> bytes | None:
        """The largest backend key in the key table."""
        self._flush()
        row = self._conn.execute("SELECT rev FROM key ORDER BY rev DESC LIMIT 1").fetchone()
        return None if row is None else bytes(row[0])

    # -- blob tables ------------------------------------------------------

    def put(self, table: str, k: bytes, v: bytes) -> None:
        """Set ``k`` in one of :data:`BLOB_TABLES`."""
        self._check_table(table)
        self._write(f"INSERT OR REPLACE INTO {table} (k, v) VALUES (?, ?)", (k, v))
        self._pending += 1

    def get(self, table: str, k: bytes) -> bytes | None:
        """Value of ``k`` in a blob table, or None."""
        self._check_table(table)
        row = self._conn.execute(f"SELECT v FROM {table} WHERE k = ?", (k,)).fetchone()
        return None if row is None else bytes(row[0])

    def delete(self, table: str, k: bytes) -> None:
        """Remove ``k`` from a blob table (absent is fine)."""
        self._check_table(table)
        self._write(f"DELETE FROM {table} WHERE k = ?", (k,))
        self._pending += 1

    def items(self, table: str) -> list[tuple[bytes, bytes]]:
        """Every (k, v) of a blob table in key order."""
        self._check_table(table)
        rows = self._conn.execute(f"SELECT k, v FROM {table} ORDER BY k").fetchall()
        return [(bytes(k), bytes(v)) for k, v in rows]

    @staticmethod
    def _check_table(table: str) -> None:
        if table not in BLOB_TABLES:
            raise ValueError(f"unknown backend table {table!r}")

    def put_int(self, table: str, k: bytes, v: int) -> None:
        """Store an unsigned int as 8 big-endian bytes (etcd's meta encoding)."""
        self.put(table, k, _U64.pack(v))

    def get_int(self, table: str, k: bytes, default: int = 0) -> int:
        """Read an int written by :meth:`put_int`."""
        v = self.get(table, k)
        return default if v is None else int(_U64.unpack(v)[0])

    # -- lease table ------------------------------------------------------

    def lease_put(self, lease_id: int, ttl: int, remaining_ttl: int) -> None:
        """Persist one lease."""
        self._write(
            "INSERT OR REPLACE INTO lease (id, ttl, remaining_ttl) VALUES (?, ?, ?)",
            (lease_id, ttl, remaining_ttl),
        )
        self._pending += 1

    def lease_delete(self, lease_id: int) -> None:
        """Forget one lease."""
        self._write("DELETE FROM lease WHERE id = ?", (lease_id,))
        self._pending += 1

    def leases(self) -> list[tuple[int, int, int]]:
        """Every persisted (id, ttl, remaining_ttl)."""
        return list(self._conn.execute("SELECT id, ttl, remaining_ttl FROM lease ORDER BY id"))

    # -- transactions -----------------------------------------------------

    def _write(self, sql: str, args: tuple[object, ...]) -> None:
        if self._error is not None:
            raise self._error
        try:
            self._conn.execute(sql, args)
        except sqlite3.Error as err:
            raise self._fail("failed to write to backend", err) from err

    def _flush(self) -> None:
        if self._error is not None:
            raise self._error
        if self._pending_keys:
            try:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO key (rev, value) VALUES (?, ?)", self._pending_keys
                )
            except sqlite3.Error as err:
                raise self._fail("failed to write to backend", err) from err
            self._pending_keys = []

    @property
    def pending(self) -> int:
        """Writes made since the last commit."""
        return self._pending

    def maybe_commit(self) -> bool:
        """Commit if the batch is full or old enough; returns whether it committed.

        Raises BackendError if the backend failed (rule 5), due or not.
        """
        if self._error is not None:
            raise self._error
        if self._pending >= self.batch_limit or (
            self._pending and self._clock() - self._last_commit >= self.batch_interval
        ):
            self.commit()
            return True
        return False

    def commit(self) -> None:
        """Commit the open transaction (running the pre-commit hook inside it).

        Raises BackendError if the commit failed, or the backend had (rule 5).
        """
        self._flush()
        if self.pre_commit_hook is not None:
            self.pre_commit_hook(self)
        try:
            self._conn.execute("COMMIT")
            self.commits += 1
            self._pending = 0
            self._last_commit = self._clock()
            self._refresh_size()
            self._conn.execute("BEGIN")
        except sqlite3.Error as err:
            raise self._fail("failed to commit tx", err) from err

    def _refresh_size(self) -> None:
        page_size = self._conn.execute("PRAGMA page_size").fetchone()[0]
        pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
        free = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
        self._size = pages * page_size
        self._size_in_use = (pages - free) * page_size

    @property
    def size(self) -> int:
        """Bytes the database occupies (as of the last commit)."""
        return self._size

    @property
    def size_in_use(self) -> int:
        """Bytes in use: the size minus free pages (as of the last commit)."""
        return self._size_in_use

    def defragment(self) -> None:
        """Commit, then rewrite the database compactly (VACUUM) and shrink the file."""
        self.commit()
        try:
            self._conn.execute("COMMIT")
            self._conn.execute("VACUUM")
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._refresh_size()
            self._conn.execute("BEGIN")
        except sqlite3.Error as err:
            # Out of its one open transaction the backend cannot keep rule 1.
            raise self._fail("failed to defragment", err) from err

    def snapshot_to(self, path: str) -> None:
        """Commit and write a consistent copy of the whole database to ``path``."""
        self.commit()
        dest = sqlite3.connect(path)
        try:
            self._conn.backup(dest)
        finally:
            dest.close()

    def hash(self) -> int:
        """CRC-32 over every table's rows in order (meta's consistent index/term excluded)."""
        self._flush()
        h = zlib.crc32(b"key")
        for k, v in self._conn.execute("SELECT rev, value FROM key ORDER BY rev"):
            h = zlib.crc32(v, zlib.crc32(k, h))
        h = zlib.crc32(b"lease", h)
        for row in self._conn.execute("SELECT id, ttl, remaining_ttl FROM lease ORDER BY id"):
            h = zlib.crc32(repr(tuple(row)).encode(), h)
        for t in BLOB_TABLES:
            h = zlib.crc32(t.encode(), h)
            for k, v in self.items(t):
                if t == "meta" and k in _HASH_IGNORED_META:
                    continue
                h = zlib.crc32(v, zlib.crc32(k, h))
        return h

    def close(self) -> None:
        """Commit and close the database (a failed backend is closed without a commit,
        which rolls back what it could not keep; the error is raised after)."""
        try:
            if self._error is None:
                self.commit()
                self._conn.execute("COMMIT")
        finally:
            self._conn.close()
        if self._error is not None:
            raise self._error
