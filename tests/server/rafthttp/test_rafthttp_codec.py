"""The peer wire format: round trips, framing, and refusal of bad input."""

from __future__ import annotations

import contextlib
import struct

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyetcd.raft import (
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
)
from pyetcd.server.rafthttp.codec import (
    PROTOCOL_VERSION,
    CodecError,
    Frame,
    FrameDecoder,
    FrameReader,
    FrameTooLargeError,
    Hello,
    HelloResp,
    HelloStatus,
    SnapAck,
    SnapChunk,
    SnapEnd,
    SnapHeader,
    StreamType,
    decode_frame,
    encode_frame,
    encode_message,
)

U64 = st.integers(min_value=0, max_value=(1 << 64) - 1)
ids = st.lists(U64, max_size=5).map(tuple)

entries = st.builds(
    Entry, term=U64, index=U64, type=st.sampled_from(EntryType), data=st.binary(max_size=64)
)
conf_states = st.builds(
    ConfState,
    voters=ids,
    learners=ids,
    voters_outgoing=ids,
    learners_next=ids,
    auto_leave=st.booleans(),
)
snapshots = st.builds(
    Snapshot,
    data=st.binary(max_size=64),
    metadata=st.builds(SnapshotMetadata, conf_state=conf_states, index=U64, term=U64),
)
messages = st.builds(
    Message,
    type=st.sampled_from(MessageType),
    to=U64,
    frm=U64,
    term=U64,
    log_term=U64,
    index=U64,
    entries=st.lists(entries, max_size=6).map(tuple),
    commit=U64,
    snapshot=st.none() | snapshots,
    reject=st.booleans(),
    reject_hint=U64,
    context=st.binary(max_size=32),
)
control_frames = st.one_of(
    st.builds(
        Hello, version=U64, cluster_id=U64, frm=U64, to=U64, stream=st.sampled_from(StreamType)
    ),
    st.builds(HelloResp, status=st.sampled_from(HelloStatus), cluster_id=U64, reason=st.text()),
    st.builds(SnapHeader, message=messages),
    st.builds(SnapChunk, data=st.binary(max_size=256)),
    st.builds(SnapEnd, size=U64, sha256=st.binary(min_size=32, max_size=32), has_db=st.booleans()),
    st.builds(SnapAck, ok=st.booleans(), reason=st.text()),
)


def payload_of(framed: bytes) -> bytes:
    (size,) = struct.unpack(">I", framed[:4])
    assert size == len(framed) - 4
    return framed[4:]


@settings(derandomize=True, max_examples=300)
@given(messages)
def test_message_round_trip(m: Message) -> None:
    assert decode_frame(payload_of(encode_message(m))) == m
    assert encode_frame(m) == encode_message(m)


@settings(derandomize=True, max_examples=200)
@given(control_frames)
def test_control_frame_round_trip(f: Frame) -> None:
    assert decode_frame(payload_of(encode_frame(f))) == f


@settings(derandomize=True, max_examples=100)
@given(st.lists(messages, min_size=1, max_size=8), st.integers(min_value=1, max_value=97))
def test_decoder_reassembles_any_segmentation(msgs: list[Message], step: int) -> None:
    stream = b"".join(encode_message(m) for m in msgs)
    dec = FrameDecoder()
    got = []
    for i in range(0, len(stream), step):
        got += [decode_frame(p) for p in dec.feed(stream[i : i + step])]
    assert got == msgs
    assert dec.buffered == 0


def test_decoded_types_are_enums() -> None:
    m = Message(
        MessageType.APP, to=2, frm=1, entries=(Entry(1, 2, EntryType.CONF_CHANGE_V2, b"x"),)
    )
    got = decode_frame(payload_of(encode_message(m)))
    assert isinstance(got, Message)
    assert type(got.type) is MessageType
    assert type(got.entries[0].type) is EntryType


def test_oversized_length_refused_before_buffering() -> None:
    dec = FrameDecoder(max_frame_bytes=1024)
    with pytest.raises(FrameTooLargeError):
        dec.feed(struct.pack(">I", 1025))
    dec = FrameDecoder(max_frame_bytes=1024)
    assert dec.feed(struct.pack(">I", 1024)) == []  # at the cap: waits for the payload


def test_hello_carries_protocol_version() -> None:
    h = Hello(PROTOCOL_VERSION, 7, 1, 2, StreamType.MESSAGE)
    assert decode_frame(payload_of(encode_frame(h))) == h


GARBAGE = [
    b"",
    b"\xc1",  # never-used msgpack byte
    b"\x92\x01",  # truncated array
    msgpack.packb({"a": 1}),
    msgpack.packb([]),
    msgpack.packb(["x"]),
    msgpack.packb([99, 1, 2]),  # unknown kind
    msgpack.packb([2, 1, 2]),  # message with too few fields
    msgpack.packb([2, 99, 0, 0, 0, 0, 0, [], 0, None, False, 0, b""]),  # unknown type
    msgpack.packb([2, 3, -1, 0, 0, 0, 0, [], 0, None, False, 0, b""]),  # negative id
    msgpack.packb([2, 3, 1, 0, "t", 0, 0, [], 0, None, False, 0, b""]),  # str term
    msgpack.packb([2, 3, 1, 0, 0, 0, 0, [1, 2, 0], 0, None, False, 0, b""]),  # ragged entries
    msgpack.packb([2, 3, 1, 0, 0, 0, 0, [1, 2, 9, b""], 0, None, False, 0, b""]),  # entry type
    msgpack.packb([2, 3, 1, 0, 0, 0, 0, [1, 2, 0, "s"], 0, None, False, 0, b""]),  # str data
    msgpack.packb([2, 3, 1, 0, 0, 0, 0, [], 0, [b""], False, 0, b""]),  # bad snapshot
    msgpack.packb([2, 3, 1, 0, 0, 0, 0, [], 0, None, 1, 0, b""]),  # int as bool
    msgpack.packb([2, 3, 1, 0, 0, 0, 0, [], 0, None, False, 0, b""]) + b"\x00",  # trailing
    msgpack.packb([0, 1, 2, 3, 4, 9]),  # hello with an unknown stream type
    msgpack.packb([1, 9, 0, ""]),  # hello resp with an unknown status
    msgpack.packb([4, "not bytes"]),
    msgpack.packb([5, 1, b"", 1]),
]


@pytest.mark.parametrize("payload", GARBAGE)
def test_garbage_raises_codec_error_only(payload: bytes) -> None:
    with pytest.raises(CodecError):
        decode_frame(payload)


@settings(derandomize=True, max_examples=300)
@given(st.binary(max_size=200))
def test_random_bytes_raise_codec_error_or_decode(payload: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode_frame(payload)


class _Chunks:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def read(self, n: int = -1) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


async def test_frame_reader_returns_frames_then_none() -> None:
    a = Message(MessageType.HEARTBEAT, to=2, frm=1, term=3)
    b = Message(MessageType.HEARTBEAT_RESP, to=1, frm=2, term=3)
    data = (
        encode_frame(Hello(1, 2, 3, 4, StreamType.MESSAGE)) + encode_message(a) + encode_message(b)
    )
    reader = FrameReader(_Chunks([data[:7], data[7:]]))
    assert await reader.next() == Hello(1, 2, 3, 4, StreamType.MESSAGE)
    assert await reader.next() == a
    assert await reader.next() == b
    assert await reader.next() is None
