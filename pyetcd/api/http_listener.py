"""The client URLs of one member: gRPC and HTTP on each port.

Owns the pieces of :mod:`pyetcd.api.http_mux` and :mod:`pyetcd.api.http` for the
embedding code: bind the client URLs, give the grpc.aio server its private
address, start relaying, and stop it all in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from typing import Any

from pyetcd.server.server import EtcdServer

from .http import HTTPFrontend
from .http_mux import ClientMux, bind_client_url
from .metrics import ServerMetrics

__all__ = ["GRPC_SOCKET_NAME", "ClientListener", "ListenError"]

#: The grpc.aio server's private unix socket, in the member directory.
GRPC_SOCKET_NAME = "grpc.sock"
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

    def __init__(self, server: EtcdServer) -> None:
        self.server = server
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
                self._listeners += bind_client_url(url, self.server.cfg.socket_reuse_port)
            except OSError as err:
                self._close_listeners()
                raise ListenError(url, err) from err
        path = os.path.join(self.server.cfg.member_dir, GRPC_SOCKET_NAME)
        if len(path) <= _MAX_UNIX_PATH:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # left by a member that was killed
            grpc_server.add_insecure_port(f"unix:{path}")
            self._unix_path = path
            self._grpc_address = path
        else:
            port = grpc_server.add_insecure_port("127.0.0.1:0")
            self._grpc_address = ("127.0.0.1", port)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The bound client addresses (host, port), e.g. to learn a port 0 choice."""
        return [s.getsockname()[:2] for s in self._listeners]

    def start(self) -> None:
        """Accept connections (call once the grpc.aio server has started)."""
        self.metrics.attach()
        self.http.bind_loop(asyncio.get_running_loop())
        self._mux = ClientMux(self._listeners, self._grpc_address, self.http.handoff)
        self._mux.start()

    async def stop(self) -> None:
        """Close the client ports and every connection on them."""
        if self._mux is not None:
            await asyncio.to_thread(self._mux.stop)
            self._mux = None
        else:
            self._close_listeners()
        await self.http.close()
        if self._unix_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._unix_path)

    def _close_listeners(self) -> None:
        for sock in self._listeners:
            sock.close()
        self._listeners = []
