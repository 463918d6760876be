"""gRPC over one HTTP/2 connection: the asyncio driver around ``H2Connection``.

``GrpcConnection`` is the ``asyncio.Protocol`` of a connection that began with the
HTTP/2 preface. It hands the bytes it reads to the sans-I/O core, turns the core's
events into ``ServerCall`` tasks and their request messages, and writes what the core
has to send. Rules it keeps:

1. Bytes are fed to the core where they arrive (``data_received``), at most
   ``frames_per_turn`` frames per turn of the loop: the rest wait in the core, reading
   pauses, and the next turn (``call_soon``) goes on, so other connections, Raft's ticks
   and heartbeats run between. Whatever the core queued in one turn leaves in one
   ``write`` (``_kick`` schedules ``_flush``): 64 concurrent answers cost one syscall.
   The end of the connection's only running call is written at once instead (one
   client's sequential calls: no turn of the loop spent on the write alone).
2. Receive windows are handed back as the calls consume the DATA (call.py, rule 4);
   send windows are the client's, and a call waits for them (``wait_window``).
3. A connection error (an ``H2Error`` out of ``receive_data``) ends the connection
   after the core's GOAWAY; a stream error ends only that stream's call. Nothing a
   client sends can raise out of ``data_received``.
4. Reading stops while the client does not read (``pause_writing``), so its PINGs and
   requests cannot pile up answers, and while ``max_concurrent_streams`` call tasks
   run (reset ones included, grpc-go's answer to rapid reset).
5. Floods end the connection with GOAWAY(ENHANCE_YOUR_CALM) as grpc-go does: PINGs
   against its keepalive enforcement policy ("too_many_pings"), and, beyond
   ``ServerLimits``' rates, RST_STREAMs of running calls and SETTINGS frames.
6. ``goaway`` stops new streams and closes the connection when the last call ends;
   ``abort`` closes it at once, cancelling every call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping
from typing import Any, Final, Protocol, cast

from .call import CallAborted, MethodHandler, ServerCall, request_of
from .errors import H2Error
from .events import (
    DataReceived,
    PingReceived,
    RemoteSettingsChanged,
    RequestReceived,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from .frames import OK_TRAILERS, RESPONSE_HEADERS, ErrorCode
from .h2connection import H2Connection
from .limits import PingPolicy, RateCap, ServerLimits
from .stats import HandlingObserver, MethodStats
from .streams import StreamState

__all__ = ["CONN_WINDOW", "MAX_FRAME", "STREAM_WINDOW", "ConnectionHost", "GrpcConnection"]

#: The receive windows we grant: per stream, and for the whole connection. With credit
#: only on consumption they bound what a stream and a connection hold unread.
STREAM_WINDOW: Final = 1 << 22
CONN_WINDOW: Final = 1 << 24
#: The longest frame we accept (our SETTINGS_MAX_FRAME_SIZE). grpc-go advertises
#: HTTP/2's 16 KiB; a larger one lets a client send a 1 MiB message in a frame or two
#: instead of 64, each of which costs us a turn of the frame loop and a copy.
MAX_FRAME: Final = 1 << 20
_KEEPALIVE_PING: Final = b"pyetcdka"
_HALF_CLOSED_LOCAL: Final = StreamState.HALF_CLOSED_LOCAL


class ConnectionHost(Protocol):
    """What a connection needs of its server (the calls' host, and more)."""

    @property
    def max_receive(self) -> int: ...

    @property
    def services(self) -> Collection[str]: ...

    @property
    def limits(self) -> ServerLimits: ...

    @property
    def keepalive_interval(self) -> float:
        """Seconds of silence before we PING the client; 0 disables keepalive."""
        ...

    @property
    def keepalive_timeout(self) -> float:
        """Seconds we wait for anything after our keepalive PING before we drop it."""
        ...

    @property
    def handling(self) -> HandlingObserver | None: ...

    @property
    def method_stats(self) -> Mapping[str, MethodStats]:
        """Each known method's counts, by path (filled by ``lookup``)."""
        ...

    def lookup(self, path: str) -> MethodHandler | None: ...

    def log_handler_error(self, method: str, err: BaseException) -> None: ...

    def connection_opened(self, conn: GrpcConnection) -> None: ...

    def connection_closed(self, conn: GrpcConnection) -> None: ...


class GrpcConnection(asyncio.Protocol):
    """One HTTP/2 connection's calls, on the event loop."""

    def __init__(
        self, host: ConnectionHost, peer: str, auth_context: dict[str, list[bytes]]
    ) -> None:
        self.host = host
        self.peer = peer
        self.auth_context = auth_context
        self.transport: asyncio.Transport | None = None
        limits = self.limits = host.limits
        self.h2 = H2Connection(STREAM_WINDOW, CONN_WINDOW, limits, MAX_FRAME)
        self.calls: dict[int, ServerCall] = {}
        self.paused = False  # the client does not read: nor do we
        self._held = False  # a turn's budget is spent, or too many calls run
        self._running = 0  # call tasks not yet over
        # Calls whose HEADERS came in this read: their tasks start once the read's frames
        # are all handled, so a stream the client resets in the same read costs no task
        # (rapid reset, CVE-2023-44487).
        self._starting: list[ServerCall] = []
        self._failed = False
        self._pings = PingPolicy(limits.keepalive_min_time, limits.keepalive_permit_without_stream)
        self._resets = RateCap(limits.max_resets, limits.reset_interval)
        self._settings = RateCap(limits.max_settings, limits.settings_interval)
        self._flush_handle: asyncio.Handle | None = None  # a _flush_scheduled to come
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
        self.h2.initiate_connection()
        self._kick()
        self.host.connection_opened(self)
        self._arm_keepalive()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._closed:
            return
        self._closed = True
        self.host.connection_closed(self)
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
        self._set_reading()

    def resume_writing(self) -> None:
        self.paused = False
        self._set_reading()
        if self._held:
            self._loop.call_soon(self._read_more)
        self._wake(self._writable_waiters)

    def _set_reading(self) -> None:
        if self.transport is not None and not self._closed:
            if self.paused or self._held:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if not self._closed:
            self._active = True
            self._receive(data)

    def _receive(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data, self.limits.frames_per_turn)
        except H2Error:  # a connection error: the core queued its GOAWAY
            self._fail()
            return
        try:
            for event in events:
                kind = type(event)  # the events of every unary call first
                if kind is WindowUpdated:  # two a call: they matter only to a waiter
                    if self._window_waiters:
                        self._wake(self._window_waiters)
                elif kind is DataReceived:
                    self._on_data(event)  # type: ignore[arg-type]
                elif kind is RequestReceived:
                    self._on_request(event)  # type: ignore[arg-type]
                else:
                    handler = _ON_EVENT.get(kind)
                    if handler is not None:
                        handler(self, event)
                if self._failed:  # a flood ended the connection
                    return
        finally:
            if self._starting:
                self._start_calls()
        if self.h2.has_data_to_send:
            self._kick()
        # Rules 1 and 4: go on next turn, or once a call ends; until then read nothing.
        too_many = self._running >= self.limits.max_concurrent_streams
        held = too_many or self.h2.input_pending
        if held != self._held:
            self._held = held
            self._set_reading()
        if held and not too_many:
            self._loop.call_soon(self._read_more)

    def _read_more(self) -> None:
        # Frames already read wait too while the client does not read (rule 4).
        if not self._closed and not self._failed and not self.paused:
            self._receive(b"")

    # -- events -----------------------------------------------------------------------------------

    def _on_request(self, event: RequestReceived) -> None:
        # A repeated header block is one shared HeaderList (hpack.py): read it once.
        headers = event.headers
        request = headers.meaning
        if request is None:
            request = headers.meaning = request_of(headers)
        path = request.path
        sid = event.stream_id
        host = self.host
        handler = host.lookup(path)
        stats = host.method_stats.get(path) if handler is not None else None
        call = ServerCall(self, host, sid, handler, request, stats)
        self.calls[sid] = call
        self._running += 1
        self._starting.append(call)
        if event.end_stream:
            call.end_of_requests()

    def _start_calls(self) -> None:
        starting, self._starting = self._starting, []
        for call in starting:
            if call.finished:  # reset (or the connection lost) before it started
                call.drop()
            else:
                call.task = self._loop.create_task(call.run())

    def _on_data(self, event: DataReceived) -> None:
        sid = event.stream_id
        call = self.calls.get(sid)
        credit = event.flow_controlled_length
        if call is not None and not call.finished:
            if credit:
                try:
                    credit = call.feed(event.data, credit)
                except CallAborted as err:
                    self._refuse(call, err.code, err.details)
            if event.end_stream:
                call.end_of_requests()
        if credit:
            self.h2.acknowledge_received_data(credit, sid)

    def _on_trailers(self, event: TrailersReceived) -> None:
        # A client's only use of trailers is to end its side.
        call = self.calls.get(event.stream_id)
        if call is not None:
            call.end_of_requests()

    def _on_reset(self, event: StreamReset) -> None:
        call = self.calls.pop(event.stream_id, None)
        if call is not None:
            running = not call.finished
            call.reset()
            self._wake(self._window_waiters)
            if running and event.remote and not self._resets.take(self._loop.time()):
                self._calm(b"too_many_resets")

    def _on_window(self, _: WindowUpdated | RemoteSettingsChanged) -> None:
        if self._window_waiters:  # (a client's every answer brings two, mostly unawaited)
            self._wake(self._window_waiters)

    def _on_settings(self, event: RemoteSettingsChanged) -> None:
        self._wake(self._window_waiters)
        if not self._settings.take(self._loop.time()):
            self._calm(b"too_many_settings")

    def _on_ping(self, _: PingReceived) -> None:
        if not self._pings.ping(self._loop.time(), len(self.calls)):
            self._calm(b"too_many_pings")

    def _calm(self, reason: bytes) -> None:
        # Rule 5: GOAWAY(ENHANCE_YOUR_CALM) with the reason as debug data, then close.
        self.h2.close_connection(ErrorCode.ENHANCE_YOUR_CALM, reason)
        self._fail()

    def _refuse(self, call: ServerCall, code: Any, details: str) -> None:
        # End the call with this status (``finish`` tells the client to stop sending).
        call.end_with(code, details)

    # -- keepalive (gRPC's server keepalive: interval and timeout) ---------------------------------

    def _arm_keepalive(self) -> None:
        interval = self.host.keepalive_interval
        if interval > 0 and not self._closed:
            self._keepalive = self._loop.call_later(interval, self._keepalive_due)

    def _keepalive_due(self) -> None:
        if self._active:
            self._active = False
            self._arm_keepalive()
            return
        # Nothing heard for a whole interval: ping, and give up after the timeout
        # unless something (the ACK, or anything else) arrives.
        if not self._closed:
            self.h2.ping(_KEEPALIVE_PING)
            self._kick()
        self._keepalive = self._loop.call_later(self.host.keepalive_timeout, self._keepalive_check)

    def _keepalive_check(self) -> None:
        if self._active:
            self._active = False
            self._arm_keepalive()
        else:
            self.abort()

    # -- what the calls use (call.CallStream) ---------------------------------------------------

    def send_headers(self, stream_id: int, block: bytes) -> None:
        if not self._closed:
            self.h2.send_headers(stream_id, block)
            self._pings.forgive = True
            self._kick()

    def send_data(self, stream_id: int, data: bytes | memoryview) -> int:
        if self._closed:
            return 0
        h2 = self.h2
        n = min(len(data), h2.local_flow_control_window(stream_id))
        if n > 0:
            h2.send_data(stream_id, data if n == len(data) else data[:n])
            self._pings.forgive = True
            self._kick()
        return n

    def consumed(self, stream_id: int, size: int) -> None:
        if not self._closed:
            self.h2.acknowledge_received_data(size, stream_id)
            if self.h2.has_data_to_send:
                self._kick()

    def call_done(self, call: ServerCall) -> None:
        self._running -= 1
        if self._held and self._running == self.limits.max_concurrent_streams - 1:
            self._loop.call_soon(self._read_more)

    def answer(self, call: ServerCall, message: bytes) -> bool:
        """A unary call's whole answer (headers, one framed message, OK trailers), sent
        now if nothing holds it back: the transport takes more and the windows allow
        the message. False: nothing was sent (the call sends the slow way)."""
        if self._closed or self.paused:
            return False
        if not self.h2.send_answer(call.stream_id, RESPONSE_HEADERS, message, OK_TRAILERS):
            return False
        self._pings.forgive = True
        self._ended(call)
        return True

    def finish(self, call: ServerCall, trailers: bytes) -> None:
        if not self._closed:
            self.h2.send_headers(call.stream_id, trailers, end_stream=True)
        self._ended(call)

    def _ended(self, call: ServerCall) -> None:
        # The call's END_STREAM is queued: send it, forget the call.
        if not self._closed:
            h2, sid = self.h2, call.stream_id
            # The answer is complete: a client still sending is told to stop, as grpc-go
            # does (RST_STREAM NO_ERROR, RFC 9113 8.1), and its late DATA is dropped.
            if sid in h2.streams and h2.stream_state(sid) is _HALF_CLOSED_LOCAL:
                h2.reset_stream(sid, ErrorCode.NO_ERROR)
            if self._running == 1 and not self._starting:  # no other answer to wait for
                self._flush()
            else:
                self._kick()
        self.calls.pop(call.stream_id, None)
        if self._going_away and not self.calls:
            self.close()

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

    # -- writing ----------------------------------------------------------------------------------

    def _kick(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush_scheduled)

    def _flush_scheduled(self) -> None:
        self._flush_handle = None
        self._write_queued()

    def _flush(self) -> None:
        """Write what the core queued now; a flush ``_kick`` scheduled is dropped."""
        handle = self._flush_handle
        if handle is not None:
            self._flush_handle = None
            handle.cancel()
        self._write_queued()

    def _write_queued(self) -> None:
        if not self._closed and self.transport is not None:
            pieces = self.h2.pieces_to_send()
            if len(pieces) == 1:
                self.transport.write(pieces[0])
            elif pieces:
                self.transport.writelines(pieces)

    # -- ending -----------------------------------------------------------------------------------

    def goaway(self) -> None:
        """Refuse new streams; close once the open calls have ended."""
        if self._going_away or self._closed:
            return
        self._going_away = True
        self.h2.close_connection(ErrorCode.NO_ERROR)
        self._kick()
        if not self.calls:
            self.close()

    def close(self) -> None:
        """Write what is queued, then close."""
        if self.transport is not None and not self._closed:
            self._flush()
            self.transport.close()

    def abort(self) -> None:
        """Close at once; every call is cancelled."""
        if self.transport is not None:
            self.transport.abort()
        self.connection_lost(None)

    def _fail(self) -> None:
        self._failed = self._going_away = True
        for call in list(self.calls.values()):
            call.reset()
        self.calls.clear()
        self.close()  # writes the core's GOAWAY first


# The other events' handlers, as plain functions (bound methods kept on the connection
# would make it a reference cycle, freed only by the gc).
_ON_EVENT: Final[dict[type[Any], Callable[[GrpcConnection, Any], None]]] = {
    TrailersReceived: GrpcConnection._on_trailers,
    StreamReset: GrpcConnection._on_reset,
    WindowUpdated: GrpcConnection._on_window,
    RemoteSettingsChanged: GrpcConnection._on_settings,
    PingReceived: GrpcConnection._on_ping,
}
