"""Naming a bucket: its name, or the names from a top-level bucket down to it."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["BucketPath", "as_path"]

# ``b"key"`` is the top-level bucket ``key``; ``(b"a", b"b")`` is bucket ``b`` inside ``a``;
# ``()`` is the root bucket, which holds only the top-level buckets.
BucketPath = bytes | Sequence[bytes]


def as_path(path: BucketPath) -> tuple[bytes, ...]:
    """``path`` as a tuple of names."""
    if isinstance(path, bytes | bytearray | memoryview):
        return (bytes(path),)
    return tuple(bytes(p) for p in path)
