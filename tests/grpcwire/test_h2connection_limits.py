"""H2Connection's limits (``ServerLimits``) and RFC 9113's rules for late frames, with the
``h2`` client as the oracle where it has an opinion, raw frames where it would refuse to
send what an attacker sends."""

from __future__ import annotations

import h2.events
import h2.settings
import pytest

from pyetcd.grpcwire import events as ev
from pyetcd.grpcwire.errors import EnhanceYourCalmError, StreamClosedError
from pyetcd.grpcwire.frames import ErrorCode, Flag, FrameType, frame, rst_stream
from pyetcd.grpcwire.h2connection import ConnectionState, H2Connection
from pyetcd.grpcwire.limits import ServerLimits
from pyetcd.grpcwire.streams import CLOSED_REMEMBERED, ClosedBy

from .test_h2connection import CONN_WINDOW, REQUEST, STREAM_WINDOW, Pair


def server(**limits: int) -> H2Connection:
    return H2Connection(STREAM_WINDOW, CONN_WINDOW, ServerLimits(**limits))  # type: ignore[arg-type]


def opened(**limits: int) -> Pair:
    p = Pair(server(**limits))
    p.handshake()
    p.to_client()
    return p


def test_stream_and_header_list_limits_are_advertised() -> None:
    p = Pair(server(max_concurrent_streams=7, max_header_list_size=9000))
    p.to_server()
    changed = next(e for e in p.to_client() if isinstance(e, h2.events.RemoteSettingsChanged))
    codes = h2.settings.SettingCodes
    assert changed.changed_settings[codes.MAX_CONCURRENT_STREAMS].new_value == 7
    assert changed.changed_settings[codes.MAX_HEADER_LIST_SIZE].new_value == 9000


def test_a_stream_beyond_max_concurrent_streams_is_refused() -> None:
    p = opened(max_concurrent_streams=2)
    for sid in (1, 3):
        p.client.send_headers(sid, REQUEST)
    got = p.to_server()
    third = p.client.encoder.encode(REQUEST)  # h2 would not send it: raw
    got += p.server.receive_data(frame(FrameType.HEADERS, Flag.END_HEADERS, 5, third))
    assert [e.stream_id for e in got if isinstance(e, ev.RequestReceived)] == [1, 3]
    assert rst_stream(5, ErrorCode.REFUSED_STREAM) in p.server.data_to_send()
    p.server.reset_stream(1)  # one closes: the next is served
    block = p.client.encoder.encode(REQUEST)
    got = p.server.receive_data(frame(FrameType.HEADERS, Flag.END_HEADERS, 7, block))
    assert [type(e) for e in got] == [ev.RequestReceived]


def test_empty_continuation_flood_is_refused_by_count() -> None:
    p = opened(max_continuations=10)
    data = frame(FrameType.HEADERS, 0, 1, b"") + frame(FrameType.CONTINUATION, 0, 1) * 11
    with pytest.raises(EnhanceYourCalmError) as err:
        p.server.receive_data(data)
    assert err.value.error_code == ErrorCode.ENHANCE_YOUR_CALM
    (gone,) = [e for e in p.to_client() if isinstance(e, h2.events.ConnectionTerminated)]
    assert gone.error_code == ErrorCode.ENHANCE_YOUR_CALM
    assert gone.additional_data == b"too many CONTINUATION frames"


def test_a_header_block_over_the_byte_limit_is_refused() -> None:
    p = opened(max_header_block=1000)
    data = frame(FrameType.HEADERS, 0, 1, bytes(600)) + frame(
        FrameType.CONTINUATION, 0, 1, bytes(600)
    )
    with pytest.raises(EnhanceYourCalmError):
        p.server.receive_data(data)
    assert p.server.state is ConnectionState.CLOSED


