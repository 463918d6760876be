"""MsgSnap transfers between members: the raft message plus the backend database.

Each transfer has a connection of its own (a SNAPSHOT stream, see ``codec``), so
heartbeats and appends on the message stream never wait behind it. The sender streams
the database in chunks and awaits ``drain()`` after each one, so a slow receiver slows
the sender instead of filling memory; file reads and writes run off the event loop.

The receiver writes the database to a temporary file in the snapshot directory,
checks its size and SHA-256, fsyncs it, renames it to ``%016x.snap.db`` (the
snapshot index, etcd's name) and fsyncs the directory; only then does it tell the
application (``on_snapshot``), step the MsgSnap (``on_message``) and acknowledge.
The sender reports the outcome with ``on_snapshot_status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import os
import tempfile
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, Final, Protocol

from pyetcd.logutil import Logger
from pyetcd.raft import Message, MessageType
from pyetcd.server.etcdserver.transport import PeerMetrics

from .codec import (
    CodecError,
    FrameReader,
    PeerRefusedError,
    SnapAck,
    SnapChunk,
    SnapEnd,
    SnapHeader,
    StreamType,
    encode_frame,
)
from .options import TransportOptions

__all__ = [
    "DBFile",
    "DBSource",
    "OnSnapshot",
    "OpenSnapshotDB",
    "ReceiverHost",
    "SenderHost",
    "SnapshotLink",
    "SnapshotSaveError",
    "db_chunks",
    "open_db_source",
    "receive_snapshot",
    "send_snapshot",
]

#: Where the sender's backend database comes from: a file path, an async iterator of
#: chunks (use its ``finally`` to remove a temporary copy), or None for no database.
DBSource = str | os.PathLike[str] | AsyncIterator[bytes] | None
#: Sender-side hook: the database to stream after a MsgSnap (sync or async).
OpenSnapshotDB = Callable[[Message], DBSource | Awaitable[DBSource]]
#: Receiver-side hook: a MsgSnap's database is durable at ``db_path`` (None: none sent).
#: Called just before the message is handed to ``on_message``.
OnSnapshot = Callable[[Message, str | None], None]

#: Bytes per thread hop when reading or writing the database file.
_FILE_BLOCK: Final = 1024 * 1024


class SnapshotSaveError(Exception):
    """The received database cannot be saved (no directory, checksum mismatch)."""


def _hex(member: int) -> str:
    return f"{member:x}"


class SenderHost(Protocol):
    """What sending a snapshot uses of the transport."""

    @property
    def member_id(self) -> int: ...

    @property
    def log(self) -> Logger: ...

    @property
    def options(self) -> TransportOptions: ...

    @property
    def open_snapshot_db(self) -> OpenSnapshotDB | None: ...

    @property
    def metrics(self) -> PeerMetrics: ...

    def report_unreachable(self, peer_id: int) -> None: ...

    def report_snapshot_status(self, peer_id: int, ok: bool) -> None: ...


class SnapshotLink(Protocol):
    """The peer a snapshot goes to: it dials a connection and hears refusals."""

    @property
    def id(self) -> int: ...

    async def dial(self, stream: StreamType) -> tuple[FrameReader, asyncio.StreamWriter]: ...

    def refused(self, exc: PeerRefusedError) -> None: ...


class ReceiverHost(Protocol):
    """What receiving a snapshot uses of the transport."""

    @property
    def member_id(self) -> int: ...

    @property
    def log(self) -> Logger: ...

    @property
    def options(self) -> TransportOptions: ...

    @property
    def snapshot_dir(self) -> str | None: ...

    @property
    def on_snapshot(self) -> OnSnapshot | None: ...

    @property
    def metrics(self) -> PeerMetrics: ...

    def deliver(self, m: Message) -> None:
        """Hand a received message to the Raft driver."""
        ...


# -- sender -----------------------------------------------------------------------------------


async def open_db_source(open_db: OpenSnapshotDB | None, m: Message) -> DBSource:
    """The database to send with MsgSnap ``m`` (None: no hook, or no database)."""
    if open_db is None:
        return None
    source = open_db(m)
    if inspect.isawaitable(source):
        resolved: DBSource = await source
        return resolved
    return source


async def db_chunks(source: DBSource, size: int) -> AsyncGenerator[bytes, None]:
    """``source`` in pieces of at most ``size`` bytes (one frame each)."""
    if source is None:
        return
    if isinstance(source, str | os.PathLike):
        f = await asyncio.to_thread(open, source, "rb")
        try:
            while block := await asyncio.to_thread(f.read, max(size, _FILE_BLOCK)):
                for i in range(0, len(block), size):
                    yield block[i : i + size]
        finally:
            f.close()
        return
    try:
        async for piece in source:
            for i in range(0, len(piece), size):
                yield bytes(piece[i : i + size])
    finally:
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()


async def send_snapshot(tr: SenderHost, peer: SnapshotLink, m: Message) -> None:
    """Send MsgSnap ``m`` and its database to ``peer`` on a connection of its own, then
    report the outcome (a failure also reports the peer unreachable, as etcd does)."""
    index = m.snapshot.metadata.index if m.snapshot is not None else 0
    fields: dict[str, Any] = {
        "local-member-id": _hex(tr.member_id),
        "remote-peer-id": _hex(peer.id),
        "snapshot-index": index,
    }
    metrics = tr.metrics
    metrics.snapshot_send_started(peer.id)
    start = time.perf_counter()
    ok = False
    try:
        source = await open_db_source(tr.open_snapshot_db, m)
        frames, writer = await peer.dial(StreamType.SNAPSHOT)
        try:
            ok = await _stream(tr, m, source, frames, writer, fields)
        finally:
            writer.close()
    except PeerRefusedError as exc:
        peer.refused(exc)
        tr.log.warn("failed to send database snapshot", {**fields, "error": str(exc)})
    except Exception as exc:  # I/O, protocol and the application's hook: all mean "failed"
        tr.log.warn("failed to send database snapshot", {**fields, "error": repr(exc)})
    finally:
        metrics.snapshot_send_ended(peer.id, ok, time.perf_counter() - start)
    if not ok:
        tr.report_unreachable(peer.id)
    tr.report_snapshot_status(peer.id, ok)


async def _stream(
    tr: SenderHost,
    m: Message,
    source: DBSource,
    frames: FrameReader,
    writer: asyncio.StreamWriter,
    fields: dict[str, Any],
) -> bool:
    opts = tr.options
    tr.log.info("sending database snapshot", fields)
    writer.write(encode_frame(SnapHeader(m)))
    sha = hashlib.sha256()
    size = 0
    async with contextlib.aclosing(db_chunks(source, opts.snapshot_chunk_bytes)) as chunks:
        async for chunk in chunks:
            sha.update(chunk)
            size += len(chunk)
            writer.write(encode_frame(SnapChunk(chunk)))
            # Back-pressure: never more than the transport's high-water mark in memory.
            async with asyncio.timeout(opts.write_timeout):
                await writer.drain()
    writer.write(encode_frame(SnapEnd(size, sha.digest(), source is not None)))
    async with asyncio.timeout(opts.write_timeout):
        await writer.drain()
    async with asyncio.timeout(opts.snapshot_ack_timeout):
        ack = await frames.next()
    if not isinstance(ack, SnapAck):
        raise CodecError("peer did not acknowledge the snapshot")
    if not ack.ok:
        tr.log.warn("failed to send database snapshot", {**fields, "error": ack.reason})
        return False
    tr.log.info("sent database snapshot", {**fields, "bytes": size})
    return True


# -- receiver ---------------------------------------------------------------------------------


async def receive_snapshot(
    tr: ReceiverHost, frm: int, frames: FrameReader, writer: asyncio.StreamWriter
) -> None:
    """Serve one SNAPSHOT stream from ``frm``: save the database, step the MsgSnap, ack.

    Raises:
        CodecError: the stream does not follow the snapshot protocol.
        OSError: the connection failed.
    """
    metrics = tr.metrics
    metrics.snapshot_receive_started(frm)
    start = time.perf_counter()
    ok = False
    try:
        ok = await _receive(tr, frm, frames, writer)
    finally:
        metrics.snapshot_receive_ended(frm, ok, time.perf_counter() - start)


async def _receive(
    tr: ReceiverHost, frm: int, frames: FrameReader, writer: asyncio.StreamWriter
) -> bool:
    head = await frames.next()
    if not isinstance(head, SnapHeader) or head.message.type != MessageType.SNAP:
        raise CodecError("expected a MsgSnap header on a snapshot stream")
    m = head.message
    index = m.snapshot.metadata.index if m.snapshot is not None else 0
    fields: dict[str, Any] = {
        "local-member-id": _hex(tr.member_id),
        "remote-snapshot-sender-id": _hex(frm),
        "incoming-snapshot-index": index,
    }
    tr.log.info("receiving database snapshot", fields)
    ack = SnapAck(True)
    try:
        db_path, size = await _save_db(tr.snapshot_dir, frames, index, tr.metrics)
        tr.log.info(
            "received and saved database snapshot",
            {**fields, "incoming-snapshot-size-bytes": size},
        )
        if tr.on_snapshot is not None:
            try:
                tr.on_snapshot(m, db_path)
            except Exception as exc:  # the application's hook: its failure fails the transfer
                raise SnapshotSaveError(f"snapshot hook failed: {exc!r}") from exc
        tr.deliver(m)
    except (SnapshotSaveError, OSError) as exc:
        tr.log.warn("failed to save incoming database snapshot", {**fields, "error": str(exc)})
        ack = SnapAck(False, f"failed to save KV snapshot ({exc})")
    writer.write(encode_frame(ack))
    async with asyncio.timeout(tr.options.write_timeout):
        await writer.drain()
    return ack.ok


class DBFile:
    """The temporary file a database is received into (``write`` it off the event loop),
    then ``commit`` it to ``%016x.snap.db`` durably, or ``discard`` it."""

    def __init__(self, directory: str, index: int) -> None:
        self.directory = directory
        self.final = os.path.join(directory, f"{index:016x}.snap.db")
        self.fd, self.tmp = tempfile.mkstemp(
            dir=directory, prefix=f"{index:016x}.snap.db.", suffix=".tmp"
        )
        self.sha = hashlib.sha256()
        self.size = 0
        #: How long ``commit``'s fsync of the file took (etcd_snap_db_fsync_duration_seconds).
        self.fsync_seconds = 0.0

    def write(self, pieces: list[bytes]) -> None:
        data = memoryview(b"".join(pieces))
        self.sha.update(data)
        self.size += len(data)
        while data:
            data = data[os.write(self.fd, data) :]

    def commit(self) -> str:
        start = time.perf_counter()
        os.fsync(self.fd)
        self.fsync_seconds = time.perf_counter() - start
        os.close(self.fd)
        self.fd = -1
        os.replace(self.tmp, self.final)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return self.final

    def discard(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


async def _save_db(
    directory: str | None, frames: FrameReader, index: int, metrics: PeerMetrics
) -> tuple[str | None, int]:
    """Receive the database; returns its durable path (None if none was sent) and size.
    ``metrics`` is told the file's fsync time and the whole save's (etcd's SaveDBFrom)."""
    start = time.perf_counter()
    db: DBFile | None = None
    pending: list[bytes] = []
    pending_bytes = 0
    committed = False
    try:
        while True:
            f = await frames.next()
            if f is None:
                raise ConnectionResetError("snapshot stream ended before its end frame")
            if isinstance(f, SnapEnd):
                break
            if not isinstance(f, SnapChunk):
                raise CodecError(f"unexpected {type(f).__name__} in a snapshot stream")
            if db is None:
                if directory is None:
                    raise SnapshotSaveError("no snapshot directory to save into")
                db = await asyncio.to_thread(DBFile, directory, index)
            pending.append(f.data)
            pending_bytes += len(f.data)
            if pending_bytes >= _FILE_BLOCK:
                # While this thread writes we read nothing: TCP slows the sender down.
                await asyncio.to_thread(db.write, pending)
                pending, pending_bytes = [], 0
        if not f.has_db:
            if db is not None:
                raise SnapshotSaveError("database chunks sent for a snapshot without one")
            return None, 0
        if db is None:
            if directory is None:
                raise SnapshotSaveError("no snapshot directory to save into")
            db = await asyncio.to_thread(DBFile, directory, index)
        await asyncio.to_thread(db.write, pending)
        if db.size != f.size or db.sha.digest() != f.sha256:
            raise SnapshotSaveError(
                f"snapshot database checksum mismatch ({db.size} of {f.size} bytes)"
            )
        path = await asyncio.to_thread(db.commit)
        committed = True
        metrics.snap_db_fsync.observe(db.fsync_seconds)
        metrics.snap_db_save.observe(time.perf_counter() - start)
        return path, db.size
    finally:
        if db is not None and not committed:
            db.discard()
