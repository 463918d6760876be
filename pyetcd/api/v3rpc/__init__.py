"""pyetcd.api.v3rpc: etcd's gRPC services (KV, Watch, Lease, Cluster, Maintenance, Auth,
Lock, Election) as thin shells over the member's parts, the one table mapping typed
errors to gRPC status and etcd's text (``errors``), and ``build_grpc_server``, which
registers them all on the wire."""

from __future__ import annotations

from .grpc import EtcdGrpcServer, build_grpc_server

__all__ = ["EtcdGrpcServer", "build_grpc_server"]
