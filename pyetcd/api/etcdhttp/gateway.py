"""The /v3 JSON gateway: etcd's unary RPCs as ``POST /v3/...`` with proto JSON bodies.

Every route calls the same servicer method the gRPC server calls, with a stand-in
context that turns ``context.abort(code, message)`` into an HTTP error, so the
gateway and gRPC cannot disagree on semantics or error text.

JSON follows etcd's grpc-gateway marshaler: proto field names, int64 as strings,
bytes as padded base64, enums by name, zero values omitted. Requests are read as etcd
reads them (:mod:`.gojson`: Go's decoder and jsonpb, proto or camelCase names, unknown
fields ignored, strict base64, Go's error texts). Errors are
``{"error": m, "code": N, "message": m}`` with grpc-gateway's HTTP status for the code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from pyetcd.api.v3rpc.auth import AuthService
from pyetcd.api.v3rpc.cluster import ClusterService
from pyetcd.api.v3rpc.election import ElectionService
from pyetcd.api.v3rpc.errors import code_of
from pyetcd.api.v3rpc.kv import KVService
from pyetcd.api.v3rpc.lease import LeaseService
from pyetcd.api.v3rpc.lock import LockService
from pyetcd.api.v3rpc.maintenance import MaintenanceService
from pyetcd.api.v3rpc.watch import WatchService
from pyetcd.grpcwire import CallAborted
from pyetcd.grpcwire.status import StatusCode
from pyetcd.pb import rpc_pb2, v3election_pb2, v3lock_pb2
from pyetcd.server.etcdserver.server import EtcdServer

from .context import GatewayContext
from .gojson import GoJSONError, decode_values, parse_message
from .status import HTTP_STATUS
from .streams import STREAM_ROUTES, StreamAnswer, open_stream

__all__ = ["HTTP_STATUS", "ROUTES", "Gateway", "GatewayResult", "error_body", "to_json"]

SC = StatusCode


_ALIASES = {  # etcd 3.5 still serves the lease routes under /v3/kv/lease/
    "/v3/kv/lease/revoke": "/v3/lease/revoke",
    "/v3/kv/lease/timetolive": "/v3/lease/timetolive",
    "/v3/kv/lease/leases": "/v3/lease/leases",
}

#: path -> (service full name, method name); request types come from the descriptors.
ROUTES: dict[str, tuple[str, str]] = {
    "/v3/kv/range": ("etcdserverpb.KV", "Range"),
    "/v3/kv/put": ("etcdserverpb.KV", "Put"),
    "/v3/kv/deleterange": ("etcdserverpb.KV", "DeleteRange"),
    "/v3/kv/txn": ("etcdserverpb.KV", "Txn"),
    "/v3/kv/compaction": ("etcdserverpb.KV", "Compact"),
    "/v3/lease/grant": ("etcdserverpb.Lease", "LeaseGrant"),
    "/v3/lease/revoke": ("etcdserverpb.Lease", "LeaseRevoke"),
    "/v3/lease/timetolive": ("etcdserverpb.Lease", "LeaseTimeToLive"),
    "/v3/lease/leases": ("etcdserverpb.Lease", "LeaseLeases"),
    "/v3/cluster/member/add": ("etcdserverpb.Cluster", "MemberAdd"),
    "/v3/cluster/member/remove": ("etcdserverpb.Cluster", "MemberRemove"),
    "/v3/cluster/member/update": ("etcdserverpb.Cluster", "MemberUpdate"),
    "/v3/cluster/member/list": ("etcdserverpb.Cluster", "MemberList"),
    "/v3/cluster/member/promote": ("etcdserverpb.Cluster", "MemberPromote"),
    "/v3/maintenance/alarm": ("etcdserverpb.Maintenance", "Alarm"),
    "/v3/maintenance/status": ("etcdserverpb.Maintenance", "Status"),
    "/v3/maintenance/defragment": ("etcdserverpb.Maintenance", "Defragment"),
    "/v3/maintenance/hash": ("etcdserverpb.Maintenance", "Hash"),
    "/v3/maintenance/hashkv": ("etcdserverpb.Maintenance", "HashKV"),
    "/v3/maintenance/transfer-leadership": ("etcdserverpb.Maintenance", "MoveLeader"),
    "/v3/maintenance/downgrade": ("etcdserverpb.Maintenance", "Downgrade"),
    "/v3/auth/enable": ("etcdserverpb.Auth", "AuthEnable"),
    "/v3/auth/disable": ("etcdserverpb.Auth", "AuthDisable"),
    "/v3/auth/status": ("etcdserverpb.Auth", "AuthStatus"),
    "/v3/auth/authenticate": ("etcdserverpb.Auth", "Authenticate"),
    "/v3/auth/user/add": ("etcdserverpb.Auth", "UserAdd"),
    "/v3/auth/user/get": ("etcdserverpb.Auth", "UserGet"),
    "/v3/auth/user/list": ("etcdserverpb.Auth", "UserList"),
    "/v3/auth/user/delete": ("etcdserverpb.Auth", "UserDelete"),
    "/v3/auth/user/changepw": ("etcdserverpb.Auth", "UserChangePassword"),
    "/v3/auth/user/grant": ("etcdserverpb.Auth", "UserGrantRole"),
    "/v3/auth/user/revoke": ("etcdserverpb.Auth", "UserRevokeRole"),
    "/v3/auth/role/add": ("etcdserverpb.Auth", "RoleAdd"),
    "/v3/auth/role/get": ("etcdserverpb.Auth", "RoleGet"),
    "/v3/auth/role/list": ("etcdserverpb.Auth", "RoleList"),
    "/v3/auth/role/delete": ("etcdserverpb.Auth", "RoleDelete"),
    "/v3/auth/role/grant": ("etcdserverpb.Auth", "RoleGrantPermission"),
    "/v3/auth/role/revoke": ("etcdserverpb.Auth", "RoleRevokePermission"),
    "/v3/lock/lock": ("v3lockpb.Lock", "Lock"),
    "/v3/lock/unlock": ("v3lockpb.Lock", "Unlock"),
    "/v3/election/campaign": ("v3electionpb.Election", "Campaign"),
    "/v3/election/proclaim": ("v3electionpb.Election", "Proclaim"),
    "/v3/election/leader": ("v3electionpb.Election", "Leader"),
    "/v3/election/resign": ("v3electionpb.Election", "Resign"),
}

_PB_MODULES = {"etcdserverpb": rpc_pb2, "v3lockpb": v3lock_pb2, "v3electionpb": v3election_pb2}


@dataclass(frozen=True, slots=True)
class GatewayResult:
    """What a gateway call produced: an HTTP status and a JSON document."""

    status: int
    body: dict[str, Any]


def _request_type(service: str, method: str) -> type[Message]:
    package, name = service.split(".")
    module = _PB_MODULES[package]
    desc = module.DESCRIPTOR.services_by_name[name].methods_by_name[method]
    cls: type[Message] = getattr(module, desc.input_type.name)
    return cls


def error_body(code: StatusCode, message: str) -> GatewayResult:
    """etcd's gateway error document for a gRPC status."""
    number = int(code)
    return GatewayResult(
        HTTP_STATUS.get(code, 500), {"error": message, "code": number, "message": message}
    )


