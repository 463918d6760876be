"""Plain HTTP on the peer port: etcd's peer handler for what only the leader can answer.

The peer listener hands a connection here when it starts with ``GET `` or ``POST``
instead of a transport handshake. Endpoints (etcd's paths, bodies and statuses):

- ``GET /members``: the member list as JSON, with ``X-Etcd-Cluster-ID`` (a member
  joining with ``--initial-cluster-state existing`` reads it).
- ``POST /leases``: body a marshalled ``LeaseKeepAliveRequest``; renews the lease on the
  leader's (primary) lessor; answers a marshalled ``LeaseKeepAliveResponse``.
- ``POST /leases/internal``: body a marshalled ``leasepb.LeaseInternalRequest``; answers
  a ``leasepb.LeaseInternalResponse`` with the remaining TTL only the leader knows.
- ``POST /members/promote/<decimal id>``: promotes a learner (only the leader knows
  whether it caught up); answers the member list as JSON.

Rules this module keeps:

1. One request per connection, answered with ``Connection: close``. The request is read
   strictly: a request line ``METHOD SP path SP HTTP/1.x``, headers up to
   ``max_head_bytes``, a body only by ``Content-Length`` (no chunked encoding) up to
   ``max_body_bytes``, all within ``read_timeout``. A bad request gets a 4xx answer;
   no request, however malformed, escapes as an exception.
2. The peer channel is trusted, as etcd's is (peer TLS guards it): the member that
   received the client's call checked the caller's permissions before forwarding, and
   nothing here checks them again. No tokens travel.
3. Lease endpoints answer only on the primary lessor (the leader's). Elsewhere they
   answer 400 "not a primary lessor", as etcd's lessor does, and the forwarding member
   retries until its request timeout. A promote on a non-leader answers 500, as etcd's
   peer handler does for its "not leader" error.
4. Before looking at a lease the leader applies what it has committed (etcd's
   ApplyWait), so a lease granted through a follower a moment ago is found; waiting
   longer than ``apply_timeout`` answers 408.

``post`` is the matching client, used by the follower's forwarder.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from google.protobuf.message import DecodeError

from pyetcd.logutil import Logger
from pyetcd.mvcc import Lessor
from pyetcd.mvcc.errors import LeaseExpiredError, LeaseNotFoundError, LeaseNotPrimaryError
from pyetcd.pb import lease_pb2, rpc_pb2
from pyetcd.server.etcdserver.errors import (
    LearnerNotReadyError,
    MemberNotFoundError,
    MemberNotLearnerError,
    ServerError,
)
from pyetcd.server.etcdserver.membership import Member

from .peer import peer_address

__all__ = [
    "APPLY_TIMEOUT_TEXT",
    "LEASE_INTERNAL_PATH",
    "LEASE_NOT_FOUND_TEXT",
    "LEASE_PATH",
    "MEMBERS_PATH",
    "MEMBER_PROMOTE_PREFIX",
    "NOT_PRIMARY_TEXT",
    "PeerHTTP",
    "PeerHTTPError",
    "PeerHTTPLimits",
    "PeerLeader",
    "PeerResponse",
    "Request",
    "members_from_json",
    "members_to_json",
    "parse_request_head",
    "post",
    "read_request",
]

MEMBERS_PATH: Final = "/members"
LEASE_PATH: Final = "/leases"
LEASE_INTERNAL_PATH: Final = "/leases/internal"
MEMBER_PROMOTE_PREFIX: Final = "/members/promote/"

# etcd's texts: lease.ErrNotPrimary, lease.ErrLeaseNotFound, leasehttp.ErrLeaseHTTPTimeout
NOT_PRIMARY_TEXT: Final = "not a primary lessor"
LEASE_NOT_FOUND_TEXT: Final = "lease not found"
APPLY_TIMEOUT_TEXT: Final = "waiting for node to catch up its applied index has timed out"

PROTOBUF: Final = "application/protobuf"
JSON: Final = "application/json"
TEXT: Final = "text/plain; charset=utf-8"

_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Request Entity Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}
_REQUEST_LINE: Final = re.compile(rb"(GET|POST) (/[!-~]*) HTTP/1\.[01]")
_STATUS_LINE: Final = re.compile(rb"HTTP/1\.[01] ([0-9]{3})(?: [^\r\n]*)?")
_HEADER_NAME: Final = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_DIGITS: Final = re.compile(r"[0-9]{1,20}")


class PeerHTTPError(Exception):
    """A malformed HTTP message; ``status`` is what a server answers it with."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


