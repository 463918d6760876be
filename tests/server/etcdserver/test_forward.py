"""The follower's forwarder (pyetcd/server/etcdserver/forward.py) against scripted leaders on
127.0.0.1: answers, retries until the request timeout, and the typed errors."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from pyetcd.httpwire import Request, Response, ServeOptions, serve
from pyetcd.logutil import Level, Logger
from pyetcd.mvcc.errors import LeaseNotFoundError
from pyetcd.pb import lease_pb2, rpc_pb2
from pyetcd.server.auth import AuthInfo
from pyetcd.server.auth.errors import UserEmptyError
from pyetcd.server.etcdserver import errors as se
from pyetcd.server.etcdserver.forward import LeaderForwarder
from pyetcd.server.etcdserver.membership import Member
from pyetcd.server.rafthttp.handler import LEASE_INTERNAL_PATH, LEASE_PATH, members_to_json

LEADER = 0xA1
NOT_LEARNER = b"membership: can only promote a learner member\n"  # etcd's leader's text


@dataclass
class ScriptedLeader:
    """Answers each request with the next scripted response (the last one repeats)."""

    answers: list[Response]
    requests: list[Request] = field(default_factory=list)
    url: str = ""

    async def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve(reader, writer, self.answer, ServeOptions(keep_alive=False))

    async def answer(self, req: Request) -> Response:
        self.requests.append(req)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def _server(url: str, *, leader: int = LEADER, enabled: bool = False) -> Any:
    async def wait_leader() -> None:
        if server.leader == 0:
            await asyncio.Event().wait()  # no election ever ends

    server = SimpleNamespace(
        request_timeout=0.4,
        peer_ssl=None,
        log=Logger([io.StringIO()], Level.DEBUG),
        leader=leader,
        membership=SimpleNamespace(members={LEADER: Member(LEADER, "l", (url,))}),
        auth_store=SimpleNamespace(enabled=enabled),
        header=lambda: rpc_pb2.ResponseHeader(member_id=7),
        wait_leader=wait_leader,
    )
    return server


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedLeader]:
    leader = ScriptedLeader([Response(500)])
    srv = await asyncio.start_server(leader.accept, "127.0.0.1", 0)
    leader.url = f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}"
    try:
        yield leader
    finally:
        srv.close()
        await srv.wait_closed()


def _keepalive_answer(lease_id: int, ttl: int) -> Response:
    body = rpc_pb2.LeaseKeepAliveResponse(ID=lease_id, TTL=ttl).SerializeToString()
    return Response(200, body)


async def test_keep_alive_retries_until_the_leader_is_primary(scripted: ScriptedLeader) -> None:
    scripted.answers = [
        Response(400, b"not a primary lessor\n"),
        Response(408, b"waiting\n"),
        _keepalive_answer(5, 0),  # another lease's answer is not ours: retried
        _keepalive_answer(6, 30),
    ]
    fw = LeaderForwarder(_server(scripted.url))
    assert await fw.keep_alive(6) == 30
    assert [r.path for r in scripted.requests] == [LEASE_PATH] * 4
    sent = rpc_pb2.LeaseKeepAliveRequest.FromString(scripted.requests[0].body)
    assert sent.ID == 6
    # nothing about the caller travels
    assert not {"token", "authorization"} & set(scripted.requests[0].headers)


async def test_keep_alive_of_an_unknown_lease(scripted: ScriptedLeader) -> None:
    scripted.answers = [Response(404, b"lease not found\n")]
    with pytest.raises(LeaseNotFoundError):
        await LeaderForwarder(_server(scripted.url)).keep_alive(6)


async def test_time_to_live_carries_the_request_and_our_header(scripted: ScriptedLeader) -> None:
    out = lease_pb2.LeaseInternalResponse()
    ttl = out.LeaseTimeToLiveResponse
    ttl.ID, ttl.TTL, ttl.grantedTTL = 6, 9, 10
    ttl.keys.append(b"k")
    scripted.answers = [Response(200, out.SerializeToString())]
    resp = await LeaderForwarder(_server(scripted.url)).time_to_live(
        rpc_pb2.LeaseTimeToLiveRequest(ID=6, keys=True), None
    )
    assert (resp.ID, resp.TTL, resp.grantedTTL, list(resp.keys)) == (6, 9, 10, [b"k"])
    assert resp.header.member_id == 7
    (req,) = scripted.requests
    assert req.path == LEASE_INTERNAL_PATH
    asked = lease_pb2.LeaseInternalRequest.FromString(req.body).LeaseTimeToLiveRequest
    assert (asked.ID, asked.keys) == (6, True)


async def test_time_to_live_is_checked_before_forwarding(scripted: ScriptedLeader) -> None:
    server = _server(scripted.url, enabled=True)
    checked: list[object] = []

    async def wait_linearizable() -> None:
        checked.append("read index")

    def deny(info: object, key: bytes, range_end: bytes) -> None:
        checked.append(key)
        raise se.ServerError("denied")

    server.read_indexer = SimpleNamespace(wait_linearizable=wait_linearizable)
    server.lessor = SimpleNamespace(time_to_live=lambda lease_id: (5, 10, [b"secret"]))
    server.auth_store.is_range_permitted = deny
    with_keys = rpc_pb2.LeaseTimeToLiveRequest(ID=6, keys=True)
    with pytest.raises(se.ServerError, match="denied"):
        await LeaderForwarder(server).time_to_live(with_keys, AuthInfo("u", 1))
    assert checked == ["read index", b"secret"]
    with pytest.raises(UserEmptyError):  # no token: etcd's "user name is empty"
        await LeaderForwarder(server).time_to_live(with_keys, None)
    assert scripted.requests == []


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (Response(404, b"membership: ID not found\n"), se.MemberNotFoundError),
        (Response(412, str(se.LearnerNotReadyError()).encode()), se.LearnerNotReadyError),
        (Response(412, NOT_LEARNER), se.MemberNotLearnerError),
        (Response(500, b'{"message":"Internal Server Error"}'), se.RequestTimeoutError),
        (Response(200, b"not json"), se.RequestTimeoutError),
    ],
)  # fmt: skip
async def test_promote_answers(
    scripted: ScriptedLeader, answer: Response, error: type[Exception]
) -> None:
    scripted.answers = [answer]
    with pytest.raises(error):
        await LeaderForwarder(_server(scripted.url)).member_promote(0x2B)
    assert scripted.requests[0].path == f"/members/promote/{0x2B}"


async def test_promote_returns_the_leaders_member_list(scripted: ScriptedLeader) -> None:
    members = [Member(1, "a", ("http://x:1",)), Member(0x2B, "b", ("http://x:2",))]
    scripted.answers = [Response(200, members_to_json(members))]
    assert await LeaderForwarder(_server(scripted.url)).member_promote(0x2B) == members


async def test_no_leader() -> None:
    with pytest.raises(se.NoLeaderError):
        await LeaderForwarder(_server("http://127.0.0.1:1", leader=0)).keep_alive(6)
    # a leader this member does not know (yet) is as good as none
    with pytest.raises(se.NoLeaderError):
        await LeaderForwarder(_server("http://127.0.0.1:1", leader=0xBB)).keep_alive(6)


async def test_unreachable_leader_times_out() -> None:
    srv = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    srv.close()
    await srv.wait_closed()  # nobody listens there any more: connections are refused
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(se.RequestTimeoutError):
        await LeaderForwarder(_server(f"http://127.0.0.1:{port}")).keep_alive(6)
    assert 0.3 <= loop.time() - started < 2.0
