"""etcd's gRPC services on a ``grpcwire.GrpcServer`` (etcd's ``v3rpc.Server``).

The wire (``pyetcd.grpcwire``) is a generic gRPC server; this is where it learns which
services an etcd member serves, how large a request may be and how keepalive is set.
"""

from __future__ import annotations

from typing import Any

from grpc_health.v1 import health_pb2

from pyetcd.api.v3rpc.auth import AuthService
from pyetcd.api.v3rpc.cluster import ClusterService
from pyetcd.api.v3rpc.election import ElectionService
from pyetcd.api.v3rpc.health import HEALTH_SERVICE, HealthService
from pyetcd.api.v3rpc.kv import KVService, register_range_encoded
from pyetcd.api.v3rpc.lease import LeaseService
from pyetcd.api.v3rpc.lock import LockService
from pyetcd.api.v3rpc.maintenance import MaintenanceService
from pyetcd.api.v3rpc.watch import WatchService
from pyetcd.flagspec import MAX_UINT32
from pyetcd.grpcwire import GrpcServer, MethodStats, ServerLimits, add_servicer
from pyetcd.pb import rpc_pb2, v3election_pb2, v3lock_pb2
from pyetcd.server.etcdserver.server import EtcdServer

__all__ = ["GRPC_OVERHEAD_BYTES", "EtcdGrpcServer", "build_grpc_server"]

#: gRPC receives up to --max-request-bytes plus this much framing, as etcd allows.
GRPC_OVERHEAD_BYTES = 512 * 1024


class _HandlingTimes:
    """grpc_server_handling_seconds (--metrics=extensive): each call's duration into
    the histogram child of its method."""

    def __init__(self, histogram: Any) -> None:
        self.histogram = histogram
        self._children: dict[int, Any] = {}

    def observe_handling(self, stats: MethodStats, seconds: float) -> None:
        child = self._children.get(id(stats))
        if child is None:
            child = self._children[id(stats)] = self.histogram.labels(
                stats.grpc_type, stats.service, stats.method
            )
        child.observe(seconds)


class EtcdGrpcServer(GrpcServer):
    """A GrpcServer serving etcd's services and grpc.health.v1.

    ``health`` is the health servicer; ``serving`` the status to set once the member
    serves clients (``await g.health.set("", g.serving)``).
    """

    def __init__(self, server: EtcdServer, extra_services: list[Any] | None = None) -> None:
        cfg = server.cfg
        super().__init__(
            server.log,
            cfg.max_request_bytes + GRPC_OVERHEAD_BYTES,
            keepalive_interval=cfg.grpc_keepalive_interval,
            keepalive_timeout=cfg.grpc_keepalive_timeout,
            # etcd's --grpc-keepalive-min-time; at 0 etcd leaves grpc-go's own 5 minutes.
            limits=ServerLimits(
                keepalive_min_time=cfg.grpc_keepalive_min_time or 300.0,
                max_concurrent_streams=concurrent_streams(cfg.max_concurrent_streams),
            ),
            handling=(
                _HandlingTimes(server.metrics.grpc_handling)
                if server.metrics.grpc_handling is not None
                else None
            ),
        )
        # The handlers come from the services' descriptors (grpcwire.add_servicer), not
        # the generated *_pb2_grpc modules, which would load grpcio (issue 22).
        etcd = rpc_pb2.DESCRIPTOR.services_by_name
        kv = KVService(server)
        add_servicer(self, etcd["KV"], kv)
        register_range_encoded(kv, self)
        add_servicer(self, etcd["Lease"], LeaseService(server))
        add_servicer(self, etcd["Cluster"], ClusterService(server))
        add_servicer(self, etcd["Maintenance"], MaintenanceService(server))
        add_servicer(self, etcd["Auth"], AuthService(server))
        add_servicer(self, etcd["Watch"], WatchService(server))
        add_servicer(self, v3lock_pb2.DESCRIPTOR.services_by_name["Lock"], LockService(server))
        add_servicer(
            self,
            v3election_pb2.DESCRIPTOR.services_by_name["Election"],
            ElectionService(server),
        )
        for add in extra_services or []:
            add(self)
        self.health = HealthService()
        add_servicer(self, HEALTH_SERVICE, self.health)
        self.serving: int = health_pb2.HealthCheckResponse.SERVING


def concurrent_streams(flag: int) -> int:
    """SETTINGS_MAX_CONCURRENT_STREAMS for ``--max-concurrent-streams`` (etcd 3.5.5).

    A value given is used as is. At etcd's default, MaxUint32, and at 0 (both "no
    limit" to grpc-go, whose goroutines are cheap) pyetcd keeps its wire's own bound:
    each stream is a task on the one loop, and the bound is what stops a flood of them.
    """
    return ServerLimits().max_concurrent_streams if flag in (0, MAX_UINT32) else flag


def build_grpc_server(
    server: EtcdServer, extra_services: list[Any] | None = None
) -> EtcdGrpcServer:
    """etcd's services on a GrpcServer (connections come from the ClientListener)."""
    return EtcdGrpcServer(server, extra_services)
