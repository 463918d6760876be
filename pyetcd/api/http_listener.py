"""The client URLs of one member: gRPC and HTTP on each port.

Owns the pieces of :mod:`pyetcd.api.http_mux` and :mod:`pyetcd.api.http` for the
embedding code: bind the client URLs, give the grpc.aio server its private
address, start relaying, and stop it all in order.

With ``https://`` client URLs the grpc.aio server also listens with TLS on a second
private address, and a private asyncio HTTPS server takes the HTTP/1.1 clients; the
mux routes each TLS connection to one of them by its ClientHello's ALPN.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from typing import Any
from urllib.parse import urlsplit

import grpc

from pyetcd.server.server import EtcdServer
from pyetcd.server.tls import TLSInfo

from .http import HTTPFrontend
from .http_mux import Address, ClientMux, bind_client_url
from .metrics import ServerMetrics

__all__ = ["GRPC_SOCKET_NAME", "ClientListener", "ListenError"]

#: The grpc.aio server's private unix socket, in the member directory.
GRPC_SOCKET_NAME = "grpc.sock"
#: The private TLS endpoints for https client URLs (gRPC, HTTP/1.1).
GRPC_TLS_SOCKET_NAME = "grpcs.sock"
HTTPS_SOCKET_NAME = "https.sock"
# sockaddr_un holds 108 bytes; longer paths fall back to a loopback port.
_MAX_UNIX_PATH = 100


class ListenError(Exception):
    """A client URL could not be bound; ``url`` says which."""

    def __init__(self, url: str, err: BaseException) -> None:
        super().__init__(str(err))
        self.url = url


class ClientListener:
    """gRPC and HTTP/1.1 on the member's client URLs.

    Call :meth:`listen` before the grpc.aio server starts, :meth:`start` after it
    started, and :meth:`stop` after it stopped.
    """

    def __init__(self, server: EtcdServer, tls: TLSInfo | None = None) -> None:
        self.server = server
        self.tls = tls
        self._tls_listeners: set[socket.socket] = set()
        self._grpc_tls_address: Address = ""
        self._https_sock: socket.socket | None = None
        self._https_address: Address = ""
        self._https_server: asyncio.Server | None = None
        self._https_task: asyncio.Future[None] | None = None
        self._private_paths: list[str] = []
        self.metrics = ServerMetrics(server)
        self.http = HTTPFrontend(server, self.metrics)
        self._listeners: list[socket.socket] = []
        self._unix_path = ""
        self._grpc_address: str | tuple[str, int] = ""
        self._mux: ClientMux | None = None

    def listen(self, grpc_server: Any) -> None:
        """Bind every client URL, and the grpc.aio server on its private address.

        Raises:
            ListenError: a client URL could not be bound.
        """
        for url in self.server.cfg.listen_client_urls:
            try:
                socks = bind_client_url(url, self.server.cfg.socket_reuse_port)
            except OSError as err:
                self._close_listeners()
                raise ListenError(url, err) from err
            self._listeners += socks
            if urlsplit(url).scheme == "https":
                self._tls_listeners.update(socks)
        path = self._private_path(GRPC_SOCKET_NAME)
        if path:
            grpc_server.add_insecure_port(f"unix:{path}")
            self._unix_path = path
            self._grpc_address = path
        else:
            port = grpc_server.add_insecure_port("127.0.0.1:0")
            self._grpc_address = ("127.0.0.1", port)
        if self.tls is not None and self._tls_listeners:
            self._listen_tls(grpc_server, self.tls)

    def _private_path(self, name: str) -> str:
        # A unix socket in the member directory, or "" when its path is too long.
        path = os.path.join(self.server.cfg.member_dir, name)
        if len(path) > _MAX_UNIX_PATH:
            return ""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # left by a member that was killed
        self._private_paths.append(path)
        return path

    def _listen_tls(self, grpc_server: Any, tls: TLSInfo) -> None:
        cert, key, ca = tls.read()
        creds = grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=ca, require_client_auth=tls.client_cert_auth
        )
        path = self._private_path(GRPC_TLS_SOCKET_NAME)
        if path:
            grpc_server.add_secure_port(f"unix:{path}", creds)
            self._grpc_tls_address = path
        else:
            port = grpc_server.add_secure_port("127.0.0.1:0", creds)
            self._grpc_tls_address = ("127.0.0.1", port)
        path = self._private_path(HTTPS_SOCKET_NAME)
        if path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(path)
            self._https_address = path
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            self._https_address = sock.getsockname()[:2]
        # listening now: connections wait in the backlog until start() serves them
        sock.listen(128)
        self._https_sock = sock

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The bound client addresses (host, port), e.g. to learn a port 0 choice."""
        return [s.getsockname()[:2] for s in self._listeners]

    def start(self) -> None:
        """Accept connections (call once the grpc.aio server has started)."""
        self.metrics.attach()
        self.http.bind_loop(asyncio.get_running_loop())
        self._mux = ClientMux(
            self._listeners,
            self._grpc_address,
            self.http.handoff,
            tls_listeners=frozenset(self._tls_listeners),
            grpc_tls_address=self._grpc_tls_address,
            https_address=self._https_address,
        )
        self._mux.start()
        if self._https_sock is not None and self.tls is not None:
            self._https_task = asyncio.ensure_future(self._serve_https(self._https_sock, self.tls))

    async def _serve_https(self, sock: socket.socket, tls: TLSInfo) -> None:
        ctx = tls.server_context(alpn=("http/1.1",))
        self._https_server = await asyncio.start_server(
            self.http.serve_stream, sock=sock, ssl=ctx, ssl_handshake_timeout=10.0
        )

    async def stop(self) -> None:
        """Close the client ports and every connection on them."""
        if self._mux is not None:
            await asyncio.to_thread(self._mux.stop)
            self._mux = None
        else:
            self._close_listeners()
        if self._https_server is not None:
            self._https_server.close()
            self._https_server = None
        elif self._https_sock is not None:
            self._https_sock.close()
        await self.http.close()
        for path in self._private_paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def _close_listeners(self) -> None:
        for sock in self._listeners:
            sock.close()
        self._listeners = []
