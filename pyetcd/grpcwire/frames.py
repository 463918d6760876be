"""HTTP/2 framing (RFC 9113) and the header blocks gRPC's answers need.

What the client port's gRPC server reads and writes on the wire, and nothing else:
frame headers, the SETTINGS parameters, error codes, and HPACK *encoding* of our own
header blocks. Those use only the static table and literals without indexing, so an
answer's header block is the same bytes on every connection and most are built once at
import. Decoding the client's header blocks needs the HPACK dynamic table: ``hpack.py``.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable
from typing import Final
from urllib.parse import quote

from .limits import ServerLimits

__all__ = [
    "COPY_MAX",
    "DEFAULT_MAX_FRAME",
    "DEFAULT_WINDOW",
    "MAX_WINDOW",
    "OK_TRAILERS",
    "PREFACE",
    "RESPONSE_HEADERS",
    "ErrorCode",
    "Flag",
    "FrameType",
    "Setting",
    "answer_frames",
    "encode_headers",
    "error_code",
    "frame",
    "goaway",
    "grpc_status_block",
    "rst_stream",
    "server_settings",
    "settings",
    "split_data",
    "split_header_block",
    "window_update",
]

#: What every HTTP/2 client sends before its first frame.
PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: RFC 9113 6.5.2: the initial flow-control window and the largest frame either side
#: may send until the other says otherwise.
DEFAULT_WINDOW: Final = 65_535
DEFAULT_MAX_FRAME: Final = 16_384
MAX_WINDOW: Final = 2**31 - 1

_HEADER = struct.Struct(">BHBBL")  # 24-bit length (split 8 + 16), type, flags, stream id


class FrameType:
    """Frame types (plain ints: enum arithmetic costs microseconds per frame)."""

    DATA: Final = 0
    HEADERS: Final = 1
    PRIORITY: Final = 2
    RST_STREAM: Final = 3
    SETTINGS: Final = 4
    PUSH_PROMISE: Final = 5
    PING: Final = 6
    GOAWAY: Final = 7
    WINDOW_UPDATE: Final = 8
    CONTINUATION: Final = 9


class Flag:
    """Frame flags (plain ints, as FrameType)."""

    END_STREAM: Final = 0x1  # DATA, HEADERS
    ACK: Final = 0x1  # SETTINGS, PING
    END_HEADERS: Final = 0x4
    PADDED: Final = 0x8
    PRIORITY: Final = 0x20


class Setting(enum.IntEnum):
    HEADER_TABLE_SIZE = 1
    ENABLE_PUSH = 2
    MAX_CONCURRENT_STREAMS = 3
    INITIAL_WINDOW_SIZE = 4
    MAX_FRAME_SIZE = 5
    MAX_HEADER_LIST_SIZE = 6


class ErrorCode(enum.IntEnum):
    NO_ERROR = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2
    FLOW_CONTROL_ERROR = 3
    SETTINGS_TIMEOUT = 4
    STREAM_CLOSED = 5
    FRAME_SIZE_ERROR = 6
    REFUSED_STREAM = 7
    CANCEL = 8
    COMPRESSION_ERROR = 9
    CONNECT_ERROR = 10
    ENHANCE_YOUR_CALM = 11
    INADEQUATE_SECURITY = 12
    HTTP_1_1_REQUIRED = 13


_END_TRAILERS: Final = Flag.END_HEADERS | Flag.END_STREAM
#: The longest DATA payload that split_data copies into a frame of its own.
COPY_MAX: Final = 1 << 16


def frame(ftype: int, flags: int, stream_id: int, payload: bytes | memoryview = b"") -> bytes:
    """One frame: the 9-byte header, then ``payload``."""
    n = len(payload)
    return _HEADER.pack(n >> 16, n & 0xFFFF, ftype, flags, stream_id) + payload


def answer_frames(stream_id: int, headers: bytes, message: bytes, trailers: bytes) -> bytes:
    """A short answer whole: HEADERS, one DATA frame, the trailers' HEADERS (END_STREAM),
    each block and the message short enough for one frame."""
    pack, n = _HEADER.pack, len(message)
    return b"".join(
        (
            pack(0, len(headers), FrameType.HEADERS, Flag.END_HEADERS, stream_id),
            headers,
            pack(n >> 16, n & 0xFFFF, FrameType.DATA, 0, stream_id),
            message,
            pack(0, len(trailers), FrameType.HEADERS, _END_TRAILERS, stream_id),
            trailers,
        )
    )


def split_header_block(stream_id: int, flags: int, block: bytes, max_frame: int) -> list[bytes]:
    """HEADERS (with ``flags``, e.g. END_STREAM) and CONTINUATION frames carrying a header
    block too long for one frame of ``max_frame`` bytes; the last has END_HEADERS."""
    chunks = [block[i : i + max_frame] for i in range(0, len(block), max_frame)] or [b""]
    last = len(chunks) - 1
    return [
        frame(
            FrameType.CONTINUATION if i else FrameType.HEADERS,
            (0 if i else flags) | (Flag.END_HEADERS if i == last else 0),
            stream_id,
            chunk,
        )
        for i, chunk in enumerate(chunks)
    ]


def split_data(
    stream_id: int, end_stream: int, data: bytes | memoryview, max_frame: int
) -> list[bytes | memoryview]:
    """DATA frames of at most ``max_frame`` bytes, the last carrying ``end_stream``.

    Up to ``COPY_MAX`` bytes: one frame, built whole. Longer: (header, payload) pieces,
    each payload a view of ``data``, so that a large message is copied only into the
    socket (``writelines``), not once more per frame.
    """
    n = len(data)
    if n <= min(max_frame, COPY_MAX):
        return [frame(FrameType.DATA, end_stream, stream_id, data)]
    view = memoryview(data)
    out: list[bytes | memoryview] = []
    for i in range(0, n, max_frame):
        chunk = view[i : i + max_frame]
        size = len(chunk)
        flags = end_stream if i + max_frame >= n else 0
        out += (_HEADER.pack(size >> 16, size & 0xFFFF, FrameType.DATA, flags, stream_id), chunk)
    return out


def error_code(code: int) -> ErrorCode | int:
    """``code`` as an ErrorCode, or the int itself when RFC 9113 defines no such code (an
    unknown code carries no special meaning, section 7)."""
    try:
        return ErrorCode(code)
    except ValueError:
        return code


def settings(values: Iterable[tuple[Setting, int]]) -> bytes:
    return frame(FrameType.SETTINGS, 0, 0, b"".join(struct.pack(">HL", k, v) for k, v in values))


def server_settings(limits: ServerLimits, stream_window: int, max_frame: int) -> bytes:
    """The SETTINGS frame a server opens with: push off, the other values its own (the
    maximum frame size only when it is not HTTP/2's default)."""
    ours = [
        (Setting.MAX_CONCURRENT_STREAMS, limits.max_concurrent_streams),
        (Setting.INITIAL_WINDOW_SIZE, stream_window),
        (Setting.ENABLE_PUSH, 0),
        (Setting.MAX_HEADER_LIST_SIZE, limits.max_header_list_size),
    ]
    if max_frame != DEFAULT_MAX_FRAME:
        ours.append((Setting.MAX_FRAME_SIZE, max_frame))
    return settings(ours)


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(FrameType.WINDOW_UPDATE, 0, stream_id, struct.pack(">L", increment))


def rst_stream(stream_id: int, code: ErrorCode) -> bytes:
    return frame(FrameType.RST_STREAM, 0, stream_id, struct.pack(">L", code))


def goaway(last_stream_id: int, code: ErrorCode, debug: bytes = b"") -> bytes:
    return frame(FrameType.GOAWAY, 0, 0, struct.pack(">LL", last_stream_id, code) + debug)


# -- HPACK encoding of our own header blocks (RFC 7541) ---------------------------------------

# Static-table indexes of the names we send (RFC 7541 appendix A).
_STATIC_NAMES: Final = {":status": 8, "content-type": 31}
# ":status: 200" is a whole static entry.
_STATUS_200: Final = b"\x88"


def _integer(value: int, prefix_bits: int, first: int) -> bytes:
    # RFC 7541 5.1: an integer in an N-bit prefix, continued in 7-bit groups.
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(data: bytes) -> bytes:
    return _integer(len(data), 7, 0) + data  # no Huffman coding


def encode_headers(headers: Iterable[tuple[str, str | bytes]]) -> bytes:
    """An HPACK block of ``headers``: literals without indexing, so the client's dynamic
    table is never touched and the block means the same on every connection."""
    out = bytearray()
    for name, value in headers:
        raw = value.encode() if isinstance(value, str) else value
        if name == ":status" and raw == b"200":
            out += _STATUS_200
            continue
        index = _STATIC_NAMES.get(name)
        if index is not None:
            out += _integer(index, 4, 0) + _string(raw)
        else:
            out += b"\x00" + _string(name.encode()) + _string(raw)
    return bytes(out)


def _grpc_message(details: str) -> bytes:
    # gRPC's grpc-message: percent-encoded UTF-8, printable ASCII except '%' kept.
    return quote(details, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~").encode()


#: The header block that opens every answer.
RESPONSE_HEADERS: Final = encode_headers(((":status", "200"), ("content-type", "application/grpc")))
#: The trailers of every successful call.
OK_TRAILERS: Final = encode_headers((("grpc-status", "0"),))


def grpc_status_block(code: int, details: str, trailers_only: bool) -> bytes:
    """The trailers of a call that ends with ``code`` (a trailers-only answer also
    carries the response headers, RFC-style, in the same block)."""
    pairs: list[tuple[str, str | bytes]] = []
    if trailers_only:
        pairs += [(":status", "200"), ("content-type", "application/grpc")]
    pairs.append(("grpc-status", str(code)))
    if details:
        pairs.append(("grpc-message", _grpc_message(details)))
    return encode_headers(pairs)
