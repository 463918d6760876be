"""pyetcd/api/dashboard/app.py on a live in-process member: the routes, the state
feed, the watch feed, the auth gate, and ``--enable-dashboard``."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pyetcd.api.etcdhttp.metrics import CHART_SERIES
from pyetcd.pb import rpc_pb2, rpc_pb2_grpc
from tests.api.conftest import LiveMember, http, read_reply, start_member
from tests.test_cli import run as run_cli


class SSE:
    """A Server-Sent Events answer read off a raw connection (chunked framing)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.buf = b""

    async def next(self, timeout: float = 5.0) -> tuple[str, Any]:
        async with asyncio.timeout(timeout):
            while b"\n\n" not in self.buf:
                size = int((await self.reader.readline()).strip(), 16)
                self.buf += await self.reader.readexactly(size)
                await self.reader.readline()
        block, self.buf = self.buf.split(b"\n\n", 1)
        name, data = "message", ""
        for line in block.decode().split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data = line[5:].strip()
        return name, json.loads(data) if data else None

    async def next_named(self, name: str, timeout: float = 5.0) -> Any:
        async with asyncio.timeout(timeout):
            while True:
                got, data = await self.next(timeout)
                if got == name:
                    return data

    def close(self) -> None:
        self.writer.close()


async def open_sse(m: LiveMember, path: str, token: str = "") -> tuple[int, SSE | bytes]:
    reader, writer = await asyncio.open_connection(m.host, m.port)
    head = f"GET {path} HTTP/1.1\r\nHost: {m.target}\r\n"
    if token:
        head += f"Authorization: {token}\r\n"
    writer.write(head.encode() + b"\r\n")
    await writer.drain()
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := (await reader.readline()).decode()) not in ("\r\n", ""):
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if status != 200:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        writer.close()
        return status, body
    assert headers["content-type"] == "text/event-stream"
    assert headers["transfer-encoding"] == "chunked"
    return status, SSE(reader, writer)


async def get(m: LiveMember, path: str, token: str = "") -> tuple[int, Any]:
    if not token:
        r = await http(m, "GET", path)
    else:
        reader, writer = await asyncio.open_connection(m.host, m.port)
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {m.target}\r\nAuthorization: {token}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        r = await read_reply(reader)
        writer.close()
    try:
        return r.status, json.loads(r.body)
    except ValueError:
        return r.status, r.body


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveMember]:
    m, stop, task = await start_member(tmp_path)
    try:
        yield m
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 20) == 0


async def test_page_and_assets(live: LiveMember) -> None:
    r = await http(live, "GET", "/dashboard")
    assert r.status == 301 and r.headers["location"] == "/dashboard/"
    r = await http(live, "GET", "/dashboard/")
    assert r.status == 200 and r.headers["content-type"].startswith("text/html")
    assert b'src="static/app.js"' in r.body
    for name in ("app.js", "api.js", "cluster.js", "charts.js", "keys.js"):
        r = await http(live, "GET", f"/dashboard/static/{name}")
        assert r.status == 200 and r.headers["content-type"].startswith("text/javascript")
    assert (await http(live, "GET", "/dashboard/static/../handler.py")).status == 404
    assert (await http(live, "GET", "/dashboard/api/nothing")).status == 404
    assert (await http(live, "POST", "/dashboard/api/state")).status == 405


async def test_state_of_a_one_member_cluster(live: LiveMember) -> None:
    status, state = await get(live, "/dashboard/api/state")
    assert status == 200
    (me,) = state["members"]
    assert me["is_self"] and me["is_leader"] and me["reachable"] and me["name"] == "default"
    assert state["leader"] == me["id"] == state["self"]
    s = me["status"]
    assert s["role"] == "leader" and s["term"] == state["term"] >= 2
    assert s["commit"] >= s["applied"] - 0 and s["applied"] >= 1
    assert s["progress"][me["id"]]["match"] >= s["commit"]
    assert state["user"] == {"auth": False, "name": "", "admin": True}
    texts = [e["text"] for e in state["timeline"]]
    assert f"became leader at term {s['term']}" in texts
    assert f"leader is now {me['id']} at term {s['term']}" in texts