def test_data_after_the_peers_end_stream_on_a_closed_stream_is_a_connection_error() -> None:
    p = opened()
    p.client.send_headers(1, REQUEST, end_stream=True)
    p.to_server()
    p.server.send_headers(1, b"\x88", end_stream=True)  # ":status 200", both sides ended
    assert p.server.closed.get(1) is ClosedBy.ENDED
    with pytest.raises(StreamClosedError) as err:
        p.server.receive_data(frame(FrameType.DATA, 0, 1, b"late"))
    assert err.value.connection_error and err.value.error_code == ErrorCode.STREAM_CLOSED
    (gone,) = [e for e in p.to_client() if isinstance(e, h2.events.ConnectionTerminated)]
    assert gone.error_code == ErrorCode.STREAM_CLOSED


def test_headers_after_the_peers_rst_stream_is_a_stream_error() -> None:
    p = opened()
    p.client.send_headers(1, REQUEST)
    p.to_server()
    p.server.receive_data(rst_stream(1, ErrorCode.CANCEL))
    block = p.client.encoder.encode(REQUEST)
    got = p.server.receive_data(frame(FrameType.HEADERS, Flag.END_HEADERS, 1, block))
    assert got == [ev.StreamReset(1, ErrorCode.STREAM_CLOSED, False)]
    assert p.server.state is ConnectionState.OPEN


def test_late_frames_after_our_rst_stream_are_dropped_and_their_window_returned() -> None:
    p = opened()
    p.client.send_headers(1, REQUEST)
    p.to_server()
    p.server.reset_stream(1)
    before = p.server._recv_window
    late = frame(FrameType.DATA, 0, 1, bytes(100))
    assert p.server.receive_data(late + frame(FrameType.WINDOW_UPDATE, 0, 1, b"\0\0\0\1")) == []
    # Counted against the connection window and handed back (a WINDOW_UPDATE once half
    # the window is used): the connection window is not lost to a dead stream.
    assert p.server._recv_window - before + p.server._recv_unacked == 0
    assert p.server.state is ConnectionState.OPEN


def test_closed_streams_are_remembered_in_bounded_memory() -> None:
    p = opened()
    for i in range(CLOSED_REMEMBERED + 10):
        sid = 1 + 2 * i
        p.client.send_headers(sid, REQUEST)
        p.to_server()
        p.server.reset_stream(sid)
        p.to_client()
    assert len(p.server.closed) == CLOSED_REMEMBERED
    assert p.server.closed.get(1) is None  # forgotten: late frames are dropped
    assert p.server.receive_data(frame(FrameType.DATA, 0, 1, b"x")) == []


def test_receive_data_reads_at_most_max_frames_and_keeps_the_rest() -> None:
    p = opened()
    pings = b"".join(frame(FrameType.PING, 0, 0, b"%08d" % i) for i in range(10))
    got = p.server.receive_data(pings[:-3], max_frames=4)  # the last frame still in pieces
    assert [e.data for e in got] == [b"%08d" % i for i in range(4)]  # type: ignore[union-attr]
    assert p.server.input_pending
    got = p.server.receive_data(b"", max_frames=4)
    assert len(got) == 4 and p.server.input_pending
    got = p.server.receive_data(b"", max_frames=4)
    assert len(got) == 1 and not p.server.input_pending  # the tenth is not whole yet
    got = p.server.receive_data(pings[-3:], max_frames=4)
    assert [e.data for e in got] == [b"00000009"]  # type: ignore[union-attr]
    assert not p.server.input_pending


def test_windows_open_only_as_the_receiver_acknowledges() -> None:
    p = opened()
    p.client.send_headers(1, REQUEST)
    n = STREAM_WINDOW // 2 + 1
    for i in range(0, n, 16384):
        p.client.send_data(1, bytes(min(16384, n - i)))
    p.to_server()
    assert p.server.data_to_send() == b""  # nothing consumed: no WINDOW_UPDATE
    p.server.acknowledge_received_data(n, 1)
    updates = [e for e in p.to_client() if isinstance(e, h2.events.WindowUpdated)]
    assert {e.stream_id for e in updates} == {1}  # the stream's; the connection's is larger
