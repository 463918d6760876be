"""pyetcd/httpwire.py over real sockets: the server driver (keep-alive, HEAD, chunked
streaming answers, limits, malformed input, handler bugs) and the ``request`` client
(plain and TLS, malformed answers)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import h11
import pytest
from e2e.tls_certs import CertAuthority

from pyetcd.httpwire import HTTPWireError, Request, Response, ServeOptions, request, serve
from pyetcd.logutil import Level, Logger
from pyetcd.tlsutil import TLSInfo

HOST = "127.0.0.1"
T = 10.0


class Echo:
    """A handler that records requests and answers what the path asks for."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.closed_streams = 0

    async def _broken(self) -> AsyncIterator[bytes]:
        try:
            yield b"first"
            raise RuntimeError("producer died")
        finally:
            self.closed_streams += 1

    async def __call__(self, req: Request) -> Response:
        self.requests.append(req)
        if req.path == "/boom":
            raise RuntimeError("boom")
        if req.path == "/stream":
            return Response(200, content_type="application/json", stream=_chunks())
        if req.path == "/broken-stream":
            return Response(200, stream=self._broken())
        return Response(200, req.body or b"hello", headers=(("X-Path", req.path),))


async def _chunks() -> AsyncIterator[bytes]:
    for piece in (b'{"a":1}', b"", b'{"b":2}'):
        yield piece


Serve = Callable[..., Awaitable[tuple[str, int, io.StringIO]]]


@pytest.fixture
async def served() -> AsyncIterator[Serve]:
    """Start a server for a handler and options; yields (host, port, log sink)."""
    servers: list[asyncio.Server] = []

    async def start(
        handler: Callable[[Request], Awaitable[Response]],
        options: ServeOptions | None = None,
        **tls: object,
    ) -> tuple[str, int, io.StringIO]:
        sink = io.StringIO()
        log = Logger([sink], Level.DEBUG)
        opts = options or ServeOptions(max_head_bytes=8 * 1024, max_body_bytes=1024)

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await serve(reader, writer, handler, opts, log=log)

        srv = await asyncio.start_server(accept, HOST, 0, **tls)  # type: ignore[arg-type]
        servers.append(srv)
        return HOST, srv.sockets[0].getsockname()[1], sink

    yield start
    for srv in servers:
        srv.close()
        await srv.wait_closed()


