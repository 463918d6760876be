"""HTTP/1.1 on the client port: /health, /livez, /readyz, /version, /metrics and the
/v3 JSON gateway.

Connections arrive from the client port's sorter (``ClientListener``) with the bytes it
already read; ``pyetcd.httpwire`` (h11) speaks HTTP/1.1 on them (keep-alive,
``Content-Length`` and chunked bodies, one answer per request) and this module says
what to answer. Every answer carries etcd's CORS headers.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from typing import Protocol

from pyetcd.httpwire import JSON, Request, Response, ServeOptions, serve
from pyetcd.pb import rpc_pb2
from pyetcd.server.auth.errors import PermissionDeniedError, UserEmptyError
from pyetcd.server.etcdserver.server import EtcdServer
from pyetcd.version import CLUSTER_VERSION, SERVER_VERSION

from .gateway import Gateway, GatewayResult
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import ServerMetrics

__all__ = ["HTTPFrontend", "Site"]

_MAX_HEAD = 64 * 1024
_BODY_OVERHEAD = 512 * 1024
# etcd answers with its CORS headers for the default --cors='*'.
_CORS = (
    ("Access-Control-Allow-Headers", "accept, content-type, authorization"),
    ("Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE"),
    ("Access-Control-Allow-Origin", "*"),
)


# grpc-gateway's copy of the gRPC answer's content-type, on every answer it forwards
_GRPC_METADATA = (("Grpc-Metadata-Content-Type", "application/grpc"),)


def _not_found() -> Response:
    return Response(404, b"404 page not found\n", headers=(("X-Content-Type-Options", "nosniff"),))


def _not_allowed(allow: str | None = None) -> Response:
    headers = (("Allow", allow),) if allow else ()
    return Response(
        405, b"Method Not Allowed\n", headers=(*headers, ("X-Content-Type-Options", "nosniff"))
    )


class Site(Protocol):
    """More routes on the client port (the dashboard): the paths it ``knows``."""

    def knows(self, path: str) -> bool: ...

    async def dispatch(self, req: Request) -> Response: ...


class HTTPFrontend:
    """Serves HTTP/1.1 connections for one member (and ``site``'s paths, if given)."""

    def __init__(
        self,
        server: EtcdServer,
        metrics: ServerMetrics,
        site: Site | None = None,
        paths: frozenset[str] | None = None,
    ) -> None:
        """``paths``: serve only these paths (the rest are 404), as on etcd's
        --listen-metrics-urls; None serves everything."""
        self.paths = paths
        self.server = server
        self.metrics = metrics
        self.site = site
        self.gateway = Gateway(server)
        self._conns: set[asyncio.Task[None]] = set()
        self._options = ServeOptions(
            max_head_bytes=_MAX_HEAD,
            # The gateway takes what the gRPC server would: a request plus framing.
            max_body_bytes=server.cfg.max_request_bytes + _BODY_OVERHEAD,
            headers=_CORS,
        )

    def accept(self, transport: asyncio.Transport, first: bytes, eof: bool = False) -> None:
        """Serve a connection whose first bytes ``first`` (and maybe its end) were read."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_MAX_HEAD, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if first:
            protocol.data_received(first)
        if eof:
            protocol.eof_received()
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        task = asyncio.ensure_future(
            serve(reader, writer, self.dispatch, self._options, log=self.server.log)
        )
        self._conns.add(task)
        task.add_done_callback(self._conns.discard)

    async def close(self) -> None:
        """Drop every open HTTP connection."""
        for task in list(self._conns):
            task.cancel()
        for task in list(self._conns):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def dispatch(self, req: Request) -> Response:
        """Route ``req`` to its endpoint."""
        path = req.path
        if self.paths is not None and path not in self.paths:
            return _not_found()
        if self.site is not None and self.site.knows(path):
            return await self.site.dispatch(req)
        if path.startswith("/v3/") and not self.server.cfg.enable_grpc_gateway:
            # --enable-grpc-gateway=false: no gateway, as in etcd (the mux has no route)
            return Response(404, b"404 page not found\n")
        if self.gateway.knows(path):
            if req.method != "POST":
                return _not_allowed()
            token = req.headers.get("authorization", "")
            metadata = (("authorization", token),) if token else ()
            if self.gateway.streams(path):
                return await self._stream(req, metadata)
            result = await self.gateway.call(path, req.body, metadata)
            resp = Response.json(result.status, result.body)
            if result.status == 200:  # grpc-gateway forwards the gRPC answer's header
                resp = replace(resp, headers=_GRPC_METADATA)
            return resp
        if path.startswith(("/v3/", "/v3beta/")):
            # grpc-gateway's own answer for a path it has no route for.
            return Response(404, b"Not Found\n", headers=(("X-Content-Type-Options", "nosniff"),))
        if path in ("/health", "/livez", "/readyz", "/version", "/metrics"):
            if req.method not in ("GET", "HEAD"):
                return _not_allowed("GET")
            if path == "/health":
                return await self._health(req)
            if path == "/version":
                return Response.json(
                    200, {"etcdserver": SERVER_VERSION, "etcdcluster": CLUSTER_VERSION}
                )
            if path == "/metrics":
                return Response(200, self.metrics.exposition(), METRICS_CONTENT_TYPE)
            return await self._probe(req, path[1:])
        return _not_found()

    async def _stream(self, req: Request, metadata: tuple[tuple[str, str], ...]) -> Response:
        # The answer starts with the stream's first message; a client that leaves
        # before it ends the call.
        opening = asyncio.ensure_future(self.gateway.stream(req.path, req.body, metadata))
        if req.gone is not None:
            await asyncio.wait((opening, req.gone), return_when=asyncio.FIRST_COMPLETED)
            if not opening.done():
                opening.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await opening
                return Response(499, b"")  # no one is left to read it
        started = await opening
        if isinstance(started, GatewayResult):
            return Response.json(started.status, started.body)
        return Response(
            started.status,
            content_type=JSON,
            headers=_GRPC_METADATA if started.forwarded else (),
            stream=started.lines,
        )

    # -- /health --------------------------------------------------------------------------

    async def _health(self, req: Request) -> Response:
        serializable = _flag(req, "serializable")
        excluded = set(req.query.get("exclude", []))
        reason = self._alarm_reason(excluded)
        if not reason and not serializable and self.server.leader == 0:
            reason = "RAFT NO LEADER"
        if not reason:
            reason = await self._range_check(serializable)
        if reason:
            self.metrics.health_failures.inc()
            return Response.json(503, {"health": "false", "reason": reason})
        self.metrics.health_success.inc()
        return Response.json(200, {"health": "true", "reason": ""})

    def _alarm_reason(self, excluded: set[str]) -> str:
        for _, alarm in sorted(self.server.stores.alarms):
            name = rpc_pb2.AlarmType.Name(alarm)
            if name in excluded:
                continue
            return f"ALARM {name}" if name in ("NOSPACE", "CORRUPT") else "ALARM UNKNOWN"
        return ""

    async def _range_check(self, serializable: bool) -> str:
        # etcd's health check also reads: a member that cannot serve a read is not healthy.
        try:
            await asyncio.wait_for(
                self.server.kv.range(
                    rpc_pb2.RangeRequest(
                        key=b"health", keys_only=True, limit=1, serializable=serializable
                    )
                ),
                self.server.request_timeout,
            )
        except TimeoutError:
            return "RANGE ERROR:context deadline exceeded"
        except (UserEmptyError, PermissionDeniedError):
            return ""  # with auth enabled the anonymous read is refused, yet was served
        except Exception as err:
            return f"RANGE ERROR:{err}"
        return ""

    # -- /livez and /readyz (etcd 3.5.11+) -------------------------------------------------

    async def _probe(self, req: Request, name: str) -> Response:
        checks: list[tuple[str, str]] = []  # (check, error or "")
        if name == "readyz":
            corrupt = any(a == rpc_pb2.CORRUPT for _, a in self.server.stores.alarms)
            checks.append(("data_corruption", "alarm activated: CORRUPT" if corrupt else ""))
        checks.append(("serializable_read", await self._read_error(True)))
        if name == "readyz":
            checks.append(("linearizable_read", await self._read_error(False)))
        excluded = set(req.query.get("exclude", []))
        lines = []
        failed = False
        for check, err in checks:
            if check in excluded:
                lines.append(f"[+]{check} excluded: ok")
            elif err:
                failed = True
                lines.append(f"[-]{check} failed: {err}")
            else:
                lines.append(f"[+]{check} ok")
        if failed:
            return Response(503, ("\n".join(lines) + f"\n{name} check failed\n").encode())
        if "verbose" in req.query:
            return Response(200, ("\n".join(lines) + "\nok\n").encode())
        return Response(200, b"ok\n")

    async def _read_error(self, serializable: bool) -> str:
        reason = await self._range_check(serializable)
        return reason.removeprefix("RANGE ERROR:")


def _flag(req: Request, name: str) -> bool:
    values = req.query.get(name, [])
    return bool(values) and values[-1].lower() in ("true", "1")
