"""bbolt's on-disk layout: pages, elements, bucket headers and the meta page.

Rules this module keeps:

1. Every integer is little-endian: bbolt writes its structs in the byte order of the
   machine, and every platform etcd ships for is little-endian.
2. A page is ``page_size`` bytes, or ``(overflow + 1) * page_size`` when its elements do
   not fit in one; it starts with a 16-byte header ``id u64, flags u16, count u16,
   overflow u32``. Page ids are offsets in pages: page ``n`` starts at ``n * page_size``.
3. Pages 0 and 1 are the two meta pages. The valid one with the higher txid is the
   database; the other is the previous transaction's.
4. A leaf element is ``flags u32, pos u32, ksize u32, vsize u32`` and a branch element
   ``pos u32, ksize u32, pgid u64``; ``pos`` counts from the element's own first byte to
   its key. Keys (and values) follow all the element headers, in element order.
5. A leaf element with flag ``BUCKET_LEAF_FLAG`` is a nested bucket: its value is a
   16-byte bucket header ``root u64, sequence u64``; ``root == 0`` means the bucket is
   inline and the rest of the value is its one leaf page (id 0, no overflow).
6. A branch element's key is the first key of the child page it points to.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from .errors import ChecksumError, InvalidDatabaseError, VersionMismatchError

__all__ = [
    "BRANCH_ELEMENT",
    "BRANCH_PAGE_FLAG",
    "BUCKET_HEADER",
    "BUCKET_LEAF_FLAG",
    "DEFAULT_PAGE_SIZE",
    "ELEMENT_SIZE",
    "FREELIST_PAGE_FLAG",
    "LEAF_ELEMENT",
    "LEAF_PAGE_FLAG",
    "MAGIC",
    "MAX_COUNT",
    "MAX_ELEMENTS",
    "MAX_KEY_SIZE",
    "MAX_PAGE_SIZE",
    "MAX_VALUE_SIZE",
    "META_PAGE_BYTES",
    "META_PAGE_FLAG",
    "MIN_PAGE_SIZE",
    "PAGE_HEADER",
    "PAGE_HEADER_SIZE",
    "PGID_NO_FREELIST",
    "VERSION",
    "Meta",
    "encode_branch_page",
    "encode_freelist_page",
    "encode_leaf_page",
    "fnv1a64",
    "page_type",
]

MAGIC: Final = 0xED0CDAED
VERSION: Final = 2
DEFAULT_PAGE_SIZE: Final = 4096
# bbolt finds the second meta page by trying offsets 1 KiB << 0..14, so page sizes
# outside [1 KiB, 16 MiB] could not be found again when the first meta page is damaged.
MIN_PAGE_SIZE: Final = 1024
MAX_PAGE_SIZE: Final = 1024 << 14

BRANCH_PAGE_FLAG: Final = 0x01
LEAF_PAGE_FLAG: Final = 0x02
META_PAGE_FLAG: Final = 0x04
FREELIST_PAGE_FLAG: Final = 0x10
BUCKET_LEAF_FLAG: Final = 0x01

# The meta's freelist field when the freelist is not written (NoFreelistSync).
PGID_NO_FREELIST: Final = 0xFFFFFFFFFFFFFFFF
MAX_KEY_SIZE: Final = 32768
MAX_VALUE_SIZE: Final = (1 << 31) - 2
# page.count is a u16; a freelist with this many ids keeps its length in its first u64.
MAX_COUNT: Final = 0xFFFF
# bbolt refuses to write a branch or leaf page of 0xFFFF elements or more.
MAX_ELEMENTS: Final = 0xFFFE

PAGE_HEADER: Final = struct.Struct("<QHHI")  # id, flags, count, overflow
BRANCH_ELEMENT: Final = struct.Struct("<IIQ")  # pos, ksize, pgid
LEAF_ELEMENT: Final = struct.Struct("<IIII")  # flags, pos, ksize, vsize
BUCKET_HEADER: Final = struct.Struct("<QQ")  # root pgid (0 = inline), sequence
# magic, version, page_size, flags, root bucket (root, sequence), freelist, pgid, txid,
# checksum; the checksum covers every byte before it.
_META: Final = struct.Struct("<IIIIQQQQQQ")
_META_SUMMED: Final = _META.size - 8
PAGE_HEADER_SIZE: Final = PAGE_HEADER.size
ELEMENT_SIZE: Final = LEAF_ELEMENT.size  # the same 16 bytes for branch elements

_FNV_OFFSET: Final = 0xCBF29CE484222325
_FNV_PRIME: Final = 0x100000001B3
_U64: Final = (1 << 64) - 1


def fnv1a64(data: bytes) -> int:
    """FNV-1a, 64 bits: the checksum bbolt keeps in each meta page."""
    h = _FNV_OFFSET
    for b in data:
        h = ((h ^ b) * _FNV_PRIME) & _U64
    return h


def page_type(flags: int) -> str:
    """bbolt's name for a page's type, as its error messages print it."""
    if flags & BRANCH_PAGE_FLAG:
        return "branch"
    if flags & LEAF_PAGE_FLAG:
        return "leaf"
    if flags & META_PAGE_FLAG:
        return "meta"
    if flags & FREELIST_PAGE_FLAG:
        return "freelist"
    return f"unknown<{flags:02x}>"


@dataclass(frozen=True, slots=True)
class Meta:
    """The contents of a meta page: which tree is the database, and how big it is."""

    page_size: int
    # The root bucket's root page: never inline, it holds only bucket entries.
    root: int
    # The freelist page, or PGID_NO_FREELIST.
    freelist: int
    # The high-water mark: every page of the database has an id below it, so the
    # database is ``pgid * page_size`` bytes.
    pgid: int
    txid: int
    sequence: int = 0
    flags: int = 0
    magic: int = MAGIC
    version: int = VERSION
    # The FNV-1a of the fields above as stored; ``encode`` writes the right one.
    checksum: int = 0

    def _summed(self) -> bytes:
        return _META.pack(
            self.magic,
            self.version,
            self.page_size,
            self.flags,
            self.root,
            self.sequence,
            self.freelist,
            self.pgid,
            self.txid,
            0,
        )[:_META_SUMMED]

    def sum64(self) -> int:
        """The checksum these fields should carry."""
        return fnv1a64(self._summed())

    def validate(self) -> None:
        """Check magic, version and checksum, in bbolt's order.

        Raises:
            InvalidDatabaseError, VersionMismatchError, ChecksumError.
        """
        if self.magic != MAGIC:
            raise InvalidDatabaseError(f"meta page magic {self.magic:#010x}")
        if self.version != VERSION:
            raise VersionMismatchError(f"meta page version {self.version}, want {VERSION}")
        if self.checksum != self.sum64():
            raise ChecksumError(f"meta page of txid {self.txid}")

    def encode_page(self, page_id: int) -> bytes:
        """The whole meta page ``page_id`` (0 or 1), with a fresh checksum."""
        summed = self._summed()
        body = summed + struct.pack("<Q", fnv1a64(summed))
        buf = bytearray(self.page_size)
        PAGE_HEADER.pack_into(buf, 0, page_id, META_PAGE_FLAG, 0, 0)
        buf[PAGE_HEADER_SIZE : PAGE_HEADER_SIZE + len(body)] = body
        return bytes(buf)

    @classmethod
    def decode(cls, page: bytes) -> Meta:
        """The meta stored in a meta page (at least 80 bytes); not validated."""
        magic, version, psize, flags, root, seq, freelist, pgid, txid, checksum = _META.unpack_from(
            page, PAGE_HEADER_SIZE
        )
        return cls(
            page_size=psize,
            root=root,
            freelist=freelist,
            pgid=pgid,
            txid=txid,
            sequence=seq,
            flags=flags,
            magic=magic,
            version=version,
            checksum=checksum,
        )


META_PAGE_BYTES: Final = PAGE_HEADER_SIZE + _META.size


def _pad(buf: bytearray, page_size: int) -> tuple[bytearray, int]:
    pages = max(1, -(-len(buf) // page_size))
    buf.extend(bytes(pages * page_size - len(buf)))
    return buf, pages - 1


def encode_leaf_page(
    elements: list[tuple[int, bytes, bytes]], page_id: int, page_size: int | None
) -> bytes:
    """A leaf page holding ``(flags, key, value)`` elements, in the order given.

    With ``page_size`` the page is zero-padded to whole pages and its overflow set;
    with ``None`` it is the unpadded page an inline bucket carries after its header.
    """
    n = len(elements)
    buf = bytearray(PAGE_HEADER_SIZE + ELEMENT_SIZE * n)
    for i, (flags, key, value) in enumerate(elements):
        at = PAGE_HEADER_SIZE + ELEMENT_SIZE * i
        LEAF_ELEMENT.pack_into(buf, at, flags, len(buf) - at, len(key), len(value))
        buf += key
        buf += value
    overflow = 0
    if page_size is not None:
        buf, overflow = _pad(buf, page_size)
    PAGE_HEADER.pack_into(buf, 0, page_id, LEAF_PAGE_FLAG, n, overflow)
    return bytes(buf)


def encode_branch_page(children: list[tuple[bytes, int]], page_id: int, page_size: int) -> bytes:
    """A branch page pointing at ``(first key, pgid)`` children, in the order given."""
    n = len(children)
    buf = bytearray(PAGE_HEADER_SIZE + ELEMENT_SIZE * n)
    for i, (key, child) in enumerate(children):
        at = PAGE_HEADER_SIZE + ELEMENT_SIZE * i
        BRANCH_ELEMENT.pack_into(buf, at, len(buf) - at, len(key), child)
        buf += key
    buf, overflow = _pad(buf, page_size)
    PAGE_HEADER.pack_into(buf, 0, page_id, BRANCH_PAGE_FLAG, n, overflow)
    return bytes(buf)


def encode_freelist_page(free: list[int], page_id: int, page_size: int) -> bytes:
    """A freelist page listing the free page ids (sorted here)."""
    ids = sorted(free)
    if len(ids) < MAX_COUNT:
        count, body = len(ids), struct.pack(f"<{len(ids)}Q", *ids)
    else:
        count, body = MAX_COUNT, struct.pack(f"<{len(ids) + 1}Q", len(ids), *ids)
    buf, overflow = _pad(bytearray(PAGE_HEADER_SIZE) + body, page_size)
    PAGE_HEADER.pack_into(buf, 0, page_id, FREELIST_PAGE_FLAG, count, overflow)
    return bytes(buf)