@dataclass(frozen=True, slots=True)
class PeerHTTPLimits:
    """Limits and timeouts (seconds) of the peer HTTP endpoints."""

    max_head_bytes: int = 8 * 1024
    max_body_bytes: int = 64 * 1024  # a lease request is a few bytes
    read_timeout: float = 5.0  # the whole request: head and body
    write_timeout: float = 5.0
    apply_timeout: float = 1.0  # etcd's leasehttp applyTimeout


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed request; ``path`` without its query string."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class PeerResponse:
    """One HTTP answer, as a handler makes it or ``post`` receives it."""

    status: int
    body: bytes = b""
    content_type: str = TEXT

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace").strip()


class PeerLeader(Protocol):
    """What the endpoints ask of their member (EtcdServer provides it)."""

    @property
    def cluster_id(self) -> int: ...

    @property
    def lessor(self) -> Lessor: ...

    def member_list(self) -> list[Member]: ...

    async def wait_committed_applied(self) -> None:
        """Return once the member applied everything it knows to be committed."""

    async def member_promote(self, mid: int) -> list[Member]:
        """Promote learner ``mid``; raises the server's membership errors."""
        ...


# -- the HTTP/1.1 subset both sides speak ----------------------------------------------------


def _split_head(head: bytes) -> tuple[bytes, dict[str, str]]:
    lines = head.removesuffix(b"\r\n\r\n").split(b"\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not _HEADER_NAME.fullmatch(name):
            raise PeerHTTPError(400, "malformed header line")
        key = name.decode().lower()
        text = value.strip().decode("latin-1")
        if key in headers and headers[key] != text:
            # two different lengths smuggle a second message
            raise PeerHTTPError(400, f"conflicting {key} headers")
        headers[key] = text
    return lines[0], headers


def _content_length(headers: dict[str, str], limit: int) -> int:
    if "transfer-encoding" in headers:
        raise PeerHTTPError(411, "only Content-Length bodies are accepted")
    raw = headers.get("content-length", "0")
    if not _DIGITS.fullmatch(raw):
        raise PeerHTTPError(400, "invalid Content-Length")
    n = int(raw)
    if n > limit:
        raise PeerHTTPError(413, "body too large")
    return n


def parse_request_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """(method, path without query, lower-cased headers) of a request head.

    Raises:
        PeerHTTPError: not a GET/POST request line of HTTP/1.0 or 1.1, or bad headers.
    """
    line, headers = _split_head(head)
    m = _REQUEST_LINE.fullmatch(line)
    if m is None:
        raise PeerHTTPError(400, "malformed request line")
    path = m.group(2).split(b"?", 1)[0].decode()
    return m.group(1).decode(), path, headers


async def _read_head(reader: asyncio.StreamReader, limit: int, status: int) -> bytes:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise PeerHTTPError(status, "header too large") from None
    if len(head) > limit:
        raise PeerHTTPError(status, "header too large")
    return head


async def read_request(
    first: bytes, reader: asyncio.StreamReader, limits: PeerHTTPLimits
) -> Request:
    """The request whose first 4 bytes (``first``) the listener already read.

    Raises:
        PeerHTTPError: malformed or too large; asyncio.IncompleteReadError: cut short.
    """
    head = first + await _read_head(reader, limits.max_head_bytes, 431)
    method, path, headers = parse_request_head(head)
    n = _content_length(headers, limits.max_body_bytes)
    body = await reader.readexactly(n) if n else b""
    return Request(method, path, headers, body)


def _encode_response(resp: PeerResponse, cluster_id: int) -> bytes:
    reason = _REASONS.get(resp.status, "Unknown")
    head = (
        f"HTTP/1.1 {resp.status} {reason}\r\n"
        f"Content-Type: {resp.content_type}\r\n"
        f"Content-Length: {len(resp.body)}\r\n"
        f"X-Etcd-Cluster-ID: {cluster_id:x}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + resp.body


def _error(status: int, text: str) -> PeerResponse:
    # Go's http.Error: the text and a newline, as plain text
    return PeerResponse(status, text.encode() + b"\n")


# -- member lists as JSON --------------------------------------------------------------------


def members_to_json(members: Sequence[Member]) -> bytes:
    """etcd's member list JSON (each member in its ``Member.encode`` shape)."""
    return b"[" + b",".join(m.encode() for m in members) + b"]"


def members_from_json(data: bytes) -> list[Member]:
    """Parse ``members_to_json``'s output.

    Raises:
        ValueError: not a JSON list of members.
    """
    raw = json.loads(data)
    if not isinstance(raw, list):
        raise ValueError("member list is not a JSON array")
    try:
        return [Member.decode(json.dumps(m).encode()) for m in raw]
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"malformed member: {err!r}") from None


# -- the server side ---------------------------------------------------------------------------


class PeerHTTP:
    """The peer port's HTTP endpoints of one member. See the module docstring."""

    def __init__(
        self, leader: PeerLeader, logger: Logger, limits: PeerHTTPLimits | None = None
    ) -> None:
        self.leader = leader
        self.log = logger
        self.limits = limits or PeerHTTPLimits()

    async def serve(
        self, first: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Read one request (its first 4 bytes are ``first``), answer it, return.

        The caller closes the connection. A client that goes away mid-request is
        dropped silently (there is no one to answer).
        """
        try:
            async with asyncio.timeout(self.limits.read_timeout):
                req = await read_request(first, reader, self.limits)
        except PeerHTTPError as err:
            resp = _error(err.status, err.text)
        except TimeoutError:
            resp = _error(408, "request not received in time")
        except (asyncio.IncompleteReadError, OSError):
            return
        else:
            resp = await self.handle(req)
        writer.write(_encode_response(resp, self.leader.cluster_id))
        async with asyncio.timeout(self.limits.write_timeout):
            await writer.drain()

    async def handle(self, req: Request) -> PeerResponse:
        """The answer to one parsed request (never raises, but for cancellation)."""
        try:
            return await self._route(req)
        except Exception as exc:  # a bug here must not take the listener down
            self.log.warn(
                "failed to serve peer HTTP request",
                {"method": req.method, "path": req.path, "error": repr(exc)},
            )
            return _internal_error()

    async def _route(self, req: Request) -> PeerResponse:
        path = req.path
        if path == MEMBERS_PATH:
            if req.method != "GET":
                return _error(405, "Method Not Allowed")
            return PeerResponse(200, members_to_json(self.leader.member_list()), JSON)
        if path in (LEASE_PATH, LEASE_INTERNAL_PATH) or path.startswith(MEMBER_PROMOTE_PREFIX):
            if req.method != "POST":
                return _error(405, "Method Not Allowed")
            if path == LEASE_PATH:
                return await self._lease_renew(req.body)
            if path == LEASE_INTERNAL_PATH:
                return await self._lease_time_to_live(req.body)
            return await self._member_promote(path.removeprefix(MEMBER_PROMOTE_PREFIX))
        return _error(404, "404 page not found")

    async def _applied(self) -> PeerResponse | None:
        """None once the member applied what it committed; else the 408 to answer."""
        try:
            async with asyncio.timeout(self.limits.apply_timeout):
                await self.leader.wait_committed_applied()
        except TimeoutError:
            return _error(408, APPLY_TIMEOUT_TEXT)
        return None

    async def _lease_renew(self, body: bytes) -> PeerResponse:
        req = rpc_pb2.LeaseKeepAliveRequest()
        try:
            req.ParseFromString(body)
        except DecodeError:
            return _error(400, "error unmarshalling request")
        if not self.leader.lessor.primary:
            return _error(400, NOT_PRIMARY_TEXT)
        if (late := await self._applied()) is not None:
            return late
        try:
            ttl = self.leader.lessor.renew(req.ID)
        except LeaseNotPrimaryError:
            return _error(400, NOT_PRIMARY_TEXT)
        except (LeaseNotFoundError, LeaseExpiredError):
            # an expired lease is as good as revoked (etcd waits for the revoke, then
            # says "not found")
            return _error(404, LEASE_NOT_FOUND_TEXT)
        resp = rpc_pb2.LeaseKeepAliveResponse(ID=req.ID, TTL=ttl)
        return PeerResponse(200, resp.SerializeToString(), PROTOBUF)

    async def _lease_time_to_live(self, body: bytes) -> PeerResponse:
        internal = lease_pb2.LeaseInternalRequest()
        try:
            internal.ParseFromString(body)
        except DecodeError:
            return _error(400, "error unmarshalling request")
        req = internal.LeaseTimeToLiveRequest
        if not self.leader.lessor.primary:
            return _error(400, NOT_PRIMARY_TEXT)
        if (late := await self._applied()) is not None:
            return late
        ttl = self.leader.lessor.time_to_live(req.ID)
        if ttl is None:
            return _error(404, LEASE_NOT_FOUND_TEXT)
        remaining, granted, keys = ttl
        out = lease_pb2.LeaseInternalResponse()
        resp = out.LeaseTimeToLiveResponse
        resp.header.SetInParent()
        resp.ID, resp.TTL, resp.grantedTTL = req.ID, remaining, granted
        if req.keys:
            resp.keys.extend(keys)
        return PeerResponse(200, out.SerializeToString(), PROTOBUF)

    async def _member_promote(self, id_text: str) -> PeerResponse:
        if not _DIGITS.fullmatch(id_text) or int(id_text) >= 1 << 64:
            return _error(404, f"member {id_text} not found in cluster")
        try:
            members = await self.leader.member_promote(int(id_text))
        except MemberNotFoundError as err:
            return _error(404, str(err))
        except (MemberNotLearnerError, LearnerNotReadyError) as err:
            return _error(412, str(err))
        except ServerError as err:
            # etcd's WriteError for anything else (not leader, timeouts): a bare 500
            self.log.warn(
                "failed to promote a member", {"member-id": f"{int(id_text):x}", "error": str(err)}
            )
            return _internal_error()
        return PeerResponse(200, members_to_json(members), JSON)


def _internal_error() -> PeerResponse:
    return PeerResponse(500, b'{"message":"Internal Server Error"}', JSON)


# -- the client side ---------------------------------------------------------------------------


async def post(
    url: str,
    path: str,
    body: bytes,
    *,
    ssl_context: ssl.SSLContext | None,
    timeout: float,
    content_type: str = PROTOBUF,
    max_body_bytes: int = 4 * 1024 * 1024,
) -> PeerResponse:
    """POST ``body`` to ``path`` at peer URL ``url`` and return the answer.

    ``ssl_context`` (the member's peer client TLS) is used for ``https://`` URLs.

    Raises:
        OSError: cannot connect, or TLS failed. TimeoutError: no full answer in ``timeout``.
        asyncio.IncompleteReadError: the connection closed early.
        PeerHTTPError: the answer is not the HTTP this module speaks.
        ValueError: ``url`` is not an http(s) URL with a host and port, or https
            without TLS settings.
    """
    host, port = peer_address(url)
    if host is None:
        raise ValueError(f"peer URL {url!r} has no host")
    tls = None
    if url.startswith("https:"):
        if ssl_context is None:
            raise ValueError(f"peer URL {url} needs peer TLS settings")
        tls = ssl_context
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(
            host, port, ssl=tls, server_hostname=host if tls else None
        )
        try:
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            head = await _read_head(reader, 16 * 1024, 502)
            status_line, headers = _split_head(head)
            m = _STATUS_LINE.fullmatch(status_line)
            if m is None:
                raise PeerHTTPError(502, "malformed status line")
            if "content-length" not in headers:
                raise PeerHTTPError(502, "answer without Content-Length")
            n = _content_length(headers, max_body_bytes)
            data = await reader.readexactly(n) if n else b""
        finally:
            writer.close()
    return PeerResponse(int(m.group(1)), data, headers.get("content-type", ""))
