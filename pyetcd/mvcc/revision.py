"""Revisions and their on-disk form.

A revision is ``(main, sub)``: ``main`` counts write transactions, ``sub``
counts the changes inside one. Plain tuples are used because they compare
lexicographically (exactly revision order) and are cheap on the hot path.

Backend keys are etcd's: 8-byte big-endian main, ``b"_"``, 8-byte big-endian
sub, plus ``b"t"`` for a tombstone, so byte order equals revision order.
"""

from __future__ import annotations

import struct

from pyetcd.mvcc.types import KeyValue

__all__ = [
    "REV_BYTES_LEN",
    "Revision",
    "bytes_to_rev",
    "decode_kv",
    "encode_kv",
    "encode_kv_fields",
    "is_tombstone",
    "rev_key",
    "rev_to_bytes",
]

Revision = tuple[int, int]

REV_BYTES_LEN = 17
_REV = struct.Struct(">Q")
# main, the b"_" separator (skipped), sub: unpacks straight into a Revision tuple
_REV_PAIR = struct.Struct(">QxQ")
# main, the b"_" separator, sub: a backend key in one pack
_REV_KEY = struct.Struct(">QcQ")
_KV_HEADER = struct.Struct(">qqqqI")


def rev_to_bytes(rev: Revision, tombstone: bool = False) -> bytes:
    """Encode ``rev`` as a backend key (``t`` suffix for a tombstone)."""
    b = _REV_KEY.pack(rev[0], b"_", rev[1])
    return b + b"t" if tombstone else b


def rev_key(main: int, sub: int) -> bytes:
    """The backend key of revision ``(main, sub)`` (``rev_to_bytes`` without the tuple)."""
    return _REV_KEY.pack(main, b"_", sub)


def bytes_to_rev(b: bytes) -> Revision:
    """Decode a backend key (tombstone mark ignored) back to a revision."""
    rev: Revision = _REV_PAIR.unpack_from(b, 0)
    return rev


def is_tombstone(b: bytes) -> bool:
    """Whether a backend key carries the tombstone mark."""
    return len(b) == REV_BYTES_LEN + 1 and b[-1] == 0x74


def encode_kv(kv: KeyValue) -> bytes:
    """Serialize a KeyValue for the backend's key table.

    Not protobuf: a fixed header is several times cheaper to build in Python,
    and the table is private to the store.
    """
    key = kv.key
    return (
        _KV_HEADER.pack(kv.create_revision, kv.mod_revision, kv.version, kv.lease, len(key))
        + key
        + kv.value
    )


def encode_kv_fields(
    key: bytes, create_revision: int, mod_revision: int, version: int, value: bytes, lease: int
) -> bytes:
    """:func:`encode_kv` of ``KeyValue(key, create_revision, ...)``, without building it."""
    return _KV_HEADER.pack(create_revision, mod_revision, version, lease, len(key)) + key + value


def decode_kv(b: bytes) -> KeyValue:
    """Inverse of :func:`encode_kv`."""
    create, mod, version, lease, klen = _KV_HEADER.unpack_from(b, 0)
    start = _KV_HEADER.size
    return KeyValue(
        key=b[start : start + klen],
        create_revision=create,
        mod_revision=mod,
        version=version,
        value=b[start + klen :],
        lease=lease,
    )
