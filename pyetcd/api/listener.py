"""The client URLs of one member: gRPC and HTTP/1.1 on each port (etcd's cmux).

Every connection is served on the event loop. A plain connection is sorted by its
first bytes: the HTTP/2 client preface (``PRI * HTTP/2.0...``) makes it a gRPC
connection (``pyetcd.grpcwire``), anything else goes to the HTTP/1.1 frontend with the bytes
already read. A TLS connection is sorted by the protocol ALPN chose in the handshake:
the server prefers ``http/1.1``, so a client offering both (curl, browsers) gets
HTTP/1.1 and a gRPC client, which offers only ``h2``, gets gRPC.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from typing import Any, Final, cast
from urllib.parse import urlsplit

from pyetcd.api.etcdhttp.handler import HTTPFrontend, Site
from pyetcd.api.etcdhttp.metrics import ServerMetrics
from pyetcd.grpcwire import GrpcServer
from pyetcd.server.etcdserver.server import EtcdServer
from pyetcd.tlsutil import TLSInfo, TLSSetupError

__all__ = ["ClientListener", "ListenError", "MetricsListener", "bind_client_url", "peer_name"]

# No HTTP/1.x method starts with "PRI", so three bytes decide.
_SNIFF_BYTES: Final = 3
_TLS_HANDSHAKE_TIMEOUT: Final = 10.0


class ListenError(Exception):
    """A client URL could not be bound; ``url`` says which."""

    def __init__(self, url: str, err: BaseException) -> None:
        super().__init__(str(err))
        self.url = url


def bind_client_url(url: str, reuse_port: bool = False) -> list[socket.socket]:
    """Listening sockets for a client URL such as ``http://127.0.0.1:2379``.

    ``localhost`` and other names bind every address they resolve to.

    Raises:
        OSError: no address of the URL could be bound.
    """
    parts = urlsplit(url)
    host = parts.hostname or None
    port = parts.port or 2379
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    out: list[socket.socket] = []
    seen: set[Any] = set()
    last_err: OSError | None = None
    for family, _, _, _, addr in infos:
        if addr in seen:
            continue
        seen.add(addr)
        try:
            out.append(_listen(family, addr, reuse_port))
        except OSError as err:
            last_err = err
    if not out:
        raise last_err or OSError(errno.EADDRNOTAVAIL, f"cannot listen on {url}")
    return out


def _listen(family: int, addr: Any, reuse_port: bool) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            # Bind IPv6 alone so an IPv4 listener on the same port does not collide.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(addr)
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def peer_name(transport: asyncio.BaseTransport) -> str:
    """gRPC's form of the remote address: ``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``."""
    addr = transport.get_extra_info("peername")
    if isinstance(addr, tuple) and len(addr) >= 2:
        host, port = addr[0], addr[1]
        return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"
    return f"unix:{addr}" if addr else "unknown"


