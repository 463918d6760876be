"""H2Connection held against the ``h2`` library as the oracle: an h2 client's bytes must
parse into the events it meant, and our bytes must give the h2 client the events we meant.
No sockets: the two sans-I/O objects hand each other bytes."""

from __future__ import annotations

import random
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyetcd.grpcwire import events as ev
from pyetcd.grpcwire.errors import FlowControlError, H2Error, ProtocolError, StreamClosedError
from pyetcd.grpcwire.frames import (
    DEFAULT_WINDOW,
    OK_TRAILERS,
    RESPONSE_HEADERS,
    ErrorCode,
    Flag,
    FrameType,
    encode_headers,
    frame,
    grpc_status_block,
)
from pyetcd.grpcwire.h2connection import ConnectionState, H2Connection
from pyetcd.grpcwire.streams import StreamState

STREAM_WINDOW, CONN_WINDOW = 1 << 20, 1 << 22
REQUEST = [
    (":method", "POST"),
    (":scheme", "http"),
    (":path", "/etcdserverpb.KV/Put"),
    (":authority", "localhost"),
    ("content-type", "application/grpc"),
    ("te", "trailers"),
]


class Pair:
    """An h2 client and our server, joined by hand."""

    def __init__(self, server: H2Connection | None = None, split: int = 0) -> None:
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.client = h2.connection.H2Connection(cfg)
        self.server = server or H2Connection(STREAM_WINDOW, CONN_WINDOW)
        self.rng = random.Random(split)
        self.split = split  # > 0: the client's bytes arrive in random pieces
        self.client.initiate_connection()
        self.server.initiate_connection()

    def to_server(self) -> list[ev.Event]:
        data = self.client.data_to_send()
        if not self.split:
            return self.server.receive_data(data)
        out: list[ev.Event] = []
        while data:
            n = self.rng.randint(1, self.split)
            out += self.server.receive_data(data[:n])
            data = data[n:]
        return out

    def to_client(self) -> list[Any]:
        return list(self.client.receive_data(self.server.data_to_send()))

    def handshake(self) -> None:
        self.to_server()
        self.to_client()
        self.to_server()  # the client's SETTINGS ACK


