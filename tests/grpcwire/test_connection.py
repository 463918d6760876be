"""GrpcServer and GrpcConnection on real 127.0.0.1 sockets: through the grpc client, then
speaking HTTP/2 by hand (h2_frames + hpack) to see every frame the server sends."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import random
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import grpc
import hpack
import pytest

from pyetcd.api.etcdhttp.handler import HTTPFrontend
from pyetcd.api.listener import _Sorter
from pyetcd.grpcwire import GrpcServer
from pyetcd.grpcwire import frames as h2f
from pyetcd.grpcwire.connection import MAX_FRAME
from pyetcd.grpcwire.frames import PREFACE, ErrorCode, Flag, FrameType, Setting, frame, settings
from pyetcd.logutil import Level, Logger
from pyetcd.pb import kv_pb2, rpc_pb2, rpc_pb2_grpc

MAX_RECEIVE = 1 << 20
T = 10.0  # the longest any one await may take
SC = grpc.StatusCode
PUT, RANGE = "/etcdserverpb.KV/Put", "/etcdserverpb.KV/Range"
SNAPSHOT_CHUNKS, CHUNK = 200, 64 * 1024


def blob(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


class KV(rpc_pb2_grpc.KVServicer):  # type: ignore[misc]
    """Put echoes, or aborts/raises/blocks by key; Range: ``limit`` values of ``revision`` B."""

    def __init__(self) -> None:
        self.seen: list[tuple[tuple[tuple[str, str | bytes], ...], str]] = []
        self.started: asyncio.Queue[bytes] = asyncio.Queue()
        self.cancelled: asyncio.Queue[bytes] = asyncio.Queue()
        self.release = asyncio.Event()

    async def Put(self, request: rpc_pb2.PutRequest, context: Any) -> rpc_pb2.PutResponse:
        key, value = request.key, request.value
        if key == b"abort":
            await context.abort(SC.FAILED_PRECONDITION, value.decode())
        if key == b"boom":
            raise ValueError("boom")
        if key == b"setcode":  # a status chosen by the handler goes with its answer
            context.set_code(SC.ABORTED)
            context.set_details(value.decode())
        if key in (b"block", b"hold"):
            self.started.put_nowait(value)
            try:
                await (self.release if key == b"hold" else asyncio.Event()).wait()
            except asyncio.CancelledError:
                self.cancelled.put_nowait(value)
                raise
        self.seen.append((context.invocation_metadata(), context.peer()))
        return rpc_pb2.PutResponse(prev_kv=kv_pb2.KeyValue(key=key, value=value))

    async def Range(self, request: rpc_pb2.RangeRequest, context: Any) -> rpc_pb2.RangeResponse:
        n, size = request.limit, request.revision
        kvs = [kv_pb2.KeyValue(key=b"%d" % i, value=blob(i, size)) for i in range(n)]
        return rpc_pb2.RangeResponse(kvs=kvs, count=n)


class Watch(rpc_pb2_grpc.WatchServicer):  # type: ignore[misc]
    async def Watch(self, requests: AsyncIterator[rpc_pb2.WatchRequest], context: Any) -> None:
        async for req in requests:  # each create request answered with its id
            if req.create_request.key == b"abort":
                await context.abort(SC.OUT_OF_RANGE, "enough ✓")
            watch_id = req.create_request.watch_id
            await context.write(rpc_pb2.WatchResponse(watch_id=watch_id, created=True))


class Maintenance(rpc_pb2_grpc.MaintenanceServicer):  # type: ignore[misc]
    async def Snapshot(self, _: Any, context: Any) -> AsyncIterator[rpc_pb2.SnapshotResponse]:
        for i in range(SNAPSHOT_CHUNKS):
            left = SNAPSHOT_CHUNKS - 1 - i
            yield rpc_pb2.SnapshotResponse(remaining_bytes=left, blob=blob(i, CHUNK))


class _NoHTTP:
    def accept(self, transport: asyncio.Transport, first: bytes, eof: bool = False) -> None:
        transport.close()


@dataclass
class Served:
    g: GrpcServer
    kv: KV
    port: int
    log: io.StringIO
    errors: list[dict[str, Any]] = field(default_factory=list)  # the loop's exception handler

    def channel(self) -> grpc.aio.Channel:
        opts = [("grpc.max_receive_message_length", -1)]
        return grpc.aio.insecure_channel(f"127.0.0.1:{self.port}", options=opts)

    def kv_stub(self, ch: grpc.aio.Channel) -> Any:
        return rpc_pb2_grpc.KVStub(ch)


@contextlib.asynccontextmanager
async def serving(**kw: float) -> AsyncIterator[Served]:
    log = io.StringIO()
    g = GrpcServer(Logger([log], Level.INFO), max_receive=MAX_RECEIVE, **kw)
    kv = KV()
    rpc_pb2_grpc.add_KVServicer_to_server(kv, g)
    rpc_pb2_grpc.add_WatchServicer_to_server(Watch(), g)
    rpc_pb2_grpc.add_MaintenanceServicer_to_server(Maintenance(), g)
    loop = asyncio.get_running_loop()
    http = cast(HTTPFrontend, _NoHTTP())
    srv = await loop.create_server(lambda: _Sorter(g, http), "127.0.0.1", 0)
    served = Served(g, kv, srv.sockets[0].getsockname()[1], log)
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, ctx: served.errors.append(ctx))
    try:
        yield served
    finally:
        srv.close()
        await g.stop(0)
        await srv.wait_closed()
        loop.set_exception_handler(previous)
    assert served.errors == []


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async with serving() as s:
        yield s


# -- a hand-driven HTTP/2 client ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    type: int
    flags: int
    sid: int
    payload: bytes

    def fields(self) -> dict[str, str]:
        # A fresh decoder: the server's blocks must not need its dynamic table.
        return dict(cast("list[tuple[str, str]]", hpack.Decoder().decode(self.payload)))

    def code(self) -> int:
        """The error code of a RST_STREAM or GOAWAY."""
        return int.from_bytes(self.payload[-4:] if self.type == 3 else self.payload[4:8], "big")


def message(payload: bytes) -> bytes:
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def split_messages(data: bytes) -> list[bytes]:
    out = []
    while data:
        n = int.from_bytes(data[1:5], "big")
        assert data[0] == 0 and len(data) >= 5 + n
        out.append(data[5 : 5 + n])
        data = data[5 + n :]
    return out


def is_ping_ack(payload: bytes) -> Callable[[Frame], bool]:
    return lambda f: f.type == FrameType.PING and bool(f.flags & Flag.ACK) and f.payload == payload


def is_type(ftype: FrameType) -> Callable[[Frame], bool]:
    return lambda f: f.type == ftype


def data_of(frames: list[Frame], sid: int) -> bytes:
    return b"".join(f.payload for f in frames if f.type == FrameType.DATA and f.sid == sid)


@dataclass
class Reply:
    blocks: list[dict[str, str]]  # the stream's header blocks; the last is the trailers
    data: bytes
    frames: list[Frame]


class H2:
    """One raw HTTP/2 connection to the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.encoder = hpack.Encoder()

    @classmethod
    async def open(cls, port: int, initial: tuple[tuple[Setting, int], ...] = ()) -> H2:
        h2 = cls(*await asyncio.open_connection("127.0.0.1", port))
        h2.send(PREFACE + settings(initial))
        return h2

    def send(self, *data: bytes) -> None:
        self.writer.write(b"".join(data))

    def header_block(self, path: str) -> bytes:
        pseudo = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "t")]
        return self.encoder.encode([*pseudo, ("content-type", "application/grpc"), ("te", "x")])

    def call(self, sid: int, path: str, request: bytes) -> None:
        """Open stream ``sid`` with one request message, and half-close it."""
        self.send(
            frame(FrameType.HEADERS, Flag.END_HEADERS, sid, self.header_block(path)),
            frame(FrameType.DATA, Flag.END_STREAM, sid, message(request)),
        )

    async def read(self) -> Frame:
        head = await asyncio.wait_for(self.reader.readexactly(9), T)
        n = int.from_bytes(head[:3], "big")
        payload = await asyncio.wait_for(self.reader.readexactly(n), T)
        return Frame(head[3], head[4], int.from_bytes(head[5:9], "big") & 0x7FFFFFFF, payload)

    async def until(self, done: Callable[[Frame], bool], window: bool = True) -> list[Frame]:
        """Frames up to and including the first ``done`` one; with ``window``, each DATA
        frame's bytes are handed back to the server's send windows at once."""
        out = []
        while True:
            f = await self.read()
            out.append(f)
            if window and f.type == FrameType.DATA and f.payload:
                n = len(f.payload)
                self.send(h2f.window_update(0, n), h2f.window_update(f.sid, n))
            if done(f):
                return out

    async def barrier(self, window: bool = True) -> list[Frame]:
        """What the server sent before it answered a PING sent now."""
        self.send(frame(FrameType.PING, 0, 0, b"barrier!"))
        return (await self.until(is_ping_ack(b"barrier!"), window))[:-1]

    async def response(self, sid: int, window: bool = True) -> Reply:
        def end(f: Frame) -> bool:
            return f.sid == sid and f.type == FrameType.HEADERS and bool(f.flags & Flag.END_STREAM)

        frames = await self.until(end, window)
        blocks = [f.fields() for f in frames if f.sid == sid and f.type == FrameType.HEADERS]
        return Reply(blocks, data_of(frames, sid), frames)

    async def closed(self) -> bytes:
        """Everything the server sent until it closed the connection."""
        try:
            return await asyncio.wait_for(self.reader.read(), T)
        except ConnectionResetError:
            return b""
        finally:
            self.writer.close()


