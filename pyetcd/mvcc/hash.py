"""etcd's HashKV: CRC-32C over the key table, records marshalled as etcd stores them.

etcd hashes the bucket name ``key``, then every record up to the requested revision
in revision order (the 17-byte revision key, ``t``-marked for tombstones, and the
protobuf-marshalled ``mvccpb.KeyValue``), skipping what a compaction would drop. The
store keeps records in its own format, so they are re-marshalled here; equal
histories then give etcd's exact number.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pyetcd.mvcc.revision import Revision, bytes_to_rev, decode_kv, is_tombstone
from pyetcd.mvcc.types import KeyValue

__all__ = [
    "HASH_STORAGE_MAX_SIZE",
    "CompactionHasher",
    "HashStorage",
    "KeyValueHash",
    "crc32c",
    "crc32c_python",
    "hash_key_records",
    "marshal_kv",
    "varint",
]

HASH_STORAGE_MAX_SIZE = 10  # etcd's hashStorageMaxSize


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


def crc32c_python(data: bytes, crc: int = 0) -> int:
    """CRC-32C of ``data``, continuing from ``crc`` (like zlib.crc32's second argument)."""
    crc ^= 0xFFFFFFFF
    table = _TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _c_crc32c() -> Callable[[bytes, int], int] | None:
    # The crc32c package's C (SSE 4.2) implementation: the same numbers, far faster.
    # Its extension module is loaded alone: the package's __init__ also imports its
    # command line (argparse) and importlib.metadata (for __version__), 1.5 MiB of
    # every member's memory (issue 22).
    try:
        spec = importlib.util.find_spec("crc32c")
    except ImportError:
        spec = None
    if spec is None:  # a dependency; without it the pure one stays correct
        return None
    for where in spec.submodule_search_locations or ():
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(where, "_crc32c" + suffix)
            ext = importlib.util.spec_from_file_location("crc32c._crc32c", path)
            if ext is None or ext.loader is None or not os.path.exists(path):
                continue
            module = importlib.util.module_from_spec(ext)
            ext.loader.exec_module(module)
            fn: Callable[[bytes, int], int] = module.crc32c
            return fn
    import crc32c as c  # laid out differently: the whole package

    return c.crc32c


_CRC32C_C = _c_crc32c()


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C of ``data``, continuing from ``crc`` (like zlib.crc32's second argument)."""
    if _CRC32C_C is not None:
        return _CRC32C_C(data, crc)
    return crc32c_python(data, crc)


_ONE_BYTE = [bytes((i,)) for i in range(0x80)]


def varint(n: int) -> bytes:
    """``n`` as a protobuf varint (an int64 field's negative as ten bytes)."""
    if n < 0:
        n += 1 << 64  # int64 fields encode negatives as ten-byte varints
    elif n < 0x80:
        return _ONE_BYTE[n]
    elif n < 0x4000:  # lengths of most messages: two bytes, no loop
        return bytes(((n & 0x7F) | 0x80, n >> 7))
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
    out = [b"\x0a", varint(len(kv.key)), kv.key] if kv.key else []
    if tombstone:
        return b"".join(out)
    for tag, value in ((0x10, kv.create_revision), (0x18, kv.mod_revision), (0x20, kv.version)):
        if value:
            out += [bytes((tag,)), varint(value)]
    if kv.value:
        out += [b"\x2a", varint(len(kv.value)), kv.value]
    if kv.lease:
        out += [b"\x30", varint(kv.lease)]
    return b"".join(out)


def hash_record(key: bytes, value: bytes, crc: int) -> int:
    """``crc`` continued over one key-table record (revision key, then the KeyValue)."""
    return crc32c(marshal_kv(decode_kv(value), is_tombstone(key)), crc32c(key, crc))


def hash_key_records(
    rows: Iterable[tuple[bytes, bytes]], lower: Revision, keep: set[Revision]
) -> int:
    """etcd's HashKV over key-table ``rows``: crc32c from ``b"key"`` over each record,
    skipping those below ``lower`` that a compaction would drop (not in a non-empty
    ``keep``)."""
    h = crc32c(b"key")
    for k, v in rows:
        r = bytes_to_rev(k)
        if r < lower and keep and r not in keep:
            continue
        h = hash_record(k, v, h)
    return h


@dataclass(frozen=True, slots=True)
class KeyValueHash:
    """The hash of the store at ``revision`` taken by the compaction at ``revision``.

    ``compact_revision`` is the compaction before it (what HashKV reports with it).
    """

    hash: int
    compact_revision: int
    revision: int


class CompactionHasher:
    """HashKV at ``revision`` over records fed in revision order (etcd's ``kvHasher``).

    Records at or below ``compact_revision`` that the compaction does not keep are
    skipped when there is anything kept at all, as HashKV skips them.
    """

    __slots__ = ("_crc", "_keep", "_lower", "compact_revision", "revision")

    def __init__(self, compact_revision: int, revision: int, keep: set[Revision]) -> None:
        self.compact_revision = compact_revision
        self.revision = revision
        self._keep = keep
        self._lower: Revision = (compact_revision + 1, 0)
        self._crc = crc32c(b"key")

    def write(self, rows: list[tuple[bytes, bytes]]) -> None:
        """Hash the records ``rows`` (revision key, stored value), all at or below ``revision``."""
        keep, lower, crc = self._keep, self._lower, self._crc
        for k, v in rows:
            r = bytes_to_rev(k)
            if r[0] > self.revision or (r < lower and keep and r not in keep):
                continue
            crc = hash_record(k, v, crc)
        self._crc = crc

    def result(self) -> KeyValueHash:
        """The hash of every record written so far."""
        return KeyValueHash(self._crc, self.compact_revision, self.revision)


class HashStorage:
    """The hashes of the last ``HASH_STORAGE_MAX_SIZE`` compactions, by revision."""

    def __init__(self) -> None:
        self._hashes: list[KeyValueHash] = []  # ascending revision

    def store(self, h: KeyValueHash) -> None:
        """Keep ``h``, dropping the oldest beyond the limit."""
        self._hashes = sorted(
            [x for x in self._hashes if x.revision != h.revision] + [h],
            key=lambda x: x.revision,
        )[-HASH_STORAGE_MAX_SIZE:]

    def get(self, revision: int) -> KeyValueHash | None:
        """The hash a compaction took at ``revision``, if still kept."""
        for h in self._hashes:
            if h.revision == revision:
                return h
        return None

    def hashes(self) -> list[KeyValueHash]:
        """Every kept hash, oldest first."""
        return list(self._hashes)
