"""What every service shares: the context type and the ``hasleader`` check."""

from __future__ import annotations

from typing import Any, TypeAlias

from pyetcd.server.errors import NoLeaderError
from pyetcd.server.server import EtcdServer

__all__ = ["Ctx", "require_leader"]

#: grpc.aio.ServicerContext; grpc ships no type stubs.
Ctx: TypeAlias = Any


def require_leader(server: EtcdServer, context: Ctx) -> None:
    """etcd's interceptor: a stream asking for ``hasleader`` needs a leader now."""
    md = context.invocation_metadata() or ()
    for key, value in md:
        if key == "hasleader" and value == "true" and server.leader == 0:
            raise NoLeaderError()
