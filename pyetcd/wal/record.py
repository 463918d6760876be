"""WAL records and their framing.

A frame on disk (all integers little-endian)::

    length word (8 bytes)   bits 0-31  record length n (crc + type + data)
                            bits 32-55 check: low 24 bits of crc32(n as 4 bytes)
                            bits 56-63 0, or 0x80 | padding when n is not a multiple of 8
    crc (4 bytes)           the chained CRC (see below)
    type (1 byte)           RecordType
    data (n - 5 bytes)      msgpack payload
    padding                 zeros up to the next multiple of 8

Rules:
1. Frames start at multiples of 8, so a torn write never shifts later frames.
2. The CRC chains: a record's crc is zlib.crc32 (CRC-32/IEEE, C speed; crc32c has no
   fast stdlib implementation) of its type byte and data, seeded with the previous
   record's crc. A CRC record carries the running crc without changing it; it opens
   every segment, so a segment can be verified on its own.
3. The length check bits make a damaged length word detectable before the length is
   trusted; a length is never used to allocate, only to slice what was read.
4. Every bit of a frame is covered: length by its check, padding must be zero, type
   and data by the crc, the crc field by the chain.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import msgpack

from pyetcd.raft.types import Entry, EntryType, HardState

__all__ = [
    "CHECKED_LENGTH_WORDS",
    "FRAME_HEADER_SIZE",
    "Metadata",
    "RecordType",
    "WALSnapshot",
    "decode_entry",
    "decode_entry_fields",
    "decode_metadata",
    "decode_snapshot",
    "decode_state",
    "encode_entry",
    "encode_frame",
    "encode_metadata",
    "encode_snapshot",
    "encode_state",
    "length_word",
    "padding_for",
    "record_crc",
    "split_length_word",
]


class RecordType(enum.IntEnum):
    """Record kinds, numbered as etcd's walpb record types."""

    METADATA = 1
    ENTRY = 2
    STATE = 3
    CRC = 4
    SNAPSHOT = 5


@dataclass(frozen=True, slots=True)
class Metadata:
    """Who wrote the WAL; every segment repeats it and all copies must agree."""

    member_id: int = 0
    cluster_id: int = 0


@dataclass(frozen=True, slots=True)
class WALSnapshot:
    """A snapshot marker: the log before ``index`` may be released once this is durable."""

    index: int = 0
    term: int = 0


# length word + crc + type
FRAME_HEADER_SIZE = 13
_HEADER = struct.Struct("<QIB")
_TYPE_BYTES = {t: bytes([t]) for t in RecordType}
_MAX_RECORD = (1 << 32) - 1
_PAD_ZEROS = [b"\0" * i for i in range(8)]
_check_cache: dict[int, int] = {}
#: Length words split_length_word has checked, with their (length, padding): the
#: segment scan looks here first and calls it only for a word not seen yet.
CHECKED_LENGTH_WORDS: dict[int, tuple[int, int]] = {}


def padding_for(n: int) -> int:
    """Zero bytes after a record of length ``n`` to reach a multiple of 8 (with the word)."""
    return -n % 8


def length_word(n: int) -> int:
    """The 64-bit length word for a record of ``n`` bytes."""
    word = _check_cache.get(n)
    if word is None:
        if not 5 <= n <= _MAX_RECORD:
            raise ValueError(f"wal record length {n} out of range")
        check = zlib.crc32(n.to_bytes(4, "little")) & 0xFFFFFF
        pad = padding_for(n)
        word = n | check << 32 | ((0x80 | pad) << 56 if pad else 0)
        if len(_check_cache) < 65536:
            _check_cache[n] = word
    return word


def split_length_word(word: int) -> tuple[int, int] | None:
    """(record length, padding) of a length word, or None if the word is damaged."""
    parsed = CHECKED_LENGTH_WORDS.get(word)
    if parsed is not None:
        return parsed
    n = word & 0xFFFFFFFF
    if n < 5 or word != length_word(n):
        return None
    parsed = n, padding_for(n)
    # most records of a log share a handful of lengths: a replay checks each once
    if len(CHECKED_LENGTH_WORDS) < 65536:
        CHECKED_LENGTH_WORDS[word] = parsed
    return parsed


def record_crc(rtype: RecordType, data: bytes | memoryview, prev_crc: int) -> int:
    """The chained crc of a (non-CRC) record."""
    return zlib.crc32(data, zlib.crc32(_TYPE_BYTES[rtype], prev_crc))


def encode_frame(rtype: RecordType, data: bytes, prev_crc: int) -> tuple[bytes, int]:
    """One framed record and the running crc after it."""
    crc = prev_crc if rtype == RecordType.CRC else record_crc(rtype, data, prev_crc)
    n = 5 + len(data)
    return _HEADER.pack(length_word(n), crc, rtype) + data + _PAD_ZEROS[padding_for(n)], crc


def _pack(obj: Any) -> bytes:
    out: bytes = msgpack.packb(obj, use_bin_type=True)
    return out


def _unpack_list(data: bytes | memoryview, size: int) -> list[Any]:
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types on bad input
        raise ValueError(f"malformed wal payload: {exc}") from None
    if not isinstance(obj, list) or len(obj) != size:
        raise ValueError("malformed wal payload")
    return obj


def _ints(values: list[Any]) -> list[int]:
    if not all(type(v) is int and v >= 0 for v in values):
        raise ValueError("malformed wal payload")
    return values


def encode_entry(e: Entry) -> bytes:
    return _pack((e.term, e.index, int(e.type), e.data))


# Entry types by number: a dict lookup is much cheaper than EntryType(n) on replay.
_ENTRY_TYPES: dict[object, EntryType] = {int(t): t for t in EntryType}


def decode_entry(data: bytes | memoryview) -> Entry:
    return Entry(*decode_entry_fields(data))


def decode_entry_fields(data: bytes | memoryview) -> tuple[int, int, EntryType, bytes]:
    """(term, index, type, data) of an encoded entry, without building an Entry."""
    term, index, etype, payload = _unpack_list(data, 4)
    _ints([term, index, etype])
    if not isinstance(payload, bytes):
        raise ValueError("malformed wal entry")
    etype_ = _ENTRY_TYPES.get(etype)
    if etype_ is None:
        raise ValueError(f"unknown entry type {etype}")
    return term, index, etype_, payload


def encode_state(hs: HardState) -> bytes:
    return _pack((hs.term, hs.vote, hs.commit))


def decode_state(data: bytes | memoryview) -> HardState:
    term, vote, commit = _ints(_unpack_list(data, 3))
    return HardState(term=term, vote=vote, commit=commit)


def encode_metadata(md: Metadata) -> bytes:
    return _pack((md.member_id, md.cluster_id))


def decode_metadata(data: bytes | memoryview) -> Metadata:
    member_id, cluster_id = _ints(_unpack_list(data, 2))
    return Metadata(member_id=member_id, cluster_id=cluster_id)


def encode_snapshot(s: WALSnapshot) -> bytes:
    return _pack((s.index, s.term))


def decode_snapshot(data: bytes | memoryview) -> WALSnapshot:
    index, term = _ints(_unpack_list(data, 2))
    return WALSnapshot(index=index, term=term)
