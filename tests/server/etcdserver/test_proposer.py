"""The entry a proposal hands to Raft: a client request carried as ``body`` (not copied
into the InternalRaftRequest) gives the same bytes as the message built whole."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pyetcd.pb import raft_internal_pb2, rpc_pb2
from pyetcd.server.auth.store import AuthInfo
from pyetcd.server.etcdserver.errors import RequestTooLargeError
from pyetcd.server.etcdserver.inbox import RaftInbox
from pyetcd.server.etcdserver.proposer import Proposer
from pyetcd.server.etcdserver.wait import RequestWait

IRR = raft_internal_pb2.InternalRaftRequest


class _Inbox(RaftInbox):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []

    def propose(self, data: bytes) -> None:
        self.sent.append(data)


async def _propose_once(body: tuple[str, Any], auth: AuthInfo | None, limit: int) -> bytes:
    inbox = _Inbox()
    p = Proposer(
        1, inbox, RequestWait(), None,  # type: ignore[arg-type]  # no leader lookups here
        max_request_bytes=limit, request_timeout=5,
    )  # fmt: skip
    task = asyncio.ensure_future(p.propose(IRR(), auth, None, body=body))
    while not inbox.sent and not task.done():
        await asyncio.sleep(0)
    task.cancel()
    if not inbox.sent:
        await task  # raises what propose raised
    return inbox.sent[0]


@pytest.mark.parametrize(
    "body",
    [
        ("put", rpc_pb2.PutRequest(key=b"k", value=bytes(range(256)) * 4100, prev_kv=True)),
        ("put", rpc_pb2.PutRequest()),
        (
            "txn",
            rpc_pb2.TxnRequest(
                success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"a", value=b"b"))]
            ),
        ),
    ],
)
@pytest.mark.parametrize("auth", [None, AuthInfo("root", 7)])
async def test_body_gives_the_bytes_of_the_whole_message(
    body: tuple[str, Any], auth: AuthInfo | None
) -> None:
    name, msg = body
    parsed = type(msg).FromString(msg.SerializeToString())  # as the wire hands it over
    data = await _propose_once((name, parsed), auth, 2 << 20)
    got = IRR.FromString(data)
    whole = IRR(**{name: msg})
    whole.header.CopyFrom(got.header)
    assert got.header.ID != 0
    assert (got.header.username, got.header.auth_revision) == (
        (auth.username, auth.revision) if auth else ("", 0)
    )
    assert data == whole.SerializeToString()


async def test_body_counts_toward_the_request_limit() -> None:
    big = rpc_pb2.PutRequest(key=b"k", value=bytes(1000))
    with pytest.raises(RequestTooLargeError):
        await _propose_once(("put", big), None, 1000)
