"""Leader-only calls a follower forwards to the leader's peer port, as etcd does.

Only the leader's lessor knows the remaining TTLs (LeaseKeepAlive, LeaseTimeToLive),
and only the leader knows whether a learner caught up (MemberPromote). A follower that
receives such a call POSTs it to the leader's peer URL (``/leases``,
``/leases/internal``, ``/members/promote/<id>``; see ``pyetcd/server/rafthttp/handler.py``)
with ``pyetcd.httpwire.request``, over peer TLS when the URL is https.

Rules this module keeps:

1. The caller's permissions are checked on the member the caller reached, before
   anything is forwarded: the auth store and the leases with their keys are
   replicated, so that member knows them as well as the leader does. The forwarded
   request carries no identity (no token, no caller certificate): the leader trusts
   its peers, as etcd's does.
2. A call is retried against the current leader's peer URLs until the request
   timeout, as etcd's forwarding is: a refused connection, a leader that is no longer
   primary or has not caught up (400, 408, 500) try again 50 ms later. Only a
   definitive answer ends it early: lease not found, member not found, member not a
   learner, learner not ready. No leader → "etcdserver: no leader"; out of time →
   "etcdserver: request timed out". Every error is a typed one from the one table
   in ``errors.py``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Final, Protocol, TypeVar

from google.protobuf.message import DecodeError

from pyetcd.httpwire import HTTPWireError, Response, request
from pyetcd.logutil import Logger
from pyetcd.mvcc import Lessor
from pyetcd.mvcc.errors import LeaseNotFoundError
from pyetcd.pb import lease_pb2, rpc_pb2
from pyetcd.server.auth.check import check_lease_time_to_live
from pyetcd.server.auth.store import AuthInfo, AuthStore
from pyetcd.server.etcdserver.errors import (
    LearnerNotReadyError,
    MemberNotFoundError,
    MemberNotLearnerError,
    NoLeaderError,
    RequestTimeoutError,
)
from pyetcd.server.etcdserver.membership import Member, Membership
from pyetcd.server.etcdserver.read_index import ReadIndexer
from pyetcd.server.rafthttp.handler import (
    LEASE_INTERNAL_PATH,
    LEASE_PATH,
    MEMBER_PROMOTE_PREFIX,
    PROTOBUF,
    members_from_json,
)

__all__ = ["LeaderForwarder"]

T = TypeVar("T")
M = TypeVar("M", rpc_pb2.LeaseKeepAliveResponse, lease_pb2.LeaseInternalResponse)

#: pause between rounds over the leader's peer URLs (etcd throttles its retries too)
RETRY_INTERVAL: Final = 0.05
#: one lease request to the leader; the leader itself waits at most 1 s to catch up
LEASE_ATTEMPT_TIMEOUT: Final = 3.0

#: answers that end a call: None (retry) or the result, or raise the definitive error
Answer = Callable[[Response], T | None]


class ForwardingMember(Protocol):
    """What the forwarder asks of its member (EtcdServer provides it)."""

    @property
    def request_timeout(self) -> float: ...

    @property
    def peer_ssl(self) -> ssl.SSLContext | None: ...

    @property
    def log(self) -> Logger: ...

    @property
    def leader(self) -> int: ...

    @property
    def membership(self) -> Membership: ...

    @property
    def auth_store(self) -> AuthStore: ...

    @property
    def lessor(self) -> Lessor: ...

    @property
    def read_indexer(self) -> ReadIndexer: ...

    def header(self, revision: int | None = None) -> rpc_pb2.ResponseHeader: ...

    async def wait_leader(self) -> None: ...


class LeaderForwarder:
    """Forwards one member's leader-only calls to the leader's peer port."""

    def __init__(self, server: ForwardingMember) -> None:
        self.server = server

    async def keep_alive(self, lease_id: int) -> int:
        """The leader's renewal of ``lease_id``: the lease's TTL.

        Raises:
            LeaseNotFoundError, NoLeaderError, RequestTimeoutError.
        """
        body = rpc_pb2.LeaseKeepAliveRequest(ID=lease_id).SerializeToString()
        return await self._ask_leader(
            LEASE_PATH, body, lambda resp: _renewed(resp, lease_id), LEASE_ATTEMPT_TIMEOUT
        )

    async def time_to_live(
        self, req: rpc_pb2.LeaseTimeToLiveRequest, auth: AuthInfo | None
    ) -> rpc_pb2.LeaseTimeToLiveResponse:
        """LeaseTimeToLive answered by the leader, for a caller checked here.

        With auth enabled and ``keys`` asked for, the caller needs READ on every key
        attached to the lease, as this member knows them after a linearizable wait.

        Raises:
            LeaseNotFoundError, NoLeaderError, RequestTimeoutError, the auth errors.
        """
        server = self.server
        if req.keys and server.auth_store.enabled:
            await server.read_indexer.wait_linearizable()
            local = server.lessor.time_to_live(req.ID)
            check_lease_time_to_live(server.auth_store, auth, local[2] if local else ())
        body = lease_pb2.LeaseInternalRequest(
            LeaseTimeToLiveRequest=rpc_pb2.LeaseTimeToLiveRequest(ID=req.ID, keys=req.keys)
        ).SerializeToString()
        internal = await self._ask_leader(
            LEASE_INTERNAL_PATH, body, lambda resp: _time_to_live(resp, req.ID),
            LEASE_ATTEMPT_TIMEOUT,
        )  # fmt: skip
        resp = internal.LeaseTimeToLiveResponse
        resp.header.CopyFrom(server.header())
        return resp

    async def member_promote(self, member_id: int) -> list[Member]:
        """Promote a learner through the leader; the leader's member list after it.

        Raises:
            MemberNotFoundError, MemberNotLearnerError, LearnerNotReadyError,
            NoLeaderError, RequestTimeoutError.
        """
        path = f"{MEMBER_PROMOTE_PREFIX}{member_id}"
        return await self._ask_leader(path, b"", _promoted, None)

    async def _ask_leader(
        self, path: str, body: bytes, answer: Answer[T], attempt_timeout: float | None
    ) -> T:
        """POST to the leader's peer URLs until ``answer`` accepts one reply (rule 2)."""
        server = self.server
        loop = asyncio.get_running_loop()
        deadline = loop.time() + server.request_timeout
        while True:
            for url in await self._leader_peer_urls(deadline - loop.time()):
                left = deadline - loop.time()
                if left <= 0:
                    raise RequestTimeoutError()
                if attempt_timeout is not None:
                    left = min(left, attempt_timeout)
                try:
                    resp = await request(
                        url.rstrip("/") + path,
                        "POST",
                        body,
                        ssl=server.peer_ssl,
                        timeout=left,
                        content_type=PROTOBUF,
                    )
                except (OSError, TimeoutError, HTTPWireError, ValueError) as err:
                    server.log.debug(
                        "failed to reach the leader's peer URL",
                        {"address": url, "path": path, "error": repr(err)},
                    )
                    continue
                result = answer(resp)
                if result is not None:
                    return result
            if loop.time() + RETRY_INTERVAL >= deadline:
                raise RequestTimeoutError()
            await asyncio.sleep(RETRY_INTERVAL)

    async def _leader_peer_urls(self, wait: float) -> tuple[str, ...]:
        server = self.server
        try:
            async with asyncio.timeout(max(0.0, wait)):
                await server.wait_leader()
        except TimeoutError:
            raise NoLeaderError() from None
        member = server.membership.members.get(server.leader)
        if member is None or not member.peer_urls:
            raise NoLeaderError()
        return member.peer_urls