def kinds(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


# -- h2 client -> our server ---------------------------------------------------------------------


def test_handshake_settings_both_ways() -> None:
    p = Pair()
    got = p.to_server()
    assert kinds(got) == ["RemoteSettingsChanged"]  # the client's SETTINGS, acked
    client_events = p.to_client()
    changed = next(e for e in client_events if isinstance(e, h2.events.RemoteSettingsChanged))
    assert changed.changed_settings[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE].new_value == (
        STREAM_WINDOW
    )
    assert changed.changed_settings[h2.settings.SettingCodes.ENABLE_PUSH].new_value == 0
    assert any(isinstance(e, h2.events.SettingsAcknowledged) for e in client_events)
    grant = [e for e in client_events if isinstance(e, h2.events.WindowUpdated)]
    assert [(e.stream_id, e.delta) for e in grant] == [(0, CONN_WINDOW - DEFAULT_WINDOW)]
    assert kinds(p.to_server()) == ["SettingsAcknowledged"]
    # Both sides agree on the connection's windows.
    assert p.client.outbound_flow_control_window == CONN_WINDOW
    assert p.server.outbound_window == p.client.inbound_flow_control_window == DEFAULT_WINDOW


message = st.binary(max_size=3000)
metadata = st.lists(
    st.tuples(
        st.sampled_from(["x-a", "x-b", "token", "grpc-timeout"]),
        st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
    ),
    max_size=4,
)


@settings(max_examples=40, derandomize=True, deadline=None)
@given(
    streams=st.lists(
        st.tuples(
            metadata,
            st.lists(st.tuples(message, st.none() | st.integers(0, 255)), max_size=4),
            st.booleans(),  # end with trailers instead of END_STREAM on DATA
        ),
        min_size=1,
        max_size=4,
    ),
    huge=st.booleans(),  # one header block > 16 KiB: HEADERS + CONTINUATION
    split=st.sampled_from([0, 1, 7, 100]),
)
def test_requests_parse_as_h2_sent_them(
    streams: list[tuple[list[tuple[str, str]], list[tuple[bytes, int | None]], bool]],
    huge: bool,
    split: int,
) -> None:
    p = Pair(split=split)
    p.handshake()
    p.to_client()
    expected: dict[int, tuple[list[tuple[str, str]], bytes, bool]] = {}
    for i, (md, chunks, trailers) in enumerate(streams):
        sid = 1 + 2 * i
        headers = [*REQUEST, *md]
        if huge and i == 0:
            headers.append(("x-huge", "h" * 24_000))  # ~16.5 KiB Huffman-coded
        only_headers = not chunks and not trailers
        p.client.send_headers(sid, headers, end_stream=only_headers)
        for j, (data, pad) in enumerate(chunks):
            last = j == len(chunks) - 1 and not trailers
            p.client.send_data(sid, data, end_stream=last, pad_length=pad)
        if trailers:
            p.client.send_headers(sid, [("x-trailer", "t")], end_stream=True)
        expected[sid] = (headers, b"".join(d for d, _ in chunks), trailers)
    got = p.to_server()
    for sid, (headers, body, trailers) in expected.items():
        mine = [e for e in got if getattr(e, "stream_id", None) == sid]
        first = mine[0]
        assert isinstance(first, ev.RequestReceived)
        assert first.headers == headers
        datas = [e for e in mine if isinstance(e, ev.DataReceived)]
        assert b"".join(e.data for e in datas) == body
        ended = [e for e in mine if getattr(e, "end_stream", False)]
        if trailers:
            assert isinstance(mine[-1], ev.TrailersReceived)
            assert mine[-1].headers == [("x-trailer", "t")]
            assert not ended
        else:
            assert ended == [mine[-1]]
        assert p.server.stream_state(sid) is StreamState.HALF_CLOSED_REMOTE
        # The windows shrank by what the client sent, padding included, as h2 counts them.
        assert p.server.remote_flow_control_window(sid) == 0  # the client ended its side
        for e in datas:
            p.server.acknowledge_received_data(e.flow_controlled_length, sid)
    assert p.server.remote_flow_control_window(0) == 0  # no stream 0


def test_flow_control_windows_agree_with_h2() -> None:
    p = Pair()
    p.handshake()
    p.to_client()
    p.client.send_headers(1, REQUEST)
    p.to_server()
    assert p.server.remote_flow_control_window(1) == p.client.local_flow_control_window(1)
    for _ in range(20):  # the client sends; we acknowledge; h2 sees the windows reopen
        for _ in range(6):
            p.client.send_data(1, bytes(16_000))
        for e in p.to_server():
            assert isinstance(e, ev.DataReceived)
            p.server.acknowledge_received_data(e.flow_controlled_length, 1)
        updates = [e for e in p.to_client() if isinstance(e, h2.events.WindowUpdated)]
        assert all(e.delta > 0 for e in updates)
        assert p.server.remote_flow_control_window(1) == p.client.local_flow_control_window(1)
    # And the other way: the client's windows for us.
    p.client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    got = p.to_server()
    assert kinds(got) == ["RemoteSettingsChanged"]
    assert got[0].changed == ((4, 1000),)  # type: ignore[union-attr]
    acked = p.to_client()
    assert any(isinstance(e, h2.events.SettingsAcknowledged) for e in acked)
    assert p.server.local_flow_control_window(1) == p.client.remote_flow_control_window(1) == 1000
    p.server.send_headers(1, RESPONSE_HEADERS)
    p.server.send_data(1, bytes(600))
    with pytest.raises(FlowControlError) as err:
        p.server.send_data(1, bytes(401))
    assert (err.value.error_code, err.value.stream_id) == (ErrorCode.FLOW_CONTROL_ERROR, 1)
    p.to_client()
    assert p.server.local_flow_control_window(1) == p.client.remote_flow_control_window(1) == 400
    p.client.increment_flow_control_window(5000, stream_id=1)
    p.client.increment_flow_control_window(7000)
    got = p.to_server()
    assert [(e.stream_id, e.delta) for e in got if isinstance(e, ev.WindowUpdated)] == [
        (1, 5000),
        (0, 7000),
    ]
    assert p.server.local_flow_control_window(1) == p.client.remote_flow_control_window(1) == 5400


def test_ping_both_ways() -> None:
    p = Pair()
    p.handshake()
    p.client.ping(b"12345678")
    got = p.to_server()
    assert got == [ev.PingReceived(b"12345678")]
    acks = [e for e in p.to_client() if isinstance(e, h2.events.PingAckReceived)]
    assert [a.ping_data for a in acks] == [b"12345678"]
    p.server.ping(b"abcdefgh")
    pings = [e for e in p.to_client() if isinstance(e, h2.events.PingReceived)]
    assert [e.ping_data for e in pings] == [b"abcdefgh"]
    assert p.to_server() == [ev.PingAckReceived(b"abcdefgh")]


def test_rst_stream_both_ways() -> None:
    p = Pair()
    p.handshake()
    p.client.send_headers(1, REQUEST)
    p.client.send_headers(3, REQUEST)
    p.to_server()
    p.client.reset_stream(1, h2.errors.ErrorCodes.CANCEL)
    assert p.to_server() == [ev.StreamReset(1, ErrorCode.CANCEL, True)]
    assert p.server.stream_state(1) is StreamState.CLOSED
    p.server.reset_stream(3, ErrorCode.REFUSED_STREAM)
    resets = [e for e in p.to_client() if isinstance(e, h2.events.StreamReset)]
    assert [(e.stream_id, e.error_code, e.remote_reset) for e in resets] == [
        (3, ErrorCode.REFUSED_STREAM, True)
    ]
    with pytest.raises(StreamClosedError):
        p.server.send_data(3, b"x")


def test_goaway_both_ways_and_refused_streams() -> None:
    p = Pair()
    p.handshake()
    p.client.send_headers(1, REQUEST, end_stream=True)
    p.to_server()
    p.server.close_connection()
    assert p.server.state is ConnectionState.GOING_AWAY
    terminated = [e for e in p.to_client() if isinstance(e, h2.events.ConnectionTerminated)]
    assert [(e.error_code, e.last_stream_id) for e in terminated] == [(ErrorCode.NO_ERROR, 1)]
    # A stream opened after our GOAWAY is refused; the open one still answers.
    block = encode_headers(REQUEST)
    assert p.server.receive_data(frame(FrameType.HEADERS, Flag.END_HEADERS, 3, block)) == []
    assert p.server.data_to_send() == frame(FrameType.RST_STREAM, 0, 3, b"\0\0\0\7")
    p.server.send_headers(1, grpc_status_block(0, "", True), end_stream=True)
    assert p.server.stream_state(1) is StreamState.CLOSED
    # And the client's GOAWAY reaches us as an event.
    q = Pair()
    q.handshake()
    q.client.close_connection(error_code=0, additional_data=b"bye", last_stream_id=0)
    assert q.to_server() == [ev.ConnectionTerminated(ErrorCode.NO_ERROR, 0, b"bye")]


def test_response_as_the_h2_client_reads_it() -> None:
    p = Pair()
    p.client.update_settings({h2.settings.SettingCodes.MAX_FRAME_SIZE: 20_000})
    p.handshake()
    p.client.send_headers(1, REQUEST, end_stream=True)
    p.to_server()
    p.to_client()
    body = random.Random(1).randbytes(50_000)
    details = "d" * 30_000  # a trailer block longer than a frame: HEADERS + CONTINUATION
    p.server.send_headers(1, RESPONSE_HEADERS)
    p.server.send_data(1, body)
    p.server.send_headers(1, grpc_status_block(13, details, False), end_stream=True)
    out = p.server.data_to_send()
    sizes, pos = [], 0
    while pos < len(out):
        n = int.from_bytes(out[pos : pos + 3], "big")
        sizes.append((out[pos + 3], n))
        pos += 9 + n
    assert max(n for _, n in sizes) == 20_000
    assert FrameType.CONTINUATION in [t for t, _ in sizes]
    got = list(p.client.receive_data(out))
    assert kinds(got)[0] == "ResponseReceived"
    assert got[0].headers == [(":status", "200"), ("content-type", "application/grpc")]
    assert b"".join(e.data for e in got if isinstance(e, h2.events.DataReceived)) == body
    (trailers,) = [e for e in got if isinstance(e, h2.events.TrailersReceived)]
    assert trailers.headers == [("grpc-status", "13"), ("grpc-message", details)]
    assert kinds(got)[-1] == "StreamEnded"
    assert p.server.stream_state(1) is StreamState.CLOSED


@pytest.mark.parametrize("half_closed", [True, False])
def test_whole_answer_as_the_h2_client_reads_it(half_closed: bool) -> None:
    p = Pair()
    p.handshake()
    p.client.send_headers(1, REQUEST, end_stream=half_closed)
    p.to_server()
    p.to_client()
    body = random.Random(2).randbytes(300)
    window = p.server.local_flow_control_window(1)
    assert p.server.send_answer(1, RESPONSE_HEADERS, body, OK_TRAILERS)
    (out,) = p.server.pieces_to_send()  # one piece
    assert p.server.local_flow_control_window(1) == 0 if half_closed else window - len(body)
    got = list(p.client.receive_data(out))
    assert kinds(got) == [
        "ResponseReceived",
        "DataReceived",
        "TrailersReceived",
        "StreamEnded",
    ]
    assert got[0].headers == [(":status", "200"), ("content-type", "application/grpc")]
    assert got[1].data == body
    assert got[2].headers == [("grpc-status", "0")]
    expected = StreamState.CLOSED if half_closed else StreamState.HALF_CLOSED_LOCAL
    assert p.server.stream_state(1) is expected
    # The same bytes as the three sends one by one.
    q = Pair()
    q.handshake()
    q.client.send_headers(1, REQUEST, end_stream=half_closed)
    q.to_server()
    q.to_client()
    q.server.send_headers(1, RESPONSE_HEADERS)
    q.server.send_data(1, body)
    q.server.send_headers(1, OK_TRAILERS, end_stream=True)
    assert q.server.data_to_send() == out


def test_whole_answer_refused_unless_all_fits_now() -> None:
    p = Pair()
    p.client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 100})
    p.handshake()
    p.client.send_headers(1, REQUEST, end_stream=True)
    p.client.send_headers(3, REQUEST, end_stream=True)
    p.to_server()
    p.to_client()
    assert not p.server.send_answer(1, RESPONSE_HEADERS, bytes(101), OK_TRAILERS)  # window
    assert not p.server.send_answer(1, RESPONSE_HEADERS, bytes(10), bytes(16_385))  # frame
    assert not p.server.send_answer(5, RESPONSE_HEADERS, b"", OK_TRAILERS)  # no such stream
    assert p.server.data_to_send() == b""
    assert p.server.local_flow_control_window(1) == 100
    assert p.server.send_answer(1, RESPONSE_HEADERS, bytes(100), OK_TRAILERS)
    assert not p.server.send_answer(1, RESPONSE_HEADERS, b"", OK_TRAILERS)  # ended
    p.server.send_headers(3, RESPONSE_HEADERS)
    p.server.send_data(3, bytes(30))  # the stream's own window: 70 left
    assert p.server.local_flow_control_window(3) == 70
    assert not p.server.send_answer(3, RESPONSE_HEADERS, bytes(71), OK_TRAILERS)


