"""Plain HTTP on the peer port: etcd's peer handler for what only the leader can answer.

The peer listener hands a connection here when it starts with ``GET `` or ``POST``
instead of a transport handshake. Endpoints (etcd's paths, bodies and statuses):

- ``GET /members``: the member list as JSON, with ``X-Etcd-Cluster-ID`` (a member
  joining with ``--initial-cluster-state existing`` reads it).
- ``POST /leases``: body a marshalled ``LeaseKeepAliveRequest``; renews the lease on the
  leader's (primary) lessor; answers a marshalled ``LeaseKeepAliveResponse``.
- ``POST /leases/internal``: body a marshalled ``leasepb.LeaseInternalRequest``; answers
  a ``leasepb.LeaseInternalResponse`` with the remaining TTL only the leader knows.
- ``POST /members/promote/<decimal id>``: promotes a learner (only the leader knows
  whether it caught up); answers the member list as JSON.
- ``GET /version``: ``{"etcdserver": ..., "etcdcluster": ...}``, as on the client port
  (etcd's leader reads it from every peer to decide the cluster version).
- ``GET /members/hashkv``: body a JSON ``HashKVRequest`` (``{"revision": N}``); answers
  the JSON ``HashKVResponse`` of this member's store at that revision, or 400 with the
  store's error (compacted, future revision). The corruption checks ask it.

Rules this module keeps:

1. One request per connection, answered with ``Connection: close`` and the member's
   ``X-Etcd-Cluster-ID``. HTTP/1.1 is ``pyetcd.httpwire``'s (h11): a head up to
   ``max_head_bytes``, a body up to ``max_body_bytes``, all within ``read_timeout``.
   A malformed request gets its 4xx answer there; none escapes as an exception.
2. The peer channel is trusted, as etcd's is (peer TLS guards it): the member that
   received the client's call checked the caller's permissions before forwarding, and
   nothing here checks them again. No tokens travel.
3. Lease endpoints answer only on the primary lessor (the leader's). Elsewhere they
   answer 400 "not a primary lessor", as etcd's lessor does, and the forwarding member
   retries until its request timeout. A promote on a non-leader answers 500, as etcd's
   peer handler does for its "not leader" error.
4. Before looking at a lease the leader applies what it has committed (etcd's
   ApplyWait), so a lease granted through a follower a moment ago is found; waiting
   longer than ``apply_timeout`` answers 408.

The client side is ``pyetcd.httpwire.request`` (the follower's forwarder, a joining
member).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from google.protobuf.message import DecodeError

from pyetcd.httpwire import JSON, Request, Response, ServeOptions, serve
from pyetcd.logutil import Logger
from pyetcd.mvcc import Lessor
from pyetcd.mvcc.errors import (
    LeaseExpiredError,
    LeaseNotFoundError,
    LeaseNotPrimaryError,
    MvccError,
)
from pyetcd.pb import lease_pb2, rpc_pb2
from pyetcd.server.etcdserver.errors import (
    LearnerNotReadyError,
    MemberNotFoundError,
    MemberNotLearnerError,
    ServerError,
)
from pyetcd.server.etcdserver.membership import Member
from pyetcd.version import CLUSTER_VERSION, SERVER_VERSION

__all__ = [
    "APPLY_TIMEOUT_TEXT",
    "LEASE_INTERNAL_PATH",
    "LEASE_NOT_FOUND_TEXT",
    "LEASE_PATH",
    "MEMBERS_PATH",
    "MEMBER_PROMOTE_PREFIX",
    "NOT_PRIMARY_TEXT",
    "PROTOBUF",
    "VERSION_PATH",
    "PeerHTTP",
    "PeerHTTPLimits",
    "PeerLeader",
    "members_from_json",
    "members_to_json",
]

MEMBERS_PATH: Final = "/members"
LEASE_PATH: Final = "/leases"
LEASE_INTERNAL_PATH: Final = "/leases/internal"
MEMBER_PROMOTE_PREFIX: Final = "/members/promote/"
HASHKV_PATH: Final = "/members/hashkv"
VERSION_PATH: Final = "/version"

# etcd's texts: lease.ErrNotPrimary, lease.ErrLeaseNotFound, leasehttp.ErrLeaseHTTPTimeout
NOT_PRIMARY_TEXT: Final = "not a primary lessor"
LEASE_NOT_FOUND_TEXT: Final = "lease not found"
APPLY_TIMEOUT_TEXT: Final = "waiting for node to catch up its applied index has timed out"

PROTOBUF: Final = "application/protobuf"

_DIGITS: Final = re.compile(r"[0-9]{1,20}")


@dataclass(frozen=True, slots=True)
class PeerHTTPLimits:
    """Limits and timeouts (seconds) of the peer HTTP endpoints."""

    max_head_bytes: int = 8 * 1024
    max_body_bytes: int = 64 * 1024  # a lease request is a few bytes
    read_timeout: float = 5.0  # the whole request: head and body
    write_timeout: float = 5.0
    apply_timeout: float = 1.0  # etcd's leasehttp applyTimeout


class PeerLeader(Protocol):
    """What the endpoints ask of their member (EtcdServer provides it)."""

    @property
    def cluster_id(self) -> int: ...

    @property
    def lessor(self) -> Lessor: ...

    def member_list(self) -> list[Member]: ...

    async def wait_committed_applied(self) -> None:
        """Return once the member applied everything it knows to be committed."""

    async def member_promote(self, mid: int) -> list[Member]:
        """Promote learner ``mid``; raises the server's membership errors."""
        ...

    def hash_kv(self, revision: int) -> tuple[int, int, int]:
        """(hash, current revision, compact revision); raises the store's errors."""
        ...