def to_json(msg: Message) -> dict[str, Any]:
    """A response message as etcd's gateway marshals it."""
    out: dict[str, Any] = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    return out


class Gateway:
    """Routes ``/v3/...`` paths to the servicers of one member."""

    def __init__(self, server: EtcdServer) -> None:
        self.services: dict[str, Any] = {
            "etcdserverpb.KV": KVService(server),
            "etcdserverpb.Lease": LeaseService(server),
            "etcdserverpb.Cluster": ClusterService(server),
            "etcdserverpb.Maintenance": MaintenanceService(server),
            "etcdserverpb.Auth": AuthService(server),
            "v3lockpb.Lock": LockService(server),
            "v3electionpb.Election": ElectionService(server),
            "etcdserverpb.Watch": WatchService(server),
        }
        self._routes: dict[str, tuple[type[Message], Callable[..., Awaitable[Message]]]] = {}
        for path, (service, method) in ROUTES.items():
            handler = getattr(self.services[service], method)
            self._routes[path] = (_request_type(service, method), handler)

        self._streams: dict[str, tuple[type[Message], Callable[..., Any], bool]] = {}
        for path, (service, method, bidi) in STREAM_ROUTES.items():
            handler = getattr(self.services[service], method)
            self._streams[path] = (_request_type(service, method), handler, bidi)

    @staticmethod
    def _canonical(path: str) -> str:
        if path.startswith("/v3beta/"):  # etcd 3.5 serves every route under both prefixes
            path = "/v3/" + path[len("/v3beta/") :]
        return _ALIASES.get(path, path)

    def knows(self, path: str) -> bool:
        """Whether ``path`` is a gateway route (unary or streaming)."""
        path = self._canonical(path)
        return path in self._routes or path in self._streams

    def streams(self, path: str) -> bool:
        """Whether ``path`` is a streaming route."""
        return self._canonical(path) in self._streams

    async def stream(
        self, path: str, body: bytes, metadata: tuple[tuple[str, str], ...] = ()
    ) -> GatewayResult | StreamAnswer:
        """Start the streaming route ``path``: an error document, or the answer's lines."""
        request_type, handler, bidi = self._streams[self._canonical(path)]
        started = await open_stream(handler, request_type, bidi, body, metadata, to_json)
        if isinstance(started, StreamAnswer):
            return started
        return error_body(*started)

    async def call(
        self, path: str, body: bytes, metadata: tuple[tuple[str, str], ...] = ()
    ) -> GatewayResult:
        """Decode ``body``, call the route's servicer with ``metadata``, encode the answer."""
        route = self._routes.get(self._canonical(path))
        if route is None:
            return GatewayResult(404, {"error": "Not Found", "code": 5, "message": "Not Found"})
        request_type, handler = route
        req = request_type()
        try:
            # grpc-gateway decodes the body's first JSON value and ignores the rest
            first = next(decode_values(body), None)
            if first is not None:
                parse_message(first, req)
        except GoJSONError as err:
            return error_body(SC.INVALID_ARGUMENT, str(err))
        try:
            resp = await handler(req, GatewayContext(metadata))
        except CallAborted as err:
            return error_body(err.code, err.details)
        except Exception as err:
            code = code_of(err) or SC.UNKNOWN
            return error_body(code, str(err))
        return GatewayResult(200, to_json(resp))
