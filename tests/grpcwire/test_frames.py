"""h2_frames: frame layout, and our HPACK blocks as a real decoder reads them."""

from __future__ import annotations

import struct
from typing import Any
from urllib.parse import unquote

import hpack
import pytest

from pyetcd.grpcwire.frames import (
    COPY_MAX,
    OK_TRAILERS,
    PREFACE,
    RESPONSE_HEADERS,
    ErrorCode,
    Flag,
    FrameType,
    Setting,
    encode_headers,
    frame,
    goaway,
    grpc_status_block,
    rst_stream,
    settings,
    split_data,
    window_update,
)


def parse(data: bytes) -> tuple[int, int, int, int, bytes]:
    """(length, type, flags, stream id, payload) of one frame, read by the RFC's layout."""
    length = int.from_bytes(data[:3], "big")
    sid = int.from_bytes(data[5:9], "big")
    assert len(data) == 9 + length
    return length, data[3], data[4], sid, data[9:]


def decode(block: bytes, raw: bool = False) -> list[tuple[Any, Any]]:
    return [(n, v) for n, v in hpack.Decoder(max_header_list_size=1 << 24).decode(block, raw=raw)]


# -- frames ---------------------------------------------------------------------------------


def test_preface() -> None:
    assert PREFACE == b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" and len(PREFACE) == 24


def test_frame_header_layout() -> None:
    assert frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 3, b"abc") == (
        b"\x00\x00\x03\x01\x05\x00\x00\x00\x03abc"
    )
    assert frame(FrameType.SETTINGS, Flag.ACK, 0) == b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"
    big = bytes(0x012345)  # the 24-bit length uses all three bytes
    out = frame(FrameType.DATA, 0, 2**31 - 1, big)
    assert out[:9] == b"\x01\x23\x45\x00\x00\x7f\xff\xff\xff"
    assert parse(out) == (0x012345, 0, 0, 2**31 - 1, big)


