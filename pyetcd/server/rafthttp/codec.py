"""The wire format between members: length-prefixed msgpack frames.

A frame is a 4-byte big-endian payload length followed by the payload, a msgpack array
whose first element is the frame kind. Rules this module keeps:

1. Decoding never trusts the peer: a length above the frame cap is refused before any
   byte of the payload is buffered, and every field is type- and range-checked before
   a value object is built, so garbage raises ``CodecError`` and nothing else.
2. Raft messages travel one per frame; a burst is written as the concatenation of its
   frames (one ``write`` call), so framing costs four bytes, not a syscall, per message.
3. Messages are positional arrays (not maps): smaller and faster, and the protocol
   version in the handshake covers any change of layout.

Connection protocol (see ``peer_transport``): the dialer sends ``Hello``; the acceptor
answers ``HelloResp``. A MESSAGE stream then carries ``Message`` frames one way. A
SNAPSHOT stream carries one ``SnapHeader`` (the MsgSnap), the backend database as
``SnapChunk`` frames, one ``SnapEnd`` (size and SHA-256), and the acceptor answers
one ``SnapAck``.
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from dataclasses import dataclass
from typing import Any, Final, Protocol

import msgpack

from pyetcd.raft import (
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
)

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "PROTOCOL_VERSION",
    "ByteStream",
    "CodecError",
    "Frame",
    "FrameDecoder",
    "FrameKind",
    "FrameReader",
    "FrameTooLargeError",
    "Hello",
    "HelloResp",
    "HelloStatus",
    "PeerRefusedError",
    "SnapAck",
    "SnapChunk",
    "SnapEnd",
    "SnapHeader",
    "StreamType",
    "decode_frame",
    "encode_frame",
    "encode_message",
]

#: Bumped whenever a frame's layout changes; peers with another version are refused.
PROTOCOL_VERSION: Final = 1

#: Largest payload accepted. A raft append is bounded by max-size-per-msg (1 MiB) but
#: one entry may be as large as --max-request-bytes allows, so leave ample room.
DEFAULT_MAX_FRAME_BYTES: Final = 64 * 1024 * 1024

_HEADER = struct.Struct(">I")
_U64_MAX: Final = (1 << 64) - 1
_MESSAGE_TYPES: Final = {int(t): t for t in MessageType}
_ENTRY_TYPES: Final = {int(t): t for t in EntryType}


class CodecError(ValueError):
    """A frame that does not decode: bad msgpack, unknown kind, wrong field types."""


class FrameTooLargeError(CodecError):
    """A frame header announced more bytes than the cap allows."""


class FrameKind(enum.IntEnum):
    HELLO = 0
    HELLO_RESP = 1
    MESSAGE = 2
    SNAP_HEADER = 3
    SNAP_CHUNK = 4
    SNAP_END = 5
    SNAP_ACK = 6


class StreamType(enum.IntEnum):
    """What a connection carries after the handshake."""

    MESSAGE = 0  # every raft message except MsgSnap, in order
    SNAPSHOT = 1  # one MsgSnap and the backend database that goes with it


class HelloStatus(enum.IntEnum):
    """The acceptor's verdict on a handshake."""

    OK = 0
    CLUSTER_ID_MISMATCH = 1
    REMOVED_MEMBER = 2
    TO_MISMATCH = 3
    INCOMPATIBLE_VERSION = 4
    UNKNOWN_SENDER = 5


@dataclass(frozen=True, slots=True)
class Hello:
    """The first frame of every connection, from the dialer."""

    version: int
    cluster_id: int
    frm: int  # the dialing member
    to: int  # the member the dialer believes it reached
    stream: StreamType


@dataclass(frozen=True, slots=True)
class HelloResp:
    """The acceptor's answer; ``reason`` is etcd's error text when refused."""

    status: HelloStatus
    cluster_id: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SnapHeader:
    """Opens a snapshot transfer: the MsgSnap itself; the database follows."""

    message: Message


@dataclass(frozen=True, slots=True)
class SnapChunk:
    data: bytes


@dataclass(frozen=True, slots=True)
class SnapEnd:
    """Closes the database stream; the receiver checks both values."""

    size: int
    sha256: bytes
    has_db: bool


@dataclass(frozen=True, slots=True)
class SnapAck:
    """The receiver's verdict once the database is durable and the MsgSnap stepped."""

    ok: bool
    reason: str = ""


class PeerRefusedError(ConnectionError):
    """The peer answered our handshake with a refusal."""

    def __init__(self, resp: HelloResp) -> None:
        super().__init__(resp.reason or resp.status.name)
        self.resp = resp


Frame = Hello | HelloResp | Message | SnapHeader | SnapChunk | SnapEnd | SnapAck

_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack


# -- encoding ---------------------------------------------------------------------------------


