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
4. Key-table puts are buffered in memory and flushed, in the order they were made,
   before any read of the key table and before every commit: runs of
   ``_PUT_KEYS_ROWS`` rows as one multi-row INSERT each, the rest by executemany.
5. Every write goes through :meth:`Backend._write`, so that while a defragmentation
   copies the database (:meth:`Backend.begin_defrag`) the writes made meanwhile are
   journaled and replayed into the copy before it replaces the file.

Defragmentation without a stall: ``begin_defrag`` (on the caller's thread) commits and
pins a read snapshot on a second connection; ``DefragCopy.run`` (any thread) rebuilds
the tables compactly from that snapshot into ``db.defrag`` while this connection goes
on reading, writing and committing; ``finish_defrag`` (the caller's thread again)
closes this connection, renames the copy over the file, reopens it and replays the
journal into the open transaction: the only pause is that swap and replay (the old
file's unlink is deferred to a cleanup the caller runs off its thread). A crash at any
point leaves either the old file or the new one, each with a consistent index that
matches its data (the Raft WAL is replayed from there).
Nothing else may hold a connection to the file across ``finish_defrag``: sqlite's last
connection deletes the ``-wal`` file by name when it closes.
6. A failed write or commit (disk full, read-only file system, I/O error) may have
   rolled the open transaction back: the backend no longer holds what the store
   applied. It raises ``BackendError`` then and on every later write or commit
   (the error sticks), and the member must end (etcd: "failed to commit tx").
7. Key records stay small: in a WITHOUT ROWID table (an index b-tree) comparing a
   search key with a record that overflows its page reads the whole record, so one
   1 MiB value made every later insert read megabytes. A value longer than
   :data:`KEY_INLINE_MAX` lives in ``key_blob`` and its record holds the blob's id (an
   INTEGER) instead; :data:`KEY_VALUE_SQL` reads either form (older files: all inline).
8. The WAL is copied into the file by a ``Checkpointer`` thread kicked after each
   commit, not by the COMMIT on the caller's thread (``checkpoint.py``); it is paused
   while the file is swapped and closed before this connection.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Sequence

from pyetcd.mvcc.checkpoint import SAFETY_NET_PAGES, Checkpointer
from pyetcd.mvcc.defrag import DefragCopy, unlink
from pyetcd.mvcc.errors import BackendError
from pyetcd.mvcc.metrics import DISCARD, Observer

__all__ = [
    "BLOB_TABLES",
    "INDEX_HEAD_BYTES",
    "KEY_INLINE_MAX",
    "KEY_VALUE_SQL",
    "Backend",
    "DefragCopy",
]

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

#: Values longer than this live in ``key_blob`` (rule 7): a key record then stays within
#: the ~1000 bytes a 4 KiB page of an index b-tree holds inline.
KEY_INLINE_MAX = 900
#: The key table's ``value`` column as stored values read (rule 7), for ``FROM key``.
KEY_VALUE_SQL = (
    "CASE typeof(key.value) WHEN 'integer' "
    "THEN (SELECT v FROM key_blob WHERE id = key.value) ELSE key.value END"
)
_DROP_BLOB = (
    "DELETE FROM key_blob WHERE id IN "
    "(SELECT value FROM key WHERE rev = ? AND typeof(value) = 'integer')"
)
_PUT_KEY = "INSERT OR REPLACE INTO key (rev, value) VALUES (?, ?)"
#: Rows per multi-row INSERT of a flush (rule 4): one statement of this many rows costs
#: about a third less per row than as many steps of ``_PUT_KEY`` (the rest of a flush,
#: fewer rows, still goes through executemany). The same rows, in the same order.
_PUT_KEYS_ROWS = 32
_PUT_KEYS = "INSERT OR REPLACE INTO key (rev, value) VALUES " + ", ".join(
    ["(?, ?)"] * _PUT_KEYS_ROWS
)

# meta keys excluded from hash(): they differ between members with equal data
_HASH_IGNORED_META = (b"consistent_index", b"term")
#: What the key index reads of each record on restore: the encoded KeyValue's 36-byte
#: header and keys up to 92 bytes (a longer one costs one more read of its record).
INDEX_HEAD_BYTES = 128
# records looked up per query by key_get_many (sqlite allows 32766 parameters)
_MANY = 500


def _get_many_sql(n: int) -> str:
    return f"SELECT rev, {KEY_VALUE_SQL} FROM key WHERE rev IN ({','.join('?' * n)})"


_GET_MANY = {_MANY: _get_many_sql(_MANY)}


def _noop() -> None:
    pass


class Backend:
    """One sqlite3 database with etcd's tables and batched commits."""

    def __init__(
        self,
        path: str,
        *,
        batch_limit: int = 10000,
        batch_interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        commit_seconds: Observer = DISCARD,
    ) -> None:
        """Open (creating if needed) the database at ``path``.

        Args:
            path: the db file, normally ``<data-dir>/member/snap/db``.
            batch_limit: commit once this many writes are pending.
            batch_interval: commit once this many seconds passed since the last commit.
            clock: monotonic seconds; injected so tests control batching.
            commit_seconds: told how long each commit took (etcd's
                etcd_disk_backend_commit_duration_seconds).
        """
        self.path = path
        self.batch_limit = batch_limit
        self.batch_interval = batch_interval
        self._clock = clock
        self._commit_seconds = commit_seconds
        d = os.path.dirname(path)
        if d:
            os.makedirs(d, exist_ok=True)
        self._error: BackendError | None = None
        self._defrag: DefragCopy | None = None
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
        self._checkpointer = Checkpointer(path)

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
        c.execute(f"PRAGMA wal_autocheckpoint={SAFETY_NET_PAGES}")
        self._create_tables()
        self._blob_id = c.execute("SELECT coalesce(max(id), 0) FROM key_blob").fetchone()[0]
        self._refresh_size()
        c.execute("BEGIN")

    @property
    def error(self) -> BackendError | None:
        """The failure that broke this backend (rule 6), if one did."""
        return self._error

    def _fail(self, action: str, err: sqlite3.Error) -> BackendError:
        if self._error is None:
            self._error = BackendError(action, err)
        return self._error

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA wal_autocheckpoint={SAFETY_NET_PAGES}")
        return conn

    def _write(self, sql: str, params: object, many: bool = False) -> None:
        """Execute one write on the live connection (journaled during a defrag); a
        failure breaks the backend for good (rule 6)."""
        if self._error is not None:
            raise self._error
        try:
            if many:
                self._conn.executemany(sql, params)  # type: ignore[arg-type]
            else:
                self._conn.execute(sql, params)  # type: ignore[arg-type]
        except sqlite3.Error as err:
            raise self._fail("failed to write to backend", err) from err
        if self._defrag is not None:
            self._defrag.journal.append((sql, params, many))

    def _create_tables(self) -> None:
        c = self._conn
        c.execute("CREATE TABLE IF NOT EXISTS key (rev BLOB PRIMARY KEY, value BLOB) WITHOUT ROWID")
        c.execute("CREATE TABLE IF NOT EXISTS key_blob (id INTEGER PRIMARY KEY, v BLOB)")
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
                f"SELECT rev, {KEY_VALUE_SQL} FROM key WHERE rev >= ? ORDER BY rev LIMIT ?",
                (lo, lim),
            )
        else:
            cur = self._conn.execute(
                f"SELECT rev, {KEY_VALUE_SQL} FROM key WHERE rev >= ? AND rev < ? "
                "ORDER BY rev LIMIT ?",
                (lo, hi, lim),
            )
        return cur.fetchall()

    def key_get(self, rev_bytes: bytes) -> bytes | None:
        """One record of the key table by its exact backend key."""
        self._flush()
        row = self._conn.execute(
            f"SELECT {KEY_VALUE_SQL} FROM key WHERE rev = ?", (rev_bytes,)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def key_get_many(self, revs: Sequence[bytes]) -> list[bytes | None]:
        """The records of the key table at ``revs`` (exact backend keys), in that order
        (None where there is none): one query per ``_MANY`` of them."""
        self._flush()
        found: dict[bytes, bytes] = {}
        conn = self._conn
        for i in range(0, len(revs), _MANY):
            chunk = revs[i : i + _MANY]
            sql = _GET_MANY.get(len(chunk))
            if sql is None:
                sql = _get_many_sql(len(chunk))
            found.update(conn.execute(sql, chunk).fetchall())
        return [found.get(r) for r in revs]

    def key_index_rows(self, lo: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` records with rev >= ``lo`` in revision order, each with only
        the first ``INDEX_HEAD_BYTES`` of its value: the encoded KeyValue's header and
        key, which is what rebuilding the key index reads (a longer key is cut)."""
        self._flush()
        return self._conn.execute(
            f"SELECT rev, substr({KEY_VALUE_SQL}, 1, ?) FROM key "
            "WHERE rev >= ? ORDER BY rev LIMIT ?",
            (INDEX_HEAD_BYTES, lo, limit),
        ).fetchall()

    def key_delete(self, revs: Iterable[bytes]) -> None:
        """Delete records of the key table by backend key."""
        self._flush()
        rows = [(r,) for r in revs]
        self._write(_DROP_BLOB, rows, many=True)
        self._write("DELETE FROM key WHERE rev = ?", rows, many=True)
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

    def _flush(self) -> None:
        if self._error is not None:
            raise self._error
        if self._pending_keys:
            rows: list[tuple[bytes, object]]
            pending, self._pending_keys = self._pending_keys, []
            long = any(len(v) > KEY_INLINE_MAX for _, v in pending)
            rows = self._spill(pending) if long else pending  # type: ignore[assignment]
            whole = len(rows) - len(rows) % _PUT_KEYS_ROWS
            for i in range(0, whole, _PUT_KEYS_ROWS):
                self._write(_PUT_KEYS, [x for row in rows[i : i + _PUT_KEYS_ROWS] for x in row])
            if whole < len(rows):
                self._write(_PUT_KEY, rows[whole:] if whole else rows, many=True)

    def _spill(self, rows: list[tuple[bytes, bytes]]) -> list[tuple[bytes, object]]:
        # Rule 7: long values go to key_blob under ids chosen here (so that a defrag's
        # journal replays the same ids); a record they replace drops its blob first.
        out: list[tuple[bytes, object]] = []
        for rev, value in rows:
            if len(value) <= KEY_INLINE_MAX:
                out.append((rev, value))
                continue
            self._write(_DROP_BLOB, (rev,))
            self._blob_id += 1
            self._write("INSERT INTO key_blob (id, v) VALUES (?, ?)", (self._blob_id, value))
            out.append((rev, self._blob_id))
        return out

    @property
    def pending(self) -> int:
        """Writes made since the last commit."""
        return self._pending

    def maybe_commit(self) -> bool:
        """Commit if the batch is full or old enough; returns whether it committed.

        Raises BackendError if the backend failed (rule 6), due or not.
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

        Raises BackendError if the commit failed, or the backend had (rule 6).
        """
        t0 = time.perf_counter()
        self._flush()
        if self.pre_commit_hook is not None:
            self.pre_commit_hook(self)
        try:
            self._conn.execute("COMMIT")
            self._commit_seconds.observe(time.perf_counter() - t0)
            self.commits += 1
            self._pending = 0
            self._last_commit = self._clock()
            self._refresh_size()
            self._conn.execute("BEGIN")
        except sqlite3.Error as err:
            raise self._fail("failed to commit tx", err) from err
        self._checkpointer.kick()

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
        """Rewrite the database compactly and shrink the file, all on this thread."""
        copy = self.begin_defrag()
        try:
            copy.run()
        except BaseException:
            self.abort_defrag(copy)
            raise
        self.finish_defrag(copy)()

    @property
    def defragmenting(self) -> bool:
        """Whether a copy started by :meth:`begin_defrag` is in progress."""
        return self._defrag is not None

    def begin_defrag(self) -> DefragCopy:
        """Commit, pin a read snapshot and start journaling writes; run the returned
        copy (on any thread), then :meth:`finish_defrag` or :meth:`abort_defrag`.

        Raises:
            RuntimeError: a defragmentation is already in progress.
        """
        if self._defrag is not None:
            raise RuntimeError("a defragmentation is already in progress")
        self.commit()
        copy = DefragCopy(self.path, self.path + ".defrag")
        self._defrag = copy
        return copy

    def abort_defrag(self, copy: DefragCopy) -> None:
        """Give up ``copy`` (its run failed): stop journaling, remove the partial file."""
        if self._defrag is copy:
            self._defrag = None
        copy.discard()

    def finish_defrag(self, copy: DefragCopy) -> Callable[[], None]:
        """Swap the copy in for the file and replay the writes made during the copy.

        The copy's meta (consistent index included) is the pinned snapshot's, and the
        replayed writes sit in the open transaction until the next commit: a crash
        before it leaves a file whose consistent index matches its data, and the Raft
        WAL is replayed from there.

        Returns:
            The cleanup to run next, off the caller's thread if it is latency-bound:
            it releases the old file and WAL (their unlink is what costs on a large
            file) and syncs the directory.
        """
        if copy.aborted or self._defrag is not copy:
            copy.discard()
            return _noop
        self.commit()
        self._defrag = None
        # Keep the old file and WAL open: unlinking them (a large file's blocks) then
        # happens when the cleanup closes these descriptors, not here.
        held = [
            os.open(p, os.O_RDONLY) for p in (self.path, self.path + "-wal") if os.path.exists(p)
        ]
        try:
            with self._checkpointer.paused():
                self._swap_in(copy)
        except sqlite3.Error as err:
            # Out of its one open transaction the backend cannot keep rule 1.
            raise self._fail("failed to defragment", err) from err
        self._pending += len(copy.journal)
        self._refresh_size()
        path = self.path

        def cleanup() -> None:
            for fd in held:
                os.close(fd)
            _fsync_dir(path)

        return cleanup

    def _swap_in(self, copy: DefragCopy) -> None:
        # The copy replaces the file; the journal is replayed into a new transaction.
        self._conn.execute("COMMIT")
        self._conn.close()
        for suffix in ("-wal", "-shm"):
            unlink(self.path + suffix)
        os.replace(copy.dest_path, self.path)
        self._conn = self._connect()
        self._conn.execute("BEGIN")
        for sql, params, many in copy.journal:
            if many:
                self._conn.executemany(sql, params)  # type: ignore[arg-type]
            else:
                self._conn.execute(sql, params)  # type: ignore[arg-type]

    def snapshot_to(self, path: str) -> None:
        """Write a consistent copy of the committed database to ``path`` from a
        connection of its own (blocking: call it off the event loop, after a commit)."""
        src = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        dest = sqlite3.connect(path)
        try:
            src.backup(dest)
        finally:
            dest.close()
            src.close()

    def hash(self) -> int:
        """CRC-32 over every table's rows in order (meta's consistent index/term excluded)."""
        self._flush()
        h = zlib.crc32(b"key")
        for k, v in self._conn.execute(f"SELECT rev, {KEY_VALUE_SQL} FROM key ORDER BY rev"):
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
        """Commit and close the database (a defragmentation in progress is dropped; a
        failed backend is closed without a commit, which rolls back what it could not
        keep, and the error is raised after)."""
        if self._defrag is not None:
            # The copy's connection must close before this one (the last to close
            # removes the -wal file by name): stop it and wait for it.
            copy, self._defrag = self._defrag, None
            copy.aborted = True
            copy.wait_closed()
        self._checkpointer.close()
        try:
            if self._error is None:
                self.commit()
                self._conn.execute("COMMIT")
        finally:
            self._conn.close()
        if self._error is not None:
            raise self._error


def _fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
