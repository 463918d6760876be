"""The codec's one error hierarchy. Messages start with bbolt's own words where bbolt
has them ("invalid database", "version mismatch", "checksum error", "bucket not found",
"key required", ...) so that bbolt's documentation explains them."""

from __future__ import annotations

__all__ = [
    "BoltError",
    "BucketNotFoundError",
    "ChecksumError",
    "CorruptDatabaseError",
    "DatabaseError",
    "InvalidDatabaseError",
    "Sha256MismatchError",
    "VersionMismatchError",
    "WriterError",
]


class BoltError(Exception):
    """Base of every error raised by ``pyetcd.bbolt``."""


class DatabaseError(BoltError):
    """The file is not a bbolt database this codec can read."""


class InvalidDatabaseError(DatabaseError):
    """A meta page lacks bbolt's magic number (bbolt's ``ErrInvalid``)."""

    def __init__(self, detail: str = "") -> None:
        super().__init__("invalid database" + (f": {detail}" if detail else ""))


class VersionMismatchError(DatabaseError):
    """A meta page carries a format version other than 2 (bbolt's ``ErrVersionMismatch``)."""

    def __init__(self, detail: str = "") -> None:
        super().__init__("version mismatch" + (f": {detail}" if detail else ""))


class ChecksumError(DatabaseError):
    """A meta page's FNV-1a checksum does not match its fields (bbolt's ``ErrChecksum``)."""

    def __init__(self, detail: str = "") -> None:
        super().__init__("checksum error" + (f": {detail}" if detail else ""))


class CorruptDatabaseError(DatabaseError):
    """A page is missing (truncated file), out of bounds, of the wrong type, or its
    elements point outside it."""


class BucketNotFoundError(BoltError, KeyError):
    """No bucket at that path (bbolt's ``ErrBucketNotFound``), or, for the writer, the
    bucket is not open any more (buckets are written whole, in key order)."""

    def __str__(self) -> str:
        # KeyError quotes its argument; this is a sentence.
        return str(self.args[0]) if self.args else "bucket not found"


class WriterError(BoltError, ValueError):
    """A put or bucket the writer cannot take: an empty or too large key or value, a key
    out of order, a key that names a bucket, or a writer already closed."""


class Sha256MismatchError(BoltError):
    """The SHA-256 trailer of a snapshot file does not match the database before it."""
