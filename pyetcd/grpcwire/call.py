"""One gRPC call on the client port: its HTTP/2 stream and the servicer context.

A ``ServerCall`` is what a handler sees as ``context`` (the part of grpc.aio's
``ServicerContext`` servicers use: ``abort``, ``invocation_metadata``, ``write``,
``peer``, ``auth_context``) and what the connection feeds with the stream's request
bytes. ``run`` is the call's task: decode the request(s), run the handler, send the
answer, end the stream with grpc-status trailers.

Rules the call keeps:

1. Nothing is sent before the handler's first message or its end: an error before
   that is a trailers-only answer, as gRPC servers give.
2. Every DATA byte respects both flow-control windows (the stream's and the
   connection's) and the peer's frame size; a write waits for a window, not the loop.
3. The trailers go out once, after the last message; a call whose stream the client
   reset or whose connection closed sends nothing more.
4. Request bytes are handed back to the client's windows (``CallStream.consumed``) only
   when the handler takes what they carry: at once while it waits for a message, when
   it takes the last message queued otherwise, and all that is left when the call ends.
   A unary call reads one message: what follows it is counted, not kept, and stays
   uncredited until the call ends, so a handler that blocks (a Lock waiting for its
   lock) holds at most one window of the client's data, and no memory.
5. The call's task ends normally even when cancelled: a task that ends cancelled keeps
   its CancelledError, whose traceback holds the frames that hold this call and so its
   task, a reference cycle per cancelled call that only the (rarely run) gc frees.
6. A call of a known method is counted in its ``MethodStats`` as go-grpc-prometheus
   counts it: started when its task starts (and by the caller's client-api-version,
   as etcd's interceptor counts it), each message taken by the handler and
   each message sent, and handled once, with the status it ended with (CANCELLED when
   the client reset it), when its task ends.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any, Final, NamedTuple, NoReturn, Protocol

from .frames import COPY_MAX, OK_TRAILERS, RESPONSE_HEADERS, grpc_status_block
from .stats import HandlingObserver, MethodStats
from .status import StatusCode, code_number

__all__ = [
    "CallAborted",
    "CallHost",
    "CallStream",
    "MethodHandler",
    "Request",
    "ServerCall",
    "request_of",
]

#: A ``service.Handler``, or grpc's ``RpcMethodHandler`` (read by field name).
MethodHandler = Any

_MESSAGE_PREFIX: Final = 5  # compressed flag + 32-bit length
_END: Final = object()
SC = StatusCode
# Headers that are HTTP/2 or gRPC framing, not the caller's metadata.
_NOT_METADATA: Final = frozenset(
    ("content-type", "te", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding")
)

Metadata = tuple[tuple[str, str | bytes], ...]


def _b64(value: str) -> bytes:
    return base64.b64decode(value + "=" * (-len(value) % 4))


class Request(NamedTuple):
    """What a request's header block says, as a call needs it."""

    path: str
    encoding: str  # grpc-encoding
    metadata: Metadata  # the caller's: ``-bin`` values base64-decoded
    client_api_version: str  # etcd's clientv3 sends it; "unknown" otherwise


def request_of(headers: list[tuple[str, str]]) -> Request:
    """The method path, grpc-encoding, caller metadata and client-api-version of a
    request's header block (``-bin`` values base64-decoded; undecodable ones dropped)."""
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
                continue
    md = tuple(metadata)
    return Request(path, encoding, md, _client_api_version(md))


def _client_api_version(metadata: Metadata) -> str:
    """The caller's ``client-api-version`` (etcd's clientv3 sends it), else "unknown"."""
    for name, value in metadata:
        if name == "client-api-version" and isinstance(value, str):
            return value
    return "unknown"


class CallHost(Protocol):
    """What a call needs of the server it runs in."""

    @property
    def max_receive(self) -> int:
        """The largest request message, inflated, in bytes."""
        ...

    @property
    def services(self) -> Collection[str]:
        """The services with registered methods (for UNIMPLEMENTED's details)."""
        ...

    @property
    def handling(self) -> HandlingObserver | None:
        """Told each call's duration, when the server keeps them."""
        ...

    def log_handler_error(self, method: str, err: BaseException) -> None: ...


