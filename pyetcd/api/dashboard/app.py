"""The dashboard on the client URLs: ``/dashboard/`` (the page and its modules) and
``/dashboard/api/...`` (the data the page reads).

Routes:

- ``GET /dashboard/``, ``/dashboard/static/<file>``: the page, plain JS modules and
  CSS shipped in the wheel; no data, so open to anyone.
- ``GET /dashboard/api/member``: this member's own view (``state.member_view``),
  what the other members ask for when they build their page.
- ``GET /dashboard/api/state``: the cluster view once, as JSON.
- ``GET /dashboard/api/events``: the cluster view pushed as Server-Sent Events
  (``event: state``): once a second, and at once when this member's timeline gains
  an event; the first push carries the chart history, later ones the newest sample.
- ``GET /dashboard/api/watch?prefix=P``: a live watch on keys starting with ``P``,
  as Server-Sent Events (``event: watch``).

Every ``api`` route passes the auth gate (``gate.py``) first; the gate is asked again
before every push, so a token that expires or a user that is deleted stops the feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from pyetcd.api.etcdhttp.metrics import ServerMetrics
from pyetcd.api.v3rpc.concurrency import prefix_end
from pyetcd.httpwire import Request, Response
from pyetcd.mvcc.types import EventType
from pyetcd.server.etcdserver.server import EtcdServer

from .gate import Denied, authorize, authorize_watch, token_of, user_json
from .gather import fetch_views
from .state import MetricsSampler, cluster_view, member_snapshot, member_view
from .timeline import StateDiffer, Timeline

__all__ = ["PREFIX", "Dashboard"]

PREFIX = "/dashboard"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
_SSE = "text/event-stream"
_SSE_HEADERS = (("Cache-Control", "no-cache"), ("X-Accel-Buffering", "no"))
#: Between two pushes of the state feed at most, and at least (a burst of events).
PUSH_INTERVAL = 1.0
MIN_PUSH_INTERVAL = 0.2
#: How long a peer has to answer for its view.
PEER_TIMEOUT = 0.8
#: A comment line on an idle watch feed, so proxies and the browser keep it open.
KEEPALIVE_SECONDS = 15.0


def sse(event: str, data: object) -> bytes:
    """One Server-Sent Event with a JSON payload."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _assets() -> dict[str, tuple[bytes, str]]:
    folder = resources.files("pyetcd.api.dashboard").joinpath("static")
    out: dict[str, tuple[bytes, str]] = {}
    for item in folder.iterdir():
        suffix = "." + item.name.rsplit(".", 1)[-1]
        if item.is_file() and suffix in _TYPES:
            out[item.name] = (item.read_bytes(), _TYPES[suffix])
    return out


def _denied(d: Denied) -> Response:
    return Response.json(d.result.status, d.result.body)


