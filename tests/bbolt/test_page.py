"""The page layouts: meta checksum, element offsets, freelist count overflow."""

from __future__ import annotations

import struct

import pytest

from pyetcd.bbolt import ChecksumError, InvalidDatabaseError, Meta, VersionMismatchError
from pyetcd.bbolt.page import (
    BRANCH_ELEMENT,
    LEAF_ELEMENT,
    LEAF_PAGE_FLAG,
    MAX_COUNT,
    PAGE_HEADER,
    encode_branch_page,
    encode_freelist_page,
    encode_leaf_page,
    fnv1a64,
)


def test_fnv1a64_known_values() -> None:
    assert fnv1a64(b"") == 0xCBF29CE484222325
    assert fnv1a64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a64(b"foobar") == 0x85944171F73967E8


def test_meta_round_trip_and_checksum() -> None:
    m = Meta(page_size=4096, root=3, freelist=2, pgid=4, txid=7, sequence=9)
    page = m.encode_page(1)
    assert len(page) == 4096
    assert PAGE_HEADER.unpack_from(page) == (1, 0x04, 0, 0)
    got = Meta.decode(page)
    got.validate()
    fields = (got.page_size, got.root, got.freelist, got.pgid, got.txid, got.sequence)
    assert fields == (4096, 3, 2, 4, 7, 9)
    # The checksum covers the 56 bytes of fields after the 16-byte page header.
    assert got.checksum == fnv1a64(page[16:72]) == struct.unpack_from("<Q", page, 72)[0]


@pytest.mark.parametrize(
    ("offset", "error", "words"),
    [
        (16, InvalidDatabaseError, "invalid database"),  # magic
        (20, VersionMismatchError, "version mismatch"),  # version
        (64, ChecksumError, "checksum error"),  # txid
    ],
)
def test_meta_validate_in_bbolts_order(offset: int, error: type[Exception], words: str) -> None:
    page = bytearray(Meta(page_size=4096, root=3, freelist=2, pgid=4, txid=1).encode_page(1))
    page[offset] ^= 0x01
    with pytest.raises(error, match=words):
        Meta.decode(bytes(page)).validate()


def test_leaf_element_positions_are_relative_to_the_element() -> None:
    page = encode_leaf_page([(0, b"k1", b"v1"), (1, b"key2", b"value2")], 5, 1024)
    assert len(page) == 1024
    assert PAGE_HEADER.unpack_from(page) == (5, LEAF_PAGE_FLAG, 2, 0)
    for i, (flags, key, value) in enumerate([(0, b"k1", b"v1"), (1, b"key2", b"value2")]):
        at = 16 + 16 * i
        f, pos, ksize, vsize = LEAF_ELEMENT.unpack_from(page, at)
        assert (f, ksize, vsize) == (flags, len(key), len(value))
        assert page[at + pos : at + pos + ksize + vsize] == key + value


def test_long_pages_overflow() -> None:
    page = encode_leaf_page([(0, b"k", b"x" * 5000)], 9, 1024)
    assert len(page) == 5 * 1024
    assert PAGE_HEADER.unpack_from(page)[3] == 4
    branch = encode_branch_page([(b"a" * 600, 3), (b"b" * 600, 4)], 10, 1024)
    assert PAGE_HEADER.unpack_from(branch) == (10, 0x01, 2, 1)
    pos, ksize, child = BRANCH_ELEMENT.unpack_from(branch, 32)
    assert (ksize, child) == (600, 4) and branch[32 + pos : 32 + pos + 600] == b"b" * 600


def test_inline_leaf_is_unpadded() -> None:
    assert encode_leaf_page([], 0, None) == PAGE_HEADER.pack(0, LEAF_PAGE_FLAG, 0, 0)


def test_freelist_count_overflow_keeps_the_length_in_the_first_id() -> None:
    small = encode_freelist_page([9, 7], 4, 4096)
    assert PAGE_HEADER.unpack_from(small)[2] == 2
    assert struct.unpack_from("<2Q", small, 16) == (7, 9)
    ids = list(range(10, 10 + MAX_COUNT + 5))
    big = encode_freelist_page(ids, 4, 4096)
    assert PAGE_HEADER.unpack_from(big)[2] == MAX_COUNT
    assert struct.unpack_from("<Q", big, 16)[0] == len(ids)