def _error(status: int, text: str) -> Response:
    # Go's http.Error: the text and a newline, as plain text
    return Response(status, text.encode() + b"\n")


# -- member lists as JSON --------------------------------------------------------------------


def members_to_json(members: Sequence[Member]) -> bytes:
    """etcd's member list JSON (each member in its ``Member.encode`` shape)."""
    return b"[" + b",".join(m.encode() for m in members) + b"]"


def members_from_json(data: bytes) -> list[Member]:
    """Parse ``members_to_json``'s output.

    Raises:
        ValueError: not a JSON list of members.
    """
    raw = json.loads(data)
    if not isinstance(raw, list):
        raise ValueError("member list is not a JSON array")
    try:
        return [Member.decode(json.dumps(m).encode()) for m in raw]
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"malformed member: {err!r}") from None


# -- the server side ---------------------------------------------------------------------------


class PeerHTTP:
    """The peer port's HTTP endpoints of one member. See the module docstring."""

    def __init__(
        self, leader: PeerLeader, logger: Logger, limits: PeerHTTPLimits | None = None
    ) -> None:
        self.leader = leader
        self.log = logger
        self.limits = limits or PeerHTTPLimits()

    async def serve(
        self, first: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Serve the one request on a connection (its first bytes are ``first``), close it."""
        limits = self.limits
        options = ServeOptions(
            max_head_bytes=limits.max_head_bytes,
            max_body_bytes=limits.max_body_bytes,
            read_timeout=limits.read_timeout,
            write_timeout=limits.write_timeout,
            keep_alive=False,
            headers=(("X-Etcd-Cluster-ID", f"{self.leader.cluster_id:x}"),),
        )
        await serve(reader, writer, self.handle, options, first=first, log=self.log)

    async def handle(self, req: Request) -> Response:
        """The answer to one parsed request (never raises, but for cancellation)."""
        try:
            return await self._route(req)
        except Exception as exc:  # a bug here must not take the listener down
            self.log.warn(
                "failed to serve peer HTTP request",
                {"method": req.method, "path": req.path, "error": repr(exc)},
            )
            return _internal_error()

    async def _route(self, req: Request) -> Response:
        path = req.path
        if path == MEMBERS_PATH:
            if req.method != "GET":
                return _error(405, "Method Not Allowed")
            return Response(200, members_to_json(self.leader.member_list()), JSON)
        if path == VERSION_PATH:
            if req.method not in ("GET", "HEAD"):
                return _error(405, "Method Not Allowed")
            body = {"etcdserver": SERVER_VERSION, "etcdcluster": CLUSTER_VERSION}
            return Response(200, json.dumps(body, separators=(",", ":")).encode(), JSON)
        if path == HASHKV_PATH:
            if req.method != "GET":
                return _error(405, "Method Not Allowed")
            return self._hash_kv(req.body)
        if path in (LEASE_PATH, LEASE_INTERNAL_PATH) or path.startswith(MEMBER_PROMOTE_PREFIX):
            if req.method != "POST":
                return _error(405, "Method Not Allowed")
            if path == LEASE_PATH:
                return await self._lease_renew(req.body)
            if path == LEASE_INTERNAL_PATH:
                return await self._lease_time_to_live(req.body)
            return await self._member_promote(path.removeprefix(MEMBER_PROMOTE_PREFIX))
        return _error(404, "404 page not found")

    def _hash_kv(self, body: bytes) -> Response:
        try:
            doc = json.loads(body or b"{}")
            revision = int(doc.get("revision", 0))
        except (ValueError, AttributeError, TypeError):
            return _error(400, "error unmarshalling request")
        try:
            h, rev, compact = self.leader.hash_kv(revision)
        except MvccError as err:
            self.log.warn(
                "failed to get hashKV", {"requested-revision": revision, "error": str(err)}
            )
            # etcd's text is the store's own: "mvcc: required revision ..."
            return _error(400, str(err).removeprefix("etcdserver: "))
        # Go's encoding/json of etcd's HashKVResponse: zero fields omitted.
        out: dict[str, object] = {"header": {"revision": rev} if rev else {}}
        if h:
            out["hash"] = h
        if compact:
            out["compact_revision"] = compact
        return Response(200, json.dumps(out, separators=(",", ":")).encode(), JSON)

    async def _applied(self) -> Response | None:
        """None once the member applied what it committed; else the 408 to answer."""
        try:
            async with asyncio.timeout(self.limits.apply_timeout):
                await self.leader.wait_committed_applied()
        except TimeoutError:
            return _error(408, APPLY_TIMEOUT_TEXT)
        return None

    async def _lease_renew(self, body: bytes) -> Response:
        req = rpc_pb2.LeaseKeepAliveRequest()
        try:
            req.ParseFromString(body)
        except DecodeError:
            return _error(400, "error unmarshalling request")
        if not self.leader.lessor.primary:
            return _error(400, NOT_PRIMARY_TEXT)
        if (late := await self._applied()) is not None:
            return late
        try:
            ttl = self.leader.lessor.renew(req.ID)
        except LeaseNotPrimaryError:
            return _error(400, NOT_PRIMARY_TEXT)
        except (LeaseNotFoundError, LeaseExpiredError):
            # an expired lease is as good as revoked (etcd waits for the revoke, then
            # says "not found")
            return _error(404, LEASE_NOT_FOUND_TEXT)
        resp = rpc_pb2.LeaseKeepAliveResponse(ID=req.ID, TTL=ttl)
        return Response(200, resp.SerializeToString(), PROTOBUF)

    async def _lease_time_to_live(self, body: bytes) -> Response:
        internal = lease_pb2.LeaseInternalRequest()
        try:
            internal.ParseFromString(body)
        except DecodeError:
            return _error(400, "error unmarshalling request")
        req = internal.LeaseTimeToLiveRequest
        if not self.leader.lessor.primary:
            return _error(400, NOT_PRIMARY_TEXT)
        if (late := await self._applied()) is not None:
            return late
        ttl = self.leader.lessor.time_to_live(req.ID)
        if ttl is None:
            return _error(404, LEASE_NOT_FOUND_TEXT)
        remaining, granted, keys = ttl
        out = lease_pb2.LeaseInternalResponse()
        resp = out.LeaseTimeToLiveResponse
        resp.header.SetInParent()
        resp.ID, resp.TTL, resp.grantedTTL = req.ID, remaining, granted
        if req.keys:
            resp.keys.extend(keys)
        return Response(200, out.SerializeToString(), PROTOBUF)

    async def _member_promote(self, id_text: str) -> Response:
        if not _DIGITS.fullmatch(id_text) or int(id_text) >= 1 << 64:
            return _error(404, f"member {id_text} not found in cluster")
        try:
            members = await self.leader.member_promote(int(id_text))
        except MemberNotFoundError as err:
            return _error(404, str(err))
        except (MemberNotLearnerError, LearnerNotReadyError) as err:
            return _error(412, str(err))
        except ServerError as err:
            # etcd's WriteError for anything else (not leader, timeouts): a bare 500
            self.log.warn(
                "failed to promote a member", {"member-id": f"{int(id_text):x}", "error": str(err)}
            )
            return _internal_error()
        return Response(200, members_to_json(members), JSON)


def _internal_error() -> Response:
    return Response(500, b'{"message":"Internal Server Error"}', JSON)