def put(key: bytes, value: bytes = b"") -> bytes:
    data: bytes = rpc_pb2.PutRequest(key=key, value=value).SerializeToString()
    return data


def echoed(reply: Reply, key: bytes, value: bytes = b"") -> bool:
    (raw,) = split_messages(reply.data)
    kv = rpc_pb2.PutResponse.FromString(raw).prev_kv
    return (kv.key, kv.value, reply.blocks[-1]["grpc-status"]) == (key, value, "0")


# -- through the grpc client ----------------------------------------------------------------------


async def test_unary_round_trip_metadata_and_peer(served: Served) -> None:
    md = (("x-plain", "hello"), ("x-data-bin", b"\x00\xff\x01 binary"))
    async with served.channel() as ch:
        stub = served.kv_stub(ch)
        r = await stub.Put(rpc_pb2.PutRequest(key=b"k", value=b"v"), metadata=md, timeout=T)
        assert (r.prev_kv.key, r.prev_kv.value) == (b"k", b"v")
        big = blob(1, 300_000)  # a gzip request: the server inflates it
        r = await stub.Put(rpc_pb2.PutRequest(value=big), compression=grpc.Compression.Gzip)
        assert r.prev_kv.value == big
    metadata, peer = served.kv.seen[0]
    assert ("x-plain", "hello") in metadata
    assert ("x-data-bin", b"\x00\xff\x01 binary") in metadata
    framing = {"content-type", "te", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding"}
    assert not [k for k, _ in metadata if k.startswith(":") or k in framing]
    assert re.fullmatch(r"ipv4:127\.0\.0\.1:\d+", peer)


async def test_metadata_is_read_per_call_through_the_header_block_cache(
    served: Served,
) -> None:
    # Repeated blocks are decoded once (hpack.py) and read once (HeaderList.meaning):
    # a token that changes, comes back, or repeats must still be each call's own.
    tokens = ["a", "a", "b", "a", "c" * 40, "b", "b", "a"]
    async with served.channel() as ch:
        stub = served.kv_stub(ch)
        for i, token in enumerate(tokens):
            md = (("token", token),)  # no timeout either: repeated calls repeat their block
            await stub.Put(rpc_pb2.PutRequest(key=b"k%d" % i), metadata=md)
    assert [dict(metadata)["token"] for metadata, _ in served.kv.seen] == tokens


@pytest.mark.parametrize("details", ["plain words", "nicht möglich: 100% ✓ 日本語 %41", ""])
async def test_abort_code_and_details_reach_the_client(served: Served, details: str) -> None:
    async with served.channel() as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await served.kv_stub(ch).Put(rpc_pb2.PutRequest(key=b"abort", value=details.encode()))
    assert (err.value.code(), err.value.details() or "") == (SC.FAILED_PRECONDITION, details)


async def test_handler_exception_is_unknown_and_the_server_keeps_serving(served: Served) -> None:
    async with served.channel() as ch:
        stub = served.kv_stub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Put(rpc_pb2.PutRequest(key=b"boom"))
        assert err.value.code() == SC.UNKNOWN
        assert err.value.details() == "Unexpected <class 'ValueError'>: boom"
        assert (await stub.Put(rpc_pb2.PutRequest(key=b"after"))).prev_kv.key == b"after"
    records = [json.loads(line) for line in served.log.getvalue().splitlines()]
    (rec,) = [r for r in records if r["msg"] == "gRPC handler failed"]
    assert (rec["level"], rec["method"], rec["error"]) == ("error", PUT, "ValueError('boom')")


async def test_method_inherited_from_the_generated_servicer(served: Served) -> None:
    # KV does not define Txn: the generated base calls context.set_code(UNIMPLEMENTED) and
    # set_details, then raises NotImplementedError; grpc.aio answers UNIMPLEMENTED.
    async with served.channel() as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await served.kv_stub(ch).Txn(rpc_pb2.TxnRequest())
    assert err.value.code() == SC.UNIMPLEMENTED


async def test_unknown_method_and_unknown_service(served: Served) -> None:
    async with served.channel() as ch:
        for path, details in [
            ("/etcdserverpb.KV/Nope", "unknown method Nope for service etcdserverpb.KV"),
            ("/nope.Svc/X", "unknown service nope.Svc"),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await ch.unary_unary(path)(b"")
            assert (err.value.code(), err.value.details()) == (SC.UNIMPLEMENTED, details)


async def test_request_larger_than_max_receive(served: Served) -> None:
    req = rpc_pb2.PutRequest(key=b"k", value=bytes(MAX_RECEIVE))
    async with served.channel() as ch:
        stub = served.kv_stub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Put(req)
        assert err.value.code() == SC.RESOURCE_EXHAUSTED
        expected = f"grpc: received message larger than max ({req.ByteSize()} vs. {MAX_RECEIVE})"
        assert err.value.details() == expected
        assert (await stub.Put(rpc_pb2.PutRequest(key=b"next"))).prev_kv.key == b"next"
        assert len(served.g.conns) == 1  # and the same connection served both


async def test_compressed_request_larger_than_max_receive_once_inflated(served: Served) -> None:
    # A few KiB of gzip that inflate past the limit are refused, as grpc-go does.
    req = rpc_pb2.PutRequest(key=b"k", value=bytes(2 * MAX_RECEIVE))
    async with served.channel() as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await served.kv_stub(ch).Put(req, compression=grpc.Compression.Gzip)
    assert err.value.code() == SC.RESOURCE_EXHAUSTED
    # Inflating stops one byte past the limit (no zip bomb is inflated in full), so
    # the size reported is limit + 1, as grpc-go's bounded reader reports it.
    assert err.value.details() == (
        "grpc: received message after decompression larger than max "
        f"({MAX_RECEIVE + 1} vs. {MAX_RECEIVE})"
    )


async def test_responses_far_larger_than_the_client_windows(served: Served) -> None:
    async with served.channel() as ch:
        r = await served.kv_stub(ch).Range(rpc_pb2.RangeRequest(limit=8, revision=1 << 20))
        assert r.count == 8 and [kv.key for kv in r.kvs] == [b"%d" % i for i in range(8)]
        assert all(kv.value == blob(i, 1 << 20) for i, kv in enumerate(r.kvs))  # 8 MiB
        call = rpc_pb2_grpc.MaintenanceStub(ch).Snapshot(rpc_pb2.SnapshotRequest())
        got = [r async for r in call]  # 200 messages of 64 KiB
        assert await call.code() == SC.OK
    assert [r.remaining_bytes for r in got] == list(range(SNAPSHOT_CHUNKS - 1, -1, -1))
    assert all(r.blob == blob(i, CHUNK) for i, r in enumerate(got))


def watch(key: bytes, watch_id: int) -> rpc_pb2.WatchRequest:
    create = rpc_pb2.WatchCreateRequest(key=key, watch_id=watch_id)
    return rpc_pb2.WatchRequest(create_request=create)


async def test_bidi_streaming(served: Served) -> None:
    async with served.channel() as ch:
        call = rpc_pb2_grpc.WatchStub(ch).Watch()
        for i in range(3):  # one by one
            await call.write(watch(b"k", i))
            assert (await call.read()).watch_id == i
        for i in range(3, 8):  # pipelined
            await call.write(watch(b"k", i))
        assert [(await call.read()).watch_id for _ in range(3, 8)] == list(range(3, 8))
        await call.done_writing()
        assert await call.read() is grpc.aio.EOF
        assert await call.code() == SC.OK
        call = rpc_pb2_grpc.WatchStub(ch).Watch()  # an abort after messages went out
        await call.write(watch(b"k", 1))
        assert (await call.read()).watch_id == 1
        await call.write(watch(b"abort", 2))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call.read()
    assert (err.value.code(), err.value.details()) == (SC.OUT_OF_RANGE, "enough ✓")


async def test_cancel_and_deadline_cancel_the_handler(served: Served) -> None:
    kv = served.kv
    async with served.channel() as ch:
        call = served.kv_stub(ch).Put(rpc_pb2.PutRequest(key=b"block", value=b"cancel"))
        assert await asyncio.wait_for(kv.started.get(), T) == b"cancel"
        call.cancel()
        assert await asyncio.wait_for(kv.cancelled.get(), T) == b"cancel"
        with pytest.raises(asyncio.CancelledError):
            await call
        with pytest.raises(grpc.aio.AioRpcError) as err:
            req = rpc_pb2.PutRequest(key=b"block", value=b"deadline")
            await served.kv_stub(ch).Put(req, timeout=0.2)
        assert err.value.code() == SC.DEADLINE_EXCEEDED
        assert await asyncio.wait_for(kv.cancelled.get(), T) == b"deadline"
    assert all(not conn.calls for conn in served.g.conns)


async def test_64_concurrent_calls_on_one_channel(served: Served) -> None:
    values = [blob(i, i * 1500) for i in range(64)]  # up to ~94 KiB: windows interleave
    async with served.channel() as ch:
        stub = served.kv_stub(ch)
        replies = await asyncio.gather(
            *(stub.Put(rpc_pb2.PutRequest(key=b"%d" % i, value=v)) for i, v in enumerate(values))
        )
    got = [(r.prev_kv.key, r.prev_kv.value) for r in replies]
    assert got == [(b"%d" % i, v) for i, v in enumerate(values)]


async def test_stop_lets_the_call_in_flight_finish_then_refuses(served: Served) -> None:
    async with served.channel() as ch:
        call = served.kv_stub(ch).Put(rpc_pb2.PutRequest(key=b"hold", value=b"inflight"))
        assert await asyncio.wait_for(served.kv.started.get(), T) == b"inflight"
        stopping = asyncio.ensure_future(served.g.stop(T))
        await asyncio.sleep(0)  # stop() has sent its GOAWAY
        served.kv.release.set()
        assert (await asyncio.wait_for(call, T)).prev_kv.value == b"inflight"
        await asyncio.wait_for(stopping, T)
        assert not served.g.conns
    late = await H2.open(served.port)
    assert await late.closed() == b""


async def test_stop_cancels_what_outlives_the_grace(served: Served) -> None:
    async with served.channel() as ch:
        call = served.kv_stub(ch).Put(rpc_pb2.PutRequest(key=b"block", value=b"grace"))
        assert await asyncio.wait_for(served.kv.started.get(), T) == b"grace"
        await served.g.stop(0.05)
        assert await asyncio.wait_for(served.kv.cancelled.get(), T) == b"grace"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await asyncio.wait_for(call, T)
        assert err.value.code() == SC.UNAVAILABLE


# -- raw HTTP/2 -----------------------------------------------------------------------------------


async def test_round_trip_and_exact_peer(served: Served) -> None:
    h2 = await H2.open(served.port)
    h2.call(1, PUT, put(b"a", b"b"))
    reply = await h2.response(1)
    assert reply.frames[0].type == FrameType.SETTINGS  # the server speaks first
    assert reply.blocks[0] == {":status": "200", "content-type": "application/grpc"}
    assert echoed(reply, b"a", b"b")
    assert served.kv.seen[0][1] == f"ipv4:127.0.0.1:{h2.writer.get_extra_info('sockname')[1]}"
    h2.writer.close()


async def test_frames_up_to_our_max_frame_size_are_read(served: Served) -> None:
    # We advertise SETTINGS_MAX_FRAME_SIZE = MAX_FRAME: a large message may come in one
    # DATA frame (the 16 KiB default would take 40 here); one byte more is an error.
    h2 = await H2.open(served.port)
    value = bytes(range(256)) * 2500
    h2.call(1, PUT, put(b"big", value))
    reply = await h2.response(1)
    ours = reply.frames[0]
    assert ours.type == FrameType.SETTINGS
    advertised = {
        int.from_bytes(ours.payload[i : i + 2], "big"): int.from_bytes(
            ours.payload[i + 2 : i + 6], "big"
        )
        for i in range(0, len(ours.payload), 6)
    }
    assert advertised[Setting.MAX_FRAME_SIZE] == MAX_FRAME > len(message(put(b"big", value)))
    assert echoed(reply, b"big", value)
    h2.writer.close()


@pytest.mark.parametrize(
    "pieces", [[PREFACE.replace(b"SM", b"XX")], [PREFACE[:16], b"\r\nXX"], [b"PRI *  "]]
)
async def test_wrong_preface_closes_the_connection(served: Served, pieces: list[bytes]) -> None:
    h2 = H2(*await asyncio.open_connection("127.0.0.1", served.port))
    for piece in pieces:
        h2.send(piece)
        await h2.writer.drain()
    await h2.closed()  # within T


async def test_preface_split_over_many_writes(served: Served) -> None:
    h2 = H2(*await asyncio.open_connection("127.0.0.1", served.port))
    for i in range(len(PREFACE)):
        h2.send(PREFACE[i : i + 1])
        for _ in range(3):  # let the server's loop read each byte on its own
            await asyncio.sleep(0)
    h2.send(settings(()))
    h2.call(1, PUT, put(b"split"))
    assert echoed(await h2.response(1), b"split")
    h2.writer.close()
    sink = _Sink()  # and byte by byte straight into the protocol, deterministically
    conn = served.g.connection("test", {})
    conn.connection_made(cast(asyncio.Transport, sink))
    for byte in PREFACE + frame(FrameType.PING, 0, 0, b"12345678"):
        conn.data_received(bytes((byte,)))
    await asyncio.sleep(0)
    assert sink.endswith(frame(FrameType.PING, Flag.ACK, 0, b"12345678"))
    conn.connection_lost(None)


async def test_ping_is_acked_with_its_payload(served: Served) -> None:
    h2 = await H2.open(served.port)
    h2.send(frame(FrameType.PING, 0, 0, b"\x00\x01\xfe\xffabcd"))
    await h2.until(is_ping_ack(b"\x00\x01\xfe\xffabcd"))
    h2.send(frame(FrameType.PING, Flag.ACK, 0, b"unasked!"))  # an ACK is not answered
    assert not [f for f in await h2.barrier() if f.type == FrameType.PING]
    h2.writer.close()


async def test_headers_continued_padded_and_prioritised(served: Served) -> None:
    h2 = await H2.open(served.port)
    block = h2.header_block(PUT)
    a, b = len(block) // 3, 2 * len(block) // 3
    h2.send(
        frame(FrameType.HEADERS, 0, 1, block[:a]),
        frame(FrameType.CONTINUATION, 0, 1, block[a:b]),
        frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, block[b:]),
        frame(FrameType.DATA, Flag.END_STREAM, 1, message(put(b"cont"))),
    )
    assert echoed(await h2.response(1), b"cont")
    block = h2.header_block(PUT)  # leans on the hpack dynamic table the first one filled
    padded = b"\x03" + b"\x80\x00\x00\x00\x10" + block + b"pad"  # pad length, priority, ...
    flags = Flag.END_HEADERS | Flag.PADDED | Flag.PRIORITY
    h2.send(
        frame(FrameType.HEADERS, flags, 3, padded),
        frame(FrameType.DATA, Flag.PADDED, 3, b"\x02" + message(put(b"pad", b"ding")) + b"\0\0"),
        frame(FrameType.DATA, Flag.END_STREAM | Flag.PADDED, 3, b"\x04" + bytes(4)),
    )
    assert echoed(await h2.response(3), b"pad", b"ding")
    h2.writer.close()


async def test_rst_stream_cancels_the_handler(served: Served) -> None:
    h2 = await H2.open(served.port)
    h2.call(1, PUT, put(b"block", b"rst"))
    assert await asyncio.wait_for(served.kv.started.get(), T) == b"rst"
    h2.send(h2f.rst_stream(1, ErrorCode.CANCEL))
    assert await asyncio.wait_for(served.kv.cancelled.get(), T) == b"rst"
    assert not [f for f in await h2.barrier() if f.sid == 1]  # nothing follows a reset
    h2.call(3, PUT, put(b"still"))
    assert echoed(await h2.response(3), b"still")
    h2.writer.close()


async def test_client_may_go_on_sending_on_a_stream_the_server_ended(served: Served) -> None:
    # RFC 9113 5.1: the server's END_STREAM leaves the stream half-closed (local); the
    # client may still send DATA and its trailers, and the connection lives on.
    h2 = await H2.open(served.port)
    h2.send(frame(FrameType.HEADERS, Flag.END_HEADERS, 1, h2.header_block("/nope.Svc/X")))
    h2.send(frame(FrameType.DATA, 0, 1, message(b"")))
    assert (await h2.response(1)).blocks[-1]["grpc-status"] == str(SC.UNIMPLEMENTED.value[0])
    h2.send(frame(FrameType.DATA, 0, 1, message(b"more")))
    h2.send(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, h2.encoder.encode([])))
    assert not [f for f in await h2.barrier() if f.type == FrameType.GOAWAY]
    h2.call(3, PUT, put(b"alive"))
    assert echoed(await h2.response(3), b"alive")
    h2.writer.close()


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (frame(FrameType.DATA, 0, 5, message(b"")), ErrorCode.PROTOCOL_ERROR),  # never opened
        (frame(FrameType.DATA, 0, 0, message(b"")), ErrorCode.PROTOCOL_ERROR),
        # the header of a DATA frame one byte longer than we accept: refused on sight
        (
            (MAX_FRAME + 1).to_bytes(3, "big") + bytes(2) + (1).to_bytes(4, "big") + bytes(99),
            ErrorCode.FRAME_SIZE_ERROR,
        ),
        (frame(FrameType.PING, 0, 0, b"short"), ErrorCode.FRAME_SIZE_ERROR),
        (frame(FrameType.PUSH_PROMISE, 4, 1, bytes(4)), ErrorCode.PROTOCOL_ERROR),
    ],
)
async def test_connection_errors_end_with_goaway(served: Served, bad: bytes, code: int) -> None:
    h2 = await H2.open(served.port)
    h2.send(bad)
    goaway = (await h2.until(is_type(FrameType.GOAWAY)))[-1]
    assert (int.from_bytes(goaway.payload[:4], "big"), goaway.code()) == (0, code)
    await h2.closed()