class CallStream(Protocol):
    """What a call needs of the connection that carries its stream."""

    @property
    def peer(self) -> str: ...

    @property
    def auth_context(self) -> dict[str, list[bytes]]: ...

    @property
    def paused(self) -> bool:
        """The transport's buffer is above its high-water mark."""
        ...

    def send_headers(self, stream_id: int, block: bytes) -> None: ...

    def send_data(self, stream_id: int, data: bytes | memoryview) -> int:
        """Send as much of ``data`` as the windows allow now; returns how much."""
        ...

    def consumed(self, stream_id: int, size: int) -> None:
        """``size`` request bytes were consumed: open the client's windows again."""
        ...

    def call_done(self, call: ServerCall) -> None:
        """The call's task is over (its handler returned, failed or was cancelled)."""
        ...

    def finish(self, call: ServerCall, trailers: bytes) -> None:
        """Send the trailers (END_STREAM) and forget the call."""
        ...

    def answer(self, call: ServerCall, message: bytes) -> bool:
        """Send the response headers, ``message`` (framed) and OK trailers, and forget
        the call, if all can go now; False (nothing sent) otherwise."""
        ...

    async def wait_window(self, call: ServerCall) -> None: ...

    async def wait_writable(self) -> None: ...


class CallAborted(Exception):
    """Raised by ``ServerCall.abort``: the call ends with this status."""

    def __init__(self, code: StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class ServerCall:
    """One stream's call; also the handler's servicer context."""

    __slots__ = (
        "_api_version",
        "_arrived",
        "_code",
        "_details",
        "_headers_sent",
        "_held",
        "_partial",
        "_reading",
        "_requests",
        "_started",
        "_status",
        "encoding",
        "finished",
        "handler",
        "host",
        "metadata",
        "method",
        "remote_closed",
        "stats",
        "stream",
        "stream_id",
        "task",
    )

    def __init__(
        self,
        stream: CallStream,
        host: CallHost,
        stream_id: int,
        handler: MethodHandler | None,
        request: Request,
        stats: MethodStats | None = None,
    ) -> None:
        self.stream = stream
        self.host = host
        self.stream_id = stream_id
        self.handler: Any = handler  # None: no such method (answered UNIMPLEMENTED)
        self.method, self.encoding, self.metadata, self._api_version = request
        self.task: asyncio.Task[None] | None = None
        # Request messages decoded so far (bytes), ended by _END, and their waiter.
        self._requests: deque[object] = deque()
        self._arrived: asyncio.Future[None] | None = None
        self._partial = bytearray()
        # Request bytes received and not yet handed back to the client's windows; and
        # whether the handler may read more messages (a unary call reads one).
        self._held = 0
        self._reading = True
        self._started = False
        self.remote_closed = False
        self.finished = False  # trailers sent, or the stream reset
        self._headers_sent = False
        # set_code/set_details: the status a handler chose (grpc.aio's rule: it wins
        # over OK, and over UNKNOWN when the handler then raises).
        self._code: StatusCode | None = None
        self._details = ""
        # Where this call is counted (None: unknown method), and the status it ended with.
        self.stats = stats
        self._status: int = SC.CANCELLED

    # -- the servicer context (what servicers use) ----------------------------------------------

    async def abort(self, code: StatusCode, details: str = "", *_: Any) -> NoReturn:
        raise CallAborted(code, details)

    def invocation_metadata(self) -> Metadata:
        return self.metadata

    def peer(self) -> str:
        return self.stream.peer

    def auth_context(self) -> dict[str, list[bytes]]:
        return self.stream.auth_context

    def set_code(self, code: StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    async def write(self, message: Any) -> None:
        """Send one response message of a streaming call."""
        await self._send_message(self.handler.response_serializer(message))

    # -- request bytes, from the connection ------------------------------------------------------

    def feed(self, data: bytes, size: int) -> int:
        """Take DATA payload, ``size`` flow-controlled bytes with its padding; returns how
        many of them may go back to the client's windows now (rule 4).

        Raises:
            CallAborted: a message breaks the size limit (RESOURCE_EXHAUSTED) or cannot
                be inflated (INTERNAL); the call must end with that status.
        """
        n = len(data)
        credit = size - n  # padding: nobody reads it
        self._held += n
        if self._reading and n:
            requests = self._requests
            if (
                not self._partial
                and data[0] == 0
                and int.from_bytes(data[1:5], "big") == n - 5
                and n - 5 <= self.host.max_receive
            ):  # _parse's common case, inlined: one whole uncompressed message
                requests.append(data[5:])
                waiter = self._arrived
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
            else:
                self._parse(data)
            if not requests or requests[0] is _END:  # the handler reads what came
                credit += self._held
                self._held = 0
        return credit

    def _parse(self, data: bytes) -> None:
        buf = self._partial
        limit = self.host.max_receive
        if not buf and data[0] == 0 and int.from_bytes(data[1:5], "big") == len(data) - 5:
            # The common case: one whole uncompressed message in one DATA frame.
            if len(data) - 5 > limit:
                raise CallAborted(
                    SC.RESOURCE_EXHAUSTED,
                    f"grpc: received message larger than max ({len(data) - 5} vs. {limit})",
                )
            self._push(data[5:])
            return
        buf += data
        while len(buf) >= _MESSAGE_PREFIX:
            length = int.from_bytes(buf[1:5], "big")
            if length > limit:
                raise CallAborted(
                    SC.RESOURCE_EXHAUSTED,
                    f"grpc: received message larger than max ({length} vs. {limit})",
                )
            end = _MESSAGE_PREFIX + length
            if len(buf) < end:
                break
            compressed = buf[0]
            with memoryview(buf) as view:  # one copy of the message, not two
                payload = bytes(view[_MESSAGE_PREFIX:end])
            del buf[:end]
            if compressed:
                payload = self._inflate(payload, limit)
            self._push(payload)

    def _inflate(self, payload: bytes, limit: int) -> bytes:
        if self.encoding != "gzip":
            raise CallAborted(
                SC.INTERNAL, f"grpc: compressed flag set with encoding {self.encoding!r}"
            )
        try:
            payload = _gunzip(payload, limit)
        except (zlib.error, ValueError) as err:
            raise CallAborted(
                SC.INTERNAL, f"grpc: failed to decompress the received message: {err}"
            ) from err
        if len(payload) > limit:
            raise CallAborted(
                SC.RESOURCE_EXHAUSTED,
                "grpc: received message after decompression larger than max "
                f"({len(payload)} vs. {limit})",
            )
        return payload

    def end_of_requests(self) -> None:
        self.remote_closed = True
        self._requests.append(_END)  # self._push(_END), inlined: every call comes here
        waiter = self._arrived
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _push(self, item: object) -> None:
        self._requests.append(item)
        waiter = self._arrived
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _next_request(self) -> bytes | None:
        while not self._requests:
            self._arrived = asyncio.get_running_loop().create_future()
            await self._arrived
        return self._take()

    def _take(self) -> bytes | None:
        """The next request message (None at the end), from a queue not empty."""
        requests = self._requests
        item = requests.popleft()
        if item is _END:
            requests.appendleft(_END)  # every later read sees the end too
            return None
        if self._held and (not requests or requests[0] is _END):
            self.stream.consumed(self.stream_id, self._held)
            self._held = 0
        assert isinstance(item, bytes)
        stats = self.stats
        if stats is not None:
            stats.msg_received += 1
            stats.bytes_received += len(item)
        return item

    async def _request_iterator(self) -> AsyncIterator[Any]:
        decode = self.handler.request_deserializer
        while (raw := await self._next_request()) is not None:
            yield self._decode(decode, raw)

    def _decode(self, decode: Callable[[bytes], Any], raw: bytes) -> Any:
        try:
            return decode(raw)
        except Exception as err:
            raise CallAborted(SC.INTERNAL, f"grpc: error unmarshalling request: {err}") from err

    # -- the call's task ----------------------------------------------------------------------

    async def run(self) -> None:
        self._started = True
        stats = self.stats
        t0 = 0.0
        try:
            if self.finished:  # reset before it started: never cancelled (rule 5)
                stats = None  # nor counted (rule 6)
                return
            if stats is not None:
                stats.started += 1
                version = self._api_version
                versions = stats.client_api_versions
                versions[version] = versions.get(version, 0) + 1
                if self.host.handling is not None:
                    t0 = time.perf_counter()
            await self._invoke()
        except CallAborted as err:
            self._finish(err.code, err.details)
        except asyncio.CancelledError:  # not raised on: rule 5
            self._finish(SC.CANCELLED, "")
        except Exception as err:  # a bug in a handler ends its call, never the server
            if self._code is not None and code_number(self._code) != SC.OK:
                self._finish(self._code, self._details)
            else:
                self.host.log_handler_error(self.method, err)
                self._finish(SC.UNKNOWN, f"Unexpected {type(err)}: {err}")
        else:
            self._finish(self._code or SC.OK, self._details)
        finally:
            if stats is not None:
                stats.handled[self._status] += 1
                handling = self.host.handling
                if handling is not None:
                    handling.observe_handling(stats, time.perf_counter() - t0)
            self._release()

    def drop(self) -> None:
        """End a call reset before its task started: nothing ran, nothing is counted."""
        self._started = True
        self._release()

    def _release(self) -> None:
        self.task = None
        self._reading = False
        self._requests.clear()
        if self._held:  # what the handler never took: the connection's window again
            self.stream.consumed(self.stream_id, self._held)
            self._held = 0
        self.stream.call_done(self)

    async def _invoke(self) -> None:
        h = self.handler
        if h is None:
            service, _, method = self.method.lstrip("/").partition("/")
            if service in self.host.services:
                raise CallAborted(
                    SC.UNIMPLEMENTED, f"unknown method {method} for service {service}"
                )
            raise CallAborted(SC.UNIMPLEMENTED, f"unknown service {service}")
        if h.request_streaming:
            request: Any = self._request_iterator()
            fn = h.stream_stream if h.response_streaming else h.stream_unary
        else:
            # A unary request has mostly arrived whole with its HEADERS: taken at once.
            raw = self._take() if self._requests else await self._next_request()
            self._reading = False
            if raw is None:
                raise CallAborted(SC.INTERNAL, "grpc: no request message on a unary call")
            request = self._decode(h.request_deserializer, raw)
            fn = h.unary_stream if h.response_streaming else h.unary_unary
        result = fn(request, self)
        if h.response_streaming:
            if inspect.isasyncgen(result):
                async for message in result:
                    await self.write(message)
            elif inspect.isawaitable(result):
                await result
        else:
            response = await result
            payload = h.response_serializer(response)
            if self._code is None and len(payload) < COPY_MAX and self._answer(payload):
                return
            await self._send_message(payload)

    def _answer(self, payload: bytes) -> bool:
        # A unary answer whole, in one go (rule 3's trailers included): what
        # _send_message then _finish would send, without their steps.
        if self.finished or self._headers_sent:
            return False
        if not self.stream.answer(self, b"\x00" + len(payload).to_bytes(4, "big") + payload):
            return False
        self._headers_sent = self.finished = True
        self._status = SC.OK
        stats = self.stats
        if stats is not None:
            stats.msg_sent += 1
            stats.bytes_sent += len(payload)
        return True

    # -- sending -------------------------------------------------------------------------------

    async def _send_message(self, payload: bytes) -> None:
        if self.finished:
            raise asyncio.CancelledError()
        stream, sid = self.stream, self.stream_id
        prefix = b"\x00" + len(payload).to_bytes(4, "big")
        if not self._headers_sent:
            self._headers_sent = True
            stream.send_headers(sid, RESPONSE_HEADERS)
        # A message under frames.COPY_MAX is joined to its prefix (one frame, one copy).
        # A large message goes as its 5-byte prefix, then views of the payload: no copy
        # of it here nor when a window lets only part of it through (the peer reads
        # one byte stream either way; DATA frame boundaries carry no meaning).
        pieces: tuple[bytes | memoryview, ...] = (
            (prefix + payload,) if len(payload) < COPY_MAX else (prefix, memoryview(payload))
        )
        for data in pieces:
            while True:
                n = stream.send_data(sid, data)
                if n == len(data):
                    break
                data = data[n:]
                await stream.wait_window(self)
                if self.finished:
                    raise asyncio.CancelledError()
        stats = self.stats
        if stats is not None:
            stats.msg_sent += 1
            stats.bytes_sent += len(payload)
        if stream.paused:
            await stream.wait_writable()

    def _finish(self, code: StatusCode, details: str) -> None:
        if self.finished:
            return
        self.finished = True
        # A servicer written for grpc.aio may hand in a grpc.StatusCode: its number.
        self._status = number = code_number(code)
        if number == SC.OK and self._headers_sent:
            block = OK_TRAILERS
        else:
            block = grpc_status_block(number, details, not self._headers_sent)
        self.stream.finish(self, block)

    def end_with(self, code: StatusCode, details: str) -> None:
        """End the call now with this status (the request broke a limit)."""
        self._finish(code, details)
        self.reset()

    def reset(self) -> None:
        """The client reset the stream, or the connection is gone: stop at once."""
        self.finished = True
        task = self.task
        if task is not None and self._started and not task.done():
            task.cancel()
        waiter = self._arrived
        if waiter is not None and not waiter.done():
            waiter.cancel()


def _gunzip(data: bytes, limit: int) -> bytes:
    """``data`` inflated, but never more than ``limit + 1`` bytes (a zip bomb stops
    there and the caller refuses it as too large)."""
    d = zlib.decompressobj(wbits=31)
    out = d.decompress(data, limit + 1)
    if not d.eof and len(out) <= limit:
        raise ValueError("truncated gzip stream")
    return out
