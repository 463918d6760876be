"""The compact copy a defragmentation builds (see ``backend`` rule 5)."""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading

__all__ = ["DefragCopy", "JournalEntry", "unlink"]

# The head of a table's CREATE statement in sqlite_master, up to its column list.
_CREATE_TABLE = re.compile(r"^CREATE TABLE\s+[^(]*?(?=\s*\()", re.IGNORECASE)
# (sql, params, many): one write as executed, kept for the defrag replay
JournalEntry = tuple[str, object, bool]


class DefragCopy:
    """A compact copy of the database being built from a pinned read snapshot."""

    def __init__(self, src_path: str, dest_path: str) -> None:
        self.dest_path = dest_path
        # Set by Backend.close: the copy is dropped, never swapped in.
        self.aborted = False
        #: Writes made on the live connection since the snapshot was pinned.
        self.journal: list[JournalEntry] = []
        for suffix in ("", "-journal", "-wal", "-shm"):
            unlink(dest_path + suffix)
        conn = sqlite3.connect(src_path, isolation_level=None, check_same_thread=False)
        conn.execute("ATTACH DATABASE ? AS copy", (dest_path,))
        conn.execute("BEGIN")
        # The first read starts the read transaction: the snapshot is pinned now.
        self._schema = conn.execute(
            "SELECT name, sql FROM main.sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%' ORDER BY name"
        ).fetchall()
        self._conn = conn
        self._closed = threading.Event()

    def run(self) -> None:
        """Copy every table (blocking; meant for a worker thread)."""
        conn = self._conn
        try:
            for name, sql in self._schema:
                if self.aborted:
                    return
                conn.execute(_CREATE_TABLE.sub(f'CREATE TABLE copy."{name}"', sql, count=1))
                conn.execute(f'INSERT INTO copy."{name}" SELECT * FROM main."{name}"')
            conn.execute("COMMIT")
            conn.execute("DETACH DATABASE copy")
            # Switch the copy to WAL mode here, so reopening it after the swap is cheap.
            dest = sqlite3.connect(self.dest_path, isolation_level=None)
            dest.execute("PRAGMA journal_mode=WAL")
            dest.close()
            # Fold the live WAL into the old file now, off the caller's thread, so
            # the close in finish_defrag has little left to checkpoint.
            conn.execute("PRAGMA main.wal_checkpoint(PASSIVE)")
        finally:
            conn.close()
            self._closed.set()

    def wait_closed(self) -> None:
        """Block until the snapshot's connection is closed (``run`` returned)."""
        self._closed.wait()

    def discard(self) -> None:
        """Close the snapshot (if still open) and remove the partial copy."""
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()
        self._closed.set()
        for suffix in ("", "-journal"):
            unlink(self.dest_path + suffix)


def unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