def range_request(n: int, size: int) -> bytes:
    data: bytes = rpc_pb2.RangeRequest(limit=n, revision=size).SerializeToString()
    return data


@pytest.mark.parametrize("opening", ["window_update", "settings"])
async def test_small_stream_window_is_respected(served: Served, opening: str) -> None:
    h2 = await H2.open(served.port, ((Setting.INITIAL_WINDOW_SIZE, 100),))
    h2.call(1, RANGE, range_request(1, 1000))
    frames = await h2.until(is_type(FrameType.DATA), window=False)
    frames += await h2.barrier(window=False)
    assert len(data_of(frames, 1)) == 100  # all the window, and not a byte more
    if opening == "window_update":
        h2.send(h2f.window_update(1, 10_000))
    else:  # a larger initial window grows the open stream's window too
        h2.send(settings(((Setting.INITIAL_WINDOW_SIZE, 10_100),)))
    rest = await h2.response(1, window=False)
    (raw,) = split_messages(data_of(frames, 1) + rest.data)
    assert rpc_pb2.RangeResponse.FromString(raw).kvs[0].value == blob(0, 1000)
    h2.writer.close()


async def test_unary_answer_is_headers_one_message_and_ok_trailers(served: Served) -> None:
    h2 = await H2.open(served.port)
    h2.call(1, PUT, put(b"k", b"v"))
    reply = await h2.response(1)
    shape = [(f.type, f.flags) for f in reply.frames if f.sid == 1]
    end = Flag.END_HEADERS | Flag.END_STREAM
    assert shape == [(FrameType.HEADERS, Flag.END_HEADERS), (FrameType.DATA, 0), (1, end)]
    assert reply.blocks == [
        {":status": "200", "content-type": "application/grpc"},
        {"grpc-status": "0"},
    ]
    assert echoed(reply, b"k", b"v")
    h2.writer.close()