def _message_fields(m: Message) -> list[Any]:
    flat: list[Any] = []
    for e in m.entries:
        flat += (e.term, e.index, int(e.type), e.data)
    snap: list[Any] | None = None
    if m.snapshot is not None:
        md = m.snapshot.metadata
        cs = md.conf_state
        snap = [
            m.snapshot.data,
            md.index,
            md.term,
            list(cs.voters),
            list(cs.learners),
            list(cs.voters_outgoing),
            list(cs.learners_next),
            cs.auto_leave,
        ]
    return [
        int(m.type),
        m.to,
        m.frm,
        m.term,
        m.log_term,
        m.index,
        flat,
        m.commit,
        snap,
        m.reject,
        m.reject_hint,
        m.context,
    ]


def _framed(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload)) + payload


def encode_message(m: Message) -> bytes:
    """One framed raft message (the hot path of the MESSAGE stream)."""
    return _framed(_packb([FrameKind.MESSAGE.value, *_message_fields(m)]))


def encode_frame(f: Frame) -> bytes:
    """Frame ``f`` (header included)."""
    body: list[Any]
    if isinstance(f, Message):
        return encode_message(f)
    if isinstance(f, Hello):
        body = [FrameKind.HELLO, f.version, f.cluster_id, f.frm, f.to, int(f.stream)]
    elif isinstance(f, HelloResp):
        body = [FrameKind.HELLO_RESP, int(f.status), f.cluster_id, f.reason]
    elif isinstance(f, SnapHeader):
        body = [FrameKind.SNAP_HEADER, *_message_fields(f.message)]
    elif isinstance(f, SnapChunk):
        body = [FrameKind.SNAP_CHUNK, f.data]
    elif isinstance(f, SnapEnd):
        body = [FrameKind.SNAP_END, f.size, f.sha256, f.has_db]
    else:
        body = [FrameKind.SNAP_ACK, f.ok, f.reason]
    body[0] = int(body[0])
    return _framed(_packb(body))


# -- decoding ---------------------------------------------------------------------------------


def _u64(x: object, what: str) -> int:
    if type(x) is not int or not 0 <= x <= _U64_MAX:
        raise CodecError(f"bad {what}: {x!r:.40}")
    return x


def _bytes(x: object, what: str) -> bytes:
    if type(x) is not bytes:
        raise CodecError(f"bad {what}: not bytes")
    return x


def _bool(x: object, what: str) -> bool:
    if type(x) is not bool:
        raise CodecError(f"bad {what}: not a bool")
    return x


def _str(x: object, what: str) -> str:
    if type(x) is not str:
        raise CodecError(f"bad {what}: not a string")
    return x


def _ids(x: object, what: str) -> tuple[int, ...]:
    if type(x) is not list:
        raise CodecError(f"bad {what}: not a list")
    return tuple(_u64(i, what) for i in x)


def _entries(flat: object) -> tuple[Entry, ...]:
    if type(flat) is not list or len(flat) % 4:
        raise CodecError("bad entries")
    out = []
    kinds = _ENTRY_TYPES
    for i in range(0, len(flat), 4):
        term, index, etype, data = flat[i : i + 4]
        kind = kinds.get(etype) if type(etype) is int else None
        if not (
            kind is not None
            and type(term) is int
            and type(index) is int
            and type(data) is bytes
            and 0 <= term <= _U64_MAX
            and 0 <= index <= _U64_MAX
        ):
            if kind is None:
                raise CodecError(f"bad entry type: {etype!r:.40}")
            _u64(term, "entry term")
            _u64(index, "entry index")
            _bytes(data, "entry data")
        out.append(Entry(term, index, kind, data))
    return tuple(out)


def _snapshot(raw: object) -> Snapshot | None:
    if raw is None:
        return None
    if type(raw) is not list or len(raw) != 8:
        raise CodecError("bad snapshot")
    data, index, term, voters, learners, outgoing, learners_next, auto_leave = raw
    cs = ConfState(
        voters=_ids(voters, "voters"),
        learners=_ids(learners, "learners"),
        voters_outgoing=_ids(outgoing, "voters outgoing"),
        learners_next=_ids(learners_next, "learners next"),
        auto_leave=_bool(auto_leave, "auto leave"),
    )
    md = SnapshotMetadata(
        conf_state=cs, index=_u64(index, "snapshot index"), term=_u64(term, "snapshot term")
    )
    return Snapshot(data=_bytes(data, "snapshot data"), metadata=md)


