"""A gRPC server on the event loop, fed connections by its owner.

``GrpcServer`` is the registry the generated ``add_*Servicer_to_server`` functions fill
(it answers the two calls they make) and the owner of its HTTP/2 connections. It
listens on nothing itself: whoever accepts a connection that speaks HTTP/2 asks
``connection`` for its protocol, so gRPC can share a port with other protocols
without a relay in between.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from .call import MethodHandler
from .connection import GrpcConnection
from .limits import DEFAULT_LIMITS, ServerLimits
from .stats import HandlingObserver, MethodStats

__all__ = ["ErrorLog", "GrpcServer"]


class ErrorLog(Protocol):
    """Where a handler's unexpected exception is reported."""

    def error(self, msg: str, fields: Mapping[str, Any]) -> None: ...


class _CallDetails:
    # What a generic handler's service() looks at (grpc.HandlerCallDetails).
    __slots__ = ("invocation_metadata", "method")

    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata: tuple[tuple[str, str], ...] = ()


class GrpcServer:
    """Method handlers by path, and the connections that call them.

    Args:
        log: gets one ``error`` line per handler that raised something unexpected.
        max_receive: the largest request message accepted, inflated, in bytes.
        keepalive_interval: seconds of silence before a connection is pinged (0: never).
        keepalive_timeout: seconds a pinged connection has to answer before it is dropped.
        limits: what one connection may ask (streams, header blocks, floods, work per turn).
        handling: told each call's duration (None: durations are not measured).

    ``method_stats`` holds each known method's counts (``stats.MethodStats``), by path.
    """

    def __init__(
        self,
        log: ErrorLog,
        max_receive: int,
        keepalive_interval: float = 0.0,
        keepalive_timeout: float = 20.0,
        limits: ServerLimits = DEFAULT_LIMITS,
        handling: HandlingObserver | None = None,
    ) -> None:
        self.log = log
        self.handling = handling
        self.method_stats: dict[str, MethodStats] = {}
        self.max_receive = max_receive
        self.keepalive_interval = keepalive_interval
        self.keepalive_timeout = keepalive_timeout
        self.limits = limits
        self.services: set[str] = set()
        self.conns: set[GrpcConnection] = set()
        self.stopping = False
        self._handlers: dict[str, MethodHandler] = {}
        self._generic: list[Any] = []
        self._no_conns = asyncio.Event()
        self._no_conns.set()

    # -- what generated code calls -------------------------------------------------------------

    def add_generic_rpc_handlers(self, handlers: Iterable[Any]) -> None:
        self._generic.extend(handlers)

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, MethodHandler]
    ) -> None:
        self.services.add(service)
        for method, handler in handlers.items():
            path = f"/{service}/{method}"
            self._handlers[path] = handler
            self._add_stats(path, handler)

    def _add_stats(self, path: str, handler: MethodHandler) -> None:
        # A method registered again (Range, served pre-encoded) keeps its counts.
        if path not in self.method_stats:
            self.method_stats[path] = MethodStats(
                path, handler.request_streaming, handler.response_streaming
            )

    def lookup(self, path: str) -> MethodHandler | None:
        """The handler for ``/package.Service/Method``, or None."""
        handler = self._handlers.get(path)
        if handler is None:
            for generic in self._generic:
                handler = generic.service(_CallDetails(path))
                if handler is not None:
                    self._handlers[path] = handler
                    self._add_stats(path, handler)
                    self.services.add(path.lstrip("/").partition("/")[0])
                    break
        return handler

    # -- connections --------------------------------------------------------------------------

    def connection(self, peer: str, auth_context: dict[str, list[bytes]]) -> GrpcConnection:
        """A protocol for a new HTTP/2 connection (call its ``connection_made``).

        Args:
            peer: the client's address as gRPC spells it (``ipv4:127.0.0.1:5000``).
            auth_context: what ``context.auth_context()`` answers (TLS client identity).
        """
        return GrpcConnection(self, peer, auth_context)

    def connection_opened(self, conn: GrpcConnection) -> None:
        self.conns.add(conn)
        self._no_conns.clear()

    def connection_closed(self, conn: GrpcConnection) -> None:
        self.conns.discard(conn)
        if not self.conns:
            self._no_conns.set()

    def log_handler_error(self, method: str, err: BaseException) -> None:
        self.log.error("gRPC handler failed", {"method": method, "error": repr(err)})

    async def stop(self, grace: float) -> None:
        """GOAWAY to every connection; after ``grace`` seconds cancel what still runs."""
        self.stopping = True
        for conn in list(self.conns):
            conn.goaway()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._no_conns.wait(), grace)
        for conn in list(self.conns):
            conn.abort()