async def test_unary_answer_waits_for_a_window_too_small(served: Served) -> None:
    h2 = await H2.open(served.port, ((Setting.INITIAL_WINDOW_SIZE, 4),))
    h2.call(1, PUT, put(b"k", b"v" * 100))
    frames = await h2.until(is_type(FrameType.DATA), window=False)
    frames += await h2.barrier(window=False)
    assert len(data_of(frames, 1)) == 4  # the window, not a byte more; no trailers yet
    assert [f.type for f in frames if f.sid == 1] == [FrameType.HEADERS, FrameType.DATA]
    h2.send(h2f.window_update(1, 1000))
    rest = await h2.response(1, window=False)
    both = Reply(rest.blocks, data_of(frames, 1) + rest.data, rest.frames)
    assert echoed(both, b"k", b"v" * 100)
    h2.writer.close()


async def test_a_status_the_handler_set_follows_its_answer(served: Served) -> None:
    h2 = await H2.open(served.port)
    h2.call(1, PUT, put(b"setcode", "late ✓".encode()))
    reply = await h2.response(1)
    (raw,) = split_messages(reply.data)
    assert rpc_pb2.PutResponse.FromString(raw).prev_kv.key == b"setcode"
    trailers = reply.blocks[-1]
    assert (trailers["grpc-status"], trailers["grpc-message"]) == ("10", "late %E2%9C%93")
    h2.writer.close()


