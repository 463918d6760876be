"""Reads a bbolt database file lazily: pages are read when a walk reaches them.

Rules this module keeps:

1. Opening reads only the two meta pages. The one used is the valid meta with the
   higher txid, as bbolt chooses; if neither is valid the first one's error is raised
   (bbolt's ``mmap`` does the same), in bbolt's words.
2. Iterating a bucket holds one page per level of its tree (the path from its root to
   the current leaf), never the whole file. Pages are not cached.
3. Every page read is checked before it is used: below the high-water mark, inside the
   file, its header naming its own id, of the type expected, and every element inside
   it. A failure raises ``CorruptDatabaseError`` naming the page.
4. The SHA-256 trailer etcd appends to a snapshot is ignored here: pages are found by
   id, never by the file's end (see ``trailer`` to verify it).
"""

from __future__ import annotations

import bisect
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO, Final

from .errors import (
    BucketNotFoundError,
    CorruptDatabaseError,
    DatabaseError,
    InvalidDatabaseError,
)
from .page import (
    BRANCH_ELEMENT,
    BRANCH_PAGE_FLAG,
    BUCKET_HEADER,
    BUCKET_LEAF_FLAG,
    ELEMENT_SIZE,
    FREELIST_PAGE_FLAG,
    LEAF_ELEMENT,
    LEAF_PAGE_FLAG,
    MAX_COUNT,
    MAX_PAGE_SIZE,
    META_PAGE_BYTES,
    MIN_PAGE_SIZE,
    PAGE_HEADER,
    PAGE_HEADER_SIZE,
    PGID_NO_FREELIST,
    Meta,
    page_type,
)
from .path import BucketPath, as_path

__all__ = ["BoltReader", "BucketStats"]

_TREE_PAGE: Final = (BRANCH_PAGE_FLAG, LEAF_PAGE_FLAG)
# A leaf element as the reader hands it around: flags, key, value.
_Element = tuple[int, bytes, bytes]


@dataclass(frozen=True, slots=True)
class _Page:
    id: int
    flags: int
    count: int
    overflow: int
    # The page and its overflow pages.
    buf: bytes


# Called with each tree page a walk reads (the consistency check marks them).
_PageMarker = Callable[[_Page], None]


@dataclass(frozen=True, slots=True)
class _BucketRef:
    root: int
    sequence: int
    # For an inline bucket (root 0): its leaf page, as stored after the bucket header.
    inline: bytes | None = None


@dataclass(frozen=True, slots=True)
class BucketStats:
    """The shape of one bucket's tree (the bucket alone, not the buckets inside it)."""

    # Levels of pages from the root to the leaves: 1 for a root leaf or an inline bucket.
    depth: int
    branch_pages: int
    leaf_pages: int
    # Extra pages that long branch and leaf pages spill onto.
    overflow_pages: int
    # Keys that are not buckets, and keys that are.
    keys: int
    buckets: int
    inline: bool


def _leaf_elements(buf: bytes, count: int, where: str) -> list[_Element]:
    if PAGE_HEADER_SIZE + ELEMENT_SIZE * count > len(buf):
        raise CorruptDatabaseError(f"{where}: {count} elements do not fit in the page")
    out: list[_Element] = []
    for i in range(count):
        at = PAGE_HEADER_SIZE + ELEMENT_SIZE * i
        flags, pos, ksize, vsize = LEAF_ELEMENT.unpack_from(buf, at)
        start = at + pos
        end = start + ksize + vsize
        if end > len(buf):
            raise CorruptDatabaseError(f"{where}: element {i} runs past the end of the page")
        out.append((flags, buf[start : start + ksize], buf[start + ksize : end]))
    return out


def _branch_elements(page: _Page) -> list[tuple[bytes, int]]:
    buf = page.buf
    if PAGE_HEADER_SIZE + ELEMENT_SIZE * page.count > len(buf):
        raise CorruptDatabaseError(f"page {page.id}: {page.count} elements do not fit in the page")
    out: list[tuple[bytes, int]] = []
    for i in range(page.count):
        at = PAGE_HEADER_SIZE + ELEMENT_SIZE * i
        pos, ksize, child = BRANCH_ELEMENT.unpack_from(buf, at)
        start = at + pos
        if start + ksize > len(buf):
            raise CorruptDatabaseError(f"page {page.id}: element {i} runs past the end of the page")
        out.append((buf[start : start + ksize], child))
    return out


