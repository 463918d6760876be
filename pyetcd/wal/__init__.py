"""pyetcd.wal: the write-ahead log, raft snapshot files and the WAL-backed raft Storage."""

from __future__ import annotations

from .errors import (
    CorruptWALError,
    CRCMismatchError,
    MetadataConflictError,
    NoSnapshotError,
    SnapError,
    SnapshotMismatchError,
    SnapshotNotFoundError,
    WALClosedError,
    WALError,
    WALExistsError,
    WALLockedError,
    WALNotFoundError,
)
from .fs import FS, NO_SYNC_FS, OS_FS
from .reader import ReadResult
from .record import Metadata, RecordType, WALSnapshot
from .snap import SnapMetrics, Snapshotter
from .storage import WALStorage
from .wal import SEGMENT_SIZE_BYTES, WAL, wal_exists

__all__ = [
    "FS",
    "NO_SYNC_FS",
    "OS_FS",
    "SEGMENT_SIZE_BYTES",
    "WAL",
    "CRCMismatchError",
    "CorruptWALError",
    "Metadata",
    "MetadataConflictError",
    "NoSnapshotError",
    "ReadResult",
    "RecordType",
    "SnapError",
    "SnapMetrics",
    "SnapshotMismatchError",
    "SnapshotNotFoundError",
    "Snapshotter",
    "WALClosedError",
    "WALError",
    "WALExistsError",
    "WALLockedError",
    "WALNotFoundError",
    "WALSnapshot",
    "WALStorage",
    "wal_exists",
]
