"""ServerLimits at work in GrpcConnection: floods end in GOAWAY(ENHANCE_YOUR_CALM) as
grpc-go answers them, windows open only as calls consume, a burst is read a bounded
number of frames per turn of the loop, and cancelled calls leave no reference cycles.

Connections are fed by hand over an in-memory transport (``Sink``), so every frame the
server writes, and whether it reads, can be checked; one test goes over a socket."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any, cast

import hpack
import pytest

from pyetcd.grpcwire import GrpcConnection, GrpcServer, H2Connection, ServerCall, ServerLimits
from pyetcd.grpcwire.connection import STREAM_WINDOW
from pyetcd.grpcwire.frames import (
    PREFACE,
    ErrorCode,
    Flag,
    FrameType,
    frame,
    rst_stream,
    settings,
)
from pyetcd.grpcwire.limits import PingPolicy, RateCap
from pyetcd.logutil import Logger
from pyetcd.pb import rpc_pb2, rpc_pb2_grpc

from .test_connection import H2, Frame, message, put, serving

PUT = "/etcdserverpb.KV/Put"
QUIET = {"keepalive_min_time": 0.0, "keepalive_permit_without_stream": True}


# -- the pure parts -------------------------------------------------------------------------------


def test_rate_cap_allows_a_burst_then_its_rate() -> None:
    cap = RateCap(3, 1.0)  # 3 at once, 3 more per second
    assert [cap.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert cap.take(0.34) and not cap.take(0.34)
    assert all(cap.take(10.0) for _ in range(3)) and not cap.take(10.0)


def test_ping_policy_is_grpc_gos_enforcement() -> None:
    idle = PingPolicy(min_time=5.0, permit_without_stream=False)
    # No call open: two hours between pings; the third strike (fourth ping) is too many.
    assert [idle.ping(t, open_calls=0) for t in (0.0, 60.0, 120.0, 180.0)] == [
        True,
        True,
        True,
        False,
    ]
    busy = PingPolicy(min_time=5.0, permit_without_stream=False)
    assert all(busy.ping(t * 5.0, open_calls=1) for t in range(100))  # every 5 s is fine
    assert [busy.ping(500.0 + t, open_calls=1) for t in range(4)] == [True, True, True, False]
    forgiven = PingPolicy(min_time=5.0, permit_without_stream=False)
    for t in range(100):  # we sent data before each: it may ping as often as it likes
        forgiven.forgive = True
        assert forgiven.ping(t * 0.01, open_calls=1)


# -- a connection fed by hand ---------------------------------------------------------------------


class Sink(bytearray):
    """An in-memory transport: what the server wrote, and whether it reads."""

    reading = True
    closed = False
    write = bytearray.extend

    def writelines(self, pieces: list[bytes | memoryview]) -> None:
        for piece in pieces:
            self.extend(piece)

    def close(self) -> None:
        self.closed = True

    abort = close

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def frames(self) -> list[Frame]:
        out, pos = [], 0
        while pos + 9 <= len(self):
            n = int.from_bytes(self[pos : pos + 3], "big")
            sid = int.from_bytes(self[pos + 5 : pos + 9], "big")
            out.append(Frame(self[pos + 3], self[pos + 4], sid, bytes(self[pos + 9 : pos + 9 + n])))
            pos += 9 + n
        return out

    def goaway(self) -> tuple[int, bytes] | None:
        for f in self.frames():
            if f.type == FrameType.GOAWAY:
                return int.from_bytes(f.payload[4:8], "big"), f.payload[8:]
        return None


class KV(rpc_pb2_grpc.KVServicer):  # type: ignore[misc]
    """Put answers at once, or holds until ``release`` (``hold``), or holds on even
    after it is cancelled until ``release`` (``stubborn``)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = 0

    async def Put(self, request: rpc_pb2.PutRequest, context: Any) -> rpc_pb2.PutResponse:
        self.started += 1
        if request.key == b"hold":
            await self.release.wait()
        elif request.key == b"stubborn":
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                await self.release.wait()
                raise
        return rpc_pb2.PutResponse()


class Fed:
    def __init__(
        self, max_receive: int = 1 << 20, sink: Sink | None = None, **limits: Any
    ) -> None:
        self.g = GrpcServer(Logger([]), max_receive, limits=ServerLimits(**limits))
        self.kv = KV()
        rpc_pb2_grpc.add_KVServicer_to_server(self.kv, self.g)
        self.sink = Sink() if sink is None else sink
        self.conn: GrpcConnection = self.g.connection("test", {})
        self.conn.connection_made(cast(asyncio.Transport, self.sink))
        self.encoder = hpack.Encoder()
        self.conn.data_received(PREFACE + settings(()))

    def headers(self, sid: int, end_stream: bool = False) -> bytes:
        block = self.encoder.encode(
            [(":method", "POST"), (":scheme", "http"), (":path", PUT), (":authority", "t")]
        )
        flags = Flag.END_HEADERS | (Flag.END_STREAM if end_stream else 0)
        return frame(FrameType.HEADERS, flags, sid, block)

    def call(self, sid: int, key: bytes, end_stream: bool = True) -> bytes:
        body = message(put(key))
        flags = Flag.END_STREAM if end_stream else 0
        return self.headers(sid) + frame(FrameType.DATA, flags, sid, body)


