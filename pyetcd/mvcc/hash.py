"""etcd's HashKV: CRC-32C over the key table, records marshalled as etcd stores them.

etcd hashes the bucket name ``key``, then every record up to the requested revision
in revision order (the 17-byte revision key, ``t``-marked for tombstones, and the
protobuf-marshalled ``mvccpb.KeyValue``), skipping what a compaction would drop. The
store keeps records in its own format, so they are re-marshalled here; equal
histories then give etcd's exact number.
"""

from __future__ import annotations

from pyetcd.mvcc.types import KeyValue

__all__ = ["crc32c", "marshal_kv"]


def _table() -> list[int]:
    poly = 0x82F63B78  # Castagnoli, reflected
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C of ``data``, continuing from ``crc`` (like zlib.crc32's second argument)."""
    crc ^= 0xFFFFFFFF
    table = _TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int64 fields encode negatives as ten-byte varints
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def marshal_kv(kv: KeyValue, tombstone: bool = False) -> bytes:
    """``mvccpb.KeyValue`` in protobuf wire format, zero fields omitted, as Go marshals it.

    A tombstone record holds only the key, as etcd writes it.
    """
    out = [b"\x0a", _varint(len(kv.key)), kv.key] if kv.key else []
    if tombstone:
        return b"".join(out)
    for tag, value in ((0x10, kv.create_revision), (0x18, kv.mod_revision), (0x20, kv.version)):
        if value:
            out += [bytes((tag,)), _varint(value)]
    if kv.value:
        out += [b"\x2a", _varint(len(kv.value)), kv.value]
    if kv.lease:
        out += [b"\x30", _varint(kv.lease)]
    return b"".join(out)
