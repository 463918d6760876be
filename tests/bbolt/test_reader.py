"""BoltReader on damaged files: typed errors in bbolt's words, meta fallback, check()."""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import pytest

from pyetcd.bbolt import (
    BoltReader,
    BucketNotFoundError,
    ChecksumError,
    CorruptDatabaseError,
    InvalidDatabaseError,
    Meta,
    VersionMismatchError,
)
from pyetcd.bbolt.page import LEAF_ELEMENT, PAGE_HEADER

from .trees import Tree, read_tree, write_tree

TREE: Tree = {
    b"a": {b"%04d" % i: b"v" * (i % 50) for i in range(400)},
    b"b": {b"big": b"x" * 9000, b"nested": {b"k": b"v"}},
}


def _db(page_size: int = 4096) -> bytearray:
    f = io.BytesIO()
    write_tree(f, TREE, page_size)
    return bytearray(f.getvalue())


def _open(buf: bytes | bytearray) -> BoltReader:
    return BoltReader(io.BytesIO(bytes(buf)))


def test_reads_from_a_path_and_closes_it(tmp_path: Path) -> None:
    path = tmp_path / "db"
    path.write_bytes(_db())
    with BoltReader(path) as r:
        assert read_tree(r) == TREE
        assert r.buckets() == [b"a", b"b"] and r.buckets(b"b") == [b"nested"]
        assert r.has_bucket((b"b", b"nested")) and not r.has_bucket(b"c")
        assert r.get(b"b", b"nested") is None and r.get(b"a", b"nope") is None
    assert r._file.closed


def test_missing_bucket() -> None:
    r = _open(_db())
    with pytest.raises(BucketNotFoundError, match="bucket not found"):
        list(r.items(b"c"))
    with pytest.raises(BucketNotFoundError, match="bucket not found"):
        r.items((b"b", b"big"))  # a key, not a bucket


@pytest.mark.parametrize("data", [b"", b"\x00" * 100, os.urandom(3 * 4096), b"x" * 40000])
def test_garbage_is_not_a_database(data: bytes) -> None:
    with pytest.raises(InvalidDatabaseError, match=r"^invalid database"):
        _open(data)


def _flip(buf: bytearray, offset: int) -> None:
    buf[offset] ^= 0xFF


@pytest.mark.parametrize("page_size", [4096, 16384])
def test_a_damaged_newer_meta_falls_back_to_the_older(page_size: int) -> None:
    buf = _db(page_size)
    newer = Meta.decode(bytes(buf[:page_size]))
    _flip(buf, 16)  # meta 0's magic: its page size must be found from meta 1
    r = _open(buf)
    assert r.meta.txid == newer.txid - 1 and r.page_size == page_size
    assert read_tree(r) == TREE


def test_both_metas_damaged_raise_meta0s_error_in_bbolts_words() -> None:
    buf = _db()
    _flip(buf, 16 + 60)  # txid, under the checksum
    _flip(buf, 4096 + 16 + 60)
    with pytest.raises(ChecksumError, match=r"^checksum error"):
        _open(buf)
    buf = _db()
    struct.pack_into("<I", buf, 20, 1)
    struct.pack_into("<I", buf, 4096 + 20, 1)
    with pytest.raises(VersionMismatchError, match=r"^version mismatch"):
        _open(buf)


def test_truncated_files() -> None:
    buf = _db()
    with pytest.raises(CorruptDatabaseError, match="truncated database"):
        _open(buf[: len(buf) // 2])
    with pytest.raises(CorruptDatabaseError, match="file size too small 5000"):
        _open(buf[:5000])


def _root_leaf_of(r: BoltReader, name: bytes) -> int:
    from pyetcd.bbolt.reader import _bucket_ref

    found = r._seek(r._resolve(()), name)
    assert found is not None
    return _bucket_ref(found[1], "test").root


def test_a_page_of_the_wrong_type() -> None:
    buf = _db()
    pgid = _root_leaf_of(_open(buf), b"a")
    struct.pack_into("<H", buf, pgid * 4096 + 8, 0x10)  # flags: freelist
    r = _open(buf)
    with pytest.raises(CorruptDatabaseError, match=f"page {pgid}: has unexpected type/flags: 10"):
        list(r.items(b"a"))
    assert any("has unexpected type/flags" in e for e in r.check())


def test_a_page_that_names_another_id() -> None:
    buf = _db()
    pgid = _root_leaf_of(_open(buf), b"a")
    struct.pack_into("<Q", buf, pgid * 4096, 2)
    with pytest.raises(CorruptDatabaseError, match=f"Page expected to be: {pgid}, but self"):
        list(_open(buf).items(b"a"))


def test_an_element_pointing_past_its_page() -> None:
    buf = _db()
    r = _open(buf)
    # The first leaf of bucket "a": follow the root's first branch element down.
    pgid = _root_leaf_of(r, b"a")
    _, flags, _, _ = PAGE_HEADER.unpack_from(buf, pgid * 4096)
    while flags == 0x01:
        pgid = struct.unpack_from("<Q", buf, pgid * 4096 + 16 + 8)[0]
        _, flags, _, _ = PAGE_HEADER.unpack_from(buf, pgid * 4096)
    f, pos, ksize, _ = LEAF_ELEMENT.unpack_from(buf, pgid * 4096 + 16)
    LEAF_ELEMENT.pack_into(buf, pgid * 4096 + 16, f, pos, ksize, 1 << 20)
    with pytest.raises(CorruptDatabaseError, match="runs past the end of the page"):
        list(_open(buf).items(b"a"))


def test_check_finds_unreachable_and_doubly_used_pages() -> None:
    buf = _db()
    r = _open(buf)
    assert r.check() == [] and r.freelist() == []
    meta = r.meta
    # Grow the high-water mark over an extra, unused page.
    buf += bytes(4096)
    grown = Meta(
        page_size=4096,
        root=meta.root,
        freelist=meta.freelist,
        pgid=meta.pgid + 1,
        txid=meta.txid + 1,
    )
    buf[:4096] = grown.encode_page(0)
    assert _open(buf).check() == [f"page {meta.pgid}: unreachable unfreed"]