class Dashboard:
    """Serves the dashboard of ``server`` and keeps its timeline and chart history.

    ``timeline`` is the recorder the server was built with; ``metrics`` the registry
    behind ``/metrics``; ``client_ssl`` the TLS settings to ask peers over https
    client URLs. Call :meth:`start` once the server runs, :meth:`stop` before it stops.
    """

    def __init__(
        self,
        server: EtcdServer,
        metrics: ServerMetrics,
        timeline: Timeline,
        *,
        client_ssl: ssl.SSLContext | None = None,
    ) -> None:
        self.server = server
        self.timeline = timeline
        self.client_ssl = client_ssl
        self.metrics = metrics
        self.sampler = MetricsSampler(self._chart_values)
        self.differ = StateDiffer(timeline)
        self.assets = _assets()
        self._task: asyncio.Task[None] | None = None

    def _chart_values(self) -> dict[str, float]:
        # the live lease count is no /metrics series (etcd has none)
        values = self.metrics.chart_values()
        values["leases"] = float(self.server.lessor.lease_count)
        return values

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Begin sampling the metrics and the applied state (once a second)."""
        self.differ.observe(member_snapshot(self.server))
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                self.sampler.sample()
                self.differ.observe(member_snapshot(self.server))
            except Exception as err:  # a sampling bug must not end the member's dashboard
                self.server.log.warn("dashboard failed to sample", {"error": repr(err)})

    # -- routing ----------------------------------------------------------------------------

    @staticmethod
    def knows(path: str) -> bool:
        """Whether ``path`` is the dashboard's."""
        return path == PREFIX or path.startswith(PREFIX + "/")

    async def dispatch(self, req: Request) -> Response:
        """Answer one dashboard request."""
        if req.method not in ("GET", "HEAD"):
            return Response(405, b"Method Not Allowed\n", headers=(("Allow", "GET"),))
        path = req.path.removeprefix(PREFIX)
        if path == "":
            return Response(301, b"", headers=(("Location", PREFIX + "/"),))
        if path in ("/", "/index.html"):
            return self._asset("index.html")
        if path.startswith("/static/"):
            return self._asset(path.removeprefix("/static/"))
        token = token_of(req)
        try:
            if path == "/api/member":
                await authorize(self.server, token)
                return Response.json(200, member_view(self.server, self.timeline))
            if path == "/api/state":
                info = await authorize(self.server, token)
                state = await self.cluster_state(token)
                state["user"] = user_json(self.server, info)
                state["history"] = self.sampler.history()
                return Response.json(200, state)
            if path == "/api/events":
                await authorize(self.server, token)
                return Response(
                    200, content_type=_SSE, headers=_SSE_HEADERS, stream=self._state_feed(token)
                )
            if path == "/api/watch":
                prefix = req.query.get("prefix", [""])[-1].encode()
                key, end = (prefix, prefix_end(prefix)) if prefix else (b"\x00", b"\x00")
                await authorize_watch(self.server, token, key, end)
                return Response(
                    200,
                    content_type=_SSE,
                    headers=_SSE_HEADERS,
                    stream=self._watch_feed(token, key, end),
                )
        except Denied as d:
            return _denied(d)
        return Response(404, b"404 page not found\n")

    def _asset(self, name: str) -> Response:
        asset = self.assets.get(name)
        if asset is None:
            return Response(404, b"404 page not found\n")
        body, ctype = asset
        return Response(200, body, ctype, headers=(("Cache-Control", "no-cache"),))

    # -- the state feed ---------------------------------------------------------------------

    async def cluster_state(self, token: str) -> dict[str, Any]:
        """The cluster view: this member's own, the others' asked over their client URLs."""
        server = self.server
        members = list(server.membership.members.values())
        views: dict[int, dict[str, Any] | str] = dict(
            await fetch_views(
                members,
                server.member_id,
                token,
                ssl_context=self.client_ssl,
                timeout=PEER_TIMEOUT,
            )
        )
        views[server.member_id] = member_view(server, self.timeline)
        return cluster_view(server.member_id, members, views)

    async def _state_feed(self, token: str) -> AsyncIterator[bytes]:
        listener = self.timeline.listen()
        first = True
        try:
            while True:
                listener.clear()
                try:
                    info = await authorize(self.server, token)
                except Denied as d:
                    yield sse("denied", d.result.body)
                    return
                state = await self.cluster_state(token)
                state["user"] = user_json(self.server, info)
                if first:
                    state["history"] = self.sampler.history()
                    first = False
                elif self.sampler.samples:
                    state["sample"] = self.sampler.samples[-1].to_json()
                yield sse("state", state)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(listener.wait(), PUSH_INTERVAL)
                # an election is a burst of events: let it finish, push it once
                await asyncio.sleep(MIN_PUSH_INTERVAL)
        finally:
            self.timeline.unlisten(listener)

    # -- the watch feed ---------------------------------------------------------------------

    async def _watch_feed(self, token: str, key: bytes, end: bytes) -> AsyncIterator[bytes]:
        server = self.server
        wake = asyncio.Event()
        stream = server.watchable.new_stream(notify=wake.set)
        stream.watch(key, end)
        try:
            yield sse("created", {"revision": server.stores.kv.current_revision})
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), KEEPALIVE_SECONDS)
                wake.clear()
                responses = stream.pop_all()
                server.kick_watch_sync()
                if not responses:
                    yield b": keep-alive\n\n"
                    continue
                try:  # a revoked permission ends the feed, as a new Watch would be refused
                    await authorize_watch(server, token, key, end)
                except Denied as d:
                    yield sse("denied", d.result.body)
                    return
                for resp in responses:
                    for ev in resp.events:
                        yield sse("watch", _event_json(ev.type, ev.kv))
        finally:
            stream.close()


def _event_json(kind: EventType, kv: Any) -> dict[str, Any]:
    return {
        "type": "PUT" if kind == EventType.PUT else "DELETE",
        "key": kv.key.decode(errors="replace"),
        "value": kv.value.hex(),
        "mod_revision": kv.mod_revision,
        "create_revision": kv.create_revision,
        "version": kv.version,
        "lease": f"{kv.lease:x}" if kv.lease else "",
    }
