"""Saving a snapshot: pyetcd's sqlite backend written out as etcd's bbolt database.

Rules this module keeps:

1. One read transaction: the export opens its own sqlite connection and reads every
   table inside one ``BEGIN``, so the file is one consistent state of the backend (sqlite
   in WAL mode keeps that state for the reader while the member goes on committing).
2. Streaming: rows go from a sqlite cursor straight into the ``BoltWriter``; memory is
   the writer's open pages, not the database. Only the small buckets (members, alarms)
   are sorted in memory, because etcd's keys for them sort differently from ours.
3. The file is what etcd's ``Maintenance.Snapshot`` sends: the database, then the
   SHA-256 of it as a 32-byte trailer (``save_snapshot``), or the database alone
   (``write_snapshot_db``) for a caller that streams the trailer itself.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from pyetcd import version
from pyetcd.bbolt import DEFAULT_PAGE_SIZE, BoltWriter, Meta, append_sha256, iter_with_sha256
from pyetcd.mvcc.backend import KEY_VALUE_SQL
from pyetcd.mvcc.revision import is_tombstone
from pyetcd.raft import ConfState

from . import schema as s

__all__ = [
    "CLUSTER_VERSION",
    "SnapshotStream",
    "save_snapshot",
    "stream_snapshot",
    "write_snapshot_db",
]

#: What etcd 3.5 keeps under ``cluster/clusterVersion`` ("3.5.0": major.minor, patch 0).
CLUSTER_VERSION = version.CLUSTER_VERSION.encode()


def _rows(conn: sqlite3.Connection, sql: str) -> Iterator[tuple[bytes, bytes]]:
    for k, v in conn.execute(sql):
        yield bytes(k), bytes(v)


def _blob(conn: sqlite3.Connection, table: str) -> Iterator[tuple[bytes, bytes]]:
    return _rows(conn, f"SELECT k, v FROM {table} ORDER BY k")


def _bucket_rows(
    conn: sqlite3.Connection, bucket: bytes, conf_state: ConfState | None
) -> Iterator[tuple[bytes, bytes]]:
    """The records of one etcd bucket, in key order, from pyetcd's tables."""
    if bucket == s.KEY:
        # A file no member of this version opened yet has no key_blob: all inline.
        spilled = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'key_blob'").fetchone()
        value = KEY_VALUE_SQL if spilled else "value"
        for rev, raw in _rows(conn, f"SELECT rev, {value} FROM key ORDER BY rev"):
            yield rev, s.kv_to_etcd(raw, is_tombstone(rev))
    elif bucket == s.LEASE:
        for lease_id, ttl, remaining in conn.execute(
            "SELECT id, ttl, remaining_ttl FROM lease ORDER BY id"
        ):
            yield s.lease_to_etcd(lease_id, ttl, remaining)
    elif bucket == s.ALARM:
        yield from sorted((s.alarm_to_etcd(k), b"") for k, _ in _blob(conn, "alarm"))
    elif bucket in (s.MEMBERS, s.MEMBERS_REMOVED):
        members, removed = s.sorted_members(_blob(conn, "members"))
        yield from members if bucket == s.MEMBERS else removed
    elif bucket == s.META:
        yield from sorted(_meta_rows(conn, conf_state))
    elif bucket == s.CLUSTER:
        rows = dict(_blob(conn, "cluster"))
        rows.setdefault(s.CLUSTER_VERSION_KEY, CLUSTER_VERSION)
        yield from sorted(rows.items())
    else:
        yield from _blob(conn, s.TABLE_OF_BUCKET[bucket])


def _meta_rows(
    conn: sqlite3.Connection, conf_state: ConfState | None
) -> Iterator[tuple[bytes, bytes]]:
    for k, v in _blob(conn, "meta"):
        if k in (s.SCHEDULED_COMPACT_KEY, s.FINISHED_COMPACT_KEY):
            yield k, s.compact_rev_to_etcd(v)
        elif k != s.CONF_STATE_KEY:
            yield k, v
    if conf_state is not None:
        yield s.CONF_STATE_KEY, s.conf_state_json(conf_state)


def write_snapshot_db(
    db_path: str,
    fileobj: BinaryIO,
    *,
    conf_state: ConfState | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> Meta:
    """Write the sqlite backend at ``db_path`` to ``fileobj`` as etcd's bbolt database.

    Args:
        db_path: a pyetcd backend (``member/snap/db``), live or not: it is only read.
        fileobj: a binary file open for writing and seeking, at offset 0.
        conf_state: the Raft configuration to record under ``meta/confState``, as
            etcd does (omitted when None).
        page_size: bbolt's page size (etcd: the OS page size, 4096).

    Returns:
        The bbolt meta written; ``meta.pgid * meta.page_size`` bytes were written.

    Raises:
        FileNotFoundError: no file at ``db_path``.
        sqlite3.Error: ``db_path`` is not a pyetcd backend.
    """
    if not os.path.isfile(db_path):
        raise FileNotFoundError(f"open {db_path}: no such file or directory")
    # Not mode=ro: a read-only connection cannot open a WAL-mode database whose -wal
    # and -shm files are gone (a member that closed cleanly); this one only reads.
    conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("BEGIN")
        with BoltWriter(fileobj, page_size) as w:
            for bucket in s.ETCD_BUCKETS:
                w.bucket(bucket)
                for k, v in _bucket_rows(conn, bucket, conf_state):
                    w.put(bucket, k, v)
        conn.execute("COMMIT")
    finally:
        conn.close()
    return w.close()


def save_snapshot(db_path: str, out_path: str, *, conf_state: ConfState | None = None) -> int:
    """Write ``out_path`` as ``etcdctl snapshot save`` leaves it: the bbolt database of
    the backend at ``db_path``, then its SHA-256. Returns the file's size."""
    with open(out_path, "w+b") as f:
        write_snapshot_db(db_path, f, conf_state=conf_state)
        append_sha256(f)
        os.fsync(f.fileno())
        return f.tell()


@dataclass(frozen=True, slots=True)
class SnapshotStream:
    """A snapshot being sent: ``size`` bytes of database in ``chunks``, then one last
    chunk of 32 bytes, their SHA-256. Pull chunks with ``next(chunks, None)``."""

    size: int
    chunks: Iterator[bytes]


def stream_snapshot(
    db_path: str,
    fileobj: BinaryIO,
    *,
    conf_state: ConfState | None = None,
    chunk_size: int = 32 * 1024,
) -> SnapshotStream:
    """Export the backend at ``db_path`` into ``fileobj`` (a scratch file open ``w+b``)
    and return its chunks as ``Maintenance.Snapshot`` sends them. Blocking: call it, and
    pull the chunks, off the event loop."""
    meta = write_snapshot_db(db_path, fileobj, conf_state=conf_state)
    size = meta.pgid * meta.page_size
    return SnapshotStream(size, iter_with_sha256(fileobj, size, chunk_size))