async def turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


@pytest.fixture
def no_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


# -- floods ---------------------------------------------------------------------------------------


async def test_ping_flood_gets_too_many_pings() -> None:
    fed = Fed(keepalive_min_time=5.0)
    fed.conn.data_received(b"".join(frame(FrameType.PING, 0, 0, bytes(8)) for _ in range(10)))
    await turns()
    assert fed.sink.goaway() == (ErrorCode.ENHANCE_YOUR_CALM, b"too_many_pings")
    kinds = [f.type for f in fed.sink.frames()]
    assert kinds[-1] == FrameType.GOAWAY and FrameType.PING in kinds  # ACKs, then GOAWAY
    assert fed.sink.closed


async def test_settings_flood_gets_enhance_your_calm() -> None:
    fed = Fed(max_settings=20, settings_interval=10.0)
    fed.conn.data_received(settings(()) * 50)
    await turns()
    assert fed.sink.goaway() == (ErrorCode.ENHANCE_YOUR_CALM, b"too_many_settings")


async def test_rapid_reset_gets_enhance_your_calm_and_leaves_no_cycles(no_gc: None) -> None:
    fed = Fed(max_resets=100, reset_interval=10.0, **QUIET)
    sid = 1
    for _ in range(20):  # HEADERS + RST_STREAM, 10 streams a read
        burst = []
        for _ in range(10):
            burst += [fed.call(sid, b"k", end_stream=False), rst_stream(sid, ErrorCode.CANCEL)]
            sid += 2
        fed.conn.data_received(b"".join(burst))
        await turns(2)
    await turns()
    assert fed.sink.goaway() == (ErrorCode.ENHANCE_YOUR_CALM, b"too_many_resets")
    assert fed.conn._running == 0 and not fed.conn.calls
    # Every call is freed by reference counting alone: nothing for the gc to find.
    assert [o for o in gc.get_objects() if isinstance(o, ServerCall)] == []


async def test_cancelled_running_calls_leave_no_cycles(no_gc: None) -> None:
    fed = Fed(**QUIET)
    fed.conn.data_received(b"".join(fed.call(1 + 2 * i, b"hold") for i in range(50)))
    await turns()
    assert fed.kv.started == 50
    fed.conn.data_received(b"".join(rst_stream(1 + 2 * i, ErrorCode.CANCEL) for i in range(50)))
    await turns()
    assert fed.conn._running == 0
    assert [o for o in gc.get_objects() if isinstance(o, ServerCall)] == []
    fed.conn.connection_lost(None)


# -- work per turn and running calls --------------------------------------------------------------


async def test_a_burst_is_read_frames_per_turn_at_a_time() -> None:
    fed = Fed(frames_per_turn=64, **QUIET)
    fed.conn.data_received(b"".join(frame(FrameType.PING, 0, 0, b"%08d" % i) for i in range(1000)))
    acks = [f for f in fed.sink.frames() if f.type == FrameType.PING]
    assert acks == [] and not fed.sink.reading  # answers leave next turn; reading paused
    await asyncio.sleep(0)
    first = len([f for f in fed.sink.frames() if f.type == FrameType.PING])
    assert first == 64
    for _ in range(40):
        await asyncio.sleep(0)
    acks = [f for f in fed.sink.frames() if f.type == FrameType.PING]
    assert [f.payload for f in acks] == [b"%08d" % i for i in range(1000)]
    assert fed.sink.reading


async def test_reading_stops_while_max_concurrent_streams_calls_run() -> None:
    # grpc-go's answer to rapid reset: a reset call still counts until its handler ends.
    fed = Fed(max_concurrent_streams=2, **QUIET)
    fed.conn.data_received(fed.call(1, b"stubborn") + fed.call(3, b"stubborn"))
    await turns()
    reset = rst_stream(1, ErrorCode.CANCEL) + rst_stream(3, ErrorCode.CANCEL)
    fed.conn.data_received(reset)
    await turns()
    assert not fed.conn.calls and fed.conn._running == 2
    assert not fed.sink.reading  # both handlers still run: nothing more is read
    fed.kv.release.set()
    await turns()
    assert fed.sink.reading and fed.conn._running == 0


# -- flow control ---------------------------------------------------------------------------------


def window_updates(sink: Sink, sid: int) -> int:
    return sum(
        int.from_bytes(f.payload, "big")
        for f in sink.frames()
        if f.type == FrameType.WINDOW_UPDATE and f.sid == sid
    )


