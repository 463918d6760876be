"""Replay of the WAL from a snapshot marker onwards.

Rule: reading never writes. It returns what it found together with the scan of the
last segment, and the caller (``WAL.open``) decides whether a torn tail is repaired.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from pyetcd.raft.types import EMPTY_HARD_STATE, Entry, EntryType, HardState

from .errors import (
    CorruptWALError,
    MetadataConflictError,
    SnapshotMismatchError,
    SnapshotNotFoundError,
    WALNotFoundError,
)
from .fs import FS
from .record import (
    Metadata,
    RecordType,
    WALSnapshot,
    decode_entry_fields,
    decode_metadata,
    decode_snapshot,
    decode_state,
)
from .segment import Record, SegmentName, SegmentScan, scan_segment

__all__ = [
    "LogTail",
    "ReadResult",
    "Replay",
    "ScanCache",
    "WALRead",
    "read_log",
    "read_wal",
    "search_index",
]


@dataclass(frozen=True, slots=True)
class ReadResult:
    """What a restarted member recovers from its WAL."""

    metadata: Metadata
    hard_state: HardState
    # Entries after the snapshot the WAL was opened at, contiguous, in order.
    entries: list[Entry]


@dataclass(frozen=True, slots=True)
class LogTail:
    """Where appending resumes, as a read of the log found it."""

    segments: list[SegmentName]  # the segment files read, in order
    end: int  # offset just past the last valid frame of the last segment
    crc: int  # running crc there
    torn: bool  # damaged bytes follow ``end`` (a torn write, to be truncated)
    reason: str  # what was wrong at ``end`` when torn
    last_written: int  # index of the last entry record (names the next segment)


@dataclass(frozen=True, slots=True)
class WALRead:
    """A whole read of the log from one snapshot marker: what ``WAL.open`` needs."""

    snap: WALSnapshot
    result: ReadResult
    tail: LogTail


@dataclass(slots=True)
class Replay:
    """Accumulates records in log order; raises on anything inconsistent."""

    snap: WALSnapshot
    # False: only collect snapshot markers and state (the log may start anywhere).
    replay_entries: bool = True
    metadata: Metadata | None = None
    # the last state record's, once finish() decoded it
    hard_state: HardState = EMPTY_HARD_STATE
    # where the last state record seen is (decoded by finish())
    _state_record: tuple[str, Record] | None = None
    # entries[i] has log position snap.index + 1 + i
    entries: list[Entry] = field(default_factory=list)
    # Highest index the log has reached so far (entry or snapshot marker); -1: nothing yet.
    last: int = -1
    # Index of the last entry record written (names the next segment).
    last_written: int = 0
    snapshot_found: bool = False
    snapshots: list[WALSnapshot] = field(default_factory=list)

    def apply(self, path: str, records: list[Record], entries_from: int = 0) -> None:
        """Apply one segment's records in order.

        Entry records before position ``entries_from`` are passed over undecoded: the
        caller found them covered by the snapshot or overwritten later (see
        :func:`entries_start`); a nonzero ``entries_from`` is the entry replay resumes
        at, and what was passed over does not bound its index.
        """
        rec = None
        try:
            for i, rec in enumerate(records):
                kind = rec.type
                if kind is RecordType.ENTRY:
                    if i >= entries_from:
                        if i == entries_from:
                            self.last = -1
                        self._apply_entry(path, rec, decode_entry_fields(rec.data))
                elif kind is RecordType.STATE:
                    # Every save writes one and only the last counts: it alone is
                    # decoded, by finish().
                    self._state_record = (path, rec)
                else:
                    self._apply_marker(rec)
        except (ValueError, TypeError, KeyError) as exc:
            assert rec is not None
            raise _undecodable(path, rec, exc) from None

    def finish(self) -> None:
        """Decode the last hard state record seen; call once every segment is applied."""
        if self._state_record is None:
            return
        path, rec = self._state_record
        try:
            self.hard_state = decode_state(rec.data)
        except (ValueError, TypeError, KeyError) as exc:
            raise _undecodable(path, rec, exc) from None

    def _apply_marker(self, rec: Record) -> None:
        if rec.type == RecordType.METADATA:
            md = decode_metadata(rec.data)
            if self.metadata is not None and md != self.metadata:
                raise MetadataConflictError()
            self.metadata = md
        elif rec.type == RecordType.SNAPSHOT:
            s = decode_snapshot(rec.data)
            self.snapshots.append(s)
            if s.index == self.snap.index:
                if s.term != self.snap.term:
                    raise SnapshotMismatchError()
                self.snapshot_found = True
            self.last = max(self.last, s.index)
            self.last_written = max(self.last_written, s.index)

    def _apply_entry(
        self, path: str, rec: Record, fields: tuple[int, int, EntryType, bytes]
    ) -> None:
        index = fields[1]
        # An entry may overwrite a suffix (a new leader's log wins) but never skip ahead.
        limit = (self.snap.index if self.last < 0 else self.last) + 1
        if index > limit:
            raise CorruptWALError(
                path, rec.offset, f"entry index {index} leaves a gap after index {limit - 1}"
            )
        self.last = index
        self.last_written = index
        if index <= self.snap.index:
            return  # covered by the snapshot: checked, never built into an Entry
        e = Entry(*fields)
        k = e.index - self.snap.index - 1
        if k > len(self.entries):
            raise CorruptWALError(
                path, rec.offset, f"entry index {e.index} leaves a gap after the snapshot"
            )
        del self.entries[k:]
        self.entries.append(e)

    def result(self) -> ReadResult:
        if self.snap.index != 0 and not self.snapshot_found:
            raise SnapshotNotFoundError()
        return ReadResult(self.metadata or Metadata(), self.hard_state, self.entries)


def _undecodable(path: str, rec: Record, exc: Exception) -> CorruptWALError:
    return CorruptWALError(path, rec.offset, f"undecodable {rec.type.name.lower()} record: {exc}")


def entries_start(scans: list[SegmentScan], snap_index: int) -> list[int]:
    """For each segment, the position of its first entry record that replay from a
    snapshot at ``snap_index`` must decode.

    Walking back from the end of the log, the first entry at or below ``snap_index``
    is where replay starts: every entry record before it is either covered by the
    snapshot or was cut away by it (an entry overwrites its index and everything
    after), so only the tail of a long log is decoded on restart. No such entry
    (nothing in the log is covered): replay everything.
    """
    starts = [len(scan.records) for scan in scans]
    for si in range(len(scans) - 1, -1, -1):
        records = scans[si].records
        for ri in range(len(records) - 1, -1, -1):
            rec = records[ri]
            if rec.type is RecordType.ENTRY and _entry_index(rec) <= snap_index:
                starts[si] = ri
                return starts
        starts[si] = 0
    return starts


def _entry_index(rec: Record) -> int:
    try:
        return decode_entry_fields(rec.data)[1]
    except (ValueError, TypeError, KeyError):
        return -1  # replay decodes it again and names the damage


def read_wal(
    fs: FS,
    wal_dir: str,
    segments: list[SegmentName],
    snap: WALSnapshot,
    cache: ScanCache | None = None,
) -> WALRead:
    """Read the log from the marker of ``snap`` to its end, changing nothing on disk.

    Raises WALNotFoundError, CorruptWALError, SnapshotNotFoundError,
    SnapshotMismatchError or MetadataConflictError.
    """
    if not segments:
        raise WALNotFoundError()
    replay = Replay(snap)
    scan = read_log(fs, wal_dir, segments, replay, search_index(segments, snap.index), cache)
    result = replay.result()
    tail = LogTail(list(segments), scan.end, scan.crc, scan.torn, scan.reason, replay.last_written)
    return WALRead(snap, result, tail)


def search_index(segments: list[SegmentName], index: int) -> int:
    """Position of the last segment whose first index is <= ``index``."""
    for i in range(len(segments) - 1, -1, -1):
        if segments[i].index <= index:
            return i
    raise WALNotFoundError()


#: Segment scans by path, kept by a caller that reads the same log twice (a restart
#: first looks for valid snapshot markers, then replays from the chosen one).
ScanCache = dict[str, SegmentScan]


def read_log(
    fs: FS,
    wal_dir: str,
    segments: list[SegmentName],
    replay: Replay,
    start: int,
    cache: ScanCache | None = None,
) -> SegmentScan:
    """Scan and replay ``segments[start:]``; the scan of the last one is returned.

    ``cache``: scans to reuse, and where to leave the scans made now.
    """
    selected = segments[start:]
    crc: int | None = None
    scans: list[tuple[str, SegmentScan]] = []
    for i, seg in enumerate(selected):
        path = os.path.join(wal_dir, str(seg))
        if seg.seq != selected[0].seq + i:
            expected = selected[0].seq + i
            raise CorruptWALError(path, 0, f"segment sequence gap: expected {expected:x}")
        scan = cache.get(path) if cache is not None else None
        if scan is None:  # a scan made earlier verified the same bytes
            scan = scan_segment(path, fs.read_file(path), crc, last=i == len(selected) - 1)
            if cache is not None:
                cache[path] = scan
        recs = scan.records
        if len(recs) < 2 or recs[1].type != RecordType.METADATA:
            raise CorruptWALError(path, scan.end, "segment lacks its crc and metadata records")
        scans.append((path, scan))
        crc = scan.crc
    if replay.replay_entries:
        starts = entries_start([scan for _, scan in scans], replay.snap.index)
    else:
        starts = [len(scan.records) for _, scan in scans]
    for (path, scan), entries_from in zip(scans, starts, strict=True):
        replay.apply(path, scan.records, entries_from)
    replay.finish()
    return scans[-1][1]
