"""HTTP on the client port: the connection sorter (cmux), the endpoints, the gateway."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from pyetcd.api.etcdhttp.handler import HTTPFrontend
from pyetcd.httpwire import Request
from pyetcd.pb import rpc_pb2, rpc_pb2_grpc

from .conftest import LiveMember, http, read_reply, start_member


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def doc(reply: Any) -> Any:
    return json.loads(reply.body)


# -- endpoints, through a real member ----------------------------------------------------


async def test_health_version_and_errors(member: LiveMember) -> None:
    r = await http(member, "GET", "/health")
    assert (r.status, r.body) == (200, b'{"health":"true","reason":""}')
    assert r.headers["content-type"] == "application/json"
    r = await http(member, "GET", "/health?serializable=true")
    assert r.status == 200 and doc(r)["health"] == "true"
    r = await http(member, "POST", "/health")
    assert (r.status, r.headers["allow"], r.body) == (405, "GET", b"Method Not Allowed\n")
    r = await http(member, "GET", "/version")
    assert doc(r) == {"etcdserver": "3.5.13", "etcdcluster": "3.5.0"}
    r = await http(member, "GET", "/nope")
    assert (r.status, r.body) == (404, b"404 page not found\n")
    r = await http(member, "GET", "/v3/kv/range")
    assert r.status == 405
    r = await http(member, "POST", "/v3/kv/nope", b"{}")
    assert (r.status, r.body) == (404, b"Not Found\n")


async def test_livez_readyz(member: LiveMember) -> None:
    r = await http(member, "GET", "/livez")
    assert (r.status, r.body) == (200, b"ok\n")
    r = await http(member, "GET", "/readyz?verbose")
    assert r.status == 200
    assert r.body.decode().splitlines() == [
        "[+]data_corruption ok",
        "[+]serializable_read ok",
        "[+]linearizable_read ok",
        "ok",
    ]


async def test_keep_alive_and_chunked_body(member: LiveMember) -> None:
    reader, writer = await asyncio.open_connection(member.host, member.port)
    body = json.dumps({"key": b64(b"ka"), "value": b64(b"v")}).encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    writer.write(
        b"POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked
    )
    writer.write(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
    first = await read_reply(reader)
    second = await read_reply(reader)
    writer.close()
    assert first.status == 200 and "header" in doc(first)
    assert doc(second)["etcdserver"] == "3.5.13"


async def test_grpc_and_http_share_the_port(member: LiveMember) -> None:
    async with grpc.aio.insecure_channel(member.target) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        put = await kv.Put(rpc_pb2.PutRequest(key=b"shared", value=b"x" * 300_000))
        got = await kv.Range(rpc_pb2.RangeRequest(key=b"shared"))
        assert got.kvs[0].value == b"x" * 300_000
    r = await http(member, "POST", "/v3/kv/range", json.dumps({"key": b64(b"shared")}).encode())
    kvs = doc(r)["kvs"]
    assert base64.b64decode(kvs[0]["value"]) == b"x" * 300_000
    assert kvs[0]["mod_revision"] == str(put.header.revision)


# -- the JSON gateway ----------------------------------------------------------------------


async def post(m: LiveMember, path: str, obj: Any = None, raw: bytes | None = None) -> Any:
    body = raw if raw is not None else json.dumps(obj or {}).encode()
    return await http(m, "POST", path, body)


async def test_gateway_kv(member: LiveMember) -> None:
    r = await post(member, "/v3/kv/put", {"key": b64(b"foo"), "value": b64(b"bar")})
    header = doc(r)["header"]
    assert set(header) == {"cluster_id", "member_id", "revision", "raft_term"}
    assert all(isinstance(v, str) for v in header.values())  # int64 as strings
    rev = int(header["revision"])
    put = {"key": b64(b"foo"), "value": b64(b"baz"), "prev_kv": True}
    r = await post(member, "/v3/kv/put", put)
    assert doc(r)["prev_kv"] == {
        "key": b64(b"foo"),
        "create_revision": str(rev),
        "mod_revision": str(rev),
        "version": "1",
        "value": b64(b"bar"),
    }
    r = await post(member, "/v3/kv/range", {"key": b64(b"foo"), "count_only": True})
    assert set(doc(r)) == {"header", "count"} and doc(r)["count"] == "1"
    r = await post(member, "/v3/kv/range", {"key": b64(b"missing")})
    assert set(doc(r)) == {"header"}  # zero values are omitted
    txn = {
        "compare": [{"target": "VALUE", "key": b64(b"foo"), "value": b64(b"baz")}],
        "success": [{"requestRange": {"key": b64(b"foo")}}],  # camelCase accepted
    }
    r = await post(member, "/v3/kv/txn", txn)
    assert doc(r)["succeeded"] is True
    assert doc(r)["responses"][0]["response_range"]["count"] == "1"
    r = await post(member, "/v3/kv/deleterange", {"key": b64(b"foo")})
    assert doc(r)["deleted"] == "1"
    r = await post(member, "/v3/kv/compaction", {"revision": str(rev)})
    assert r.status == 200


async def test_gateway_errors(member: LiveMember) -> None:
    r = await post(member, "/v3/kv/range", {"key": ""})
    message = "etcdserver: key is not provided"
    assert (r.status, r.body) == (
        400,
        b'{"error":"%s","code":3,"message":"%s"}' % (message.encode(), message.encode()),
    )
    r = await post(member, "/v3/kv/range", {"key": b64(b"k"), "revision": "100"})
    assert (r.status, doc(r)["code"]) == (400, 11)
    assert doc(r)["error"] == "etcdserver: mvcc: required revision is a future revision"
    r = await post(member, "/v3/lease/revoke", {"ID": "5"})
    assert (r.status, doc(r)["code"], doc(r)["message"]) == (
        404,
        5,
        "etcdserver: requested lease not found",
    )
    r = await post(member, "/v3/kv/range", raw=b"garbage")
    assert (r.status, doc(r)["code"]) == (400, 3)


async def test_gateway_lease_maintenance_cluster(member: LiveMember) -> None:
    r = await post(member, "/v3/lease/grant", {"TTL": 30, "ID": 77})
    assert (doc(r)["ID"], doc(r)["TTL"]) == ("77", "30")
    r = await post(member, "/v3/lease/timetolive", {"ID": 77, "keys": True})
    assert doc(r)["grantedTTL"] == "30" and "keys" not in doc(r)
    r = await post(member, "/v3/kv/lease/leases", {})  # etcd's older alias
    assert doc(r)["leases"] == [{"ID": "77"}]
    r = await post(member, "/v3/lease/revoke", {"ID": 77})
    assert r.status == 200
    r = await post(member, "/v3/maintenance/status", {})
    status = doc(r)
    assert status["version"] == "3.5.13"
    assert status["leader"] == status["header"]["member_id"]
    assert int(status["dbSize"]) > 0 and int(status["raftIndex"]) > 0
    r = await post(member, "/v3/cluster/member/list", {})
    body = doc(r)
    assert "revision" not in body["header"]
    (m,) = body["members"]
    assert m["name"] == "default" and m["clientURLs"] == [member.url]
    assert m["ID"] == body["header"]["member_id"]


# -- malformed requests, over a real member's client port ---------------------------------

CHUNKED_POST = b"POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


async def _raw(m: LiveMember, data: bytes) -> bytes:
    """Send ``data`` and read until the member closes the connection."""
    reader, writer = await asyncio.open_connection(m.host, m.port)
    try:
        writer.write(data)
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET /health HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400),
        (b"GET /health\x00 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (CHUNKED_POST + b"-5\r\nabcde\r\n0\r\n\r\n", 400),
        (CHUNKED_POST + b"1" * 70_000 + b"\r\n", 431),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n", 431),
        (b"POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Length: 12z\r\n\r\n", 400),
        (b"POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n", 413),
    ],
)
async def test_malformed_requests_get_4xx_and_a_closed_connection(
    member: LiveMember, data: bytes, status: int
) -> None:
    out = await _raw(member, data + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 %d " % status), out[:80]
    assert b"HTTP/1.1 200 " not in out  # closed: the request after it is not served
    assert b"\r\nConnection: close\r\n" in out
    assert b"Access-Control-Allow-Origin: *" in out
    assert "Traceback" not in member.logger.out.getvalue()
    r = await http(member, "GET", "/health")  # and the member serves on
    assert r.status == 200


async def test_head_and_body_limit_of_the_gateway(tmp_path: Path) -> None:
    m, stop, task = await start_member(tmp_path, max_request_bytes=1024)
    try:
        out = await _raw(m, b"HEAD /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 200 ") and out.endswith(b"\r\n\r\n")
        assert b"\r\nContent-Length: 29\r\n" in out  # the length of the body not sent
        big = json.dumps({"key": b64(b"k"), "value": b64(b"v" * 600_000)}).encode()
        out = await _raw(m, CHUNKED_POST + b"%x\r\n%s\r\n0\r\n\r\n" % (len(big), big))
        assert out.startswith(b"HTTP/1.1 413 ")
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 20) == 0


# -- /health when unhealthy (a stand-in server: a lone member always has a leader) ---------


def _stub(leader: int, alarms: set[tuple[int, int]]) -> Any:
    async def range_(req: rpc_pb2.RangeRequest) -> rpc_pb2.RangeResponse:
        return rpc_pb2.RangeResponse()

    return SimpleNamespace(
        leader=leader,
        stores=SimpleNamespace(alarms=alarms),
        kv=SimpleNamespace(range=range_),
        request_timeout=1.0,
        cfg=SimpleNamespace(
            max_request_bytes=1 << 20, experimental_watch_progress_notify_interval=0.0
        ),
    )


async def _get(front: HTTPFrontend, target: str) -> Any:
    path, _, query = target.partition("?")
    from urllib.parse import parse_qs

    req = Request("GET", path, parse_qs(query, keep_blank_values=True))
    return await front.dispatch(req)


async def test_health_reasons() -> None:
    metrics = SimpleNamespace(
        health_success=SimpleNamespace(inc=lambda: None),
        health_failures=SimpleNamespace(inc=lambda: None),
    )
    front = HTTPFrontend(_stub(0, set()), metrics)  # type: ignore[arg-type]
    r = await _get(front, "/health")
    assert (r.status, json.loads(r.body)) == (503, {"health": "false", "reason": "RAFT NO LEADER"})
    r = await _get(front, "/health?serializable=true")
    assert r.status == 200
    front = HTTPFrontend(_stub(1, {(1, rpc_pb2.NOSPACE)}), metrics)  # type: ignore[arg-type]
    r = await _get(front, "/health")
    assert (r.status, json.loads(r.body)["reason"]) == (503, "ALARM NOSPACE")
    r = await _get(front, "/health?exclude=NOSPACE")
    assert r.status == 200


# -- the connection sorter, with its first bytes arriving one by one ---------------------


async def _trickle(writer: asyncio.StreamWriter, pieces: list[bytes]) -> None:
    for piece in pieces:
        writer.write(piece)
        await writer.drain()
        for _ in range(3):  # let the member's side of the loop read each piece on its own
            await asyncio.sleep(0)


async def test_http2_preface_one_byte_at_a_time_gets_settings(member: LiveMember) -> None:
    from pyetcd.grpcwire.frames import PREFACE

    reader, writer = await asyncio.open_connection(member.host, member.port)
    try:
        await _trickle(writer, [PREFACE[i : i + 1] for i in range(len(PREFACE))])
        head = await asyncio.wait_for(reader.readexactly(9), 10)
        assert (head[3], head[4], head[5:9]) == (4, 0, bytes(4))  # SETTINGS, no ACK, stream 0
    finally:
        writer.close()


async def test_http1_request_in_tiny_pieces(member: LiveMember) -> None:
    for pieces, status in [
        ([b"G", b"ET /health HTTP/1.1\r\nHost: x\r\n\r\n"], 200),
        ([b"P", b"O", b"ST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"], 405),
        ([b"P", b"U", b"T /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"], 405),
    ]:
        reader, writer = await asyncio.open_connection(member.host, member.port)
        try:
            await _trickle(writer, pieces)
            r = await asyncio.wait_for(read_reply(reader), 10)
        finally:
            writer.close()
        assert r.status == status
        if status == 200:
            assert doc(r) == {"health": "true", "reason": ""}
