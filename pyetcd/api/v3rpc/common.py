"""What every service shares: the context type and the ``hasleader`` check."""

from __future__ import annotations

from typing import Any, TypeAlias
from urllib.parse import urlsplit

from pyetcd.server.etcdserver.errors import NoLeaderError
from pyetcd.server.etcdserver.server import EtcdServer

__all__ = ["Ctx", "grpc_bind_address", "require_leader"]

#: A servicer context: ``grpc_call.ServerCall``, or the JSON gateway's (the part of
#: grpc.aio.ServicerContext the services use).
Ctx: TypeAlias = Any


def require_leader(server: EtcdServer, context: Ctx) -> None:
    """etcd's interceptor: a stream asking for ``hasleader`` needs a leader now."""
    md = context.invocation_metadata() or ()
    for key, value in md:
        if key == "hasleader" and value == "true" and server.leader == 0:
            raise NoLeaderError()


def grpc_bind_address(url: str) -> str:
    """host:port for a client URL such as ``http://127.0.0.1:2379``."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = parts.port or 2379
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}"
