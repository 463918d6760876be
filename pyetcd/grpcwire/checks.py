"""The shape of each received frame's payload (RFC 9113 section 6), checked and parsed.

Pure functions of one frame's flags, stream id and payload, for ``H2Connection``: each
returns what the frame says or raises the typed error the RFC names for a malformed
one. Nothing here knows the connection's state; what a well-formed frame *does* is the
connection's business.
"""

from __future__ import annotations

import struct
from typing import Final

from .errors import FlowControlError, FrameSizeError, ProtocolError
from .frames import DEFAULT_MAX_FRAME, MAX_WINDOW, Flag, Setting

__all__ = [
    "check_ping",
    "check_priority",
    "check_rst_stream",
    "goaway_fields",
    "settings_pairs",
    "unpad",
    "window_increment",
]

_SETTING: Final = struct.Struct(">HL")
_GOAWAY: Final = struct.Struct(">LL")
_MAX_FRAME_LIMIT: Final = 2**24 - 1


def unpad(payload: bytes) -> bytes:
    """The payload of a PADDED DATA or HEADERS frame without its padding."""
    if not payload or payload[0] >= len(payload):
        raise ProtocolError("padding longer than the frame")
    return payload[1 : len(payload) - payload[0]]


def settings_pairs(sid: int, flags: int, payload: bytes) -> list[tuple[int, int]] | None:
    """The (parameter, value) pairs of a SETTINGS frame in order; None for an ACK."""
    if sid != 0:
        raise ProtocolError("SETTINGS on a stream")
    if flags & Flag.ACK:
        if payload:
            raise FrameSizeError("SETTINGS ACK with a payload")
        return None
    if len(payload) % 6:
        raise FrameSizeError("SETTINGS is a multiple of 6 bytes")
    pairs = [_SETTING.unpack_from(payload, i) for i in range(0, len(payload), 6)]
    for key, value in pairs:
        if key == Setting.INITIAL_WINDOW_SIZE and value > MAX_WINDOW:
            raise FlowControlError("SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1")
        if key == Setting.MAX_FRAME_SIZE and not DEFAULT_MAX_FRAME <= value <= _MAX_FRAME_LIMIT:
            raise ProtocolError("SETTINGS_MAX_FRAME_SIZE out of range")
        if key == Setting.ENABLE_PUSH and value > 1:
            raise ProtocolError("SETTINGS_ENABLE_PUSH is 0 or 1")
    return pairs


def check_ping(sid: int, payload: bytes) -> None:
    if sid != 0:
        raise ProtocolError("PING on a stream")
    if len(payload) != 8:
        raise FrameSizeError("PING is 8 bytes")


def check_priority(sid: int, payload: bytes) -> None:
    # Advice we do not take; only its shape is checked (RFC 9113 6.3).
    if sid == 0:
        raise ProtocolError("PRIORITY on stream 0")
    if len(payload) != 5:
        raise FrameSizeError("PRIORITY is 5 bytes", sid)


def check_rst_stream(sid: int, payload: bytes) -> None:
    if sid == 0:
        raise ProtocolError("RST_STREAM on stream 0")
    if len(payload) != 4:
        raise FrameSizeError("RST_STREAM is 4 bytes")


def goaway_fields(sid: int, payload: bytes) -> tuple[int, int, bytes]:
    """A GOAWAY's last stream id, error code and debug data."""
    if sid != 0:
        raise ProtocolError("GOAWAY on a stream")
    if len(payload) < 8:
        raise FrameSizeError("GOAWAY is at least 8 bytes")
    last, code = _GOAWAY.unpack_from(payload)
    return last & 0x7FFFFFFF, code, payload[8:]


def window_increment(sid: int, payload: bytes) -> int:
    """A WINDOW_UPDATE's increment (0 is the caller's to refuse: on a closed stream it is
    no error)."""
    if len(payload) != 4:
        raise FrameSizeError("WINDOW_UPDATE is 4 bytes")
    return int.from_bytes(payload, "big") & 0x7FFFFFFF
