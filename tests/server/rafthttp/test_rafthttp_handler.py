"""The peer port's HTTP endpoints (pyetcd/server/rafthttp/handler.py): handlers against a
fake member, malformed requests over real sockets, ``httpwire.request`` against them,
and the dispatch from a real PeerTransport listener."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from pyetcd.httpwire import Request, Response, request
from pyetcd.logutil import Level, Logger
from pyetcd.mvcc import Lessor
from pyetcd.pb import lease_pb2, rpc_pb2
from pyetcd.server.etcdserver import errors as se
from pyetcd.server.etcdserver.membership import Member
from pyetcd.server.rafthttp.handler import (
    APPLY_TIMEOUT_TEXT,
    LEASE_INTERNAL_PATH,
    LEASE_NOT_FOUND_TEXT,
    LEASE_PATH,
    NOT_PRIMARY_TEXT,
    PROTOBUF,
    PeerHTTP,
    PeerHTTPLimits,
    members_from_json,
    members_to_json,
)
from pyetcd.server.rafthttp.transport import PeerTransport

CLUSTER = 0x1C2A3B4C5D6E7F80
MEMBERS = [
    Member(1, "a", ("http://127.0.0.1:1",), ("http://127.0.0.1:2",)),
    Member(2, "b", ("https://127.0.0.1:3",), (), is_learner=True),
]
FAST = PeerHTTPLimits(read_timeout=0.5, apply_timeout=0.05, max_body_bytes=1024)


@dataclass
class FakeLeader:
    """The member side of the endpoints: a real lessor on a fake clock."""

    now: list[float] = field(default_factory=lambda: [100.0])
    lessor: Lessor = field(init=False)
    cluster_id: int = CLUSTER
    applied: asyncio.Event = field(default_factory=asyncio.Event)
    promote_error: Exception | None = None
    promoted: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lessor = Lessor(None, clock=lambda: self.now[0])
        self.applied.set()

    def member_list(self) -> list[Member]:
        return list(MEMBERS)

    async def wait_committed_applied(self) -> None:
        await self.applied.wait()

    async def member_promote(self, mid: int) -> list[Member]:
        if self.promote_error is not None:
            raise self.promote_error
        self.promoted.append(mid)
        return list(MEMBERS)


def _logger() -> tuple[Logger, io.StringIO]:
    sink = io.StringIO()
    return Logger([sink], Level.DEBUG), sink


def _primary_with_lease(lease_id: int = 7, ttl: int = 10) -> FakeLeader:
    leader = FakeLeader()
    leader.lessor.promote(0.0)
    leader.lessor.grant(lease_id, ttl)
    leader.lessor.attach(lease_id, b"k2")
    leader.lessor.attach(lease_id, b"k1")
    return leader


def _post(path: str, body: bytes = b"") -> Request:
    return Request("POST", path, body=body)


def _keepalive(lease_id: int) -> bytes:
    return bytes(rpc_pb2.LeaseKeepAliveRequest(ID=lease_id).SerializeToString())


def _ttl_req(lease_id: int, keys: bool) -> bytes:
    req = lease_pb2.LeaseInternalRequest(
        LeaseTimeToLiveRequest=rpc_pb2.LeaseTimeToLiveRequest(ID=lease_id, keys=keys)
    )
    return bytes(req.SerializeToString())


async def _handle(leader: FakeLeader, req: Request) -> Response:
    return await PeerHTTP(leader, _logger()[0], FAST).handle(req)


# -- /leases -----------------------------------------------------------------------------


async def test_renew_on_the_primary_restarts_the_ttl() -> None:
    leader = _primary_with_lease()
    leader.now[0] += 6
    resp = await _handle(leader, _post(LEASE_PATH, _keepalive(7)))
    assert resp.status == 200 and resp.content_type == "application/protobuf"
    out = rpc_pb2.LeaseKeepAliveResponse.FromString(resp.body)
    assert (out.ID, out.TTL) == (7, 10)
    ttl = leader.lessor.time_to_live(7)
    assert ttl is not None and ttl[0] == 10  # renewed at the fake "now"


@pytest.mark.parametrize("lease_id", [8, 0])
async def test_renew_of_unknown_lease_is_404(lease_id: int) -> None:
    resp = await _handle(_primary_with_lease(), _post(LEASE_PATH, _keepalive(lease_id)))
    assert (resp.status, resp.text) == (404, LEASE_NOT_FOUND_TEXT)


async def test_renew_of_expired_lease_is_404() -> None:
    leader = _primary_with_lease()
    leader.now[0] += 11
    resp = await _handle(leader, _post(LEASE_PATH, _keepalive(7)))
    assert (resp.status, resp.text) == (404, LEASE_NOT_FOUND_TEXT)


async def test_lease_endpoints_refuse_on_a_non_primary() -> None:
    leader = _primary_with_lease()
    leader.lessor.demote()
    for path, body in ((LEASE_PATH, _keepalive(7)), (LEASE_INTERNAL_PATH, _ttl_req(7, False))):
        resp = await _handle(leader, _post(path, body))
        assert (resp.status, resp.text) == (400, NOT_PRIMARY_TEXT)


async def test_lease_endpoints_wait_for_apply_then_give_up_with_408() -> None:
    leader = _primary_with_lease()
    leader.applied.clear()
    for path, body in ((LEASE_PATH, _keepalive(7)), (LEASE_INTERNAL_PATH, _ttl_req(7, False))):
        resp = await _handle(leader, _post(path, body))
        assert (resp.status, resp.text) == (408, APPLY_TIMEOUT_TEXT)


async def test_lease_endpoints_answer_once_applied() -> None:
    leader = _primary_with_lease()
    leader.applied.clear()
    limits = PeerHTTPLimits(apply_timeout=5.0)
    pending = asyncio.create_task(
        PeerHTTP(leader, _logger()[0], limits).handle(_post(LEASE_PATH, _keepalive(7)))
    )
    await asyncio.sleep(0)
    assert not pending.done()
    leader.applied.set()
    assert (await pending).status == 200


@pytest.mark.parametrize("path", [LEASE_PATH, LEASE_INTERNAL_PATH])
async def test_garbage_body_is_400(path: str) -> None:
    resp = await _handle(_primary_with_lease(), _post(path, b"\xff\xff\xff"))
    assert (resp.status, resp.text) == (400, "error unmarshalling request")


# -- /leases/internal --------------------------------------------------------------------------


@pytest.mark.parametrize("keys", [True, False])
async def test_time_to_live_from_the_primary(keys: bool) -> None:
    leader = _primary_with_lease()
    leader.now[0] += 3.5
    resp = await _handle(leader, _post(LEASE_INTERNAL_PATH, _ttl_req(7, keys)))
    assert resp.status == 200
    out = lease_pb2.LeaseInternalResponse.FromString(resp.body).LeaseTimeToLiveResponse
    assert out.HasField("header")
    assert (out.ID, out.TTL, out.grantedTTL) == (7, 6, 10)
    assert list(out.keys) == ([b"k1", b"k2"] if keys else [])


async def test_time_to_live_of_unknown_lease_is_404() -> None:
    resp = await _handle(_primary_with_lease(), _post(LEASE_INTERNAL_PATH, _ttl_req(9, True)))
    assert (resp.status, resp.text) == (404, LEASE_NOT_FOUND_TEXT)


# -- /members/promote/<id> ---------------------------------------------------------------------


async def test_promote_answers_the_member_list() -> None:
    leader = FakeLeader()
    resp = await _handle(leader, _post("/members/promote/2"))
    assert resp.status == 200 and resp.content_type == "application/json"
    assert leader.promoted == [2]
    assert members_from_json(resp.body) == MEMBERS


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (se.MemberNotFoundError(), 404),
        (se.MemberNotLearnerError(), 412),
        (se.LearnerNotReadyError(), 412),
        (se.NotLeaderError(), 500),
        (se.RequestTimeoutError(), 500),
    ],
)
async def test_promote_errors_map_to_etcds_statuses(error: Exception, status: int) -> None:
    leader = FakeLeader(promote_error=error)
    resp = await _handle(leader, _post("/members/promote/2"))
    assert resp.status == status
    if status == 500:
        assert json.loads(resp.body) == {"message": "Internal Server Error"}
    else:
        assert resp.text == str(error)


@pytest.mark.parametrize("bad", ["", "abc", "-1", "+5", "0x10", str(1 << 64), "1 2"])
async def test_promote_with_a_bad_id_is_404(bad: str) -> None:
    leader = FakeLeader()
    resp = await _handle(leader, _post("/members/promote/" + bad))
    assert (resp.status, resp.text) == (404, f"member {bad} not found in cluster")
    assert leader.promoted == []


async def test_a_bug_in_a_handler_answers_500_and_is_logged() -> None:
    leader = FakeLeader(promote_error=RuntimeError("boom"))
    logger, sink = _logger()
    resp = await PeerHTTP(leader, logger).handle(_post("/members/promote/2"))
    assert resp.status == 500
    assert "failed to serve peer HTTP request" in sink.getvalue()


# -- routing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/members", 200),
        ("POST", "/members", 405),
        ("GET", LEASE_PATH, 405),
        ("GET", LEASE_INTERNAL_PATH, 405),
        ("GET", "/members/promote/2", 405),
        ("POST", "/raft", 404),
        ("POST", "/leases/other", 404),
        ("GET", "/", 404),
    ],
)
async def test_routes(method: str, path: str, status: int) -> None:
    resp = await _handle(FakeLeader(), Request(method, path))
    assert resp.status == status
    if status == 200:
        assert members_from_json(resp.body) == MEMBERS


def test_member_json_is_etcds_shape() -> None:
    raw = json.loads(members_to_json(MEMBERS))
    assert raw[1] == {
        "id": 2,
        "name": "b",
        "peerURLs": ["https://127.0.0.1:3"],
        "clientURLs": [],
        "isLearner": True,
    }
    for bad in (b"{}", b"[1]", b"[{}]", b"nope"):
        with pytest.raises(ValueError):
            members_from_json(bad)


# -- over sockets --------------------------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, FakeLeader]]:
    """A listener that does what the peer transport does: 4 bytes, then PeerHTTP."""
    leader = _primary_with_lease()
    peer_http = PeerHTTP(leader, _logger()[0], FAST)

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await peer_http.serve(await reader.readexactly(4), reader, writer)
        finally:
            writer.close()

    srv = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", leader
    finally:
        srv.close()
        await srv.wait_closed()


async def _raw(url: str, data: bytes, *, close: bool = True) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    if close:
        writer.write_eof()
    async with asyncio.timeout(5):
        out = await reader.read()
    writer.close()
    return out


async def _post_to(url: str, path: str, body: bytes) -> Response:
    return await request(url + path, "POST", body, timeout=5, content_type=PROTOBUF)


async def test_request_round_trip(server: tuple[str, FakeLeader]) -> None:
    url, _ = server
    resp = await _post_to(url, LEASE_PATH, _keepalive(7))
    assert resp.status == 200 and resp.content_type == PROTOBUF
    assert rpc_pb2.LeaseKeepAliveResponse.FromString(resp.body).TTL == 10
    resp = await _post_to(url, LEASE_PATH, _keepalive(8))
    assert (resp.status, resp.text) == (404, LEASE_NOT_FOUND_TEXT)
    resp = await request(url + "/members?x=1", timeout=5)  # the query is no part of the path
    assert resp.status == 200 and members_from_json(resp.body) == MEMBERS
    assert resp.header("x-etcd-cluster-id") == f"{CLUSTER:x}"


async def test_answers_carry_the_cluster_id(server: tuple[str, FakeLeader]) -> None:
    url, _ = server
    out = await _raw(url, b"GET /members HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert f"X-Etcd-Cluster-ID: {CLUSTER:x}".encode() in head
    assert b"Connection: close" in head
    assert members_from_json(body) == MEMBERS


async def test_a_chunked_body_is_read(server: tuple[str, FakeLeader]) -> None:
    url, _ = server
    body = _keepalive(7)
    out = await _raw(
        url,
        b"POST /leases HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body),
    )
    head, _, data = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert rpc_pb2.LeaseKeepAliveResponse.FromString(data).TTL == 10


H = b"Host: x\r\n"
CHUNKED = b"Transfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"POST /leases HTTP/1.1\r\n" + H + b"Content-Length: 5000\r\n\r\n", 413),
        (b"POST /leases HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400),
        (b"POST /leases HTTP/1.1\r\n" + H + b"Content-Length: 1e3\r\n\r\n", 400),
        (b"POST /leases HTTP/1.1\r\n" + H + b"Content-Length: 1\r\ncontent-length: 2\r\n\r\n", 400),
        (b"POST /leases HTTP/1.1\r\n" + H + b"X: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"POST /leases HTTP/1.1\r\n" + H + CHUNKED + b"-5\r\nab", 400),
        (b"POST /leases HTTP/1.1\r\n" + H + CHUNKED + b"f" * 9000, 431),
        (b"POST /leases HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n", 501),
        (b"POST /leases HTTP/1.1\r\n" + H + b"no colon\r\n\r\n", 400),
        (b"POST /leases HTTP/1.1\r\n" + H + b"Bad Name: x\r\n\r\n", 400),
        (b"POST /leases HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 400),  # no Host
        (b"POST leases HTTP/1.1\r\n" + H + b"\r\n", 400),
        (b"POST /leases HTTP/2.0\r\n" + H + b"\r\n", 505),
        (b"POST /leases\r\n\r\n", 400),
        (b"POSTX /leases HTTP/1.1\r\n\r\n", 400),
    ],
)  # fmt: skip
async def test_bad_requests_get_4xx(
    server: tuple[str, FakeLeader], request_bytes: bytes, status: int
) -> None:
    url, _ = server
    out = await _raw(url, request_bytes)
    assert out.startswith(f"HTTP/1.1 {status} ".encode()), out[:80]
    assert b"\r\nConnection: close\r\n" in out
    assert f"X-Etcd-Cluster-ID: {CLUSTER:x}".encode() in out


async def test_a_slow_client_gets_408(server: tuple[str, FakeLeader]) -> None:
    url, _ = server
    # the head never ends: the read timeout (0.5 s here) answers
    out = await _raw(url, b"POST /leases HTTP/1.1\r\n", close=False)
    assert out.startswith(b"HTTP/1.1 408 ")


async def test_a_client_gone_mid_body_gets_nothing_and_the_server_lives(
    server: tuple[str, FakeLeader],
) -> None:
    url, _ = server
    got = await _raw(url, b"POST /leases HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
    assert got == b""
    resp = await _post_to(url, LEASE_PATH, _keepalive(7))
    assert resp.status == 200


async def test_the_peer_listener_dispatches_get_and_post() -> None:
    leader = _primary_with_lease()
    logger, sink = _logger()
    tr = PeerTransport(
        1,
        CLUSTER,
        ("http://127.0.0.1:0",),
        {},
        on_message=lambda m: None,
        on_unreachable=lambda p: None,
        on_snapshot_status=lambda p, ok: None,
        logger=logger,
        http_handler=PeerHTTP(leader, logger, FAST).serve,
    )
    await tr.start()
    try:
        host, port = tr.listen_addresses[0]
        url = f"http://{host}:{port}"
        resp = await _post_to(url, LEASE_INTERNAL_PATH, _ttl_req(7, True))
        assert resp.status == 200
        out = lease_pb2.LeaseInternalResponse.FromString(resp.body)
        assert list(out.LeaseTimeToLiveResponse.keys) == [b"k1", b"k2"]
        got = await _raw(url, b"GET /members HTTP/1.1\r\nHost: x\r\n\r\n")
        assert got.startswith(b"HTTP/1.1 200 OK")
        bad = b"POST /leases HTTP/1.1\r\nHost: x\r\n" + CHUNKED + b"-5\r\n"
        assert (await _raw(url, bad, close=False)).startswith(b"HTTP/1.1 400 ")
    finally:
        await tr.close()
    # one debug line for the malformed request, nothing else
    lines = [line for line in sink.getvalue().splitlines() if "HTTP" in line]
    assert len(lines) == 1 and "rejected a malformed HTTP request" in lines[0]
    assert "Traceback" not in sink.getvalue()
