"""BoltWriter: round trips through BoltReader, the shapes it builds, its errors, its memory."""

from __future__ import annotations

import io
import random
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyetcd.bbolt import (
    BoltReader,
    BoltWriter,
    BucketNotFoundError,
    InvalidDatabaseError,
    WriterError,
)

from .trees import Tree, read_tree, write_tree


def _blob(min_size: int, max_size: int) -> st.SearchStrategy[bytes]:
    # Random bytes of a drawn length: cheap to make at 20 KB, unlike st.binary.
    return st.tuples(st.integers(min_size, max_size), st.integers(0, 2**32 - 1)).map(
        lambda t: random.Random(t[1]).randbytes(t[0])
    )


_keys = st.one_of(st.binary(min_size=1, max_size=12), _blob(1, 20_000))
_values = st.one_of(st.binary(max_size=40), _blob(0, 20_000))
_buckets = st.recursive(
    st.dictionaries(_keys, _values, max_size=30),
    lambda inner: st.dictionaries(_keys, st.one_of(_values, inner), max_size=30),
    max_leaves=60,
)
_trees = st.dictionaries(_keys, _buckets, max_size=4)


def _count_pages(tree: Tree) -> int:
    return sum(1 + (_count_pages(v) if isinstance(v, dict) else 0) for v in tree.values())


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(tree=_trees, page_size=st.sampled_from([1024, 4096, 16384]))
def test_round_trip(tree: Tree, page_size: int) -> None:
    f = io.BytesIO()
    meta = write_tree(f, tree, page_size)
    assert len(f.getvalue()) == meta.pgid * page_size
    r = BoltReader(f)
    assert r.meta == meta
    assert read_tree(r) == tree
    assert r.check() == []
    for name, bucket in tree.items():
        assert isinstance(bucket, dict)
        for key, value in bucket.items():
            got = r.get(name, key)
            assert got == (None if isinstance(value, dict) else value)


def _many(n: int, value_size: int) -> Tree:
    rnd = random.Random(n)
    return {b"b": {b"%016d" % i: rnd.randbytes(value_size) for i in range(n)}}


def test_deep_trees_are_balanced_and_fully_packed() -> None:
    f = io.BytesIO()
    tree = _many(30_000, 8)
    write_tree(f, tree, 1024)
    r = BoltReader(f)
    s = r.stats(b"b")
    # Pages are filled up: 1008 bytes after the header take 25 leaf elements of
    # 16 + 16 + 8 bytes, or 31 branch elements of 16 + 16: 1200 leaves, 39 + 2 + 1
    # branch pages, the last branch page of each level taking at least two children.
    assert (s.depth, s.keys, s.overflow_pages) == (4, 30_000, 0)
    assert (s.leaf_pages, s.branch_pages) == (1200, 42)
    assert read_tree(r) == tree
    assert r.check() == []


def test_small_buckets_are_inline_as_bbolt_stores_them() -> None:
    f = io.BytesIO()
    tree: Tree = {
        b"empty": {},
        b"small": {b"k": b"v" * 100},
        b"quarter": {b"k": b"v" * (4096 // 4 - 16 - 16 - 1)},
        b"over": {b"k": b"v" * (4096 // 4)},
        b"outer": {b"inner": {b"k": b"v"}},
    }
    write_tree(f, tree, 4096)
    r = BoltReader(f)
    inline = {name: r.stats(name).inline for name in tree}
    assert inline == {
        b"empty": True,
        b"small": True,
        b"quarter": True,
        b"over": False,
        b"outer": False,
    }
    assert r.stats((b"outer", b"inner")).inline
    assert read_tree(r) == tree


def test_long_keys_still_give_two_children_per_branch_page() -> None:
    tree: Tree = {b"b": {bytes([i]) * 3000: b"" for i in range(1, 40)}}
    f = io.BytesIO()
    write_tree(f, tree, 1024)
    r = BoltReader(f)
    s = r.stats(b"b")
    assert s.branch_pages <= s.leaf_pages - 1 and s.depth <= 7
    assert read_tree(r) == tree and r.check() == []


def test_sequence_and_txid() -> None:
    f = io.BytesIO()
    with BoltWriter(f, txid=11) as w:
        w.bucket(b"a", sequence=42)
    r = BoltReader(f)
    assert r.sequence(b"a") == 42
    assert r.meta.txid == 11


@pytest.mark.parametrize(
    ("steps", "error", "words"),
    [
        ([("b", b"a"), ("p", b"a", b"k2"), ("p", b"a", b"k1")], WriterError, "key out of order"),
        ([("b", b"a"), ("p", b"a", b"k"), ("p", b"a", b"k")], WriterError, "written twice"),
        ([("b", b"a"), ("b", (b"a", b"x")), ("p", b"a", b"x")], WriterError, "incompatible value"),
        ([("b", b"a"), ("p", b"a", b"x"), ("b", (b"a", b"x"))], WriterError, "incompatible value"),
        ([("b", b"a"), ("b", b"a")], WriterError, "bucket already exists"),
        ([("b", b"b"), ("b", b"a")], WriterError, "key out of order"),
        ([("b", b"a"), ("p", b"a", b"")], WriterError, "key required"),
        ([("b", b"a"), ("p", b"a", b"k" * 32769)], WriterError, "key too large"),
        ([("b", b"")], WriterError, "bucket name required"),
        ([("b", b"a"), ("b", b"b"), ("p", b"a", b"k")], BucketNotFoundError, "bucket not found"),
        ([("p", b"a", b"k")], BucketNotFoundError, "bucket not found"),
        ([("b", (b"a", b"b"))], BucketNotFoundError, "bucket not found"),
        ([("p", (), b"k")], WriterError, "incompatible value"),
    ],
)
def test_misuse_is_refused_in_bbolts_words(
    steps: list[tuple[object, ...]], error: type[Exception], words: str
) -> None:
    w = BoltWriter(io.BytesIO())
    with pytest.raises(error, match=words):
        for step in steps:
            if step[0] == "b":
                w.bucket(step[1])  # type: ignore[arg-type]
            else:
                w.put(step[1], step[2], b"v")  # type: ignore[arg-type]


def test_closed_writer_and_bad_page_size() -> None:
    w = BoltWriter(io.BytesIO())
    w.close()
    with pytest.raises(WriterError, match="tx closed"):
        w.bucket(b"a")
    for size in (512, 3000, 1 << 25):
        with pytest.raises(ValueError, match="page size"):
            BoltWriter(io.BytesIO(), size)


def test_a_failed_export_leaves_no_database() -> None:
    f = io.BytesIO()
    with pytest.raises(RuntimeError), BoltWriter(f) as w:
        w.bucket(b"a")
        w.put(b"a", b"k", b"v" * 10_000)
        raise RuntimeError("export failed")
    with pytest.raises(InvalidDatabaseError, match="invalid database"):
        BoltReader(f)


def test_memory_stays_bounded_while_streaming(tmp_path: Path) -> None:
    n, value = 100_000, bytes(range(256))
    path = tmp_path / "big.db"
    with path.open("w+b") as f:
        tracemalloc.start()
        try:
            with BoltWriter(f) as w:
                w.bucket(b"key")
                for i in range(n):
                    w.put(b"key", b"%016d" % i, value)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    # The database is ~30 MB; the writer holds a few pages.
    assert path.stat().st_size > 25_000_000
    assert peak < 2_000_000, f"peak {peak} bytes"
    with BoltReader(path) as r:
        assert sum(1 for _ in r.items(b"key")) == n
        assert r.get(b"key", b"%016d" % 77_777) == value
