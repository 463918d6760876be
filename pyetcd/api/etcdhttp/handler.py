"""HTTP/1.1 on the client port: /health, /livez, /readyz, /version, /metrics and the
/v3 JSON gateway.

Connections arrive from the client port's sorter (``http_listener``) with the bytes
it already read. The HTTP/1.1 subset here is what etcd's clients and probes use:
keep-alive, ``Content-Length`` and chunked request bodies, one response per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from email.utils import formatdate
from urllib.parse import parse_qs, urlsplit

from pyetcd.pb import rpc_pb2
from pyetcd.server.auth.errors import PermissionDeniedError, UserEmptyError
from pyetcd.server.etcdserver.server import CLUSTER_VERSION, SERVER_VERSION, EtcdServer

from .gateway import Gateway
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import ServerMetrics

__all__ = ["HTTPFrontend", "Request", "Response"]

_MAX_LINE = 64 * 1024
_MAX_HEADERS = 100
_BODY_OVERHEAD = 512 * 1024
_TEXT = "text/plain; charset=utf-8"
_JSON = "application/json"
# etcd answers with its CORS headers for the default --cors='*'.
_CORS = (
    ("Access-Control-Allow-Headers", "accept, content-type, authorization"),
    ("Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE"),
    ("Access-Control-Allow-Origin", "*"),
)
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Request Entity Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class BadRequestError(Exception):
    """The bytes on the connection are not an HTTP/1.x request we can serve."""


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed HTTP request."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    version: str


@dataclass(frozen=True, slots=True)
class Response:
    """One HTTP response; ``headers`` are added after etcd's CORS headers."""

    status: int
    body: bytes
    content_type: str = _TEXT
    headers: tuple[tuple[str, str], ...] = field(default=())

    @classmethod
    def json(cls, status: int, obj: object) -> Response:
        """A compact JSON body, as Go's encoder writes it."""
        return cls(status, json.dumps(obj, separators=(",", ":")).encode(), _JSON)


def _not_found() -> Response:
    return Response(404, b"404 page not found\n", headers=(("X-Content-Type-Options", "nosniff"),))


def _not_allowed(allow: str | None = None) -> Response:
    headers = (("Allow", allow),) if allow else ()
    return Response(
        405, b"Method Not Allowed\n", headers=(*headers, ("X-Content-Type-Options", "nosniff"))
    )


class HTTPFrontend:
    """Serves HTTP/1.1 connections for one member."""

    def __init__(self, server: EtcdServer, metrics: ServerMetrics) -> None:
        self.server = server
        self.metrics = metrics
        self.gateway = Gateway(server)
        self._conns: set[asyncio.Task[None]] = set()
        # The gateway takes what the gRPC server would: a request plus framing.
        self._max_body = server.cfg.max_request_bytes + _BODY_OVERHEAD

    def accept(self, transport: asyncio.Transport, first: bytes, eof: bool = False) -> None:
        """Serve a connection whose first bytes ``first`` (and maybe its end) were read."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_MAX_LINE, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if first:
            protocol.data_received(first)
        if eof:
            protocol.eof_received()
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        task = asyncio.ensure_future(self.serve_stream(reader, writer))
        self._conns.add(task)
        task.add_done_callback(self._conns.discard)

    async def close(self) -> None:
        """Drop every open HTTP connection."""
        for task in list(self._conns):
            task.cancel()
        for task in list(self._conns):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def serve_stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Serve requests on one connection (e.g. from the HTTPS server) until it ends."""
        try:
            while True:
                try:
                    req = await _read_request(reader, self._max_body)
                except BadRequestError as err:
                    await _write(writer, Response(400, f"400 Bad Request: {err}".encode()), True)
                    return
                if req is None:
                    return
                close = _wants_close(req)
                try:
                    resp = await self.dispatch(req)
                except Exception as err:  # a bug must not take the connection's task down
                    resp = Response(500, f"500 Internal Server Error: {err}\n".encode())
                await _write(writer, resp, close, head=req.method == "HEAD")
                if close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def dispatch(self, req: Request) -> Response:
        """Route ``req`` to its endpoint."""
        path = req.path
        if self.gateway.knows(path):
            if req.method != "POST":
                return _not_allowed()
            token = req.headers.get("authorization", "")
            metadata = (("authorization", token),) if token else ()
            result = await self.gateway.call(path, req.body, metadata)
            return Response.json(result.status, result.body)
        if path.startswith("/v3/"):
            # grpc-gateway's own answer for a path it has no route for.
            return Response(404, b"Not Found\n", headers=(("X-Content-Type-Options", "nosniff"),))
        if path in ("/health", "/livez", "/readyz", "/version", "/metrics"):
            if req.method not in ("GET", "HEAD"):
                return _not_allowed("GET")
            if path == "/health":
                return await self._health(req)
            if path == "/version":
                return Response.json(
                    200, {"etcdserver": SERVER_VERSION, "etcdcluster": CLUSTER_VERSION}
                )
            if path == "/metrics":
                return Response(200, self.metrics.exposition(), METRICS_CONTENT_TYPE)
            return await self._probe(req, path[1:])
        return _not_found()

    # -- /health --------------------------------------------------------------------------

    async def _health(self, req: Request) -> Response:
        serializable = _flag(req, "serializable")
        excluded = set(req.query.get("exclude", []))
        reason = self._alarm_reason(excluded)
        if not reason and not serializable and self.server.leader == 0:
            reason = "RAFT NO LEADER"
        if not reason:
            reason = await self._range_check(serializable)
        if reason:
            self.metrics.health_failures.inc()
            return Response.json(503, {"health": "false", "reason": reason})
        self.metrics.health_success.inc()
        return Response.json(200, {"health": "true", "reason": ""})

    def _alarm_reason(self, excluded: set[str]) -> str:
        for _, alarm in sorted(self.server.stores.alarms):
            name = rpc_pb2.AlarmType.Name(alarm)
            if name in excluded:
                continue
            return f"ALARM {name}" if name in ("NOSPACE", "CORRUPT") else "ALARM UNKNOWN"
        return ""

    async def _range_check(self, serializable: bool) -> str:
        # etcd's health check also reads: a member that cannot serve a read is not healthy.
        try:
            await asyncio.wait_for(
                self.server.kv.range(
                    rpc_pb2.RangeRequest(
                        key=b"health", keys_only=True, limit=1, serializable=serializable
                    )
                ),
                self.server.request_timeout,
            )
        except TimeoutError:
            return "RANGE ERROR:context deadline exceeded"
        except (UserEmptyError, PermissionDeniedError):
            return ""  # with auth enabled the anonymous read is refused, yet was served
        except Exception as err:
            return f"RANGE ERROR:{err}"
        return ""

    # -- /livez and /readyz (etcd 3.5.11+) -------------------------------------------------

    async def _probe(self, req: Request, name: str) -> Response:
        checks: list[tuple[str, str]] = []  # (check, error or "")
        if name == "readyz":
            corrupt = any(a == rpc_pb2.CORRUPT for _, a in self.server.stores.alarms)
            checks.append(("data_corruption", "alarm activated: CORRUPT" if corrupt else ""))
        checks.append(("serializable_read", await self._read_error(True)))
        if name == "readyz":
            checks.append(("linearizable_read", await self._read_error(False)))
        excluded = set(req.query.get("exclude", []))
        lines = []
        failed = False
        for check, err in checks:
            if check in excluded:
                lines.append(f"[+]{check} excluded: ok")
            elif err:
                failed = True
                lines.append(f"[-]{check} failed: {err}")
            else:
                lines.append(f"[+]{check} ok")
        if failed:
            return Response(503, ("\n".join(lines) + f"\n{name} check failed\n").encode())
        if "verbose" in req.query:
            return Response(200, ("\n".join(lines) + "\nok\n").encode())
        return Response(200, b"ok\n")

    async def _read_error(self, serializable: bool) -> str:
        reason = await self._range_check(serializable)
        return reason.removeprefix("RANGE ERROR:")