async def test_state_feed_pushes_history_then_samples(live: LiveMember) -> None:
    status, feed = await open_sse(live, "/dashboard/api/events")
    assert status == 200 and isinstance(feed, SSE)
    try:
        first = await feed.next_named("state")
        assert "history" in first and first["members"][0]["is_self"]
        later = await feed.next_named("state", timeout=5)
        assert "history" not in later and "sample" in later
        assert {"committed", "applied", "revision", "fsync_count", "leases"} <= set(later["sample"])
        assert {"requests", "requests_failed", "commit_count"} <= set(later["sample"])
        assert "latency_count" not in later["sample"]  # basic metrics keep no handling times
    finally:
        feed.close()


async def test_samples_carry_requests_and_latencies(tmp_path: Path) -> None:
    """What the request, request-latency and backend-commit charts read, on a member
    started with --metrics=extensive (a basic one carries no latency: test_state)."""
    m, stop, task = await start_member(tmp_path, metrics="extensive")
    try:
        status, feed = await open_sse(m, "/dashboard/api/events")
        assert status == 200 and isinstance(feed, SSE)
        try:
            await feed.next_named("state")
            async with grpc.aio.insecure_channel(m.target) as ch:
                kv = rpc_pb2_grpc.KVStub(ch)
                for i in range(5):
                    await kv.Put(rpc_pb2.PutRequest(key=b"k%d" % i, value=b"v"))
            async with asyncio.timeout(10):
                while True:
                    s = (await feed.next_named("state"))["sample"]
                    if s["requests"] >= 5 and s["latency_count"] >= 5 and s["commit_count"]:
                        break
            assert s["latency_sum"] > 0 and s["commit_sum"] > 0
            assert s["requests_failed"] == 0
        finally:
            feed.close()
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 20) == 0


def _chart_series_of(exposition: str) -> dict[str, float]:
    """The charted series as /metrics exposes them (the page's numbers before issue 22's
    direct reads: the sampler then walked these very families)."""
    out: dict[str, float] = {"requests": 0.0, "requests_failed": 0.0}
    by_name = {name: series for series, name in CHART_SERIES.items()}
    for family in text_string_to_metric_families(exposition):
        for s in family.samples:
            if not s.labels and s.name in by_name:
                out[by_name[s.name]] = s.value
            elif s.name == "grpc_server_handled_total":
                out["requests"] += s.value
                if s.labels["grpc_code"] != "OK":
                    out["requests_failed"] += s.value
            elif s.labels.get("grpc_type") == "unary" and s.name.startswith(
                "grpc_server_handling_seconds_"
            ):
                series = {"sum": "latency_sum", "count": "latency_count"}.get(s.name[29:])
                if series is not None:
                    out[series] = out.get(series, 0.0) + s.value
    return out


async def test_sampled_values_equal_what_metrics_exposes(tmp_path: Path) -> None:
    """A sample reads the charted numbers from the objects that hold them: each must be
    what /metrics says for its series, taken while the member is quiet."""
    m, stop, task = await start_member(tmp_path, metrics="extensive")
    try:
        async with grpc.aio.insecure_channel(m.target) as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            for i in range(20):
                await kv.Put(rpc_pb2.PutRequest(key=b"k%d" % i, value=b"v" * 100))
            with pytest.raises(grpc.aio.AioRpcError):  # a future revision: OutOfRange
                await kv.Range(rpc_pb2.RangeRequest(key=b"k", revision=10**6))
            lease = rpc_pb2_grpc.LeaseStub(ch)
            await lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=600))
        for _ in range(10):  # a backend commit may land between two reads: read again
            before = _chart_series_of((await http(m, "GET", "/metrics")).body.decode())
            asked = time.time()
            async with asyncio.timeout(10):
                while True:
                    _, state = await get(m, "/dashboard/api/state")
                    if state["history"] and state["history"][-1]["t"] > asked:
                        sample = state["history"][-1]
                        break
                    await asyncio.sleep(0.2)
            after = _chart_series_of((await http(m, "GET", "/metrics")).body.decode())
            if before == after:
                break
        assert before == after, "the member never stayed quiet between two scrapes"
        got = {k: v for k, v in sample.items() if k not in ("t", "leases")}
        assert got == after
        assert sample["leases"] == 1
        assert after["requests"] >= 22 and after["requests_failed"] == 1
        assert after["latency_count"] >= 22 and after["commit_count"] > 0
        assert after["revision"] == 21 and after["fsync_count"] > 0
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 20) == 0


