"""The SHA-256 trailer of snapshot files, as etcdutl tests and checks it."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from pyetcd.bbolt import (
    BoltReader,
    Sha256MismatchError,
    append_sha256,
    has_sha256_trailer,
    iter_with_sha256,
    verify_sha256,
)

from .trees import read_tree, write_tree

TREE = {b"a": {b"k%03d" % i: b"v" * i for i in range(200)}}


def test_etcds_test_for_a_trailer() -> None:
    assert has_sha256_trailer(4096 * 7 + 32)
    assert not has_sha256_trailer(4096 * 7)
    assert not has_sha256_trailer(4096 * 7 + 33)


def test_append_then_verify(tmp_path: Path) -> None:
    path = tmp_path / "snap.db"
    with path.open("w+b") as f:
        meta = write_tree(f, TREE)
        assert verify_sha256(f) is False
        digest = append_sha256(f)
    data = path.read_bytes()
    assert len(data) == meta.pgid * 4096 + 32
    assert data[-32:] == digest == hashlib.sha256(data[:-32]).digest()
    assert verify_sha256(path) is True
    with BoltReader(path) as r:  # the trailer does not bother the reader
        assert read_tree(r) == TREE and r.check() == []


def test_a_damaged_database_fails_the_hash(tmp_path: Path) -> None:
    path = tmp_path / "snap.db"
    with path.open("w+b") as f:
        write_tree(f, TREE)
        append_sha256(f)
    data = bytearray(path.read_bytes())
    data[5000] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(Sha256MismatchError, match=r"expected sha256 [0-9a-f]{64}, got"):
        verify_sha256(path)


def test_streaming_a_finished_database_ends_with_its_digest() -> None:
    f = io.BytesIO()
    write_tree(f, TREE)
    data = f.getvalue()
    chunks = list(iter_with_sha256(f, chunk_size=1000))
    assert all(len(c) == 1000 for c in chunks[:-2])
    assert b"".join(chunks[:-1]) == data
    assert chunks[-1] == hashlib.sha256(data).digest()
    assert list(iter_with_sha256(f, size=10))[-1] == hashlib.sha256(data[:10]).digest()
    with pytest.raises(EOFError):
        list(iter_with_sha256(f, size=len(data) + 1))
