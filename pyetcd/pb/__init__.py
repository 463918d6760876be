"""Protobuf and gRPC code generated from proto/pyetcd/pb/*.proto; do not edit by hand.

The messages are wire-identical with etcd 3.5 (same packages, so gRPC method paths
are etcd's, e.g. ``/etcdserverpb.KV/Range``). Regenerate with
``python scripts/gen_proto.py``; tests/test_pb.py checks freshness and wire identity.

Modules, by etcd package:
    mvccpb         kv_pb2              KeyValue, Event
    authpb         auth_pb2            UserAddOptions, User, Permission, Role
    etcdserverpb   rpc_pb2, rpc_pb2_grpc   the client API and its six services
                   raft_internal_pb2   InternalRaftRequest, the payload of raft entries
                   etcdserver_pb2      v2 Request and WAL Metadata (proto2)
    membershippb   membership_pb2      membership records proposed through raft
    leasepb        lease_pb2           the backend's lease record
    v3lockpb       v3lock_pb2, v3lock_pb2_grpc           the Lock service
    v3electionpb   v3election_pb2, v3election_pb2_grpc   the Election service

Only the ``*_grpc`` modules import grpc, so the server layer can use the messages.
"""

from __future__ import annotations

__all__ = [
    "auth_pb2",
    "etcdserver_pb2",
    "kv_pb2",
    "lease_pb2",
    "membership_pb2",
    "raft_internal_pb2",
    "rpc_pb2",
    "rpc_pb2_grpc",
    "v3election_pb2",
    "v3election_pb2_grpc",
    "v3lock_pb2",
    "v3lock_pb2_grpc",
]