async def test_watch_feed_streams_puts_and_deletes_under_its_prefix(live: LiveMember) -> None:
    status, feed = await open_sse(live, "/dashboard/api/watch?prefix=/app/")
    assert status == 200 and isinstance(feed, SSE)
    try:
        await feed.next_named("created")
        async with grpc.aio.insecure_channel(live.target) as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            await kv.Put(rpc_pb2.PutRequest(key=b"/other", value=b"no"))
            await kv.Put(rpc_pb2.PutRequest(key=b"/app/a", value=b"1"))
            await kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"/app/a"))
        put = await feed.next_named("watch")
        assert (put["type"], put["key"], bytes.fromhex(put["value"])) == ("PUT", "/app/a", b"1")
        gone = await feed.next_named("watch")
        assert (gone["type"], gone["key"]) == ("DELETE", "/app/a")
        assert gone["mod_revision"] == put["mod_revision"] + 1
    finally:
        feed.close()


async def test_auth_gate(tmp_path: Path) -> None:
    m, stop, task = await start_member(tmp_path)
    try:
        async with grpc.aio.insecure_channel(m.target) as ch:
            auth = rpc_pb2_grpc.AuthStub(ch)
            await auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="root", password="r"))
            await auth.UserGrantRole(rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"))
            await auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="bob", password="b"))
            await auth.AuthEnable(rpc_pb2.AuthEnableRequest())
            root = (
                await auth.Authenticate(rpc_pb2.AuthenticateRequest(name="root", password="r"))
            ).token
            bob = (
                await auth.Authenticate(rpc_pb2.AuthenticateRequest(name="bob", password="b"))
            ).token
        # Anonymous: nothing but the etcd error the gRPC API gives.
        for path in (
            "/dashboard/api/state",
            "/dashboard/api/member",
            "/dashboard/api/events",
            "/dashboard/api/watch?prefix=x",
        ):
            status, body = await get(m, path)
            assert status == 400, path
            assert body == {
                "error": "etcdserver: user name is empty",
                "code": 3,
                "message": "etcdserver: user name is empty",
            }
        status, body = await get(m, "/dashboard/api/state", token="bogus.1")
        assert status == 401 and body["message"] == "etcdserver: invalid auth token"
        # The page itself holds no data and loads anonymously.
        assert (await http(m, "GET", "/dashboard/")).status == 200
        # A user with no role: the cluster yes, a watch on keys it may not read no.
        status, state = await get(m, "/dashboard/api/state", token=bob)
        assert status == 200 and state["user"] == {"auth": True, "name": "bob", "admin": False}
        status, body = await get(m, "/dashboard/api/watch?prefix=x", token=bob)
        assert status == 403 and body["message"] == "etcdserver: permission denied"
        status, state = await get(m, "/dashboard/api/state", token=root)
        assert status == 200 and state["user"]["admin"] is True
        status, feed = await open_sse(m, "/dashboard/api/watch?prefix=x", token=root)
        assert status == 200 and isinstance(feed, SSE)
        feed.close()
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 20) == 0


async def test_disabled_dashboard_is_not_served(tmp_path: Path) -> None:
    m, stop, task = await start_member(tmp_path, enable_dashboard=False)
    try:
        for path in ("/dashboard/", "/dashboard/api/state"):
            r = await http(m, "GET", path)
            assert r.status == 404, path
        assert (await http(m, "GET", "/health")).status == 200
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 20) == 0


def test_enable_dashboard_flag_is_a_go_boolean() -> None:
    rc, out, _records, raw = run_cli(["--enable-dashboard=maybe"])
    assert rc == 2 and out == ""
    assert raw.splitlines()[0] == 'invalid boolean value "maybe" for -enable-dashboard: parse error'
