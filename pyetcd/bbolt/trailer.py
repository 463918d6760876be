"""The SHA-256 trailer of a snapshot file.

etcd's Maintenance.Snapshot stream ends with the SHA-256 of the database bytes sent
before it, and ``etcdctl snapshot save`` keeps those 32 bytes at the end of the file.
``etcdutl snapshot restore`` decides that a file has the trailer when its size modulo
512 is 32 (a bbolt file is whole pages, a multiple of 512), cuts it off and, unless
``--skip-hash-check``, compares it with the SHA-256 of the rest.

``BoltWriter`` writes its meta pages last, at the start of the file, so the hash of a
database it wrote can only be taken once it is closed: ``append_sha256`` reads the file
back in chunks (memory stays one chunk) and appends the digest; ``iter_with_sha256``
streams a finished database with its digest as the last chunk, as a snapshot stream
sends it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import BinaryIO, Final

from .errors import Sha256MismatchError

__all__ = [
    "SHA256_SIZE",
    "append_sha256",
    "has_sha256_trailer",
    "iter_with_sha256",
    "verify_sha256",
]

SHA256_SIZE: Final = 32
# etcd's test for a trailer: 512 is the smallest disk sector, and divides page sizes.
_SECTOR: Final = 512
_CHUNK: Final = 1 << 20


def has_sha256_trailer(size: int) -> bool:
    """Whether a snapshot file of ``size`` bytes ends with a SHA-256 (etcd's test)."""
    return size % _SECTOR == SHA256_SIZE


def iter_with_sha256(
    fileobj: BinaryIO, size: int | None = None, chunk_size: int = 32 * 1024
) -> Iterator[bytes]:
    """The first ``size`` bytes of ``fileobj`` (all of it when ``None``) in chunks of
    ``chunk_size``, then their SHA-256 digest as the last, 32-byte, chunk."""
    h = hashlib.sha256()
    fileobj.seek(0)
    left = -1 if size is None else size
    while left:
        chunk = fileobj.read(chunk_size if left < 0 else min(chunk_size, left))
        if not chunk:
            if left > 0:
                raise EOFError(f"file ends {left} bytes before the {size} to hash")
            break
        h.update(chunk)
        if left > 0:
            left -= len(chunk)
        yield chunk
    yield h.digest()


def _sha256(fileobj: BinaryIO, size: int) -> bytes:
    digest = b""
    for chunk in iter_with_sha256(fileobj, size, _CHUNK):
        digest = chunk
    return digest


def append_sha256(fileobj: BinaryIO) -> bytes:
    """Hash the whole file from offset 0 and append the digest; return the digest.

    The file must be open for reading and writing (``w+b``), e.g. the one a
    ``BoltWriter`` has just closed.
    """
    size = fileobj.seek(0, os.SEEK_END)
    digest = _sha256(fileobj, size)
    fileobj.seek(size)
    fileobj.write(digest)
    fileobj.flush()
    return digest


def verify_sha256(source: str | os.PathLike[str] | BinaryIO) -> bool:
    """Check a snapshot file's trailer as ``etcdutl snapshot restore`` does.

    Returns:
        True if the file has a trailer and it matches; False if it has none.

    Raises:
        Sha256MismatchError: the trailer is not the SHA-256 of the bytes before it.
    """
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as f:
            return verify_sha256(f)
    size = source.seek(0, os.SEEK_END)
    if not has_sha256_trailer(size):
        return False
    source.seek(size - SHA256_SIZE)
    want = source.read(SHA256_SIZE)
    got = _sha256(source, size - SHA256_SIZE)
    if got != want:
        raise Sha256MismatchError(f"expected sha256 {want.hex()}, got {got.hex()}")
    return True
