"""The server side of one HTTP/2 connection (RFC 9113), sans I/O: bytes in, events out.

``H2Connection`` is a pure protocol object in the manner of python-hyper/h2: feed it what
the socket read with ``receive_data`` (it returns ``events``), tell it what to send with
the ``send_*`` methods, and write what ``data_to_send`` returns. Rules it keeps:

1. No I/O, no clock, no asyncio, no gRPC: everything that moves the connection's state
   comes in through a method call and everything it says leaves through
   ``data_to_send``.
2. Every received frame is checked before it changes any state. A violation is a typed
   ``H2Error`` carrying its error code: a *connection error* queues GOAWAY, closes the
   connection and is raised out of ``receive_data``; a *stream error* queues
   RST_STREAM, closes that stream and is reported as a ``StreamReset`` event. Nothing
   else ever leaves ``receive_data``.
3. Stream states move only through ``streams.TRANSITIONS``; streams leave ``streams``
   when they close (an id at or below the highest opened one and not in ``streams`` is
   closed), noting how in ``closed``: DATA or HEADERS after the peer's END_STREAM is a
   connection error, after its RST_STREAM a stream error, else dropped (RFC 9113 5.1).
4. Receive windows are ours: DATA beyond them is a FLOW_CONTROL_ERROR; they are refilled
   (WINDOW_UPDATE) only as the receiver acknowledges what it consumed, once half used.
   Send windows are the peer's: ``send_data`` refuses to exceed them and splits DATA
   into frames of the peer's SETTINGS_MAX_FRAME_SIZE.
5. Header blocks are decoded in arrival order even for streams that are then refused or
   dropped: the HPACK table is one per connection. Blocks are bounded (``ServerLimits``)
   in bytes, CONTINUATION frames and decoded size; streams beyond our
   SETTINGS_MAX_CONCURRENT_STREAMS are refused (REFUSED_STREAM).
6. Our own header blocks come pre-encoded (``frames.encode_headers``: no dynamic table)
   and are split into HEADERS + CONTINUATION when longer than a frame.
7. ``receive_data`` reads at most ``max_frames`` frames and keeps the rest
   (``input_pending``): its owner spreads a burst over turns of its loop.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

from . import checks
from .errors import (
    CompressionError,
    EnhanceYourCalmError,
    FlowControlError,
    FrameSizeError,
    H2Error,
    ProtocolError,
    StreamClosedError,
)
from .events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    PingAckReceived,
    PingReceived,
    RemoteSettingsChanged,
    RequestReceived,
    SettingsAcknowledged,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from .frames import (
    DEFAULT_MAX_FRAME,
    DEFAULT_WINDOW,
    MAX_WINDOW,
    PREFACE,
    ErrorCode,
    Flag,
    FrameType,
    Setting,
    answer_frames,
    error_code,
    frame,
    goaway,
    rst_stream,
    server_settings,
    split_data,
    split_header_block,
    window_update,
)
from .hpack import Decoder, HPACKDecodeError
from .limits import DEFAULT_LIMITS, ServerLimits
from .streams import (
    TRANSITIONS,
    ClosedBy,
    ClosedStreams,
    ConnectionState,
    H2Stream,
    PendingBlock,
    StreamInput,
    StreamState,
)

__all__ = ["ConnectionState", "H2Connection"]

_HEADER: Final = struct.Struct(">BHBBL")  # 24-bit length (8 + 16), type, flags, stream id
_PREFACE_LEN: Final = len(PREFACE)

# Enum members as module constants: looking one up on its class costs ~100 ns, and the
# hot path (one unary call) takes dozens.
_AWAITING_PREFACE, _CONN_OPEN, _GOING_AWAY, _CONN_CLOSED = ConnectionState
_IDLE, _OPEN, _HALF_CLOSED_LOCAL, _HALF_CLOSED_REMOTE, _CLOSED = StreamState
_REMOTE_OPEN: Final = (_OPEN, _HALF_CLOSED_LOCAL)
_LOCAL_OPEN: Final = (_OPEN, _HALF_CLOSED_REMOTE)
_RECV_HEADERS, _RECV_DATA, _RECV_END_STREAM, _RECV_RST_STREAM = tuple(StreamInput)[:4]
_SEND_HEADERS, _SEND_DATA, _SEND_END_STREAM, _SEND_RST_STREAM = tuple(StreamInput)[4:]
_ENDED, _RESET_BY_PEER, _RESET_BY_US = ClosedBy
_UNLIMITED: Final = 1 << 62
_HEADERS, _CONTINUATION = FrameType.HEADERS, FrameType.CONTINUATION
_WINDOW_UPDATE, _END_STREAM = FrameType.WINDOW_UPDATE, Flag.END_STREAM
_END_HEADERS, _BLOCK_FLAGS = Flag.END_HEADERS, Flag.END_HEADERS | Flag.PADDED | Flag.PRIORITY
_new_event: Final = tuple.__new__  # a NamedTuple event built without its __new__'s call


class H2Connection:
    """One HTTP/2 connection, server side, without I/O.

    Args:
        stream_window: the receive window we grant each stream (SETTINGS_INITIAL_WINDOW_SIZE).
        connection_window: the receive window we grant the whole connection.
        limits: streams, header blocks (the rest of ``ServerLimits`` is the owner's).
        max_frame_size: the longest frame we accept (our SETTINGS_MAX_FRAME_SIZE).
    """

    def __init__(
        self,
        stream_window: int = DEFAULT_WINDOW,
        connection_window: int = DEFAULT_WINDOW,
        limits: ServerLimits = DEFAULT_LIMITS,
        max_frame_size: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self.state: ConnectionState = _AWAITING_PREFACE
        #: Streams not yet closed, by id.
        self.streams: dict[int, H2Stream] = {}
        #: The highest stream id the peer opened; ids at or below it are never idle.
        self.highest_stream_id = 0
        #: What we may still send on the connection (the peer's window for us).
        self.outbound_window = DEFAULT_WINDOW
        #: The peer's SETTINGS_MAX_FRAME_SIZE: no frame we send is longer.
        self.max_outbound_frame_size = DEFAULT_MAX_FRAME
        #: The peer's SETTINGS_INITIAL_WINDOW_SIZE: each stream's first send window.
        self.peer_initial_window = DEFAULT_WINDOW
        self._stream_window = stream_window
        self._max_frame = max_frame_size
        self._connection_window = connection_window
        self._recv_window = DEFAULT_WINDOW  # raised by initiate_connection's WINDOW_UPDATE
        self._recv_unacked = 0
        #: How the streams that left ``streams`` last closed.
        self.closed = ClosedStreams()
        self._limits = limits
        self._buf = bytearray()  # a frame (or the preface) not yet whole ...
        self._need = 0  # ... and the length it will have
        self._out: list[bytes | memoryview] = []
        self._events: list[Event] = []
        self._decoder = Decoder(max_header_list_size=limits.max_header_list_size)
        self._pending: PendingBlock | None = None

    # -- what the owner calls --------------------------------------------------------------------

    def initiate_connection(self) -> None:
        """Queue our SETTINGS (the server's preface) and the connection window's grant."""
        self._out.append(server_settings(self._limits, self._stream_window, self._max_frame))
        if self._connection_window > DEFAULT_WINDOW:
            grant = self._connection_window - DEFAULT_WINDOW
            self._out.append(window_update(0, grant))
            self._recv_window += grant

    def receive_data(self, data: bytes, max_frames: int = _UNLIMITED) -> list[Event]:
        """Take bytes the peer sent; returns the events carried by its first ``max_frames``
        whole frames (the rest wait for the next call: ``input_pending``).

        Raises:
            H2Error: a connection error (``stream_id`` 0); GOAWAY is already queued
                and the connection is closed.
        """
        if self.state is _CONN_CLOSED:
            raise ProtocolError("connection is closed")
        if self._buf:  # a frame arriving in pieces is gathered until it is whole
            buf = self._buf
            buf += data
            if len(buf) < self._need and self.state is not _AWAITING_PREFACE:
                return []
            data = bytes(buf)
            buf.clear()
        events: list[Event] = []
        self._events = events
        pos, end = 0, len(data)
        if self.state is _AWAITING_PREFACE:
            if end < _PREFACE_LEN:
                if not PREFACE.startswith(data):
                    self._fail(ProtocolError("invalid connection preface"))
                self._keep(data, _PREFACE_LEN)
                return events
            if not data.startswith(PREFACE):
                self._fail(ProtocolError("invalid connection preface"))
            self.state = _CONN_OPEN
            pos = _PREFACE_LEN
        unpack, handlers, max_frame = _HEADER.unpack_from, _HANDLERS, self._max_frame
        while end - pos >= 9 and max_frames > 0:
            max_frames -= 1
            high, low, ftype, flags, sid = unpack(data, pos)
            length = (high << 16) | low
            if length > max_frame:
                self._fail(FrameSizeError("frame larger than SETTINGS_MAX_FRAME_SIZE"))
            start = pos + 9
            if start + length > end:
                break
            pos = start + length
            sid &= 0x7FFFFFFF
            try:
                if self._pending is not None and ftype != _CONTINUATION:
                    raise ProtocolError("expected CONTINUATION")
                if ftype == _WINDOW_UPDATE:  # two of a unary call's four frames
                    self._on_window_update(flags, sid, data[start:pos])
                elif ftype == _HEADERS and flags & _BLOCK_FLAGS == _END_HEADERS and sid:
                    self._on_header_block(flags, sid, data[start:pos])  # all _on_headers does
                else:
                    handler = handlers.get(ftype)
                    if handler is not None:  # frames of unknown types are ignored (4.1)
                        handler(self, flags, sid, data[start:pos])
            except H2Error as err:
                if err.stream_id == 0:
                    self._fail(err)
                self._stream_error(err)
        if pos < end:
            rest = data[pos:]
            need = 9
            if len(rest) >= 9:
                need += (rest[0] << 16) | (rest[1] << 8) | rest[2]
            self._keep(rest, need)
        return events

    def _keep(self, rest: bytes, need: int) -> None:
        # Bytes not yet read (the first frame of them ``need`` bytes long) wait in _buf.
        self._buf += rest
        self._need = need

    @property
    def input_pending(self) -> bool:
        """Whole frames wait that ``receive_data`` did not read (call it with b"")."""
        return self.state is not _CONN_CLOSED and 0 < self._need <= len(self._buf)

    def data_to_send(self) -> bytes:
        """Everything queued to send since the last call (b"" when nothing is)."""
        return b"".join(self.pieces_to_send())  # one bytes piece: itself, no copy

    def pieces_to_send(self) -> list[bytes | memoryview]:
        """The same as pieces in order, some views of a payload: for ``writelines``."""
        out, self._out = self._out, []
        return out

    @property
    def has_data_to_send(self) -> bool:
        return bool(self._out)

    def send_headers(self, stream_id: int, block: bytes, end_stream: bool = False) -> None:
        """Queue a header block (HPACK, encoded without the dynamic table) on a stream.

        Raises:
            StreamClosedError: our side of the stream is already ended, or it is not open.
        """
        stream = self.streams.get(stream_id)  # a closed connection has no streams
        if stream is None:
            raise StreamClosedError(f"stream {stream_id} is closed", stream_id)
        try:  # stream.step(_SEND_HEADERS), inlined on the hot path
            stream.state = TRANSITIONS[stream.state, _SEND_HEADERS]
        except KeyError:
            raise stream.illegal(_SEND_HEADERS) from None
        flags = Flag.END_STREAM if end_stream else 0
        if end_stream:
            self._end(stream, _SEND_END_STREAM)
        limit = self.max_outbound_frame_size
        if len(block) <= limit:
            self._out.append(frame(FrameType.HEADERS, flags | Flag.END_HEADERS, stream_id, block))
            return
        self._out += split_header_block(stream_id, flags, block, limit)

    def send_data(self, stream_id: int, data: bytes | memoryview, end_stream: bool = False) -> None:
        """Queue ``data`` on a stream, in frames no longer than the peer allows.

        Raises:
            FlowControlError: ``data`` is more than ``local_flow_control_window`` allows.
            StreamClosedError: our side of the stream is already ended, or it is not open.
        """
        stream = self.streams.get(stream_id)
        if stream is None:
            raise StreamClosedError(f"stream {stream_id} is closed", stream_id)
        n = len(data)
        if n > stream.send_window or n > self.outbound_window:
            raise FlowControlError(f"{n} bytes exceed the send window", stream_id)
        try:  # stream.step(_SEND_DATA), inlined on the hot path
            stream.state = TRANSITIONS[stream.state, _SEND_DATA]
        except KeyError:
            raise stream.illegal(_SEND_DATA) from None
        stream.send_window -= n
        self.outbound_window -= n
        limit = self.max_outbound_frame_size
        last = Flag.END_STREAM if end_stream else 0
        if end_stream:
            self._end(stream, _SEND_END_STREAM)
        self._out += split_data(stream_id, last, data, limit)

    def send_answer(self, stream_id: int, headers: bytes, message: bytes, trailers: bytes) -> bool:
        """Queue HEADERS, ``message`` in one DATA frame and the trailers (END_STREAM) as one
        piece, if our side is open and the windows and frame size take it; else False."""
        stream, n, limit = self.streams.get(stream_id), len(message), self.max_outbound_frame_size
        if stream is None or stream.state not in _LOCAL_OPEN or n > self.outbound_window:
            return False
        if n > stream.send_window or max(n, len(headers), len(trailers)) > limit:
            return False
        stream.send_window -= n
        self.outbound_window -= n
        self._out.append(answer_frames(stream_id, headers, message, trailers))
        self._end(stream, _SEND_END_STREAM)
        return True

    def local_flow_control_window(self, stream_id: int) -> int:
        """How many DATA bytes ``send_data`` may send on the stream now (0 if closed)."""
        stream = self.streams.get(stream_id)
        if stream is None:
            return 0
        return max(0, min(stream.send_window, self.outbound_window))

    def remote_flow_control_window(self, stream_id: int) -> int:
        """How many DATA bytes the peer may send on the stream now (0 if closed)."""
        stream = self.streams.get(stream_id)
        if stream is None or stream.state not in _REMOTE_OPEN:
            return 0
        return max(0, min(stream.recv_window, self._recv_window))

    def acknowledge_received_data(self, size: int, stream_id: int) -> None:
        """The receiver consumed ``size`` flow-controlled bytes of a ``DataReceived``:
        they count toward the next WINDOW_UPDATEs of the connection and the stream."""
        if size <= 0 or self.state is _CONN_CLOSED:
            return
        self._ack_connection(size)
        stream = self.streams.get(stream_id)
        if stream is not None and stream.state in _REMOTE_OPEN:
            stream.recv_unacked += size
            if stream.recv_unacked >= self._stream_window // 2:
                self._out.append(window_update(stream_id, stream.recv_unacked))
                stream.recv_window += stream.recv_unacked
                stream.recv_unacked = 0

    def reset_stream(self, stream_id: int, error_code: ErrorCode = ErrorCode.CANCEL) -> None:
        """Queue RST_STREAM and close the stream (nothing, if it is already closed)."""
        stream = self.streams.pop(stream_id, None)
        if stream is None:
            return
        stream.step(_SEND_RST_STREAM)
        self.closed.add(stream_id, _RESET_BY_US)
        self._out.append(rst_stream(stream_id, error_code))

    def stream_state(self, stream_id: int) -> StreamState:
        """The stream's state (CLOSED once it left ``streams``, IDLE above the highest id)."""
        stream = self.streams.get(stream_id)
        if stream is not None:
            return stream.state
        return _IDLE if stream_id > self.highest_stream_id else _CLOSED

    def ping(self, opaque_data: bytes) -> None:
        """Queue a PING with 8 bytes of our choosing (its ACK is a ``PingAckReceived``)."""
        if len(opaque_data) != 8:
            raise ValueError("PING data is 8 bytes")
        self._out.append(frame(FrameType.PING, 0, 0, opaque_data))

    def close_connection(
        self, error_code: ErrorCode = ErrorCode.NO_ERROR, additional_data: bytes = b""
    ) -> None:
        """Queue GOAWAY naming the highest stream we will serve. With NO_ERROR open streams
        go on and new ones are refused (REFUSED_STREAM); with any other code the
        connection is closed."""
        if self.state is _CONN_CLOSED:
            return
        self._out.append(goaway(self.highest_stream_id, error_code, additional_data))
        if error_code == ErrorCode.NO_ERROR:
            self.state = _GOING_AWAY
        else:
            self.state = _CONN_CLOSED
            self.streams.clear()

    # -- errors ---------------------------------------------------------------------------------

    def _fail(self, err: H2Error) -> None:
        # A connection error: GOAWAY with its code, then the owner hears of it. ``err``
        # must leave this frame (its traceback holds it): no cycle keeps the connection.
        self.close_connection(err.error_code, str(err).encode())
        self.state = _CONN_CLOSED
        self._buf.clear()
        self._pending = None
        try:
            raise err
        finally:
            del err

    def _stream_error(self, err: H2Error) -> None:
        sid = err.stream_id
        stream = self.streams.pop(sid, None)
        if stream is not None:
            stream.step(_SEND_RST_STREAM)
        self.closed.add(sid, _RESET_BY_US)
        self._out.append(rst_stream(sid, err.error_code))
        self._events.append(StreamReset(sid, err.error_code, False))

    # -- streams -----------------------------------------------------------------------------------

    def _end(self, stream: H2Stream, side: StreamInput) -> None:
        # One side's END_STREAM (``side``: sent or received); the stream closes with both.
        if stream.step(side) is _CLOSED:
            del self.streams[stream.stream_id]
            self.closed.add(stream.stream_id, _ENDED)

    def _on_closed_stream(self, sid: int, what: str) -> None:
        # DATA or HEADERS for a stream that left ``streams`` (RFC 9113 5.1, "closed").
        closed_by = self.closed.get(sid)
        if closed_by is _ENDED:
            raise StreamClosedError(f"{what} on stream {sid} after its END_STREAM")
        if closed_by is _RESET_BY_PEER:
            raise StreamClosedError(f"{what} on stream {sid} after its RST_STREAM", sid)

    def _ack_connection(self, size: int) -> None:
        self._recv_unacked += size
        if self._recv_unacked >= self._connection_window // 2:
            self._out.append(window_update(0, self._recv_unacked))
            self._recv_window += self._recv_unacked
            self._recv_unacked = 0

    # -- frames ------------------------------------------------------------------------------------

    def _on_data(self, flags: int, sid: int, payload: bytes) -> None:
        if sid == 0:
            raise ProtocolError("DATA on stream 0")
        n = len(payload)
        self._recv_window -= n
        if self._recv_window < 0:
            raise FlowControlError("DATA beyond the connection window")
        data = checks.unpad(payload) if flags & Flag.PADDED else payload
        stream = self.streams.get(sid)
        if stream is None:
            if sid > self.highest_stream_id:
                raise ProtocolError(f"DATA on idle stream {sid}")
            self._ack_connection(n)  # a closed stream's late bytes: nobody else will
            self._on_closed_stream(sid, "DATA")
            return
        stream.recv_window -= n
        if stream.recv_window < 0 or stream.state not in _REMOTE_OPEN:
            self._ack_connection(n)  # the receiver never sees these bytes
            stream.step(_RECV_DATA)  # StreamClosedError once the peer ended its side
            raise FlowControlError(f"DATA beyond stream {sid}'s window", sid)
        # step(_RECV_DATA) [and _end(stream, _RECV_END_STREAM)], legal in both states above:
        end = flags & _END_STREAM == _END_STREAM
        if end:
            if stream.state is _OPEN:
                stream.state = _HALF_CLOSED_REMOTE
            else:  # half closed (local): both sides ended
                stream.state = _CLOSED
                del self.streams[sid]
                self.closed.add(sid, _ENDED)
        self._events.append(_new_event(DataReceived, (sid, data, n, end)))

    def _on_headers(self, flags: int, sid: int, payload: bytes) -> None:
        if sid == 0:
            raise ProtocolError("HEADERS on stream 0")
        block = checks.unpad(payload) if flags & Flag.PADDED else payload
        if flags & Flag.PRIORITY:
            if len(block) < 5:
                raise FrameSizeError("HEADERS too short for its priority fields")
            block = block[5:]
        if flags & Flag.END_HEADERS:
            self._on_header_block(flags, sid, block)
        else:
            self._pending = PendingBlock(sid, flags, block)

    def _on_continuation(self, flags: int, sid: int, payload: bytes) -> None:
        pending = self._pending
        if pending is None or pending.stream_id != sid:
            raise ProtocolError("CONTINUATION without its HEADERS")
        pending.block += payload
        pending.continuations += 1
        if len(pending.block) > self._limits.max_header_block:
            raise EnhanceYourCalmError("header block too large")
        if pending.continuations > self._limits.max_continuations:
            raise EnhanceYourCalmError("too many CONTINUATION frames")
        if flags & Flag.END_HEADERS:
            self._pending = None
            self._on_header_block(pending.flags, sid, bytes(pending.block))

    def _on_header_block(self, flags: int, sid: int, block: bytes) -> None:
        try:
            headers = self._decoder.decode(block)
        except HPACKDecodeError as err:
            raise CompressionError(str(err)) from err
        end = bool(flags & Flag.END_STREAM)
        stream = self.streams.get(sid)
        if stream is not None:  # trailers: they must end the peer's side
            if not end:
                raise ProtocolError("trailers without END_STREAM", sid)
            stream.step(_RECV_HEADERS)
            self._end(stream, _RECV_END_STREAM)
            self._events.append(TrailersReceived(sid, headers))
            return
        if sid % 2 == 0:
            raise ProtocolError(f"client stream id {sid} is even")
        if sid <= self.highest_stream_id:
            self._on_closed_stream(sid, "HEADERS")
            return
        self.highest_stream_id = sid
        if self.state is _GOING_AWAY or len(self.streams) >= self._limits.max_concurrent_streams:
            self.closed.add(sid, _RESET_BY_US)
            self._out.append(rst_stream(sid, ErrorCode.REFUSED_STREAM))
            return
        stream = H2Stream(sid, self.peer_initial_window, self._stream_window)
        stream.state = _HALF_CLOSED_REMOTE if end else _OPEN  # idle, HEADERS [, END_STREAM]
        self.streams[sid] = stream
        self._events.append(_new_event(RequestReceived, (sid, headers, end)))

    def _on_priority(self, flags: int, sid: int, payload: bytes) -> None:
        checks.check_priority(sid, payload)

    def _on_rst_stream(self, flags: int, sid: int, payload: bytes) -> None:
        checks.check_rst_stream(sid, payload)
        stream = self.streams.pop(sid, None)
        if stream is None:
            if sid > self.highest_stream_id:
                raise ProtocolError(f"RST_STREAM on idle stream {sid}")
            return
        stream.step(_RECV_RST_STREAM)
        self.closed.add(sid, _RESET_BY_PEER)
        self._events.append(StreamReset(sid, int.from_bytes(payload, "big"), True))

    def _on_settings(self, flags: int, sid: int, payload: bytes) -> None:
        pairs = checks.settings_pairs(sid, flags, payload)
        if pairs is None:
            self._events.append(SettingsAcknowledged())
            return
        for key, value in pairs:
            # HEADER_TABLE_SIZE: our blocks never use the dynamic table; the rest is advice.
            if key == Setting.INITIAL_WINDOW_SIZE:
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
                    if stream.send_window > MAX_WINDOW:
                        raise FlowControlError(f"stream {stream.stream_id}'s window above 2^31-1")
            elif key == Setting.MAX_FRAME_SIZE:
                self.max_outbound_frame_size = value
        self._out.append(frame(FrameType.SETTINGS, Flag.ACK, 0))
        self._events.append(RemoteSettingsChanged(tuple(pairs)))

    def _on_push_promise(self, flags: int, sid: int, payload: bytes) -> None:
        raise ProtocolError("clients must not push")

    def _on_ping(self, flags: int, sid: int, payload: bytes) -> None:
        checks.check_ping(sid, payload)
        if flags & Flag.ACK:
            self._events.append(PingAckReceived(payload))
        else:
            self._out.append(frame(FrameType.PING, Flag.ACK, 0, payload))
            self._events.append(PingReceived(payload))

    def _on_goaway(self, flags: int, sid: int, payload: bytes) -> None:
        # The client will open no more streams; it closes the connection when done.
        last, code, debug = checks.goaway_fields(sid, payload)
        self._events.append(ConnectionTerminated(error_code(code), last, debug))

    def _on_window_update(self, flags: int, sid: int, payload: bytes) -> None:
        increment = checks.window_increment(sid, payload)
        if sid == 0:
            if increment == 0:
                raise ProtocolError("WINDOW_UPDATE of 0")
            self.outbound_window += increment
            if self.outbound_window > MAX_WINDOW:
                raise FlowControlError("connection window above 2^31-1")
        else:
            stream = self.streams.get(sid)
            if stream is None:
                if sid > self.highest_stream_id:
                    raise ProtocolError(f"WINDOW_UPDATE on idle stream {sid}")
                return
            if increment == 0:
                raise ProtocolError("WINDOW_UPDATE of 0", sid)
            stream.send_window += increment
            if stream.send_window > MAX_WINDOW:
                raise FlowControlError("stream window above 2^31-1", sid)
        self._events.append(_new_event(WindowUpdated, (sid, increment)))


# Frame handlers by type: plain functions (bound ones kept on it would make a cycle).
_HANDLERS: Final[dict[int, Callable[[H2Connection, int, int, bytes], None]]] = {
    FrameType.DATA: H2Connection._on_data,
    FrameType.HEADERS: H2Connection._on_headers,
    FrameType.PRIORITY: H2Connection._on_priority,
    FrameType.RST_STREAM: H2Connection._on_rst_stream,
    FrameType.SETTINGS: H2Connection._on_settings,
    FrameType.PUSH_PROMISE: H2Connection._on_push_promise,
    FrameType.PING: H2Connection._on_ping,
    FrameType.GOAWAY: H2Connection._on_goaway,
    FrameType.WINDOW_UPDATE: H2Connection._on_window_update,
    FrameType.CONTINUATION: H2Connection._on_continuation,
}
