"""gRPC over one HTTP/2 connection, on the event loop (the server side of RFC 9113).

``GrpcConnection`` is the protocol of a client-port connection that began with the
HTTP/2 preface. It reads frames, opens a ``ServerCall`` per stream, feeds it the
stream's DATA, and writes what the calls send. Rules it keeps:

1. Frames are parsed where the bytes arrive (``data_received``); whatever the calls
   send in one turn of the loop leaves in one ``write`` (``send`` queues, ``_flush``
   writes), so 64 concurrent answers cost one syscall, not 64.
2. Receive windows are large and topped up as DATA arrives (requests are consumed at
   once); send windows are the client's, per stream and per connection, and a call
   waits for them (``wait_window``).
3. A protocol error ends the connection with GOAWAY; a stream-level problem ends only
   that stream. Nothing a client sends can raise out of ``data_received``.
4. ``goaway`` stops new streams and closes the connection when the last call ends;
   ``abort`` closes it at once, cancelling every call.
"""

from __future__ import annotations

import asyncio
import base64
import struct
from typing import TYPE_CHECKING, Any, Final, cast

from .call import SC, ServerCall
from .frames import (
    DEFAULT_MAX_FRAME,
    DEFAULT_WINDOW,
    PREFACE,
    ErrorCode,
    Flag,
    FrameType,
    Setting,
    frame,
    goaway,
    rst_stream,
    settings,
    window_update,
)
from .hpack import Decoder, HPACKDecodeError

if TYPE_CHECKING:
    from .server import GrpcServer

__all__ = ["GrpcConnection"]

