"""Writes a bbolt database in one forward pass, from buckets given whole in key order.

Rules this module keeps:

1. Pages are written in the order they fill up and never rewritten, except pages 0 and 1:
   they are reserved (zeroed) first and the two meta pages go there at ``close()``, once
   the root bucket and the high-water mark are known.
2. Memory is bounded by the B+tree's shape, not the data: each open bucket holds one
   unwritten leaf page and, per branch level, at most two unwritten branch pages (the
   last full one is held back so the level's final page never points at one child).
3. A bucket's tree is built bottom-up as its keys arrive: a full leaf is written and its
   first key and page id go up to the branch level above, created on demand when the
   second page of a level is written. When the bucket ends, each level writes what it
   holds, lowest first; the level that wrote a single page holds the bucket's root.
4. A bucket with no nested bucket whose one leaf holds at most page_size / 4 bytes is
   stored inline in its parent's leaf, as bbolt stores small buckets.
5. Every page below the high-water mark is reachable (or listed free), so bbolt's
   consistency check (``tx.Check``, run by ``etcdutl snapshot status``) passes; the
   freelist written is empty.
"""

from __future__ import annotations

import dataclasses
from types import TracebackType
from typing import BinaryIO, Final

from .errors import BucketNotFoundError, WriterError
from .page import (
    BUCKET_HEADER,
    BUCKET_LEAF_FLAG,
    DEFAULT_PAGE_SIZE,
    ELEMENT_SIZE,
    MAX_ELEMENTS,
    MAX_KEY_SIZE,
    MAX_PAGE_SIZE,
    MAX_VALUE_SIZE,
    MIN_PAGE_SIZE,
    PAGE_HEADER_SIZE,
    Meta,
    encode_branch_page,
    encode_freelist_page,
    encode_leaf_page,
)
from .path import BucketPath, as_path

__all__ = ["BoltWriter"]

# Page 0 and 1 are the meta pages; data pages start at 2.
_FIRST_DATA_PAGE: Final = 2


class _PageSink:
    """Hands out page ids in file order and writes pages at their place."""

    def __init__(self, fileobj: BinaryIO, page_size: int) -> None:
        self.fileobj = fileobj
        self.page_size = page_size
        self.start = fileobj.tell()
        # The next page id to hand out: the high-water mark so far.
        self.next_pgid = _FIRST_DATA_PAGE
        fileobj.write(bytes(_FIRST_DATA_PAGE * page_size))

    def write(self, page: bytes) -> None:
        self.fileobj.write(page)
        self.next_pgid += len(page) // self.page_size


class _BranchLevel:
    """One branch level of a bucket's tree under construction, filled left to right."""

    def __init__(self, sink: _PageSink) -> None:
        self.sink = sink
        self.children: list[tuple[bytes, int]] = []
        self.size = PAGE_HEADER_SIZE
        # The last full page, not written yet: if the level ends with a page of one
        # child, that page takes this one's last child (or this one takes it whole).
        self.held: list[tuple[bytes, int]] | None = None
        self.first_page: tuple[bytes, int] | None = None
        self.pages_written = 0
        self.parent: _BranchLevel | None = None

    def add(self, key: bytes, pgid: int) -> None:
        elsize = ELEMENT_SIZE + len(key)
        # Every branch page gets at least two children (bbolt's minKeysPerPage), even
        # when long keys overflow it: so each level has at most half the pages of the
        # one below, and the tree ends in one root.
        if len(self.children) >= 2 and (
            self.size + elsize > self.sink.page_size or len(self.children) == MAX_ELEMENTS
        ):
            if self.held is not None:
                self._write(self.held)
            self.held, self.children, self.size = self.children, [], PAGE_HEADER_SIZE
        self.children.append((key, pgid))
        self.size += elsize

    def finish(self) -> None:
        """Write what the level holds; its parent, if any, is finished by the caller."""
        if self.held is not None:
            if len(self.children) < 2:
                if len(self.held) > 2:
                    self.children.insert(0, self.held.pop())
                else:
                    self.children = self.held + self.children
                    self.held = None
            if self.held is not None:
                self._write(self.held)
                self.held = None
        if self.children:
            self._write(self.children)
            self.children = []

    def _write(self, children: list[tuple[bytes, int]]) -> None:
        pgid = self.sink.next_pgid
        self.sink.write(encode_branch_page(children, pgid, self.sink.page_size))
        _record_page(self, children[0][0], pgid)


