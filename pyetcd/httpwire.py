"""HTTP/1.1 for both ports and the peer client: h11 (sans-I/O) with a thin asyncio driver.

h11 parses and frames every byte; this module only moves bytes between it and the
streams, so the client port (/health, /metrics, the JSON gateway), the peer port
(/members, /leases, ...) and the peer client (forwarding, joining) speak one HTTP/1.1.
An endpoint module only says what to answer: a handler ``Request -> Response``.

Rules the server driver (:func:`serve`) keeps:

1. One request is read whole, body included, before its handler runs; the answer is
   written before the next request is read (no pipelining in parallel).
2. Malformed input (as h11 judges it, plus a request target that is not a path or an
   absolute URL) is answered with h11's status hint (400, 431 for an over-long head
   or chunk line, 501 for an unknown transfer coding), 505 for an HTTP version other
   than 1.x, 413 for a body over ``max_body_bytes``; then the connection is closed
   (after draining what the client still sends, so that the answer is not lost to a
   TCP reset). It is logged as one debug line, never as a traceback.
3. A head or chunk-size line is never buffered beyond ``max_head_bytes``: h11 refuses an
   incomplete event over ``max_head_bytes - _feed_step``, and is fed at most
   ``_feed_step`` bytes at a time, so a complete one cannot exceed the limit either.
4. A client that closes mid-request gets no answer (there is no one to read it).
   ``read_timeout`` bounds the wait for one whole request: a request begun and not
   finished in time gets 408; an idle keep-alive connection is closed quietly.
5. A handler that raises gets a 500 and one warning line; the connection lives on.
6. A :class:`Response` with a ``stream`` is sent without ``Content-Length``: h11 frames
   it chunked for an HTTP/1.1 client (close-delimited for HTTP/1.0), one chunk per
   non-empty item, each written and drained before the next is asked for (a slow
   reader slows the producer; nothing piles up here). A stream that raises is logged
   once and the connection closed mid-body; an async generator is closed however the
   answer ends.
7. While a request is served, the connection is watched for the client leaving (end of
   input or a reset): ``Request.gone`` completes then, and a streamed answer is
   abandoned, as Go cancels a request's context. Bytes that arrive meanwhile are the
   next request: they are kept, and nothing more is read until it is served.

:func:`request` is the matching client: one request per connection, ``Connection: close``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl as _ssl
import time
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from http import HTTPStatus
from typing import Final
from urllib.parse import parse_qs, urlsplit

import h11

from pyetcd.logutil import Logger

__all__ = [
    "JSON",
    "TEXT",
    "HTTPWireError",
    "Handler",
    "Request",
    "Response",
    "ServeOptions",
    "request",
    "serve",
]

TEXT: Final = "text/plain; charset=utf-8"
JSON: Final = "application/json"

# Go's status texts where Python's differ or are missing (etcd's clients see Go's).
_REASONS: Final = {413: b"Request Entity Too Large"}
_LOG_TEXT_MAX: Final = 200  # h11 quotes the offending bytes; a log line stays short
_CLIENT_READ: Final = 64 * 1024
_LINGER_SECONDS: Final = 1.0  # after a rejected request, how long unread input is drained
_LINGER_BYTES: Final = 4 * 1024 * 1024


class HTTPWireError(Exception):
    """An HTTP message that is malformed or over a limit.

    ``status`` is what a server answers it with (502 for a bad answer to the client).
    """

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


@dataclass(frozen=True, slots=True)
class Request:
    """One request, read whole."""

    method: str
    path: str  # without the query string, not percent-decoded
    query: dict[str, list[str]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased names, first value
    body: bytes = b""
    # completes when the client leaves while this request is served (rule 7)
    gone: asyncio.Future[None] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Response:
    """One answer, as a handler makes it or :func:`request` receives it.

    A server answer carries ``Content-Type`` and ``headers`` (after the server's own);
    with ``stream`` it is sent chunked, each item one chunk, and ``body`` is ignored.
    A received answer has every header in ``headers`` with lower-cased names.
    """

    status: int
    body: bytes = b""
    content_type: str = TEXT
    headers: tuple[tuple[str, str], ...] = ()
    stream: AsyncIterable[bytes] | None = None

    @classmethod
    def json(cls, status: int, obj: object) -> Response:
        """A compact JSON body, as Go's encoder writes it."""
        return cls(status, json.dumps(obj, separators=(",", ":")).encode(), JSON)

    @property
    def text(self) -> str:
        """The body as text, without surrounding whitespace (Go's http.Error adds a newline)."""
        return self.body.decode(errors="replace").strip()

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None."""
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None


Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """Limits and fixed headers of one port's HTTP server (timeouts in seconds)."""

    max_head_bytes: int = 64 * 1024  # request line and headers; also a chunk-size line
    max_body_bytes: int = 1 << 20
    read_timeout: float | None = None  # one whole request, from when it is awaited
    write_timeout: float | None = None  # one whole answer
    keep_alive: bool = True  # False: every answer says Connection: close
    headers: tuple[tuple[str, str], ...] = ()  # added to every answer, errors included


# -- the server ----------------------------------------------------------------------------


class _Reject(Exception):
    """A request to answer with ``status`` and close the connection."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class _ClientGone(Exception):
    """The client closed the connection in the middle of a request."""


class _StreamFailed(Exception):
    """The producer of a streamed answer raised; the answer cannot be finished."""


def _feed_step(max_head_bytes: int) -> int:
    return max(1, max_head_bytes // 4)


class _DateCache:
    """The Date header value, formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def now(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._value = formatdate(second, usegmt=True).encode()
        return self._value


_DATE = _DateCache()


class _ServerConnection:
    """One accepted connection: h11's server state plus the streams it drives."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        options: ServeOptions,
        first: bytes,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.options = options
        self.step = _feed_step(options.max_head_bytes)
        self.h11 = h11.Connection(
            h11.SERVER, max_incomplete_event_size=max(1, options.max_head_bytes - self.step)
        )
        self.pending = first  # bytes read before the driver took over, not yet fed
        self.fixed = [(k.encode(), v.encode()) for k, v in options.headers]
        if not options.keep_alive:
            self.fixed.append((b"Connection", b"close"))

    @property
    def started(self) -> bool:
        """Whether any byte of the next request arrived."""
        return (
            self.h11.their_state is not h11.IDLE
            or bool(self.pending)
            or bool(self.h11.trailing_data[0])
        )

    async def _feed(self) -> None:
        if self.pending:
            data, self.pending = self.pending[: self.step], self.pending[self.step :]
        else:
            data = await self.reader.read(self.step)
        self.h11.receive_data(data)

    async def read_request(self) -> Request | None:
        """The next whole request; None once the client closed between requests.

        Raises:
            _Reject: malformed or over a limit. _ClientGone: closed mid-request.
        """
        head: h11.Request | None = None
        body: list[bytes] = []
        size = 0
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as err:
                if self.h11.trailing_data[1]:
                    raise _ClientGone() from None
                raise _Reject(err.error_status_hint, str(err)) from None
            if event is h11.NEED_DATA:
                await self._feed()
            elif isinstance(event, h11.Request):
                head = event
                self._check_head(event)
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > self.options.max_body_bytes:
                    raise _Reject(413, "request body too large")
                body.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                return _request(head, b"".join(body))
            elif isinstance(event, h11.ConnectionClosed):
                return None
            else:  # PAUSED: cannot happen, each cycle is restarted after its answer
                raise _Reject(400, f"unexpected {event!r}")

    def _check_head(self, head: h11.Request) -> None:
        if head.http_version not in (b"1.1", b"1.0"):
            raise _Reject(505, "unsupported protocol version")
        target = head.target
        if not (
            target.startswith(b"/")
            or target.startswith((b"http://", b"https://"))
            or (target == b"*" and head.method == b"OPTIONS")
        ):
            raise _Reject(400, "malformed request target")
        for name, value in head.headers:
            # h11 checked the syntax of the value
            if name == b"content-length" and int(value) > self.options.max_body_bytes:
                raise _Reject(413, "request body too large")

    async def watch_gone(self, gone: asyncio.Future[None]) -> None:
        """Complete ``gone`` when the client leaves before sending anything more."""
        if self.pending or self.h11.trailing_data[0]:
            return  # it is already sending its next request
        try:
            data = await self.reader.read(self.step)
        except (ConnectionError, OSError):
            data = b""
        if data:
            self.pending += data  # the next request, fed to h11 once this one is answered
        elif not gone.done():
            gone.set_result(None)

    async def send(
        self, resp: Response, head_only: bool, gone: asyncio.Future[None] | None = None
    ) -> None:
        """Write ``resp`` as the answer to the current request."""
        headers = [
            (b"Date", _DATE.now()),
            *self.fixed,
            (b"Content-Type", resp.content_type.encode("latin-1")),
            *((k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers),
        ]
        if resp.stream is None:
            headers.append((b"Content-Length", str(len(resp.body)).encode()))
        reason = _REASONS.get(resp.status) or _phrase(resp.status)
        out = self.h11.send(h11.Response(status_code=resp.status, headers=headers, reason=reason))
        if resp.stream is not None and not head_only:
            await self._write(out)
            await self._send_stream(resp.stream, gone)
            return
        if resp.body and not head_only:
            out = (out or b"") + (self.h11.send(h11.Data(data=resp.body)) or b"")
        await self._write((out or b"") + (self.h11.send(h11.EndOfMessage()) or b""))

    async def _send_stream(
        self, stream: AsyncIterable[bytes], gone: asyncio.Future[None] | None
    ) -> None:
        chunks = aiter(stream)
        try:
            while True:
                try:
                    chunk = await _unless_gone(anext(chunks), gone)
                except StopAsyncIteration:
                    break
                except _ClientGone:
                    raise
                except Exception as exc:  # the producer failed: the body stays unfinished
                    raise _StreamFailed(repr(exc)) from None
                if chunk:  # an empty chunk would end the body
                    await self._write(self.h11.send(h11.Data(data=chunk)))
            await self._write(self.h11.send(h11.EndOfMessage()))
        finally:
            if isinstance(chunks, AsyncGenerator):  # run its cleanup even if the client left
                await chunks.aclose()

    async def _write(self, data: bytes | None) -> None:
        if data:
            self.writer.write(data)
        if self.options.write_timeout is None:  # the client port: no timeout to arm
            await self.writer.drain()
            return
        async with asyncio.timeout(self.options.write_timeout):
            await self.writer.drain()

    async def reject(self, status: int, text: str) -> None:
        """Answer a request that cannot be served, in Go's words, if h11 still may."""
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        self.fixed.append((b"Connection", b"close"))
        phrase = (_REASONS.get(status) or _phrase(status)).decode()
        body = f"{status} {phrase}: {_short(text)}\n".encode()
        await self.send(Response(status, body), head_only=False)
        await self._linger()

    async def _linger(self) -> None:
        # Closing with unread input makes the kernel send RST, and a client still sending
        # (a body over the limit) may lose the answer with it. So say we are done (FIN),
        # then read and drop what still comes, within bounds, as Go's server does.
        if self.writer.can_write_eof():  # not over TLS
            self.writer.write_eof()
        dropped = 0
        async with asyncio.timeout(_LINGER_SECONDS):
            while dropped < _LINGER_BYTES and (data := await self.reader.read(_CLIENT_READ)):
                dropped += len(data)

    def next_cycle(self) -> bool:
        """Get ready for the next request on this connection; False to close it."""
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
            return True
        return False


async def _unless_gone(step: Awaitable[bytes], gone: asyncio.Future[None] | None) -> bytes:
    """``await step``, unless the client leaves first (then _ClientGone)."""
    if gone is None:
        return await step
    task = asyncio.ensure_future(step)
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task  # the producer has stopped before it is closed
    if task.cancelled():
        raise _ClientGone()
    return task.result()


def _phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Unknown"


def _short(text: str) -> str:
    return text if len(text) <= _LOG_TEXT_MAX else text[:_LOG_TEXT_MAX] + "..."


def _request(head: h11.Request, body: bytes) -> Request:
    target = head.target.decode("latin-1")
    url = urlsplit(target)
    headers: dict[str, str] = {}
    for name, value in head.headers:
        headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    query = parse_qs(url.query, keep_blank_values=True) if url.query else {}
    return Request(head.method.decode("latin-1"), url.path, query, headers, body)


async def serve(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    handler: Handler,
    options: ServeOptions,
    *,
    first: bytes = b"",
    log: Logger | None = None,
) -> None:
    """Serve HTTP/1.1 requests on one connection until it ends, then close it.

    Args:
        reader, writer: the connection (plain or TLS).
        handler: answers one request; an exception it raises is answered with 500.
        options: the port's limits, timeouts and fixed headers.
        first: bytes of the first request already read off the connection.
        log: where the one line about a rejected request or a failed handler goes.

    Never raises, but for cancellation.
    """
    conn = _ServerConnection(reader, writer, options, first)
    remote = writer.get_extra_info("peername")
    try:
        while True:
            try:
                if options.read_timeout is None:
                    req = await conn.read_request()
                else:
                    async with asyncio.timeout(options.read_timeout):
                        req = await conn.read_request()
            except _Reject as err:
                if log is not None:
                    log.debug(
                        "rejected a malformed HTTP request",
                        {
                            "remote-addr": str(remote),
                            "status": err.status,
                            "error": _short(err.text),
                        },
                    )
                await conn.reject(err.status, err.text)
                return
            except TimeoutError:
                if conn.started:
                    await conn.reject(408, "request not received in time")
                return
            if req is None:
                return
            gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            watcher = asyncio.ensure_future(conn.watch_gone(gone))
            try:
                if not await _answer(conn, replace(req, gone=gone), handler, log):
                    return
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            if not conn.next_cycle():
                return
    except (_ClientGone, ConnectionError, TimeoutError, OSError, h11.LocalProtocolError):
        return  # no one left to answer, or the answer cannot be framed any more
    finally:
        writer.close()


async def _answer(
    conn: _ServerConnection, req: Request, handler: Handler, log: Logger | None
) -> bool:
    """Serve one request; False if the connection must close."""
    try:
        resp = await handler(req)
    except Exception as exc:  # a bug in one endpoint must not end the connection
        if log is not None:
            log.warn(
                "failed to serve HTTP request",
                {"method": req.method, "path": req.path, "error": repr(exc)},
            )
        resp = Response(500, b"500 Internal Server Error\n")
    try:
        await conn.send(resp, head_only=req.method == "HEAD", gone=req.gone)
    except _StreamFailed as exc:
        if log is not None:
            log.warn(
                "failed to stream HTTP answer",
                {"method": req.method, "path": req.path, "error": str(exc)},
            )
        return False  # closing mid-body tells the client the answer is incomplete
    return True


# -- the client ----------------------------------------------------------------------------


def _address(url: str) -> tuple[str, int, str, str, bool]:
    """(host, port, Host header, request target, https) of an http(s) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL with a host: {url!r}")
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return parts.hostname, port, parts.netloc.rpartition("@")[2], target, https


async def request(
    url: str,
    method: str = "GET",
    body: bytes = b"",
    *,
    ssl: _ssl.SSLContext | None = None,
    timeout: float,
    content_type: str | None = None,
    max_body_bytes: int = 4 * 1024 * 1024,
    headers: Sequence[tuple[str, str]] = (),
) -> Response:
    """Send one request to ``url`` on a new connection and return the whole answer.

    Args:
        url: ``http://host:port/path?query`` or ``https://...``.
        ssl: the TLS settings for an ``https`` URL (a member's peer client TLS).
        timeout: for everything: connecting, sending, receiving.
        content_type: the request's Content-Type, if any.
        max_body_bytes: a longer answer is an error.
        headers: more request headers (``Authorization``, ...).

    Raises:
        ValueError: not an http(s) URL, or https without ``ssl``.
        OSError: cannot connect, or TLS failed. TimeoutError: not done in ``timeout``.
        HTTPWireError: the answer is malformed, too large, or cut short.
    """
    host, port, netloc, target, https = _address(url)
    if https and ssl is None:
        raise ValueError(f"{url} needs TLS settings")
    fields = [("Host", netloc), ("Connection", "close"), ("Content-Length", str(len(body)))]
    if content_type is not None:
        fields.append(("Content-Type", content_type))
    fields.extend(headers)
    conn = h11.Connection(h11.CLIENT)
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(
            host, port, ssl=ssl if https else None, server_hostname=host if https else None
        )
        try:
            out = conn.send(h11.Request(method=method, target=target, headers=fields)) or b""
            if body:
                out += conn.send(h11.Data(data=body)) or b""
            writer.write(out + (conn.send(h11.EndOfMessage()) or b""))
            await writer.drain()
            return await _read_response(conn, reader, max_body_bytes)
        except h11.ProtocolError as err:
            raise HTTPWireError(502, _short(str(err))) from None
        finally:
            writer.close()


async def _read_response(
    conn: h11.Connection, reader: asyncio.StreamReader, max_body_bytes: int
) -> Response:
    head: h11.Response | None = None
    body: list[bytes] = []
    size = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(_CLIENT_READ))
        elif isinstance(event, h11.Response):
            head = event
        elif isinstance(event, h11.Data):
            size += len(event.data)
            if size > max_body_bytes:
                raise HTTPWireError(502, "answer body too large")
            body.append(event.data)
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in head.headers)
            ctype = next((v for k, v in headers if k == "content-type"), "")
            return Response(head.status_code, b"".join(body), ctype, headers)
        elif isinstance(event, h11.ConnectionClosed):
            raise HTTPWireError(502, "connection closed before an answer")
        # InformationalResponse (1xx): wait for the final answer
