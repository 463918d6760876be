"""``snapshot status`` and ``hashkv``: what etcdutl reports about a snapshot or a data dir.

Facts (etcdutl 3.5.1, compared with its output in tests/etcdutl): status opens the file
as a bbolt database (the SHA-256 trailer, if any, lies past its pages), runs bbolt's
consistency check, then walks the root's buckets in order. ``hash`` is CRC-32C over each
bucket's name followed by each of its keys and values; ``totalKey`` counts the records
of all buckets; ``revision`` is the main revision of the last record of ``key``;
``totalSize`` is the database's pages (``pgid * page size``), trailer excluded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pyetcd.bbolt import BoltError, BoltReader
from pyetcd.mvcc import KVStore
from pyetcd.mvcc.hash import crc32c
from pyetcd.server.storage import schema as s

__all__ = ["HashKV", "SnapshotStatus", "StatusError", "hashkv", "snapshot_status"]


class StatusError(Exception):
    """Status or hashkv refused; ``str(exc)`` is etcdutl's error text."""


@dataclass(frozen=True, slots=True)
class SnapshotStatus:
    hash: int
    revision: int
    total_key: int
    total_size: int


@dataclass(frozen=True, slots=True)
class HashKV:
    hash: int
    hash_revision: int
    compact_revision: int


def snapshot_status(path: str) -> SnapshotStatus:
    """etcdutl's ``snapshot status`` of the snapshot (or backend db) file at ``path``.

    Raises:
        StatusError: no such file, not a bbolt database, or a failed integrity check.
    """
    if not os.path.exists(path):
        raise StatusError(f"stat {path}: no such file or directory")
    try:
        with BoltReader(path) as r:
            errors = r.check()
            if errors:
                raise StatusError(
                    f"snapshot file integrity check failed. {len(errors)} errors found.\n"
                    + "\n".join(errors)
                )
            h = 0
            revision = total = 0
            for bucket in r.buckets():
                h = crc32c(bucket, h)
                for k, v in r.entries(bucket):
                    h = crc32c(k, h)
                    if v is not None:
                        h = crc32c(v, h)
                    if bucket == s.KEY:
                        revision = int.from_bytes(k[:8], "big")
                    total += 1
            return SnapshotStatus(h, revision, total, r.meta.pgid * r.meta.page_size)
    except BoltError as err:
        raise StatusError(str(err)) from None


def backend_path(path: str) -> str:
    """A data dir's backend file, or ``path`` itself if it names a file."""
    return os.path.join(path, "member", "snap", "db") if os.path.isdir(path) else path


def hashkv(path: str, revision: int = 0) -> HashKV:
    """``etcdutl hashkv`` (etcd 3.6): the HashKV of a pyetcd data dir (or its backend file)
    at ``revision`` (0: the latest), as the member would answer Maintenance.HashKV.

    Raises:
        StatusError: no backend at ``path``; a compacted or future revision.
    """
    db = backend_path(path)
    if not os.path.isfile(db):
        raise StatusError(f"stat {db}: no such file or directory")
    store = KVStore(db)
    try:
        h, current, compact = store.hash_kv(revision)
    except Exception as err:  # the store's typed errors carry etcd's text
        raise StatusError(str(err)) from None
    finally:
        store.close()
    return HashKV(h, revision or current, compact)
