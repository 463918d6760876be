"""Segment file names (``%016x-%016x.wal``: sequence, index of the first entry) and
the scan of one segment's bytes into verified records.

Rule: the scan decides, before anything is changed on disk, whether damage is a torn
tail (only possible in the LAST segment, and only if nothing but zeros follows the
damaged frame) or corruption (anything else), which raises naming file and offset.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from typing import NamedTuple

from .errors import CorruptWALError, CRCMismatchError
from .record import CHECKED_LENGTH_WORDS, RecordType, split_length_word

__all__ = [
    "Record",
    "SegmentName",
    "SegmentScan",
    "list_segment_names",
    "parse_segment_name",
    "scan_segment",
    "segment_name",
]

_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.wal$")
_WORD = struct.Struct("<Q")
_CRC_TYPE = struct.Struct("<IB")
# Record types by their number: a dict lookup is much cheaper than RecordType(n).
_RECORD_TYPES: dict[int, RecordType] = {int(t): t for t in RecordType}
_CRC = int(RecordType.CRC)


@dataclass(frozen=True, slots=True, order=True)
class SegmentName:
    seq: int
    index: int

    def __str__(self) -> str:
        return segment_name(self.seq, self.index)


def segment_name(seq: int, index: int) -> str:
    return f"{seq:016x}-{index:016x}.wal"


def parse_segment_name(name: str) -> SegmentName | None:
    m = _NAME.match(name)
    if m is None:
        return None
    return SegmentName(int(m.group(1), 16), int(m.group(2), 16))


def list_segment_names(names: list[str]) -> list[SegmentName]:
    """The segment files among ``names`` (temp and ``.broken`` files ignored), in order."""
    return sorted(s for s in map(parse_segment_name, names) if s is not None)


class Record(NamedTuple):
    # a NamedTuple, not a dataclass: a restart builds one per record, 100,000s of them
    type: RecordType
    crc: int
    data: memoryview
    offset: int  # of the frame's length word in the file


@dataclass(frozen=True, slots=True)
class SegmentScan:
    records: list[Record]
    end: int  # offset just past the last valid frame
    crc: int  # running crc after the last valid record
    torn: bool  # damaged bytes follow ``end`` and must be truncated away
    reason: str  # what was wrong at ``end`` when torn


class _Damage(Exception):
    def __init__(
        self, offset: int, reason: str, frame_end: int, past_eof: bool = False, crc: bool = False
    ) -> None:
        super().__init__(reason)
        self.offset = offset
        self.reason = reason
        self.frame_end = frame_end
        self.past_eof = past_eof
        self.crc = crc


def scan_segment(path: str, buf: bytes, prev_crc: int | None, last: bool) -> SegmentScan:
    """Verify ``buf`` (a whole segment) frame by frame.

    ``prev_crc`` is the running crc the segment must continue (None: take it from the
    segment's opening crc record). Raises CorruptWALError for damage that is not a torn
    tail of the last segment.
    """
    records: list[Record] = []
    state = [0, prev_crc]
    try:
        _scan_frames(buf, state, records)
    except _Damage as d:
        if last and _is_torn_tail(buf, d):
            crc = state[1]
            return SegmentScan(records, d.offset, crc if crc is not None else 0, True, d.reason)
        cls = CRCMismatchError if d.crc else CorruptWALError
        raise cls(path, d.offset, d.reason) from None
    crc = state[1]
    return SegmentScan(records, state[0] or 0, crc if crc is not None else 0, False, "")


def _is_torn_tail(buf: bytes, d: _Damage) -> bool:
    # A torn write leaves an incomplete frame at EOF, or a damaged frame followed only
    # by zeros (preallocated space). Data after the damaged frame means the damage is
    # in the middle of the log: a torn write cannot explain it.
    if d.past_eof:
        return True
    nonzero_end = len(buf.rstrip(b"\0"))
    return nonzero_end <= d.frame_end


def _scan_frames(buf: bytes, state: list[int | None], records: list[Record]) -> None:
    # The hot loop of a restart (one pass per record of the log): names are bound
    # locally, and ``state`` (offset and running crc for the caller's damage report)
    # is written only when a frame is found damaged.
    view = memoryview(buf)
    size = len(buf)
    off = 0
    crc = state[1]
    unpack_word = _WORD.unpack_from
    unpack_crc_type = _CRC_TYPE.unpack_from
    known_split = CHECKED_LENGTH_WORDS.get
    record_types = _RECORD_TYPES.get
    crc32 = zlib.crc32
    new_record = tuple.__new__
    append = records.append
    try:
        while off < size:
            if size - off < 8:
                raise _Damage(off, "truncated length word", size, past_eof=True)
            (word,) = unpack_word(buf, off)
            parsed = known_split(word)
            if parsed is None:
                if word == 0:
                    if buf.count(b"\0", off) != size - off:  # counts without copying
                        raise _Damage(off, "zero length word followed by data", off + 8)
                    break  # the unwritten (preallocated) rest of the segment
                parsed = split_length_word(word)
                if parsed is None:
                    raise _Damage(off, f"damaged length word {word:#018x}", off + 8)
            n, pad = parsed
            end = off + 8 + n + pad
            if end > size:
                raise _Damage(
                    off,
                    f"record length {n} runs past the end of the file ({size} bytes)",
                    size,
                    past_eof=True,
                )
            rcrc, rtype = unpack_crc_type(buf, off + 8)
            if pad and buf.count(b"\0", end - pad, end) != pad:
                raise _Damage(off, "nonzero padding", end)
            kind = record_types(rtype)
            if kind is None:
                raise _Damage(off, f"unknown record type {rtype}", end)
            if rtype == _CRC:
                if n != 5 or (crc is not None and rcrc != crc):
                    raise _Damage(off, "crc mismatch (crc record)", end, crc=True)
            elif not records:
                raise _Damage(off, "segment does not start with a crc record", end)
            # the type byte and the data are contiguous: one crc32 call chains both
            elif crc is None or crc32(view[off + 12 : off + 8 + n], crc) != rcrc:
                raise _Damage(off, "crc mismatch", end, crc=True)
            crc = rcrc
            append(new_record(Record, (kind, rcrc, view[off + 13 : off + 8 + n], off)))
            off = end
    except _Damage:
        state[1] = crc
        raise
    state[0] = off
    state[1] = crc
