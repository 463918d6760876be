"""The client-facing gRPC server: every etcd service, served on the event loop.

``GrpcServer`` is the registry the generated ``add_*Servicer_to_server`` functions
fill (it answers the two calls they make) and the owner of the client port's HTTP/2
connections (``grpc_wire``). It listens on nothing itself: the ``ClientListener``
hands it each connection that speaks HTTP/2, so gRPC and HTTP/1.1 share a port
without a relay in between.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from pyetcd.api.v3rpc.auth import AuthService
from pyetcd.api.v3rpc.cluster import ClusterService
from pyetcd.api.v3rpc.common import grpc_bind_address
from pyetcd.api.v3rpc.election import ElectionService
from pyetcd.api.v3rpc.kv import KVService
from pyetcd.api.v3rpc.lease import LeaseService
from pyetcd.api.v3rpc.lock import LockService
from pyetcd.api.v3rpc.maintenance import MaintenanceService
from pyetcd.api.v3rpc.watch import WatchService
from pyetcd.logutil import Logger
from pyetcd.pb import rpc_pb2_grpc, v3election_pb2_grpc, v3lock_pb2_grpc
from pyetcd.server.etcdserver.server import EtcdServer

from .call import MethodHandler
from .connection import GrpcConnection

__all__ = ["GRPC_OVERHEAD_BYTES", "GrpcServer", "build_grpc_server", "grpc_bind_address"]

#: gRPC receives up to --max-request-bytes plus this much framing, as etcd allows.
GRPC_OVERHEAD_BYTES = 512 * 1024


class _CallDetails:
    # What a generic handler's service() looks at (grpc.HandlerCallDetails).
    __slots__ = ("invocation_metadata", "method")

    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata: tuple[tuple[str, str], ...] = ()


class GrpcServer:
    """Method handlers by path, and the connections that call them."""

    def __init__(
        self,
        logger: Logger,
        max_receive: int,
        keepalive_interval: float = 0.0,
        keepalive_timeout: float = 20.0,
    ) -> None:
        self.log = logger
        self.max_receive = max_receive
        self.keepalive_interval = keepalive_interval
        self.keepalive_timeout = keepalive_timeout
        self.services: set[str] = set()
        self.conns: set[GrpcConnection] = set()
        self._handlers: dict[str, MethodHandler] = {}
        self._generic: list[Any] = []
        self.stopping = False
        self.health: Any = None  # the grpc.health.v1 servicer, and its serving status
        self.serving: Any = None

    # -- what generated code calls -------------------------------------------------------------

    def add_generic_rpc_handlers(self, handlers: Iterable[Any]) -> None:
        self._generic.extend(handlers)

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, MethodHandler]
    ) -> None:
        self.services.add(service)
        for method, handler in handlers.items():
            self._handlers[f"/{service}/{method}"] = handler

    def lookup(self, path: str) -> MethodHandler | None:
        """The handler for ``/package.Service/Method``, or None."""
        handler = self._handlers.get(path)
        if handler is None:
            for generic in self._generic:
                handler = generic.service(_CallDetails(path))
                if handler is not None:
                    self._handlers[path] = handler
                    self.services.add(path.lstrip("/").partition("/")[0])
                    break
        return handler

    # -- connections --------------------------------------------------------------------------

    def connection(self, peer: str, auth_context: dict[str, list[bytes]]) -> GrpcConnection:
        """A protocol for a new HTTP/2 connection (call its ``connection_made``)."""
        return GrpcConnection(self, peer, auth_context)

    def log_handler_error(self, method: str, err: BaseException) -> None:
        self.log.error("gRPC handler failed", {"method": method, "error": repr(err)})

    async def stop(self, grace: float) -> None:
        """GOAWAY to every connection; after ``grace`` seconds cancel what still runs."""
        self.stopping = True
        for conn in list(self.conns):
            conn.goaway()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.conns and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self.conns):
            conn.abort()


def build_grpc_server(server: EtcdServer, extra_services: list[Any] | None = None) -> GrpcServer:
    """etcd's services on a GrpcServer (connections come from the ClientListener)."""
    cfg = server.cfg
    g = GrpcServer(
        server.log,
        cfg.max_request_bytes + GRPC_OVERHEAD_BYTES,
        keepalive_interval=cfg.grpc_keepalive_interval,
        keepalive_timeout=cfg.grpc_keepalive_timeout,
    )
    rpc_pb2_grpc.add_KVServicer_to_server(KVService(server), g)
    rpc_pb2_grpc.add_LeaseServicer_to_server(LeaseService(server), g)
    rpc_pb2_grpc.add_ClusterServicer_to_server(ClusterService(server), g)
    rpc_pb2_grpc.add_MaintenanceServicer_to_server(MaintenanceService(server), g)
    rpc_pb2_grpc.add_AuthServicer_to_server(AuthService(server), g)
    rpc_pb2_grpc.add_WatchServicer_to_server(WatchService(server), g)
    v3lock_pb2_grpc.add_LockServicer_to_server(LockService(server), g)
    v3election_pb2_grpc.add_ElectionServicer_to_server(ElectionService(server), g)
    for add in extra_services or []:
        add(g)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, g)
    g.health = health
    g.serving = health_pb2.HealthCheckResponse.SERVING
    return g