def _auth_context(transport: asyncio.BaseTransport) -> dict[str, list[bytes]]:
    # What grpc's auth_context() tells of a TLS client: its certificate's common name.
    sslobj = transport.get_extra_info("ssl_object")
    if sslobj is None:
        return {}
    ctx: dict[str, list[bytes]] = {"transport_security_type": [b"ssl"]}
    cert = sslobj.getpeercert()
    if cert:
        names = [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
        if names:
            ctx["x509_common_name"] = [n.encode() for n in names]
    return ctx


class _Sorter(asyncio.Protocol):
    """A new client connection until its first bytes (or ALPN) say what it speaks."""

    def __init__(self, grpc: GrpcServer, http: HTTPFrontend) -> None:
        self.grpc = grpc
        self.http = http
        self.transport: asyncio.Transport | None = None
        self.first = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sslobj = transport.get_extra_info("ssl_object")
        if sslobj is not None:
            self._hand_over(sslobj.selected_alpn_protocol() == "h2", b"")

    def data_received(self, data: bytes) -> None:
        self.first += data
        if len(self.first) >= _SNIFF_BYTES or not b"PRI".startswith(self.first):
            self._hand_over(self.first.startswith(b"PRI"), self.first)

    def eof_received(self) -> bool | None:
        if self.first:
            self._hand_over(False, self.first, eof=True)
            return True
        return None

    def _hand_over(self, grpc: bool, first: bytes, eof: bool = False) -> None:
        transport = self.transport
        assert transport is not None
        if grpc:
            if self.grpc.stopping:
                transport.abort()
                return
            conn = self.grpc.connection(peer_name(transport), _auth_context(transport))
            transport.set_protocol(conn)
            conn.connection_made(transport)
            if first:
                conn.data_received(first)
        else:
            self.http.accept(transport, first, eof)


class ClientListener:
    """gRPC and HTTP/1.1 on the member's client URLs.

    Call :meth:`listen` to bind, :meth:`start` to accept, :meth:`stop` to close.
    """

    def __init__(
        self,
        server: EtcdServer,
        tls: TLSInfo | None = None,
        *,
        metrics: ServerMetrics | None = None,
        site: Site | None = None,
    ) -> None:
        """``metrics``: the registry behind /metrics (one is made if not given);
        ``site``: more HTTP routes (the dashboard)."""
        self.server = server
        self.tls = tls
        self.metrics = metrics if metrics is not None else ServerMetrics(server)
        self.http = HTTPFrontend(server, self.metrics, site)
        self._listeners: list[tuple[socket.socket, bool]] = []
        self._servers: list[asyncio.Server] = []
        self._grpc: GrpcServer | None = None
        self._tls_ctx: ssl.SSLContext | None = None

    def listen(self, grpc_server: GrpcServer) -> None:
        """Bind every client URL.

        Raises:
            ListenError: a client URL could not be bound.
            TLSSetupError: the certificate files cannot be loaded.
        """
        self._grpc = grpc_server
        for url in self.server.cfg.listen_client_urls:
            try:
                socks = bind_client_url(url, self.server.cfg.socket_reuse_port)
            except OSError as err:
                self._close_listeners()
                raise ListenError(url, err) from err
            secure = urlsplit(url).scheme == "https"
            self._listeners += [(s, secure) for s in socks]
        if self.tls is not None and any(secure for _, secure in self._listeners):
            try:
                # One context for every https client URL; it follows the certificate
                # files for each new connection (tlsutil/contexts.py).
                self._tls_ctx = self.tls.server_context(
                    alpn=("http/1.1", "h2"), logger=self.server.log
                )
            except TLSSetupError:
                self._close_listeners()
                raise

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The bound client addresses (host, port), e.g. to learn a port 0 choice."""
        return [s.getsockname()[:2] for s, _ in self._listeners]

    async def start(self) -> None:
        """Accept connections on every bound client URL."""
        assert self._grpc is not None, "listen() first"
        loop = asyncio.get_running_loop()
        grpc, http = self._grpc, self.http
        tls_ctx = self._tls_ctx
        for sock, secure in self._listeners:
            ctx = tls_ctx if secure else None
            self._servers.append(
                await loop.create_server(
                    lambda: _Sorter(grpc, http),
                    sock=sock,
                    ssl=ctx,
                    ssl_handshake_timeout=_TLS_HANDSHAKE_TIMEOUT if ctx else None,
                    backlog=1024,
                )
            )

    async def stop(self) -> None:
        """Close the client ports and every HTTP connection on them."""
        for srv in self._servers:
            srv.close()
        self._servers = []
        self._close_listeners()
        await self.http.close()

    def _close_listeners(self) -> None:
        for sock, _ in self._listeners:
            sock.close()
        self._listeners = []


class _HTTPOnly(asyncio.Protocol):
    """Hands each connection to an HTTP frontend at once (no gRPC to sort out)."""

    def __init__(self, http: HTTPFrontend) -> None:
        self.http = http

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.http.accept(cast(asyncio.Transport, transport), b"")


class MetricsListener:
    """etcd's --listen-metrics-urls: /metrics and /health (nothing else) on more URLs,
    over https with the client certificate when the URL says so."""

    PATHS: Final = frozenset({"/metrics", "/health"})

    def __init__(self, server: EtcdServer, metrics: ServerMetrics, tls: TLSInfo | None) -> None:
        self.server = server
        self.tls = tls
        self.http = HTTPFrontend(server, metrics, paths=self.PATHS)
        self._servers: list[asyncio.Server] = []

    async def start(self) -> None:
        """Bind and serve every metrics URL.

        Raises:
            ListenError: a URL could not be bound, or is https without client TLS.
            TLSSetupError: the certificate files cannot be loaded.
        """
        loop = asyncio.get_running_loop()
        for url in self.server.cfg.listen_metrics_urls:
            ctx = None
            if urlsplit(url).scheme == "https":
                if self.tls is None:
                    await self.stop()
                    raise ListenError(url, ValueError("https URL without client TLS certificates"))
                ctx = self.tls.server_context(alpn=("http/1.1",), logger=self.server.log)
            try:
                socks = bind_client_url(url, self.server.cfg.socket_reuse_port)
            except OSError as err:
                await self.stop()
                raise ListenError(url, err) from err
            for sock in socks:
                self._servers.append(
                    await loop.create_server(
                        lambda: _HTTPOnly(self.http),
                        sock=sock,
                        ssl=ctx,
                        ssl_handshake_timeout=_TLS_HANDSHAKE_TIMEOUT if ctx else None,
                    )
                )
            self.server.log.info("serving metrics", {"address": url})

    async def stop(self) -> None:
        for srv in self._servers:
            srv.close()
        self._servers = []
        await self.http.close()
