"""H2Connection fed hostile bytes: it only ever returns events or raises its typed
connection errors, and it answers every connection error with GOAWAY.

Three kinds of input after a valid preface: arbitrary bytes; frames with valid headers
and arbitrary types, flags, stream ids and payloads; and valid h2-client conversations
with bytes flipped, cut, repeated or inserted. Examples are derandomized (the same on
every run); ``PYETCD_FUZZ_EXAMPLES=5000`` runs more.
"""

from __future__ import annotations

import functools
import os
import typing
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyetcd.grpcwire import events as ev
from pyetcd.grpcwire.errors import H2Error
from pyetcd.grpcwire.frames import PREFACE, RESPONSE_HEADERS, FrameType, frame, grpc_status_block
from pyetcd.grpcwire.h2connection import ConnectionState, H2Connection
from pyetcd.grpcwire.streams import StreamState

EXAMPLES = int(os.environ.get("PYETCD_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
EVENT_TYPES = typing.get_args(ev.Event)
REQUEST = [
    (":method", "POST"),
    (":scheme", "http"),
    (":path", "/etcdserverpb.KV/Range"),
    (":authority", "localhost"),
    ("content-type", "application/grpc"),
    ("te", "trailers"),
]


def frames_of(data: bytes) -> list[tuple[int, int, int, bytes]]:
    out, pos = [], 0
    while pos + 9 <= len(data):
        n = int.from_bytes(data[pos : pos + 3], "big")
        sid = int.from_bytes(data[pos + 5 : pos + 9], "big")
        out.append((data[pos + 3], data[pos + 4], sid, data[pos + 9 : pos + 9 + n]))
        pos += 9 + n
    assert pos == len(data), "our output is whole frames"
    return out


def respond(server: H2Connection, event: Any) -> None:
    """Act as a gRPC server would on an event, to drive the send side too."""
    if isinstance(event, ev.DataReceived):
        server.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
    elif isinstance(event, ev.RequestReceived):
        sid = event.stream_id
        if server.stream_state(sid) in (StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE):
            server.send_headers(sid, RESPONSE_HEADERS)
            n = server.local_flow_control_window(sid)
            server.send_data(sid, bytes(min(n, 40_000)))
            if sid % 4 == 1:
                server.send_headers(sid, grpc_status_block(0, "", False), end_stream=True)


def drive(chunks: list[bytes]) -> None:
    server = H2Connection(stream_window=1 << 16, connection_window=1 << 20)
    server.initiate_connection()
    for chunk in chunks:
        try:
            events = server.receive_data(chunk)
        except H2Error as err:
            assert err.connection_error and err.stream_id == 0
            assert server.state is ConnectionState.CLOSED
            last = frames_of(server.data_to_send())[-1]
            assert last[0] == FrameType.GOAWAY and last[2] == 0
            assert int.from_bytes(last[3][4:8], "big") == err.error_code
            try:
                server.receive_data(b"\0")
            except H2Error:
                return
            raise AssertionError("a closed connection read more") from None
        for event in events:
            assert isinstance(event, EVENT_TYPES), event
            respond(server, event)
        frames_of(server.data_to_send())
        for stream in server.streams.values():  # closed streams never linger
            assert stream.state is not StreamState.CLOSED


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    out, pos = [], 0
    for n in cuts:
        out.append(data[pos : pos + n])
        pos += n
    out.append(data[pos:])
    return out


cuts = st.lists(st.integers(1, 600), max_size=8)


@FUZZ
@given(st.binary(max_size=3000), cuts)
def test_arbitrary_bytes_after_the_preface(data: bytes, split: list[int]) -> None:
    drive(pieces(PREFACE + data, split))


raw_frame = st.builds(
    frame,
    st.integers(0, 11),
    st.sampled_from([0, 1, 4, 5, 8, 0x20, 0x24, 0x25, 0x2D]) | st.integers(0, 255),
    st.sampled_from([0, 1, 2, 3, 5, 7, 0x7FFFFFFF]) | st.integers(0, 2**32 - 1),
    st.binary(max_size=64) | st.sampled_from([bytes(4), bytes(5), bytes(8), b"\0\4\0\0\0\0"]),
)


@FUZZ
@given(st.lists(raw_frame, max_size=20), cuts)
def test_well_framed_nonsense(frames: list[bytes], split: list[int]) -> None:
    drive(pieces(PREFACE + b"".join(frames), split))


@functools.cache
def conversations() -> tuple[bytes, ...]:
    """Valid client byte streams (after the preface) from the h2 library."""
    out = []
    for variant in range(3):
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        c = h2.connection.H2Connection(cfg)
        c.initiate_connection()
        c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 100 + variant})
        c.send_headers(1, [*REQUEST, ("x-md", "v" * (20_000 if variant == 2 else 10))])
        c.send_data(1, b"\0\0\0\0\3abc", pad_length=variant * 3)
        c.send_headers(3, REQUEST, end_stream=variant == 1)
        c.ping(b"pingpong")
        c.increment_flow_control_window(1000)
        c.send_data(1, b"", end_stream=True)
        if variant != 1:
            c.send_headers(3, [("x-trailer", "1")], end_stream=True)
        c.send_headers(5, REQUEST)
        c.reset_stream(5, h2.errors.ErrorCodes.CANCEL)
        c.close_connection(last_stream_id=0)
        data = c.data_to_send()
        assert data.startswith(PREFACE)
        out.append(data[len(PREFACE) :])
    return tuple(out)


def test_the_conversations_are_valid() -> None:
    for data in conversations():
        drive([PREFACE + data])  # raises nothing


mutation = st.tuples(st.integers(0, 3), st.floats(0, 1), st.binary(min_size=1, max_size=12))


def mutate(data: bytes, mutations: list[tuple[int, float, bytes]]) -> bytes:
    b = bytearray(data)
    for kind, where, value in mutations:
        i = int(where * len(b))
        if kind == 0:  # overwrite
            b[i : i + len(value)] = value
        elif kind == 1:  # cut
            del b[i : i + value[0]]
        elif kind == 2:  # repeat
            b[i:i] = b[i : i + value[0] * 4]
        else:  # insert
            b[i:i] = value
    return bytes(b)


@FUZZ
@given(st.integers(0, 2), st.lists(mutation, min_size=1, max_size=4), cuts)
def test_mutated_valid_conversations(
    which: int, mutations: list[tuple[int, float, bytes]], split: list[int]
) -> None:
    drive(pieces(PREFACE + mutate(conversations()[which], mutations), split))
