"""The client-facing grpc.aio server: every etcd service on the client URLs."""

from __future__ import annotations

from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from pyetcd.pb import rpc_pb2_grpc, v3election_pb2_grpc, v3lock_pb2_grpc
from pyetcd.server.server import EtcdServer

from .auth import AuthService
from .cluster import ClusterService
from .common import grpc_bind_address
from .election import ElectionService
from .kv import KVService
from .lease import LeaseService
from .lock import LockService
from .maintenance import MaintenanceService
from .watch import WatchService

__all__ = ["build_grpc_server", "grpc_bind_address"]

#: gRPC receives up to --max-request-bytes plus this much framing, as etcd allows.
GRPC_OVERHEAD_BYTES = 512 * 1024


def build_grpc_server(server: EtcdServer, extra_services: list[Any] | None = None) -> Any:
    """etcd's services on a grpc.aio server (ports are added by the ClientListener)."""
    cfg = server.cfg
    max_recv = cfg.max_request_bytes + GRPC_OVERHEAD_BYTES
    options = [
        ("grpc.max_receive_message_length", max_recv),
        ("grpc.max_send_message_length", 2**31 - 1),
        ("grpc.max_concurrent_streams", 2**31 - 1),
        # Keep idle etcdctl watch streams alive instead of sending GOAWAY.
        ("grpc.http2.min_ping_interval_without_data_ms", int(cfg.grpc_keepalive_min_time * 1000)),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.keepalive_time_ms", int(cfg.grpc_keepalive_interval * 1000)),
        ("grpc.keepalive_timeout_ms", int(cfg.grpc_keepalive_timeout * 1000)),
        ("grpc.so_reuseport", 1 if cfg.socket_reuse_port else 0),
    ]
    g = grpc.aio.server(options=options)
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
    g.pyetcd_health = health
    g.pyetcd_serving = health_pb2.HealthCheckResponse.SERVING
    return g
