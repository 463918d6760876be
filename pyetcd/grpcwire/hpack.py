"""HPACK decoding (RFC 7541) of the header blocks clients send, with a block cache.

A gRPC client sends nearly the same headers on every call, and after its first call on
a connection the block is mostly references into the static and dynamic tables: the
same few bytes each time. A block that changes no table entry decodes to the same list
as long as the table is unchanged, so ``Decoder`` keeps such blocks' results keyed by
(table generation, block bytes) and a repeated block costs one dict lookup. The
generation moves on every change of the table (an insertion, with the evictions it
causes, and a size update), so a block whose references now name other entries misses.

A cached result is one shared ``HeaderList``: its reader may note on it (``meaning``)
what it derived from the headers, and a repeated block then costs no re-reading either.

The static table and Huffman code come from the ``hpack`` library; the representations
and the dynamic table are here.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Final

from hpack.huffman_table import decode_huffman
from hpack.table import HeaderTable

__all__ = ["Decoder", "HPACKDecodeError", "HeaderList"]

_STATIC: Final = tuple((n.decode(), v.decode()) for n, v in HeaderTable.STATIC_TABLE)
_ENTRY_OVERHEAD: Final = 32  # RFC 7541 4.1
_CACHE_LIMIT: Final = 256
_CACHE_BLOCK_BYTES: Final = 1024  # only small blocks: a cache of big ones would hoard memory


class HPACKDecodeError(Exception):
    """The block is not valid HPACK (a connection error: COMPRESSION_ERROR)."""


class HeaderList(list[tuple[str, str]]):
    """A decoded header block, (name, value) pairs in order; shared when cached, so never
    modified. ``meaning`` is its reader's: what it derived from these headers (None
    until it sets it), valid as long as the list since the list never changes."""

    __slots__ = ("meaning",)

    def __init__(self) -> None:
        super().__init__()
        self.meaning: Any = None


class Decoder:
    """One connection's HPACK decoding context."""

    def __init__(self, max_table_size: int = 4096, max_header_list_size: int = 1 << 20) -> None:
        self.max_table_size = max_table_size  # what our SETTINGS allow the client
        self.max_header_list_size = max_header_list_size
        self._table_size = max_table_size
        self._dynamic: deque[tuple[str, str]] = deque()  # newest first
        self._size = 0
        self._generation = 0
        self._cache: dict[tuple[int, bytes], HeaderList] = {}

    def decode(self, block: bytes) -> HeaderList:
        """The (name, value) pairs of ``block``, in order (shared: do not modify).

        Raises:
            HPACKDecodeError: the block is malformed or refers to no table entry.
        """
        key = (self._generation, block)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        before = self._generation
        try:
            headers = self._decode(block)
        except IndexError as err:
            raise HPACKDecodeError(f"malformed header block: {err}") from err
        if self._generation == before and len(block) <= _CACHE_BLOCK_BYTES:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = headers
        return headers

    def _decode(self, data: bytes) -> HeaderList:
        out = HeaderList()
        pos, end, total = 0, len(data), 0
        while pos < end:
            b = data[pos]
            if b & 0x80:  # indexed field
                index, pos = _integer(data, pos, 7)
                header = self._entry(index)
            elif b & 0x40:  # literal, added to the table
                header, pos = self._literal(data, pos, 6)
                self._add(header)
            elif b & 0x20:  # dynamic table size update
                size, pos = _integer(data, pos, 5)
                if size > self.max_table_size:
                    raise HPACKDecodeError("table size update above the allowed maximum")
                self._table_size = size
                self._evict()
                self._generation += 1
                continue
            else:  # literal without indexing / never indexed
                header, pos = self._literal(data, pos, 4)
            total += len(header[0]) + len(header[1]) + _ENTRY_OVERHEAD
            if total > self.max_header_list_size:
                raise HPACKDecodeError("header list too large")
            out.append(header)
        return out

    def _entry(self, index: int) -> tuple[str, str]:
        if index == 0:
            raise HPACKDecodeError("index 0")
        if index <= len(_STATIC):
            return _STATIC[index - 1]
        i = index - len(_STATIC) - 1
        if i >= len(self._dynamic):
            raise HPACKDecodeError(f"no table entry {index}")
        return self._dynamic[i]

    def _literal(self, data: bytes, pos: int, prefix: int) -> tuple[tuple[str, str], int]:
        index, pos = _integer(data, pos, prefix)
        if index:
            name = self._entry(index)[0]
        else:
            name, pos = _string(data, pos)
        value, pos = _string(data, pos)
        return (name, value), pos

    def _add(self, header: tuple[str, str]) -> None:
        self._generation += 1
        size = len(header[0]) + len(header[1]) + _ENTRY_OVERHEAD
        if size > self._table_size:  # RFC 7541 4.4: empties the table
            self._dynamic.clear()
            self._size = 0
            return
        self._dynamic.appendleft(header)
        self._size += size
        self._evict()

    def _evict(self) -> None:
        while self._size > self._table_size and self._dynamic:
            name, value = self._dynamic.pop()
            self._size -= len(name) + len(value) + _ENTRY_OVERHEAD


def _integer(data: bytes, pos: int, prefix: int) -> tuple[int, int]:
    limit = (1 << prefix) - 1
    value = data[pos] & limit
    pos += 1
    if value < limit:
        return value, pos
    shift = 0
    while True:
        b = data[pos]
        pos += 1
        value += (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 28:
            raise HPACKDecodeError("integer too large")


def _string(data: bytes, pos: int) -> tuple[str, int]:
    huffman = data[pos] & 0x80
    length, pos = _integer(data, pos, 7)
    end = pos + length
    if end > len(data):
        raise HPACKDecodeError("string past the end of the block")
    raw = data[pos:end]
    if huffman:
        try:
            raw = decode_huffman(raw)
        except Exception as err:  # hpack raises its own HPACKDecodingError
            raise HPACKDecodeError(f"bad Huffman code: {err}") from err
    return raw.decode(errors="replace"), end
