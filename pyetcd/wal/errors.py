"""Typed errors of the WAL and the snapshot files (texts follow etcd's where etcd has one)."""

from __future__ import annotations

__all__ = [
    "CRCMismatchError",
    "CorruptWALError",
    "MetadataConflictError",
    "NoSnapshotError",
    "SnapError",
    "SnapshotMismatchError",
    "SnapshotNotFoundError",
    "WALClosedError",
    "WALError",
    "WALExistsError",
    "WALLockedError",
    "WALNotFoundError",
]


class WALError(Exception):
    """Base of every error the WAL raises."""


class CorruptWALError(WALError):
    """Damage that is not a torn tail: the member must not start.

    ``path`` and ``offset`` locate the first byte that could not be trusted;
    nothing on disk was changed when this is raised.
    """

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"wal: corrupt segment {path} at offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


class CRCMismatchError(CorruptWALError):
    """A record's CRC does not continue the chain ("wal: crc mismatch" in etcd)."""


class MetadataConflictError(WALError):
    def __init__(self) -> None:
        super().__init__("wal: conflicting metadata found")


class SnapshotMismatchError(WALError):
    def __init__(self) -> None:
        super().__init__("wal: snapshot mismatch")


class SnapshotNotFoundError(WALError):
    def __init__(self) -> None:
        super().__init__("wal: snapshot not found")


class WALNotFoundError(WALError):
    def __init__(self) -> None:
        super().__init__("wal: file not found")


class WALExistsError(WALError):
    def __init__(self, path: str) -> None:
        super().__init__(f"wal: {path} already exists")


class WALLockedError(WALError):
    """Another process (or another WAL object) holds the directory lock."""

    def __init__(self, path: str) -> None:
        super().__init__(f"wal: {path} is locked by another process (is another member running?)")


class WALClosedError(WALError):
    def __init__(self) -> None:
        super().__init__("wal: closed")


class SnapError(Exception):
    """Base of the snapshot file errors."""


class NoSnapshotError(SnapError):
    def __init__(self) -> None:
        super().__init__("snap: no available snapshot")
