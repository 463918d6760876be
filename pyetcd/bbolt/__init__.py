"""pyetcd.bbolt: a codec for bbolt database files (etcd's backend and snapshot format).

A writer that streams a database from buckets given whole in key order, a lazy reader,
and the SHA-256 trailer etcd appends to snapshot files. It knows nothing of etcd: what
the buckets hold is the caller's business. It imports nothing else from pyetcd.
"""

from __future__ import annotations

from .errors import (
    BoltError,
    BucketNotFoundError,
    ChecksumError,
    CorruptDatabaseError,
    DatabaseError,
    InvalidDatabaseError,
    Sha256MismatchError,
    VersionMismatchError,
    WriterError,
)
from .page import DEFAULT_PAGE_SIZE, MAGIC, MAX_KEY_SIZE, MAX_VALUE_SIZE, VERSION, Meta
from .path import BucketPath
from .reader import BoltReader
from .trailer import (
    SHA256_SIZE,
    append_sha256,
    has_sha256_trailer,
    iter_with_sha256,
    verify_sha256,
)
from .writer import BoltWriter

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAGIC",
    "MAX_KEY_SIZE",
    "MAX_VALUE_SIZE",
    "SHA256_SIZE",
    "VERSION",
    "BoltError",
    "BoltReader",
    "BoltWriter",
    "BucketNotFoundError",
    "BucketPath",
    "ChecksumError",
    "CorruptDatabaseError",
    "DatabaseError",
    "InvalidDatabaseError",
    "Meta",
    "Sha256MismatchError",
    "VersionMismatchError",
    "WriterError",
    "append_sha256",
    "has_sha256_trailer",
    "iter_with_sha256",
    "verify_sha256",
]
