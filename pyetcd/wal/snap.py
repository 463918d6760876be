"""Raft snapshot files: ``<snap-dir>/%016x-%016x.snap`` (term, index).

A file is a 4-byte little-endian crc32 of the payload followed by the payload, the
msgpack of the snapshot. Files are written atomically (temp file, fsync, rename, dir
fsync); a file failing its CRC is renamed ``.broken`` and the next older one is used,
as etcd's snapshotter does.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import time
import zlib
from dataclasses import dataclass
from typing import Any, Protocol

import msgpack

from pyetcd.raft.types import ConfState, Snapshot, SnapshotMetadata

from .errors import NoSnapshotError
from .fs import FS, OS_FS
from .record import WALSnapshot

__all__ = [
    "SnapMetrics",
    "Snapshotter",
    "decode_snapshot_file",
    "encode_snapshot_file",
    "snap_name",
]

log = logging.getLogger(__name__)

_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.snap$")
_CRC = struct.Struct("<I")


def snap_name(term: int, index: int) -> str:
    return f"{term:016x}-{index:016x}.snap"


def encode_snapshot_file(snap: Snapshot) -> bytes:
    """The bytes of a snapshot file."""
    md = snap.metadata
    cs = md.conf_state
    payload: bytes = msgpack.packb(
        (
            md.index,
            md.term,
            (cs.voters, cs.learners, cs.voters_outgoing, cs.learners_next, cs.auto_leave),
            snap.data,
        ),
        use_bin_type=True,
    )
    return _CRC.pack(zlib.crc32(payload)) + payload


def decode_snapshot_file(raw: bytes) -> Snapshot:
    """Parse a snapshot file; ValueError if it is damaged."""
    if len(raw) < _CRC.size:
        raise ValueError("snap: empty snapshot")
    (crc,) = _CRC.unpack_from(raw)
    payload = raw[_CRC.size :]
    if zlib.crc32(payload) != crc:
        raise ValueError("snap: crc mismatch")
    try:
        index, term, cs, data = msgpack.unpackb(payload, raw=False)
        voters, learners, outgoing, learners_next, auto_leave = cs
        conf = ConfState(
            voters=_ids(voters),
            learners=_ids(learners),
            voters_outgoing=_ids(outgoing),
            learners_next=_ids(learners_next),
            auto_leave=bool(auto_leave),
        )
    except Exception as exc:  # a CRC-valid but undecodable payload: written by a bug
        raise ValueError(f"snap: malformed snapshot: {exc}") from None
    return Snapshot(data=data, metadata=SnapshotMetadata(conf_state=conf, index=index, term=term))


def _ids(values: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


class Observer(Protocol):
    """Takes one duration in seconds (a Prometheus histogram fits as it is)."""

    def observe(self, amount: float) -> None: ...


@dataclass(frozen=True, slots=True)
class SnapMetrics:
    """Where a snapshot save's durations go (etcd's snap package metrics): ``marshalling``
    (encoding the file), ``fsync`` (writing it durably), ``total`` (both)."""

    marshalling: Observer
    fsync: Observer
    total: Observer


class Snapshotter:
    """Saves and loads raft snapshots in one directory, keeping ``max_snapshots`` files;
    ``metrics``, if given, is told how long each save took."""

    def __init__(
        self,
        snap_dir: str,
        *,
        fs: FS = OS_FS,
        max_snapshots: int = 5,
        metrics: SnapMetrics | None = None,
    ) -> None:
        self.dir = os.path.abspath(snap_dir)
        self.fs = fs
        self.max_snapshots = max_snapshots
        self.metrics = metrics

    def save_snap(self, snap: Snapshot) -> None:
        """Write ``snap`` durably (no-op for an empty snapshot), then purge old files."""
        if snap.is_empty():
            return
        self.fs.mkdir_all(self.dir)
        md = snap.metadata
        start = time.perf_counter()
        data = encode_snapshot_file(snap)
        encoded = time.perf_counter()
        self.fs.write_atomic(os.path.join(self.dir, snap_name(md.term, md.index)), data)
        m = self.metrics
        if m is not None:
            end = time.perf_counter()
            m.marshalling.observe(encoded - start)
            m.fsync.observe(end - encoded)
            m.total.observe(end - start)
        self.purge()

    def snap_names(self) -> list[str]:
        """The snapshot files, newest first."""
        if not self.fs.exists(self.dir):
            return []
        return sorted((n for n in self.fs.listdir(self.dir) if _NAME.match(n)), reverse=True)

    def newest_index(self) -> int:
        """The largest index among the snapshot files' names (0: there is none)."""
        indexes = [int(m.group(2), 16) for m in map(_NAME.match, self.snap_names()) if m]
        return max(indexes, default=0)

    def load(self) -> Snapshot:
        """The newest valid snapshot; raises NoSnapshotError if there is none."""
        snap = self.load_newest_available(None)
        if snap is None:
            raise NoSnapshotError()
        return snap

    def load_newest_available(self, markers: list[WALSnapshot] | None) -> Snapshot | None:
        """The newest valid snapshot whose (term, index) is among ``markers`` (any if
        None); corrupt files on the way are renamed ``.broken`` with a warning."""
        wanted = None if markers is None else {(m.term, m.index) for m in markers}
        for name in self.snap_names():
            m = _NAME.match(name)
            assert m is not None
            if wanted is not None and (int(m.group(1), 16), int(m.group(2), 16)) not in wanted:
                continue
            path = os.path.join(self.dir, name)
            try:
                return decode_snapshot_file(self.fs.read_file(path))
            except ValueError as exc:
                log.warning(
                    "failed to load snapshot %s (%s); renaming it .broken and trying an older one",
                    path,
                    exc,
                )
                self.fs.rename(path, path + ".broken")
                self.fs.fsync_dir(self.dir)
        return None

    def purge(self) -> list[str]:
        """Remove all but the newest ``max_snapshots`` files (0 keeps all)."""
        if self.max_snapshots <= 0:
            return []
        doomed = self.snap_names()[self.max_snapshots :]
        for name in doomed:
            self.fs.unlink(os.path.join(self.dir, name))
        if doomed:
            self.fs.fsync_dir(self.dir)
        return doomed