class _Bucket:
    """A bucket being written: its unwritten leaf and the branch levels above it."""

    def __init__(self, sink: _PageSink, name: bytes, sequence: int) -> None:
        self.sink = sink
        self.name = name
        self.sequence = sequence
        self.elements: list[tuple[int, bytes, bytes]] = []
        self.size = PAGE_HEADER_SIZE
        self.last_key: bytes | None = None
        self.last_is_bucket = False
        self.has_buckets = False
        # The leaf level's bookkeeping, as _BranchLevel keeps it for branch levels.
        self.first_page: tuple[bytes, int] | None = None
        self.pages_written = 0
        self.parent: _BranchLevel | None = None

    def check_next(self, key: bytes, is_bucket: bool) -> None:
        """Raise unless ``key`` may come next in this bucket."""
        last = self.last_key
        if last is None or key > last:
            return
        if key < last:
            raise WriterError(f"key out of order: {key!r} after {last!r}")
        if is_bucket and self.last_is_bucket:
            raise WriterError(f"bucket already exists: {key!r}")
        if is_bucket or self.last_is_bucket:
            raise WriterError(f"incompatible value: {key!r} is both a key and a bucket")
        raise WriterError(f"key out of order: {key!r} written twice")

    def add(self, flags: int, key: bytes, value: bytes) -> None:
        elsize = ELEMENT_SIZE + len(key) + len(value)
        if self.elements and (
            self.size + elsize > self.sink.page_size or len(self.elements) == MAX_ELEMENTS
        ):
            self._write_leaf()
        self.elements.append((flags, key, value))
        self.size += elsize
        self.last_key = key
        self.last_is_bucket = flags == BUCKET_LEAF_FLAG

    def _write_leaf(self) -> None:
        pgid = self.sink.next_pgid
        self.sink.write(encode_leaf_page(self.elements, pgid, self.sink.page_size))
        # An empty bucket's root leaf has no first key; nothing is above it.
        _record_page(self, self.elements[0][1] if self.elements else b"", pgid)
        self.elements, self.size = [], PAGE_HEADER_SIZE

    def finish_root(self) -> int:
        """Write everything the bucket holds and return its root page id."""
        if self.elements or self.pages_written == 0:
            self._write_leaf()
        level = self.parent
        while level is not None:
            level.finish()
            level = level.parent
        # Follow the chain up to the one level that wrote a single page: the root.
        node: _Bucket | _BranchLevel = self
        while node.parent is not None:
            node = node.parent
        assert node.first_page is not None and node.pages_written == 1
        return node.first_page[1]

    def finish_value(self) -> bytes:
        """This bucket's value in its parent: a header, and the page itself if inline."""
        if (
            self.pages_written == 0
            and not self.has_buckets
            and self.size <= self.sink.page_size // 4
        ):
            return BUCKET_HEADER.pack(0, self.sequence) + encode_leaf_page(self.elements, 0, None)
        return BUCKET_HEADER.pack(self.finish_root(), self.sequence)


def _record_page(level: _Bucket | _BranchLevel, first_key: bytes, pgid: int) -> None:
    """Tell the level above that ``level`` wrote a page starting at ``first_key``.

    The level above is only created by a level's second page, so that a level of one
    page is the root rather than the only child of a branch page.
    """
    level.pages_written += 1
    if level.pages_written == 1:
        level.first_page = (first_key, pgid)
        return
    if level.parent is None:
        level.parent = _BranchLevel(level.sink)
        assert level.first_page is not None
        level.parent.add(*level.first_page)
    level.parent.add(first_key, pgid)