async def test_connection_window_and_max_frame_size(served: Served) -> None:
    initial = ((Setting.INITIAL_WINDOW_SIZE, 1 << 22), (Setting.MAX_FRAME_SIZE, 32_768))
    h2 = await H2.open(served.port, initial)
    h2.call(1, RANGE, range_request(1, 200_000))
    frames = await h2.until(is_type(FrameType.DATA), window=False)
    while len(data_of(frames, 1)) < 65_535:
        frames.append(await h2.read())
    frames += await h2.barrier(window=False)
    assert len(data_of(frames, 1)) == 65_535  # the connection's default window
    h2.send(h2f.window_update(0, 1 << 20))
    frames += (await h2.response(1, window=False)).frames
    assert max(len(f.payload) for f in frames if f.type == FrameType.DATA) == 32_768
    (raw,) = split_messages(data_of(frames, 1))
    assert rpc_pb2.RangeResponse.FromString(raw).kvs[0].value == blob(0, 200_000)
    h2.writer.close()


async def test_stop_sends_goaway_and_refuses_new_streams(served: Served) -> None:
    h2 = await H2.open(served.port)
    h2.call(1, PUT, put(b"hold", b"h"))
    assert await asyncio.wait_for(served.kv.started.get(), T) == b"h"
    stopping = asyncio.ensure_future(served.g.stop(T))
    goaway = (await h2.until(is_type(FrameType.GOAWAY)))[-1]
    assert (int.from_bytes(goaway.payload[:4], "big"), goaway.code()) == (1, ErrorCode.NO_ERROR)
    h2.call(3, PUT, put(b"late"))
    rst = (await h2.until(is_type(FrameType.RST_STREAM)))[-1]
    assert (rst.sid, rst.code()) == (3, ErrorCode.REFUSED_STREAM)
    served.kv.release.set()
    assert echoed(await h2.response(1), b"hold", b"h")
    assert await h2.closed() == b""
    await asyncio.wait_for(stopping, T)