#: The receive windows we grant: per stream, and for the whole connection.
STREAM_WINDOW: Final = 1 << 24
CONN_WINDOW: Final = 1 << 26
# Headers that are HTTP/2 or gRPC framing, not the caller's metadata.
_NOT_METADATA: Final = frozenset(
    ("content-type", "te", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding")
)
_KEEPALIVE_PING: Final = b"pyetcdka"
#: The largest header block (HEADERS plus CONTINUATION) we buffer before refusing it.
MAX_HEADER_BLOCK: Final = 1 << 20


def _b64(value: str) -> bytes:
    return base64.b64decode(value + "=" * (-len(value) % 4))


class GrpcConnection(asyncio.Protocol):
    """One HTTP/2 connection's frames and calls."""

    def __init__(self, server: GrpcServer, peer: str, auth_context: dict[str, list[bytes]]) -> None:
        self.server = server
        self.peer = peer
        self.auth_context = auth_context
        self.transport: asyncio.Transport | None = None
        self.calls: dict[int, ServerCall] = {}
        self.send_window = DEFAULT_WINDOW
        self.max_frame = DEFAULT_MAX_FRAME
        self.paused = False
        self._initial_window = DEFAULT_WINDOW  # the client's, for streams it opens
        self._buf = bytearray()
        self._preface = False
        self._decoder = Decoder()
        self._last_stream = 0
        self._received = 0  # DATA bytes since our last connection WINDOW_UPDATE
        self._headers: tuple[int, int, bytearray] | None = None  # awaiting CONTINUATION
        self._out: list[bytes] = []
        self._flushing = False
        self._window_waiters: list[asyncio.Future[None]] = []
        self._writable_waiters: list[asyncio.Future[None]] = []
        self._going_away = False
        self._closed = False
        self._active = False
        self._keepalive: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_event_loop()

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.send(
            settings(((Setting.INITIAL_WINDOW_SIZE, STREAM_WINDOW), (Setting.ENABLE_PUSH, 0)))
            + window_update(0, CONN_WINDOW - DEFAULT_WINDOW)
        )
        self.server.conns.add(self)
        self._arm_keepalive()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.server.conns.discard(self)
        if self._keepalive is not None:
            self._keepalive.cancel()
        for call in list(self.calls.values()):
            call.reset()
        self.calls.clear()
        self._wake(self._window_waiters)
        self._wake(self._writable_waiters)

    def pause_writing(self) -> None:
        # A client that does not read must not make us queue answers (PING ACKs,
        # responses) without end: stop reading it until it catches up.
        self.paused = True
        if self.transport is not None and not self._closed:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        if self.transport is not None and not self._closed:
            self.transport.resume_reading()
        self._wake(self._writable_waiters)

    def data_received(self, data: bytes) -> None:
        self._active = True
        buf = self._buf
        buf += data
        if not self._preface:
            if len(buf) < len(PREFACE):
                if not PREFACE.startswith(bytes(buf)):
                    self.abort()
                return
            if not buf.startswith(PREFACE):
                self.abort()
                return
            del buf[: len(PREFACE)]
            self._preface = True
        pos, end = 0, len(buf)
        try:
            while end - pos >= 9:
                length = (buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2]
                if length > DEFAULT_MAX_FRAME:
                    self._fail(
                        ErrorCode.FRAME_SIZE_ERROR, "frame larger than SETTINGS_MAX_FRAME_SIZE"
                    )
                    return
                if end - pos < 9 + length:
                    break
                ftype, flags = buf[pos + 3], buf[pos + 4]
                sid = int.from_bytes(buf[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
                payload = bytes(buf[pos + 9 : pos + 9 + length])
                pos += 9 + length
                self._on_frame(ftype, flags, sid, payload)
                if self._closed:
                    return
        except _ConnectionError as err:
            self._fail(err.code, str(err))
            return
        del buf[:pos]

    # -- frames -----------------------------------------------------------------------------------

    def _on_frame(self, ftype: int, flags: int, sid: int, payload: bytes) -> None:
        if self._headers is not None and ftype != FrameType.CONTINUATION:
            raise _ConnectionError(ErrorCode.PROTOCOL_ERROR, "expected CONTINUATION")
        if ftype == FrameType.DATA:
            self._on_data(flags, sid, payload)
        elif ftype == FrameType.HEADERS:
            self._on_headers(flags, sid, payload)
        elif ftype == FrameType.CONTINUATION:
            self._on_continuation(flags, sid, payload)
        elif ftype == FrameType.WINDOW_UPDATE:
            self._on_window_update(sid, payload)
        elif ftype == FrameType.SETTINGS:
            if not flags & Flag.ACK:
                self._on_settings(payload)
        elif ftype == FrameType.PING:
            self._on_ping(flags, payload)
        elif ftype == FrameType.RST_STREAM:
            call = self.calls.pop(sid, None)
            if call is not None:
                call.reset()
        elif ftype == FrameType.PUSH_PROMISE:
            raise _ConnectionError(ErrorCode.PROTOCOL_ERROR, "clients must not push")
        # PRIORITY, GOAWAY (the client closes when it is done) and unknown types: ignored

    @staticmethod
    def _unpad(flags: int, payload: bytes) -> bytes:
        if flags & Flag.PADDED:
            if not payload or payload[0] >= len(payload):
                raise _ConnectionError(ErrorCode.PROTOCOL_ERROR, "bad padding")
            return payload[1 : len(payload) - payload[0]]
        return payload

    def _on_data(self, flags: int, sid: int, payload: bytes) -> None:
        self._received += len(payload)
        if self._received >= CONN_WINDOW // 2:
            self.send(window_update(0, self._received))
            self._received = 0
        call = self.calls.get(sid)
        if call is None:
            if sid == 0 or sid > self._last_stream:
                raise _ConnectionError(ErrorCode.PROTOCOL_ERROR, "DATA on an idle stream")
            return  # a stream we already ended: its remaining bytes are dropped
        if call.remote_closed:
            self._end_stream(call, ErrorCode.STREAM_CLOSED)
            return
        call.received += len(payload)
        if call.received >= STREAM_WINDOW // 2 and not flags & Flag.END_STREAM:
            self.send(window_update(sid, call.received))
            call.received = 0
        data = self._unpad(flags, payload)
        if data:
            try:
                err = call.feed(data)
            except Exception as exc:  # a bad gzip body
                err = f"grpc: failed to decompress the received message: {exc}"
            if err is not None:
                code = SC.RESOURCE_EXHAUSTED if "larger than max" in err else SC.INTERNAL
                self._refuse(call, code, err)
                return
        if flags & Flag.END_STREAM:
            call.end_of_requests()

    def _refuse(self, call: ServerCall, code: Any, details: str) -> None:
        # End the call with this status and tell the client to stop sending.
        call.end_with(code, details)
        if not call.remote_closed:
            self.send(rst_stream(call.stream_id, ErrorCode.NO_ERROR))

    def _end_stream(self, call: ServerCall, code: ErrorCode) -> None:
        self.calls.pop(call.stream_id, None)
        call.reset()
        self.send(rst_stream(call.stream_id, code))

    def _on_headers(self, flags: int, sid: int, payload: bytes) -> None:
        if sid == 0:
            raise _ConnectionError(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0")
        block = self._unpad(flags, payload)
        if flags & Flag.PRIORITY:
            block = block[5:]
        if flags & Flag.END_HEADERS:
            self._on_header_block(flags, sid, block)
        else:
            self._headers = (sid, flags, bytearray(block))

    def _on_continuation(self, flags: int, sid: int, payload: bytes) -> None:
        pending = self._headers
        if pending is None or pending[0] != sid:
            raise _ConnectionError(ErrorCode.PROTOCOL_ERROR, "unexpected CONTINUATION")
        pending[2].extend(payload)
        if len(pending[2]) > MAX_HEADER_BLOCK:
            raise _ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, "header block too large")
        if flags & Flag.END_HEADERS:
            self._headers = None
            self._on_header_block(pending[1], sid, bytes(pending[2]))

    def _on_header_block(self, flags: int, sid: int, block: bytes) -> None:
        try:
            headers = self._decoder.decode(block)
        except HPACKDecodeError as err:
            raise _ConnectionError(ErrorCode.COMPRESSION_ERROR, str(err)) from err
        call = self.calls.get(sid)
        if call is not None:  # trailers: a client's only use of them is to end its side
            if flags & Flag.END_STREAM:
                call.end_of_requests()
            return
        if sid % 2 == 0:
            raise _ConnectionError(ErrorCode.PROTOCOL_ERROR, "bad stream id")
        if sid <= self._last_stream:
            return  # trailers on a stream we already ended (RFC 9113 5.1): dropped
        self._last_stream = sid
        if self._going_away:
            self.send(rst_stream(sid, ErrorCode.REFUSED_STREAM))
            return
        path, encoding = "", "identity"
        metadata: list[tuple[str, str | bytes]] = []
        for name, value in headers:
            if name[:1] == ":":
                if name == ":path":
                    path = value
            elif name == "grpc-encoding":
                encoding = value
            elif name not in _NOT_METADATA:
                try:
                    metadata.append((name, _b64(value) if name.endswith("-bin") else value))
                except ValueError:
                    continue  # undecodable binary metadata is dropped
        call = ServerCall(
            self,
            sid,
            self.server.lookup(path),
            path,
            tuple(metadata),
            encoding,
            self._initial_window,
        )
        self.calls[sid] = call
        call.task = self._loop.create_task(call.run())
        if flags & Flag.END_STREAM:
            call.end_of_requests()

    def _on_window_update(self, sid: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise _ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE size")
        increment = int.from_bytes(payload, "big") & 0x7FFFFFFF
        if sid == 0:
            self.send_window += increment
        else:
            call = self.calls.get(sid)
            if call is None:
                return
            call.send_window += increment
        self._wake(self._window_waiters)

    def _on_settings(self, payload: bytes) -> None:
        if len(payload) % 6:
            raise _ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS size")
        for i in range(0, len(payload), 6):
            key, value = struct.unpack_from(">HL", payload, i)
            if key == Setting.INITIAL_WINDOW_SIZE:
                if value > 2**31 - 1:
                    raise _ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "window too large")
                delta = value - self._initial_window
                self._initial_window = value
                for call in self.calls.values():
                    call.send_window += delta
            elif key == Setting.MAX_FRAME_SIZE:
                if not DEFAULT_MAX_FRAME <= value <= 2**24 - 1:
                    raise _ConnectionError(ErrorCode.PROTOCOL_ERROR, "bad MAX_FRAME_SIZE")
                self.max_frame = value
        self.send(frame(FrameType.SETTINGS, Flag.ACK, 0))
        self._wake(self._window_waiters)

    def _on_ping(self, flags: int, payload: bytes) -> None:
        if len(payload) != 8:
            raise _ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "PING size")
        if not flags & Flag.ACK:
            self.send(frame(FrameType.PING, Flag.ACK, 0, payload))

    # -- keepalive (etcd's --grpc-keepalive-interval / -timeout) -----------------------------------

    def _arm_keepalive(self) -> None:
        interval = self.server.keepalive_interval
        if interval > 0 and not self._closed:
            self._keepalive = self._loop.call_later(interval, self._keepalive_due)

    def _keepalive_due(self) -> None:
        if self._active:
            self._active = False
            self._arm_keepalive()
            return
        # Nothing heard for a whole interval: ping, and give up after the timeout
        # unless something (the ACK, or anything else) arrives.
        self.send(frame(FrameType.PING, 0, 0, _KEEPALIVE_PING))
        self._keepalive = self._loop.call_later(
            self.server.keepalive_timeout, self._keepalive_check
        )

    def _keepalive_check(self) -> None:
        if self._active:
            self._active = False
            self._arm_keepalive()
        else:
            self.abort()

    # -- sending ----------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue ``data`` for this turn's write."""
        if self._closed:
            return
        self._out.append(data)
        if not self._flushing:
            self._flushing = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flushing = False
        if self._out and not self._closed and self.transport is not None:
            data = b"".join(self._out) if len(self._out) > 1 else self._out[0]
            self._out.clear()
            self.transport.write(data)

    async def wait_window(self, call: ServerCall) -> None:
        """Wait until a window may have grown (or the call ended)."""
        if self._closed or call.finished:
            return
        waiter = self._loop.create_future()
        self._window_waiters.append(waiter)
        await waiter

    async def wait_writable(self) -> None:
        """Wait until the transport's buffer drained below its high-water mark."""
        if self._closed or not self.paused:
            return
        waiter = self._loop.create_future()
        self._writable_waiters.append(waiter)
        await waiter

    @staticmethod
    def _wake(waiters: list[asyncio.Future[None]]) -> None:
        for w in waiters:
            if not w.done():
                w.set_result(None)
        waiters.clear()

    def call_finished(self, call: ServerCall) -> None:
        self.calls.pop(call.stream_id, None)
        if self._going_away and not self.calls:
            self._flush()
            self.close()

    # -- ending -----------------------------------------------------------------------------------

    def goaway(self) -> None:
        """Refuse new streams; close once the open calls have ended."""
        if self._going_away or self._closed:
            return
        self._going_away = True
        self.send(goaway(self._last_stream, ErrorCode.NO_ERROR))
        if not self.calls:
            self._flush()
            self.close()

    def close(self) -> None:
        if self.transport is not None and not self._closed:
            self._flush()
            self.transport.close()

    def abort(self) -> None:
        """Close at once; every call is cancelled."""
        if self.transport is not None:
            self.transport.abort()
        self.connection_lost(None)

    def _fail(self, code: ErrorCode, reason: str) -> None:
        self.send(goaway(self._last_stream, code, reason.encode()))
        self._flush()
        self._going_away = True
        for call in list(self.calls.values()):
            call.reset()
        self.calls.clear()
        self.close()


class _ConnectionError(Exception):
    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