def _flag(req: Request, name: str) -> bool:
    values = req.query.get(name, [])
    return bool(values) and values[-1].lower() in ("true", "1")


def _wants_close(req: Request) -> bool:
    conn = req.headers.get("connection", "").lower()
    if req.version == "HTTP/1.0":
        return conn != "keep-alive"
    return conn == "close"


async def _read_request(reader: asyncio.StreamReader, max_body: int) -> Request | None:
    """The next request on the connection; None when the client closed it."""
    try:
        line = await reader.readline()
    except ValueError as err:  # longer than the limit
        raise BadRequestError("request line too long") from err
    while line in (b"\r\n", b"\n"):  # tolerate blank lines between requests
        line = await reader.readline()
    if not line:
        return None
    parts = line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequestError("malformed request line")
    method, target, version = parts
    headers = await _read_headers(reader)
    body = await _read_body(reader, headers, max_body)
    url = urlsplit(target)
    query = parse_qs(url.query, keep_blank_values=True)
    return Request(method, url.path, query, headers, body, version)


async def _read_headers(reader: asyncio.StreamReader) -> dict[str, str]:
    headers: dict[str, str] = {}
    for _ in range(_MAX_HEADERS):
        try:
            line = await reader.readline()
        except ValueError as err:
            raise BadRequestError("header line too long") from err
        if not line:
            raise asyncio.IncompleteReadError(b"", None)
        if line in (b"\r\n", b"\n"):
            return headers
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise BadRequestError("malformed header")
        headers[name.strip().lower()] = value.strip()
    raise BadRequestError("too many headers")


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str], max_body: int) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _read_chunked(reader, max_body)
    length = headers.get("content-length")
    if not length:
        return b""
    try:
        n = int(length)
    except ValueError as err:
        raise BadRequestError("bad Content-Length") from err
    if n < 0:
        raise BadRequestError("bad Content-Length")
    if n > max_body:
        raise BadRequestError("request body too large")
    return await reader.readexactly(n)


async def _read_chunked(reader: asyncio.StreamReader, max_body: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        size_line = (await reader.readline()).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError as err:
            raise BadRequestError("bad chunk size") from err
        if size == 0:
            await _read_headers(reader)  # trailers
            return b"".join(chunks)
        total += size
        if total > max_body:
            raise BadRequestError("request body too large")
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)  # CRLF after each chunk


async def _write(
    writer: asyncio.StreamWriter, resp: Response, close: bool, head: bool = False
) -> None:
    reason = _REASONS.get(resp.status, "Unknown")
    lines = [f"HTTP/1.1 {resp.status} {reason}"]
    lines += [f"{k}: {v}" for k, v in (*_CORS, *resp.headers)]
    lines.append(f"Content-Type: {resp.content_type}")
    lines.append(f"Date: {formatdate(usegmt=True)}")
    lines.append(f"Content-Length: {len(resp.body)}")
    if close:
        lines.append("Connection: close")
    head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    writer.write(head_bytes if head else head_bytes + resp.body)
    await writer.drain()