class BoltWriter:
    """Writes a bbolt database to a seekable binary file, streaming.

    Buckets are given whole and in order: ``bucket(path)`` opens a bucket (its name
    must sort after every key and bucket already written in its parent), then
    ``put(path, key, value)`` adds its keys in ascending byte order, and nested buckets
    take their turn among the keys like any key. Using a bucket higher up the path, or
    opening a sibling, ends the buckets below it: they cannot be reopened. ``close()``
    ends them all and writes the freelist and both meta pages.

    Args:
        fileobj: a binary file open for writing and seeking, positioned where the
            database starts (normally 0); it is left positioned at its end.
        page_size: bytes per page, a power of two from 1 KiB to 16 MiB. etcd uses the
            OS page size, 4096 on its platforms.
        txid: the transaction id of meta page ``txid % 2``; the other meta page gets
            ``txid - 1``, as bbolt's ``Tx.WriteTo`` (etcd's snapshot) writes them.

    Raises:
        ValueError: a page size or txid bbolt could not use.
    """

    def __init__(
        self, fileobj: BinaryIO, page_size: int = DEFAULT_PAGE_SIZE, *, txid: int = 2
    ) -> None:
        if not MIN_PAGE_SIZE <= page_size <= MAX_PAGE_SIZE or page_size & (page_size - 1):
            raise ValueError(
                f"page size {page_size}: want a power of two in [{MIN_PAGE_SIZE}, {MAX_PAGE_SIZE}]"
            )
        if txid < 1:
            raise ValueError(f"txid {txid}: want at least 1")
        self._txid = txid
        self._sink = _PageSink(fileobj, page_size)
        # stack[0] is the root bucket; stack[i] is the open bucket at depth i.
        self._stack: list[_Bucket] = [_Bucket(self._sink, b"", 0)]
        self._meta: Meta | None = None

    @property
    def page_size(self) -> int:
        return self._sink.page_size

    def bucket(self, path: BucketPath, *, sequence: int = 0) -> None:
        """Open the bucket at ``path``; its parent must be open (or be the root).

        Args:
            path: the bucket's name, or the names from the top-level bucket down.
            sequence: the bucket's sequence number (bbolt's ``NextSequence`` counter).

        Raises:
            BucketNotFoundError: the parent bucket is not open.
            WriterError: empty or too long name, or not after the parent's last key.
        """
        names = as_path(path)
        if not names or not names[-1]:
            raise WriterError("bucket name required")
        if len(names[-1]) > MAX_KEY_SIZE:
            raise WriterError(f"key too large: bucket name of {len(names[-1])} bytes")
        parent = self._enter(names[:-1])
        parent.check_next(names[-1], is_bucket=True)
        # The name is claimed now, so no key can take it while the bucket is open.
        parent.last_key = names[-1]
        parent.last_is_bucket = True
        parent.has_buckets = True
        self._stack.append(_Bucket(self._sink, names[-1], sequence))

    def put(self, path: BucketPath, key: bytes, value: bytes) -> None:
        """Add ``key = value`` to the open bucket at ``path``, after its last key.

        Raises:
            BucketNotFoundError: no open bucket at ``path``.
            WriterError: empty key, key over 32768 bytes, value over 2**31-2 bytes,
                or a key not greater than the bucket's last key or bucket name.
        """
        names = as_path(path)
        if not names:
            raise WriterError("incompatible value: the root bucket holds only buckets")
        b = self._enter(names)
        if not key:
            raise WriterError("key required")
        if len(key) > MAX_KEY_SIZE:
            raise WriterError(f"key too large: {len(key)} bytes")
        if len(value) > MAX_VALUE_SIZE:
            raise WriterError(f"value too large: {len(value)} bytes")
        b.check_next(key, is_bucket=False)
        b.add(0, bytes(key), bytes(value))

    def close(self) -> Meta:
        """End every open bucket, write the freelist and the meta pages.

        Returns:
            The meta of the newer meta page; ``meta.pgid * meta.page_size`` is the size
            of the database written.
        """
        if self._meta is not None:
            return self._meta
        self._enter(())
        root = self._stack[0].finish_root()
        sink = self._sink
        freelist = sink.next_pgid
        sink.write(encode_freelist_page([], freelist, sink.page_size))
        newer = Meta(
            page_size=sink.page_size,
            root=root,
            freelist=freelist,
            pgid=sink.next_pgid,
            txid=self._txid,
        )
        older = Meta(
            page_size=sink.page_size,
            root=root,
            freelist=freelist,
            pgid=sink.next_pgid,
            txid=self._txid - 1,
        )
        end = sink.fileobj.tell()
        sink.fileobj.seek(sink.start)
        for page_id in (0, 1):
            m = newer if newer.txid % 2 == page_id else older
            sink.fileobj.write(m.encode_page(page_id))
        sink.fileobj.seek(end)
        sink.fileobj.flush()
        self._meta = dataclasses.replace(newer, checksum=newer.sum64())
        return self._meta

    def __enter__(self) -> BoltWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # A failed export leaves no meta pages: the file is not a database.
        if exc_type is None:
            self.close()

    def _enter(self, names: tuple[bytes, ...]) -> _Bucket:
        """The open bucket at ``names``, ending every bucket open below it."""
        if self._meta is not None:
            raise WriterError("tx closed: the writer is closed")
        depth = len(names)
        if depth >= len(self._stack) or any(
            self._stack[i + 1].name != n for i, n in enumerate(names)
        ):
            raise BucketNotFoundError(
                f"bucket not found: {names!r} is not open (buckets are written whole, in order)"
            )
        while len(self._stack) > depth + 1:
            child = self._stack.pop()
            self._stack[-1].add(BUCKET_LEAF_FLAG, child.name, child.finish_value())
        return self._stack[depth]