def test_our_connection_error_reaches_h2_as_goaway() -> None:
    p = Pair()
    p.handshake()
    p.to_client()
    p.client.send_headers(1, REQUEST)
    p.to_server()
    with pytest.raises(ProtocolError) as err:
        p.server.receive_data(frame(FrameType.PING, 0, 1, bytes(8)))  # PING on a stream
    assert (err.value.error_code, err.value.connection_error) == (ErrorCode.PROTOCOL_ERROR, True)
    assert p.server.state is ConnectionState.CLOSED
    (terminated,) = [e for e in p.to_client() if isinstance(e, h2.events.ConnectionTerminated)]
    assert (terminated.error_code, terminated.last_stream_id) == (ErrorCode.PROTOCOL_ERROR, 1)
    assert terminated.additional_data == b"PING on a stream"
    with pytest.raises(H2Error):
        p.server.receive_data(b"")  # nothing more is read


def test_our_stream_error_reaches_h2_as_rst_stream() -> None:
    p = Pair()
    p.handshake()
    p.to_client()
    p.client.send_headers(1, REQUEST, end_stream=True)
    p.client.send_headers(3, REQUEST)
    p.to_server()
    # DATA after the client's END_STREAM: a stream error, the connection lives on.
    got = p.server.receive_data(frame(FrameType.DATA, 0, 1, b"late"))
    assert got == [ev.StreamReset(1, ErrorCode.STREAM_CLOSED, False)]
    resets = [e for e in p.to_client() if isinstance(e, h2.events.StreamReset)]
    assert [(e.stream_id, e.error_code) for e in resets] == [(1, ErrorCode.STREAM_CLOSED)]
    p.client.send_data(3, b"still", end_stream=True)
    assert p.to_server() == [ev.DataReceived(3, b"still", 5, True)]