def _message(body: list[Any]) -> Message:
    if len(body) != 13:
        raise CodecError(f"bad message: {len(body)} fields")
    _, mtype, to, frm, term, log_term, index, flat, commit, snap, reject, hint, ctx = body
    kind = _MESSAGE_TYPES.get(mtype) if type(mtype) is int else None
    if kind is None:
        raise CodecError(f"bad message type: {mtype!r:.40}")
    # Every message is decoded on the hot path: the common shape (in-range integers,
    # no entries or well-formed ones, no snapshot) is checked in one expression; the
    # field-by-field checks below run only to name what is wrong.
    ints = (to, frm, term, log_term, index, commit, hint)
    if not (
        type(to) is int
        and type(frm) is int
        and type(term) is int
        and type(log_term) is int
        and type(index) is int
        and type(commit) is int
        and type(hint) is int
        and min(ints) >= 0
        and max(ints) <= _U64_MAX
        and type(reject) is bool
        and type(ctx) is bytes
    ):
        _u64(to, "to")
        _u64(frm, "from")
        _u64(term, "term")
        _u64(log_term, "log term")
        _u64(index, "index")
        _u64(commit, "commit")
        _u64(hint, "reject hint")
        _bool(reject, "reject")
        _bytes(ctx, "context")
    return Message(
        kind,
        to,
        frm,
        term,
        log_term,
        index,
        () if type(flat) is list and not flat else _entries(flat),
        commit,
        None if snap is None else _snapshot(snap),
        reject,
        hint,
        ctx,
    )


def _control(kind: FrameKind, body: list[Any]) -> Frame:
    n = len(body)
    if kind == FrameKind.HELLO and n == 6:
        stream = _u64(body[5], "stream type")
        if stream not in StreamType._value2member_map_:
            raise CodecError(f"bad stream type: {stream}")
        return Hello(
            version=_u64(body[1], "version"),
            cluster_id=_u64(body[2], "cluster id"),
            frm=_u64(body[3], "from"),
            to=_u64(body[4], "to"),
            stream=StreamType(stream),
        )
    if kind == FrameKind.HELLO_RESP and n == 4:
        status = _u64(body[1], "status")
        if status not in HelloStatus._value2member_map_:
            raise CodecError(f"bad handshake status: {status}")
        return HelloResp(HelloStatus(status), _u64(body[2], "cluster id"), _str(body[3], "reason"))
    if kind == FrameKind.SNAP_HEADER:
        return SnapHeader(_message(body))
    if kind == FrameKind.SNAP_CHUNK and n == 2:
        return SnapChunk(_bytes(body[1], "chunk"))
    if kind == FrameKind.SNAP_END and n == 4:
        return SnapEnd(_u64(body[1], "size"), _bytes(body[2], "sha256"), _bool(body[3], "has db"))
    if kind == FrameKind.SNAP_ACK and n == 3:
        return SnapAck(_bool(body[1], "ok"), _str(body[2], "reason"))
    raise CodecError(f"bad {kind.name} frame: {n} fields")


def decode_frame(payload: bytes | memoryview) -> Frame:
    """Decode one frame payload (without its length header).

    Raises:
        CodecError: the payload is not a well-formed frame of a known kind.
    """
    try:
        body = msgpack.unpackb(payload, raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # msgpack raises many types on garbage; all mean the same
        raise CodecError(f"bad msgpack: {exc}") from None
    if type(body) is not list or not body or type(body[0]) is not int:
        raise CodecError("frame is not a kind-tagged array")
    if body[0] == FrameKind.MESSAGE:
        return _message(body)
    if body[0] not in FrameKind._value2member_map_:
        raise CodecError(f"unknown frame kind {body[0]}")
    return _control(FrameKind(body[0]), body)


class FrameDecoder:
    """Splits a byte stream into frame payloads (sans-I/O: feed bytes, get payloads).

    A header announcing more than ``max_frame_bytes`` raises ``FrameTooLargeError`` at
    once, before the payload is buffered, so a bad length cannot make us allocate.
    """

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a payload."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return every payload now complete, in order.

        Raises:
            FrameTooLargeError: a header announced a payload above the cap.
        """
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        end = len(buf)
        while end - pos >= 4:
            (size,) = _HEADER.unpack_from(buf, pos)
            if size > self.max_frame_bytes:
                raise FrameTooLargeError(
                    f"frame of {size} bytes exceeds the limit of {self.max_frame_bytes}"
                )
            if end - pos - 4 < size:
                break
            out.append(bytes(buf[pos + 4 : pos + 4 + size]))
            pos += 4 + size
        if pos:
            del buf[:pos]
        return out


class ByteStream(Protocol):
    """What ``FrameReader`` reads from (an ``asyncio.StreamReader``, say)."""

    async def read(self, n: int = -1) -> bytes: ...


class FrameReader:
    """Decoded frames from a byte stream, one at a time.

    Keeps the frames that one read brought beyond the one asked for, so a handshake
    and the messages right behind it may arrive in one segment.
    """

    def __init__(self, stream: ByteStream, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.stream = stream
        self.decoder = FrameDecoder(max_frame_bytes)
        self.pending: deque[bytes] = deque()
        #: Bytes read from the stream so far.
        self.bytes_read = 0

    async def next(self, read_bytes: int = 256 * 1024) -> Frame | None:
        """The next frame, or None at end of stream.

        Raises:
            CodecError: a bad or oversized frame.
        """
        while not self.pending:
            data = await self.stream.read(read_bytes)
            if not data:
                return None
            self.bytes_read += len(data)
            self.pending.extend(self.decoder.feed(data))
        return decode_frame(self.pending.popleft())