def _bucket_ref(value: bytes, where: str) -> _BucketRef:
    if len(value) < BUCKET_HEADER.size:
        raise CorruptDatabaseError(f"{where}: bucket value of {len(value)} bytes")
    root, sequence = BUCKET_HEADER.unpack_from(value)
    if root == 0:
        inline = value[BUCKET_HEADER.size :]
        if len(inline) < PAGE_HEADER_SIZE:
            raise CorruptDatabaseError(f"{where}: inline bucket without a page")
        return _BucketRef(0, sequence, inline)
    return _BucketRef(root, sequence)


class BoltReader:
    """A read-only view of a bbolt database file.

    Args:
        source: a path, or a binary file open for reading and seeking whose database
            starts at offset 0 (the reader does not close a file it was given).

    Raises:
        InvalidDatabaseError: no meta page has bbolt's magic (not a bbolt file).
        VersionMismatchError: the meta pages are of another format version.
        ChecksumError: both meta pages fail their checksum.
        CorruptDatabaseError: the file is shorter than its meta pages say.
    """

    def __init__(self, source: str | os.PathLike[str] | BinaryIO) -> None:
        if isinstance(source, str | os.PathLike):
            self._file: BinaryIO = open(source, "rb")  # noqa: SIM115 - closed by close()
            self._owns_file = True
        else:
            self._file, self._owns_file = source, False
        try:
            self.file_size = self._file.seek(0, os.SEEK_END)
            self.meta = self._load_meta()
        except BaseException:
            self.close()
            raise

    @property
    def page_size(self) -> int:
        return self.meta.page_size

    @property
    def size(self) -> int:
        """The database's size in bytes (bbolt's ``Tx.Size``): high-water mark x page size."""
        return self.meta.pgid * self.meta.page_size

    def close(self) -> None:
        if self._owns_file:
            self._file.close()

    def __enter__(self) -> BoltReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- buckets ---------------------------------------------------------------------------

    def buckets(self, path: BucketPath = ()) -> list[bytes]:
        """The names of the buckets in the bucket at ``path`` (the top-level ones for ``()``).

        Raises:
            BucketNotFoundError: no bucket at ``path``.
        """
        return [k for flags, k, _ in self._entries(self._resolve(path)) if flags & BUCKET_LEAF_FLAG]

    def has_bucket(self, path: BucketPath) -> bool:
        try:
            self._resolve(path)
        except BucketNotFoundError:
            return False
        return True

    def items(self, path: BucketPath) -> Iterator[tuple[bytes, bytes]]:
        """The bucket's ``(key, value)`` pairs in key order, nested buckets left out.

        Raises:
            BucketNotFoundError: no bucket at ``path``.
        """
        ref = self._resolve(path)
        return ((k, v) for flags, k, v in self._entries(ref) if not flags & BUCKET_LEAF_FLAG)

    def entries(self, path: BucketPath) -> Iterator[tuple[bytes, bytes | None]]:
        """Every key of the bucket in order, as bbolt's cursor gives them: a nested
        bucket's name comes with ``None`` for its value.

        Raises:
            BucketNotFoundError: no bucket at ``path``.
        """
        ref = self._resolve(path)
        return ((k, None if f & BUCKET_LEAF_FLAG else v) for f, k, v in self._entries(ref))

    def get(self, path: BucketPath, key: bytes) -> bytes | None:
        """The value of ``key`` in the bucket at ``path``; ``None`` when absent or a bucket.

        Raises:
            BucketNotFoundError: no bucket at ``path``.
        """
        found = self._seek(self._resolve(path), key)
        if found is None or found[0] & BUCKET_LEAF_FLAG:
            return None
        return found[1]

    def sequence(self, path: BucketPath) -> int:
        """The bucket's sequence number (bbolt's ``Bucket.Sequence``)."""
        return self._resolve(path).sequence

    def stats(self, path: BucketPath) -> BucketStats:
        """How the bucket at ``path`` is laid out in pages (reads all its pages).

        Raises:
            BucketNotFoundError: no bucket at ``path``.
        """
        ref = self._resolve(path)
        pages: list[_Page] = []
        depth = 1
        keys = buckets = 0
        for elements, level in self._leaves_with_depth(ref, pages):
            depth = max(depth, level)
            for flags, _, _ in elements:
                if flags & BUCKET_LEAF_FLAG:
                    buckets += 1
                else:
                    keys += 1
        return BucketStats(
            depth=depth,
            branch_pages=sum(p.flags == BRANCH_PAGE_FLAG for p in pages),
            leaf_pages=sum(p.flags == LEAF_PAGE_FLAG for p in pages),
            overflow_pages=sum(p.overflow for p in pages),
            keys=keys,
            buckets=buckets,
            inline=ref.inline is not None,
        )

    def _leaves_with_depth(
        self, ref: _BucketRef, pages: list[_Page]
    ) -> Iterator[tuple[list[_Element], int]]:
        if ref.inline is not None:
            yield self._inline_elements(ref.inline), 1
            return
        levels: dict[int, int] = {ref.root: 1}

        def mark(page: _Page) -> None:
            # Keep only the counts' inputs: the header, not the bytes.
            pages.append(_Page(page.id, page.flags, page.count, page.overflow, b""))
            if page.flags == BRANCH_PAGE_FLAG:
                level = levels.pop(page.id)
                for _, child in _branch_elements(page):
                    levels[child] = level + 1

        for pgid, elements in self._walk(ref.root, frozenset(), mark):
            yield elements, levels.pop(pgid)

    def freelist(self) -> list[int]:
        """The ids of the free pages: those the freelist page lists, in its order, or,
        for a database written without one (etcd's backend sets bbolt's
        ``NoFreelistSync``), every page no bucket reaches, as bbolt works them out.
        """
        if self.meta.freelist == PGID_NO_FREELIST:
            reachable, errors = self._reachable(set())
            if errors:
                raise CorruptDatabaseError(errors[0])
            return [i for i in range(self.meta.pgid) if not reachable[i]]
        page = self._read_page(self.meta.freelist, (FREELIST_PAGE_FLAG,))
        start, count = PAGE_HEADER_SIZE, page.count
        if count == MAX_COUNT:
            (count,) = struct.unpack_from("<Q", page.buf, start)
            start += 8
        if start + 8 * count > len(page.buf):
            raise CorruptDatabaseError(f"page {page.id}: {count} free ids do not fit in the page")
        return list(struct.unpack_from(f"<{count}Q", page.buf, start))

    # -- consistency -----------------------------------------------------------------------

    def check(self) -> list[str]:
        """bbolt's consistency check (``Tx.Check``): every page below the high-water
        mark is reachable exactly once or free, tree pages are branch or leaf pages,
        keys are in order. Returns the problems found, in bbolt's words; empty if none.
        """
        errors: list[str] = []
        free: set[int] = set()
        synced = self.meta.freelist != PGID_NO_FREELIST
        if synced:
            try:
                for pgid in self.freelist():
                    if pgid in free:
                        errors.append(f"page {pgid}: already freed")
                    free.add(pgid)
            except DatabaseError as e:
                errors.append(str(e))
        reachable, bucket_errors = self._reachable(free)
        errors += bucket_errors
        # Without a freelist page, the pages nothing reaches are the free ones.
        if synced:
            errors.extend(
                f"page {i}: unreachable unfreed"
                for i in range(self.meta.pgid)
                if not reachable[i] and i not in free
            )
        return errors

    def _reachable(self, free: set[int]) -> tuple[bytearray, list[str]]:
        """Which pages the meta, the freelist and the buckets use (1 per page below the
        high-water mark), and the problems met on the way."""
        errors: list[str] = []
        reachable = bytearray(self.meta.pgid)
        reachable[0:2] = b"\x01\x01"
        if self.meta.freelist != PGID_NO_FREELIST:
            try:
                page = self._read_page(self.meta.freelist, (FREELIST_PAGE_FLAG,))
                reachable[page.id : page.id + page.overflow + 1] = b"\x01" * (page.overflow + 1)
            except DatabaseError as e:
                errors.append(str(e))
        self._check_bucket(_BucketRef(self.meta.root, 0), reachable, free, errors)
        return reachable, errors

    def _check_bucket(
        self, ref: _BucketRef, reachable: bytearray, free: set[int], errors: list[str]
    ) -> None:
        prev: bytes | None = None
        try:
            for page, elements in self._leaves(ref, on_page=self._marker(reachable, free, errors)):
                for flags, key, value in elements:
                    if prev is not None and key <= prev:
                        errors.append(f"page {page}: key {key!r} out of order after {prev!r}")
                    prev = key
                    if flags & BUCKET_LEAF_FLAG:
                        self._check_bucket(
                            _bucket_ref(value, f"page {page}"), reachable, free, errors
                        )
        except DatabaseError as e:
            errors.append(str(e))

    @staticmethod
    def _marker(reachable: bytearray, free: set[int], errors: list[str]) -> _PageMarker:
        def mark(page: _Page) -> None:
            for pgid in range(page.id, page.id + page.overflow + 1):
                if reachable[pgid]:
                    errors.append(f"page {pgid}: multiple references")
                reachable[pgid] = 1
            if page.id in free:
                errors.append(f"page {page.id}: reachable freed")

        return mark

    # -- pages -----------------------------------------------------------------------------

    def _load_meta(self) -> Meta:
        head = self._pread(0, META_PAGE_BYTES)
        if len(head) < META_PAGE_BYTES:
            raise InvalidDatabaseError(f"file of {self.file_size} bytes has no meta page")
        meta0 = Meta.decode(head)
        err0: DatabaseError | None = None
        try:
            meta0.validate()
            page_size = meta0.page_size
        except DatabaseError as e:
            err0 = e
            page_size = self._find_second_meta(e)
        if not MIN_PAGE_SIZE <= page_size <= MAX_PAGE_SIZE:
            raise InvalidDatabaseError(f"page size {page_size}")
        if self.file_size < 2 * page_size:
            raise CorruptDatabaseError(f"file size too small {self.file_size}")
        meta1 = Meta.decode(self._pread(page_size, META_PAGE_BYTES))
        err1: DatabaseError | None = None
        try:
            meta1.validate()
        except DatabaseError as e:
            err1 = e
        valid = [m for m, err in ((meta0, err0), (meta1, err1)) if err is None]
        if not valid:
            assert err0 is not None
            raise err0
        meta = max(valid, key=lambda m: m.txid)
        need = meta.pgid * meta.page_size
        if meta.root >= meta.pgid or (
            meta.freelist >= meta.pgid and meta.freelist != PGID_NO_FREELIST
        ):
            raise CorruptDatabaseError(
                f"meta of txid {meta.txid}: root {meta.root} or freelist {meta.freelist} "
                f"above high water mark {meta.pgid}"
            )
        if need > self.file_size:
            raise CorruptDatabaseError(
                f"truncated database: {meta.pgid} pages of {meta.page_size} bytes need "
                f"{need} bytes, the file has {self.file_size}"
            )
        return meta

    def _find_second_meta(self, err0: DatabaseError) -> int:
        # The first meta page is bad, so its page size is unknown: look for the second
        # meta page at each page size bbolt allows, as bbolt does.
        for i in range(15):
            pos = 1024 << i
            if pos >= self.file_size - 1024:
                break
            candidate = Meta.decode(self._pread(pos, META_PAGE_BYTES))
            try:
                candidate.validate()
            except DatabaseError:
                continue
            if candidate.page_size == pos:
                return pos
        raise err0

    def _pread(self, offset: int, size: int) -> bytes:
        self._file.seek(offset)
        return self._file.read(size)

    def _read_page(self, pgid: int, kinds: tuple[int, ...]) -> _Page:
        hwm, ps = self.meta.pgid, self.meta.page_size
        if not 2 <= pgid < hwm:
            raise CorruptDatabaseError(f"page {pgid}: out of bounds: {hwm}")
        buf = self._pread(pgid * ps, ps)
        if len(buf) < ps:
            raise CorruptDatabaseError(f"page {pgid}: beyond the end of the file")
        page_id, flags, count, overflow = PAGE_HEADER.unpack_from(buf)
        if page_id != pgid:
            raise CorruptDatabaseError(
                f"Page expected to be: {pgid}, but self identifies as {page_id}"
            )
        if flags not in kinds:
            raise CorruptDatabaseError(
                f"page {pgid}: has unexpected type/flags: {flags:x} "
                f"(a {page_type(flags)} page where a {'/'.join(map(page_type, kinds))} "
                "page belongs)"
            )
        if overflow:
            if pgid + overflow >= hwm:
                raise CorruptDatabaseError(f"page {pgid + overflow}: out of bounds: {hwm}")
            rest = self._pread((pgid + 1) * ps, overflow * ps)
            if len(rest) < overflow * ps:
                raise CorruptDatabaseError(f"page {pgid}: overflow beyond the end of the file")
            buf += rest
        return _Page(page_id, flags, count, overflow, buf)

    def _resolve(self, path: BucketPath) -> _BucketRef:
        ref = _BucketRef(self.meta.root, self.meta.sequence)
        names = as_path(path)
        for depth, name in enumerate(names):
            found = self._seek(ref, name)
            if found is None or not found[0] & BUCKET_LEAF_FLAG:
                raise BucketNotFoundError(f"bucket not found: {names[: depth + 1]!r}")
            ref = _bucket_ref(found[1], f"bucket {names[: depth + 1]!r}")
        return ref

    def _seek(self, ref: _BucketRef, key: bytes) -> tuple[int, bytes] | None:
        """The ``(flags, value)`` stored under ``key``, found by descending the tree."""
        if ref.inline is not None:
            elements = self._inline_elements(ref.inline)
        else:
            pgid, seen = ref.root, set()
            while True:
                if pgid in seen:
                    raise CorruptDatabaseError(f"page {pgid}: the tree loops back to it")
                seen.add(pgid)
                page = self._read_page(pgid, _TREE_PAGE)
                if page.flags == LEAF_PAGE_FLAG:
                    elements = _leaf_elements(page.buf, page.count, f"page {page.id}")
                    break
                children = _branch_elements(page)
                if not children:
                    return None
                # The last child whose first key is <= key, or the first child.
                i = bisect.bisect_right([k for k, _ in children], key) - 1
                pgid = children[max(i, 0)][1]
        keys = [k for _, k, _ in elements]
        i = bisect.bisect_left(keys, key)
        if i < len(keys) and keys[i] == key:
            return elements[i][0], elements[i][2]
        return None

    def _inline_elements(self, inline: bytes) -> list[_Element]:
        _, flags, count, _ = PAGE_HEADER.unpack_from(inline)
        if flags != LEAF_PAGE_FLAG and count:
            raise CorruptDatabaseError(f"inline bucket: has unexpected type/flags: {flags:x}")
        return _leaf_elements(inline, count, "inline bucket")

    def _entries(self, ref: _BucketRef) -> Iterator[_Element]:
        for _, elements in self._leaves(ref):
            yield from elements

    def _leaves(
        self, ref: _BucketRef, on_page: _PageMarker | None = None
    ) -> Iterator[tuple[int, list[_Element]]]:
        """The bucket's leaves in key order, as ``(page id, elements)``; 0 for inline."""
        if ref.inline is not None:
            yield 0, self._inline_elements(ref.inline)
            return
        yield from self._walk(ref.root, frozenset(), on_page)

    def _walk(
        self, pgid: int, above: frozenset[int], on_page: _PageMarker | None
    ) -> Iterator[tuple[int, list[_Element]]]:
        if pgid in above:
            raise CorruptDatabaseError(f"page {pgid}: the tree loops back to it")
        page = self._read_page(pgid, _TREE_PAGE)
        if on_page is not None:
            on_page(page)
        if page.flags == LEAF_PAGE_FLAG:
            yield page.id, _leaf_elements(page.buf, page.count, f"page {page.id}")
            return
        above = above | {pgid}
        for _, child in _branch_elements(page):
            yield from self._walk(child, above, on_page)