def _renewed(resp: Response, lease_id: int) -> int | None:
    out = _lease_answer(resp, rpc_pb2.LeaseKeepAliveResponse())
    return int(out.TTL) if out is not None and lease_id == out.ID else None


def _time_to_live(resp: Response, lease_id: int) -> lease_pb2.LeaseInternalResponse | None:
    out = _lease_answer(resp, lease_pb2.LeaseInternalResponse())
    return out if out is not None and lease_id == out.LeaseTimeToLiveResponse.ID else None


def _lease_answer(resp: Response, out: M) -> M | None:
    """``out`` parsed from a 200 answer; None to retry; a 404 ends the call."""
    if resp.status == 404:
        raise LeaseNotFoundError()
    if resp.status != 200:
        return None
    try:
        out.ParseFromString(resp.body)
    except DecodeError:
        return None
    return out


def _promoted(resp: Response) -> list[Member] | None:
    if resp.status == 404:
        raise MemberNotFoundError()
    if resp.status == 412:
        # both answers share the status; the text tells them apart (the first
        # message contains the second, so it is tested first)
        if "in sync with leader" in resp.text:
            raise LearnerNotReadyError()
        if "can only promote a learner member" in resp.text:
            raise MemberNotLearnerError()
        return None
    if resp.status != 200:
        return None
    try:
        return members_from_json(resp.body)
    except ValueError:
        return None
