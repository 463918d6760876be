"""grpc.health.v1.Health, as etcd serves it (grpc-go's health server).

grpcio-health-checking's servicer would load grpcio into the member process (issue
22), so this is ours, answering as etcd 3.5.1 does: ``Check`` gives a service's
status, or NOT_FOUND "unknown service" for a service never set; ``Watch`` sends the
current status (SERVICE_UNKNOWN for an unknown service) and then each change. There
is no ``List``: etcd 3.5's grpc-go has none, so it is answered UNIMPLEMENTED "unknown
method", as etcd answers it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from grpc_health.v1 import health_pb2

from pyetcd.grpcwire.status import StatusCode

__all__ = ["HEALTH_SERVICE", "HealthService"]

#: The descriptor the wire builds the service's handlers from.
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"]

_Response: Any = health_pb2.HealthCheckResponse  # grpc_health ships no stubs


class HealthService:
    """Each service's serving status ("" is the whole server, SERVING from the start,
    as grpc-go's ``health.NewServer()``)."""

    def __init__(self) -> None:
        self._status: dict[str, int] = {"": _Response.SERVING}
        self._changed = asyncio.Event()

    async def set(self, service: str, status: int) -> None:
        """Set ``service``'s status and wake its watchers."""
        self._status[service] = status
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def Check(self, request: Any, context: Any) -> Any:
        status = self._status.get(request.service)
        if status is None:
            await context.abort(StatusCode.NOT_FOUND, "unknown service")
        return _Response(status=status)

    async def Watch(
        self, request: Any, context: Any
    ) -> AsyncIterator[Any]:
        last = None
        while True:
            changed = self._changed
            status = self._status.get(request.service, _Response.SERVICE_UNKNOWN)
            if status != last:
                yield _Response(status=status)
                last = status
            await changed.wait()