NAMES = [":path", ":method", ":authority", "content-type", "te", "grpc-encoding", "x-bin", "x"]
VALUES = [PUT, RANGE, "/x/y", "POST", "gzip", "identity", "AAA", "@@", "", "application/grpc"]


def garbage_frame(rng: random.Random, encoder: hpack.Encoder) -> bytes:
    ftype = rng.choice([0, 1, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    flags = rng.getrandbits(8) if rng.random() < 0.3 else rng.choice([0, 1, 4, 5, 8, 0x20, 0x25])
    sid = rng.choice([0, 1, 3, 5, 7, 2, rng.getrandbits(31)])
    if ftype in (FrameType.HEADERS, FrameType.CONTINUATION) and rng.random() < 0.7:
        pairs = [(rng.choice(NAMES), rng.choice(VALUES)) for _ in range(rng.randint(0, 6))]
        block = bytearray(encoder.encode(pairs))
        for _ in range(rng.randint(0, 2) if block else 0):
            block[rng.randrange(len(block))] = rng.getrandbits(8)
        return frame(ftype, flags, sid, bytes(block))
    if ftype == FrameType.DATA and rng.random() < 0.7:
        body = rng.randbytes(rng.choice([0, 1, 5, 100]))
        length = rng.choice([len(body), rng.getrandbits(32)]).to_bytes(4, "big")
        return frame(ftype, flags, sid, bytes([rng.choice([0, 1])]) + length + body)
    return frame(ftype, flags, sid, rng.randbytes(rng.choice([0, 1, 4, 6, 8, 9, 12, 20])))


class _Sink(bytearray):
    """The transport of a protocol fed by hand: what it wrote."""

    reading_paused = False
    write = bytearray.extend

    def writelines(self, pieces: list[bytes | memoryview]) -> None:
        for piece in pieces:
            self.extend(piece)

    def close(self) -> None: ...

    abort = close

    def pause_reading(self) -> None:
        self.reading_paused = True

    def frame_types(self) -> list[int]:
        out, pos = [], 0
        while pos + 9 <= len(self):
            out.append(self[pos + 3])
            pos += 9 + int.from_bytes(self[pos : pos + 3], "big")
        return out


async def test_garbage_never_raises_out_of_data_received(served: Served) -> None:
    for seed in range(1500):  # fed straight to the protocol, in random pieces
        rng = random.Random(seed)
        encoder = hpack.Encoder()
        conn = served.g.connection("test", {})
        conn.connection_made(cast(asyncio.Transport, _Sink()))
        data = PREFACE + b"".join(garbage_frame(rng, encoder) for _ in range(rng.randint(1, 12)))
        while data:
            n = rng.randint(1, 64)
            conn.data_received(data[:n])
            data = data[n:]
            await asyncio.sleep(0)  # let the calls it opened run
        conn.connection_lost(None)
    for seed in range(20):  # and over sockets
        rng = random.Random(seed)
        h2 = await H2.open(served.port)
        h2.send(rng.randbytes(rng.randint(1, 3000)) if seed % 2 else garbage_frame(rng, h2.encoder))
        h2.writer.write_eof()
        await h2.closed()
    assert served.errors == []
    async with served.channel() as ch:
        reply = await served.kv_stub(ch).Put(rpc_pb2.PutRequest(key=b"ok"))
        assert reply.prev_kv.key == b"ok"


async def test_endless_continuation_is_refused(served: Served) -> None:
    # A header block that never ends is a memory flood (2024's "CONTINUATION flood");
    # grpc-go refuses header lists over 16 MiB. 32 MiB of CONTINUATION must end it.
    sink = _Sink()
    conn = served.g.connection("test", {})
    conn.connection_made(cast(asyncio.Transport, sink))
    conn.data_received(PREFACE + frame(FrameType.HEADERS, 0, 1, b""))
    mebibyte = frame(FrameType.CONTINUATION, 0, 1, bytes(16_384)) * 64
    for _ in range(32):
        conn.data_received(mebibyte)
    await asyncio.sleep(0)
    refused = FrameType.GOAWAY in sink.frame_types()
    conn.connection_lost(None)
    assert refused


async def test_a_client_that_never_reads_cannot_pile_up_answers(served: Served) -> None:
    # Each PING wants an ACK. Once the transport's buffer is full (pause_writing) the
    # server must stop reading, or refuse the flood as grpc-go does (ENHANCE_YOUR_CALM
    # past 10,000 queued control frames), not buffer answers without end.
    sink = _Sink()
    conn = served.g.connection("test", {})
    conn.connection_made(cast(asyncio.Transport, sink))
    conn.data_received(PREFACE)
    conn.pause_writing()
    pings = frame(FrameType.PING, 0, 0, bytes(8)) * 1000
    for _ in range(100):
        if sink.reading_paused:
            break
        conn.data_received(pings)
        await asyncio.sleep(0)
    refused = sink.reading_paused or FrameType.GOAWAY in sink.frame_types()
    conn.connection_lost(None)
    assert refused


async def test_empty_header_name_does_not_break_the_connection(served: Served) -> None:
    h2 = await H2.open(served.port)
    block = h2.header_block(PUT) + b"\x00\x00\x00"  # a literal whose name is ""
    h2.send(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, block))
    h2.send(frame(FrameType.PING, 0, 0, b"barrier!"))
    with contextlib.suppress(asyncio.IncompleteReadError):  # closed without a word
        await h2.until(lambda f: is_ping_ack(b"barrier!")(f) or f.type == FrameType.GOAWAY)
    raised, served.errors[:] = list(served.errors), []  # reported here, not at teardown
    assert [ctx.get("exception") for ctx in raised] == []  # nothing raised out of the protocol
    h2.writer.close()


async def test_keepalive_pings_an_idle_client_and_drops_a_silent_one() -> None:
    async with serving(keepalive_interval=0.05, keepalive_timeout=0.2) as s:
        h2 = await H2.open(s.port)

        def is_ping(f: Frame) -> bool:
            return f.type == FrameType.PING and not f.flags & Flag.ACK

        ping = (await h2.until(is_ping))[-1]
        assert ping.payload == b"pyetcdka"
        h2.send(frame(FrameType.PING, Flag.ACK, 0, ping.payload))  # answered: it stays
        assert (await h2.until(is_ping))[-1].payload == b"pyetcdka"
        await h2.closed()  # unanswered: dropped
        assert not s.g.conns