async def test_a_blocked_unary_call_holds_one_window_and_no_memory() -> None:
    # The Lock abuse: a call blocked in its handler while the client, respecting every
    # window, keeps sending DATA on its stream. Nothing is credited until the call ends.
    fed = Fed(**QUIET)
    fed.conn.data_received(fed.call(1, b"hold", end_stream=False))
    await turns()
    before = window_updates(fed.sink, 1), window_updates(fed.sink, 0)
    chunk = frame(FrameType.DATA, 0, 1, bytes(16_384))
    sent = 0
    while sent + 16_384 <= STREAM_WINDOW - 100:
        fed.conn.data_received(chunk)
        sent += 16_384
    await turns()
    assert (window_updates(fed.sink, 1), window_updates(fed.sink, 0)) == before
    (call,) = fed.conn.calls.values()
    assert not call._requests and not call._partial  # counted, not kept
    h2 = fed.conn.h2
    assert h2._recv_unacked < sent
    fed.kv.release.set()  # the call ends: its bytes go back to the connection's window
    await turns()
    assert h2._recv_unacked >= sent  # (a WINDOW_UPDATE leaves once half the window is)


async def test_a_streaming_reader_gets_credit_as_it_reads() -> None:
    # The usual case: a handler waiting for its request gets the bytes credited at once.
    fed = Fed(max_receive=STREAM_WINDOW, **QUIET)
    body = bytes(STREAM_WINDOW // 2 + 100)
    n = len(message(put(b"k", body)))
    data = message(put(b"k", body))
    fed.conn.data_received(fed.headers(1))
    for i in range(0, n, 16_384):
        last = i + 16_384 >= n
        fed.conn.data_received(
            frame(FrameType.DATA, Flag.END_STREAM if last else 0, 1, data[i : i + 16_384])
        )
    await turns()
    assert window_updates(fed.sink, 1) >= STREAM_WINDOW // 2  # (the stream closed since)


# -- over a socket --------------------------------------------------------------------------------


async def test_ping_flood_over_a_socket_ends_in_goaway_with_the_reason() -> None:
    async with serving(limits=ServerLimits(keepalive_min_time=5.0)) as s:  # type: ignore[arg-type]
        h2 = await H2.open(s.port)
        h2.send(frame(FrameType.PING, 0, 0, bytes(8)) * 100)
        rest = await h2.closed()
        pos = rest.find(bytes([FrameType.GOAWAY, 0]) + bytes(4))  # type, flags, stream 0
        assert pos >= 3
        payload = rest[pos + 6 : pos + 6 + int.from_bytes(rest[pos - 3 : pos], "big")]
        code = int.from_bytes(payload[4:8], "big")
        assert (code, payload[8:]) == (ErrorCode.ENHANCE_YOUR_CALM, b"too_many_pings")


async def test_closed_connections_leave_no_cycles(no_gc: None) -> None:
    # Thousands of connections end in a connection error during a flood: each must be
    # freed by reference counting, not wait for the (rarely run) gc.
    g = GrpcServer(Logger([]), max_receive=1 << 20)
    flood = frame(FrameType.HEADERS, 0, 1, b"") + frame(FrameType.CONTINUATION, 0, 1) * 200
    for _ in range(20):
        conn = g.connection("test", {})
        conn.connection_made(cast(asyncio.Transport, Sink()))
        conn.data_received(PREFACE + settings(()) + flood)
        await turns(2)
        conn.connection_lost(None)
    del conn
    await turns()
    kinds = (GrpcConnection, H2Connection)
    assert [o for o in gc.get_objects() if isinstance(o, kinds)] == []


# -- when answers are written ---------------------------------------------------------------------


class CountingSink(Sink):
    """A Sink that counts its writes (each a syscall on a real socket)."""

    writes = 0

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.writes += 1
        self.extend(data)

    def writelines(self, pieces: list[bytes | memoryview]) -> None:
        self.writes += 1  # one write of all the pieces (sendmsg) on a real transport
        for piece in pieces:
            self.extend(piece)


def _fed_counting() -> tuple[Fed, CountingSink]:
    sink = CountingSink()
    return Fed(sink=sink, **QUIET), sink


def _ended(sink: Sink, sid: int) -> bool:
    return any(
        f.type == FrameType.HEADERS and f.sid == sid and f.flags & Flag.END_STREAM
        for f in sink.frames()
    )


async def test_the_only_calls_answer_is_written_in_its_own_turn() -> None:
    fed, sink = _fed_counting()
    await turns()
    sink.writes = 0
    fed.conn.data_received(fed.call(1, b"k"))
    await asyncio.sleep(0)  # the call task's turn: the handler answers, and it is written
    assert _ended(sink, 1)
    assert sink.writes == 1
    assert fed.conn._flush_handle is None  # no turn of the loop left scheduled for it
    await turns()
    assert sink.writes == 1


async def test_answers_of_calls_ending_in_one_turn_leave_in_one_write() -> None:
    fed, sink = _fed_counting()
    await turns()
    sink.writes = 0
    fed.conn.data_received(b"".join(fed.call(1 + 2 * i, b"k") for i in range(8)))
    await turns()
    assert all(_ended(sink, 1 + 2 * i) for i in range(8))
    assert sink.writes == 1