async def _exchange(port: int, data: bytes) -> bytes:
    """Send ``data``, half-close, return everything until the server closes."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(data)
        writer.write_eof()
        async with asyncio.timeout(T):
            return await reader.read()
    finally:
        writer.close()


def _responses(data: bytes, method: bytes = b"GET") -> list[tuple[h11.Response, bytes]]:
    """Parse a server's bytes with h11's client side, one GET per answer."""
    client = h11.Connection(h11.CLIENT)
    client.receive_data(data)
    client.receive_data(b"")
    out: list[tuple[h11.Response, bytes]] = []
    while True:
        client.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        client.send(h11.EndOfMessage())
        head: h11.Response | None = None
        body = b""
        while True:
            try:
                event = client.next_event()
            except h11.RemoteProtocolError:  # closed where the next answer would start
                return out
            if isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                return out
        assert head is not None
        out.append((head, body))
        if client.our_state is not h11.DONE or client.their_state is not h11.DONE:
            return out
        client.start_next_cycle()


def _header(resp: h11.Response, name: bytes) -> bytes | None:
    return next((v for k, v in resp.headers if k == name), None)


# -- the server driver -------------------------------------------------------------------


async def test_keep_alive_serves_requests_in_order(served: Serve) -> None:
    echo = Echo()
    _, port, _ = await served(echo)
    out = await _exchange(
        port,
        b"GET /a?x=1&x=2&y HTTP/1.1\r\nHost: h\r\nAuthorization: t\r\n\r\n"
        b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz"
        b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nab\r\n1\r\nc\r\n0\r\n\r\n",
    )
    answers = _responses(out)
    assert [(r.status_code, body) for r, body in answers] == [
        (200, b"hello"),
        (200, b"xyz"),
        (200, b"abc"),
    ]
    first = answers[0][0]
    assert _header(first, b"x-path") == b"/a"
    assert _header(first, b"content-type") == b"text/plain; charset=utf-8"
    assert _header(first, b"date") is not None
    a = echo.requests[0]
    assert (a.method, a.path, a.query) == ("GET", "/a", {"x": ["1", "2"], "y": [""]})
    assert a.headers["authorization"] == "t"


async def test_fixed_headers_and_connection_close(served: Serve) -> None:
    opts = ServeOptions(keep_alive=False, headers=(("X-Etcd-Cluster-ID", "abc"),))
    _, port, _ = await served(Echo(), opts)
    out = await _exchange(
        port, b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    ((resp, body),) = _responses(out)  # the second request is never answered
    assert _header(resp, b"x-etcd-cluster-id") == b"abc"
    assert _header(resp, b"connection") == b"close"
    assert body == b"hello"


async def test_http_1_0_closes_unless_kept_alive(served: Serve) -> None:
    _, port, _ = await served(Echo())
    out = await _exchange(port, b"GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.0\r\n\r\n")
    assert out.count(b"HTTP/1.1 200 OK") == 1


async def test_head_has_the_length_but_no_body(served: Serve) -> None:
    _, port, _ = await served(Echo())
    out = await _exchange(port, b"HEAD /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert b"\r\nContent-Length: 5\r\n" in out
    assert out.endswith(b"\r\n\r\n")


async def test_a_stream_is_sent_chunked(served: Serve) -> None:
    _, port, _ = await served(Echo())
    out = await _exchange(
        port, b"GET /stream HTTP/1.1\r\nHost: h\r\n\r\nGET /after HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    head, _, rest = out.partition(b"\r\n\r\n")
    assert b"\r\nTransfer-Encoding: chunked" in head
    assert b"Content-Length" not in head
    # the empty piece is no chunk (an empty one would end the body)
    assert rest.startswith(b'7\r\n{"a":1}\r\n7\r\n{"b":2}\r\n0\r\n\r\n')
    answers = _responses(out)
    assert [body for _, body in answers] == [b'{"a":1}{"b":2}', b"hello"]  # still kept alive


async def test_a_stream_to_http_1_0_is_close_delimited(served: Serve) -> None:
    _, port, _ = await served(Echo())
    out = await _exchange(port, b"GET /stream HTTP/1.0\r\n\r\n")
    head, _, rest = out.partition(b"\r\n\r\n")
    assert b"chunked" not in head and b"Connection: close" in head
    assert rest == b'{"a":1}{"b":2}'


async def test_a_failing_stream_ends_the_connection_mid_body(served: Serve) -> None:
    echo = Echo()
    _, port, sink = await served(echo)
    out = await _exchange(
        port, b"GET /broken-stream HTTP/1.1\r\nHost: h\r\n\r\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    head, _, rest = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"chunked" in head
    assert rest == b"5\r\nfirst\r\n"  # no last chunk: the client knows it is cut short
    assert echo.closed_streams == 1
    lines = sink.getvalue().splitlines()
    assert len(lines) == 1 and "failed to stream HTTP answer" in lines[0]
    assert "producer died" in lines[0] and "Traceback" not in sink.getvalue()


async def test_a_handler_bug_is_a_500_and_one_warning(served: Serve) -> None:
    _, port, sink = await served(Echo())
    out = await _exchange(
        port, b"GET /boom HTTP/1.1\r\nHost: h\r\n\r\nGET /after HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    assert [r.status_code for r, _ in _responses(out)] == [500, 200]
    lines = sink.getvalue().splitlines()
    assert len(lines) == 1 and "failed to serve HTTP request" in lines[0]
    assert "Traceback" not in sink.getvalue()


GET = b"GET /a HTTP/1.1\r\nHost: h\r\n"
MALFORMED = [
    pytest.param(b"GARBAGE\r\n\r\n", 400, id="bad-request-line"),
    pytest.param(b"GET /a HTTP/1.1\r\n\r\n", 400, id="no-host"),
    pytest.param(b"GET a HTTP/1.1\r\nHost: h\r\n\r\n", 400, id="bad-target"),
    pytest.param(b"GET /a HTTP/3.0\r\nHost: h\r\n\r\n", 505, id="http-3"),
    pytest.param(b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n", 400, id="bad-cl"),
    pytest.param(b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 2000\r\n\r\n", 413, id="cl-big"),
    pytest.param(
        b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nabc",
        400,
        id="chunk-size-negative",
    ),
    pytest.param(
        b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 70_000,
        431,
        id="chunk-size-line-70k",
    ),
    pytest.param(
        b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1;"
        + b"x" * 70_000
        + b"\r\na\r\n0\r\n\r\n",
        431,
        id="chunk-ext-70k-complete",
    ),
    pytest.param(
        b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n"
        + b"x" * 1024
        + b"\r\n1\r\nx\r\n0\r\n\r\n",
        413,
        id="chunked-body-big",
    ),
    pytest.param(GET + b"X: " + b"a" * 70_000 + b"\r\n\r\n", 431, id="head-70k"),
    pytest.param(GET + b"X: " + b"a" * 9_000 + b"\r\n\r\n", 431, id="head-9k"),
    pytest.param(b"GET /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: zip\r\n\r\n", 501, id="te"),
]


@pytest.mark.parametrize(("data", "status"), MALFORMED)
async def test_malformed_requests_are_answered_and_closed(
    served: Serve, data: bytes, status: int
) -> None:
    echo = Echo()
    _, port, sink = await served(echo)
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(data)  # no half-close: the server ends the connection itself
        async with asyncio.timeout(T):
            out = await reader.read()
    finally:
        writer.close()
    assert out.startswith(f"HTTP/1.1 {status} ".encode()), out[:100]
    ((resp, body),) = _responses(out)
    assert _header(resp, b"connection") == b"close"
    assert body.startswith(f"{status} ".encode()) and len(body) < 400
    assert echo.requests == []
    lines = sink.getvalue().splitlines()
    assert len(lines) == 1 and "rejected a malformed HTTP request" in lines[0]
    assert len(lines[0]) < 600 and "Traceback" not in lines[0]


async def test_a_client_gone_early_gets_nothing_and_no_log(served: Serve) -> None:
    _, port, sink = await served(Echo())
    assert await _exchange(port, b"") == b""
    assert await _exchange(port, b"GET /a HTTP/1.1\r\nHos") == b""
    cut = b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\nab"
    assert await _exchange(port, cut) == b""
    assert sink.getvalue() == ""


async def test_read_timeout(served: Serve) -> None:
    _, port, _ = await served(Echo(), ServeOptions(read_timeout=0.2))
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\n")
        async with asyncio.timeout(T):
            out = await reader.read()
    finally:
        writer.close()
    assert [r.status_code for r, _ in _responses(out)] == [200, 408]
    # an idle connection is closed without an answer
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        async with asyncio.timeout(T):
            assert await reader.read() == b""
    finally:
        writer.close()


# -- the client ----------------------------------------------------------------------------


async def test_request_round_trip(served: Serve) -> None:
    echo = Echo()
    host, port, _ = await served(echo)
    resp = await request(f"http://{host}:{port}/a?k=v", timeout=T)
    assert (resp.status, resp.body, resp.header("X-PATH")) == (200, b"hello", "/a")
    assert resp.content_type == "text/plain; charset=utf-8"
    resp = await request(
        f"http://{host}:{port}/b", "POST", b"\x00\x01", timeout=T, content_type="application/x"
    )
    assert resp.body == b"\x00\x01"
    a, b = echo.requests
    assert (a.method, a.path, a.query) == ("GET", "/a", {"k": ["v"]})
    assert a.headers["host"] == f"{host}:{port}"
    assert (b.method, b.headers["content-type"], b.headers["connection"]) == (
        "POST",
        "application/x",
        "close",
    )
    resp = await request(f"http://{host}:{port}/stream", timeout=T)
    assert resp.body == b'{"a":1}{"b":2}'  # chunked answers are read too


async def _answering(data: bytes) -> tuple[asyncio.Server, str]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(data)
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(answer, HOST, 0)
    return srv, f"http://{HOST}:{srv.sockets[0].getsockname()[1]}/x"


async def test_request_reads_a_close_delimited_answer() -> None:
    srv, url = await _answering(b"HTTP/1.1 200 OK\r\n\r\nno length")
    try:
        assert (await request(url, timeout=T)).body == b"no length"
    finally:
        srv.close()
        await srv.wait_closed()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nContent-Length: 9999999\r\n\r\n" + b"x" * 70_000,
        b"",
    ],
)
async def test_request_rejects_bad_answers(answer: bytes) -> None:
    srv, url = await _answering(answer)
    try:
        with pytest.raises(HTTPWireError):
            await request(url, timeout=T, max_body_bytes=64 * 1024)
    finally:
        srv.close()
        await srv.wait_closed()


async def test_request_errors() -> None:
    with pytest.raises(ValueError):
        await request("https://127.0.0.1:1/x", timeout=1)  # https without TLS settings
    with pytest.raises(ValueError):
        await request("ftp://127.0.0.1:1/x", timeout=1)
    srv = await asyncio.start_server(lambda r, w: None, HOST, 0)
    port = srv.sockets[0].getsockname()[1]
    srv.close()
    await srv.wait_closed()
    with pytest.raises(OSError):
        await request(f"http://{HOST}:{port}/x", timeout=T)
    hang = await asyncio.start_server(lambda r, w: None, HOST, 0)
    try:
        with pytest.raises(TimeoutError):
            await request(f"http://{HOST}:{hang.sockets[0].getsockname()[1]}/x", timeout=0.1)
    finally:
        hang.close()
        await hang.wait_closed()


async def test_request_over_tls(served: Serve, tmp_path: Path) -> None:
    ca = CertAuthority(tmp_path)
    cert, key = ca.issue("server", "member")
    tls = TLSInfo(str(cert), str(key), str(ca.ca_file), client_cert_auth=True)
    host, port, _ = await served(Echo(), ServeOptions(), ssl=tls.server_context())
    resp = await request(f"https://{host}:{port}/a", timeout=T, ssl=tls.client_context())
    assert (resp.status, resp.body) == (200, b"hello")