@pytest.mark.parametrize("length", [0, 1, 255, 256, 16_384, 65_535, 65_536, 2**24 - 1])
def test_frame_length_round_trip(length: int) -> None:
    payload = bytes(range(256)) * (length // 256) + bytes(range(length % 256))
    assert parse(frame(FrameType.DATA, 0, 1, payload)) == (length, 0, 0, 1, payload)


def test_settings_window_update_rst_goaway() -> None:
    out = settings(((Setting.INITIAL_WINDOW_SIZE, 1 << 24), (Setting.ENABLE_PUSH, 0)))
    length, ftype, flags, sid, payload = parse(out)
    assert (length, ftype, flags, sid) == (12, FrameType.SETTINGS, 0, 0)
    assert [struct.unpack_from(">HL", payload, i) for i in (0, 6)] == [(4, 1 << 24), (2, 0)]
    assert parse(settings(())) == (0, FrameType.SETTINGS, 0, 0, b"")

    update = (4, FrameType.WINDOW_UPDATE, 0, 7, b"\x7f\xff\xff\xff")
    assert parse(window_update(7, 2**31 - 1)) == update
    assert parse(rst_stream(9, ErrorCode.CANCEL)) == (4, FrameType.RST_STREAM, 0, 9, b"\0\0\0\x08")
    out = goaway(5, ErrorCode.PROTOCOL_ERROR, b"why")
    assert parse(out) == (11, FrameType.GOAWAY, 0, 0, b"\0\0\0\x05\0\0\0\x01why")


def test_constants_are_the_rfcs() -> None:
    names = "DATA HEADERS PRIORITY RST_STREAM SETTINGS PUSH_PROMISE PING GOAWAY WINDOW_UPDATE"
    types = [getattr(FrameType, n) for n in (*names.split(), "CONTINUATION")]
    assert types == list(range(10))
    flags = (Flag.END_STREAM, Flag.ACK, Flag.END_HEADERS, Flag.PADDED, Flag.PRIORITY)
    assert flags == (1, 1, 4, 8, 0x20)
    assert [int(s) for s in Setting] == [1, 2, 3, 4, 5, 6]
    assert (ErrorCode.FRAME_SIZE_ERROR, ErrorCode.REFUSED_STREAM, ErrorCode.CANCEL) == (6, 7, 8)
    assert (ErrorCode.COMPRESSION_ERROR, ErrorCode.ENHANCE_YOUR_CALM) == (9, 11)


# -- HPACK ---------------------------------------------------------------------------------


def test_response_headers_and_ok_trailers() -> None:
    assert RESPONSE_HEADERS[:1] == b"\x88"  # ":status: 200" is static entry 8
    assert decode(RESPONSE_HEADERS) == [(":status", "200"), ("content-type", "application/grpc")]
    assert decode(OK_TRAILERS) == [("grpc-status", "0")]


def test_status_other_than_200_and_arbitrary_names() -> None:
    headers = [
        (":status", "404"),
        ("content-type", "text/plain"),
        ("x-custom", "v"),
        ("grpc-status-details-bin", "AAEC"),
        ("empty", ""),
    ]
    assert decode(encode_headers(headers)) == headers


@pytest.mark.parametrize("size", [0, 1, 126, 127, 128, 254, 255, 16_510, 16_511, 70_000])
def test_long_values_need_multibyte_integers(size: int) -> None:
    value = bytes((i * 7) % 256 for i in range(size))
    name = "n" * size  # a long name too: its length uses the same integer coding
    block = encode_headers([("content-type", value), (name, value), (":status", value)])
    assert decode(block, raw=True) == [
        (b"content-type", value),
        (name.encode(), value),
        (b":status", value),
    ]


def test_blocks_never_touch_the_dynamic_table() -> None:
    decoder = hpack.Decoder()
    block = encode_headers([("x-a", "1"), ("content-type", "application/grpc"), (":status", "200")])
    first = decoder.decode(block)
    assert len(decoder.header_table.dynamic_entries) == 0
    assert decoder.decode(block) == first  # same bytes, same meaning, on any connection


def test_grpc_status_block_trailers_only() -> None:
    assert decode(grpc_status_block(5, "not found", trailers_only=True)) == [
        (":status", "200"),
        ("content-type", "application/grpc"),
        ("grpc-status", "5"),
        ("grpc-message", "not found"),
    ]
    assert decode(grpc_status_block(1, "", trailers_only=False)) == [("grpc-status", "1")]
    assert decode(grpc_status_block(0, "", trailers_only=True)) == [
        (":status", "200"),
        ("content-type", "application/grpc"),
        ("grpc-status", "0"),
    ]


@pytest.mark.parametrize(
    "details",
    [
        "100% sure",
        "Größe überschritten: 5 € ✓",
        "%41 is not A",
        "tab\tnew\nline\x7f",
        "".join(chr(c) for c in range(0x20, 0x7F)),
        "日本語",
    ],
)
def test_grpc_message_is_percent_encoded(details: str) -> None:
    (status, (name, value)) = decode(grpc_status_block(13, details, trailers_only=False))
    assert status == ("grpc-status", "13") and name == "grpc-message"
    assert unquote(value, errors="strict") == details
    # gRPC's rule: printable ASCII except '%' as is, every other byte as %XX.
    expected = "".join(
        chr(b) if 0x20 <= b <= 0x7E and b != 0x25 else f"%{b:02X}" for b in details.encode()
    )
    assert value == expected


@pytest.mark.parametrize("size", [0, 1, 16_384, 16_385, COPY_MAX, COPY_MAX + 1, 300_001])
@pytest.mark.parametrize("max_frame", [16_384, 1 << 20])
def test_split_data_is_the_frames_of_each_chunk(size: int, max_frame: int) -> None:
    data = bytes(i % 251 for i in range(size))
    pieces = split_data(3, Flag.END_STREAM, data, max_frame)
    chunks = [data[i : i + max_frame] for i in range(0, size, max_frame)] or [b""]
    want = b"".join(
        frame(FrameType.DATA, Flag.END_STREAM if i == len(chunks) - 1 else 0, 3, c)
        for i, c in enumerate(chunks)
    )
    assert b"".join(pieces) == want
    if size > COPY_MAX:  # payloads are views of the data, not copies
        views = [p for p in pieces if isinstance(p, memoryview)]
        assert len(views) == len(chunks) and all(v.obj is data for v in views)
