"""etcdserverpb.Cluster over gRPC."""

from __future__ import annotations

from pyetcd.pb import rpc_pb2
from pyetcd.server.etcdserver.errors import NotLeaderError
from pyetcd.server.etcdserver.forward import LeaderForwarder
from pyetcd.server.etcdserver.membership import Member
from pyetcd.server.etcdserver.server import EtcdServer

from .access import require_admin, require_user
from .common import Ctx
from .errors import translate_errors

__all__ = ["ClusterService", "member_to_pb"]


def member_to_pb(m: Member, out: rpc_pb2.Member) -> None:
    out.ID = m.id
    out.name = m.name
    out.peerURLs.extend(m.peer_urls)
    out.clientURLs.extend(m.client_urls)
    out.isLearner = m.is_learner


class ClusterService:
    def __init__(self, server: EtcdServer) -> None:
        self.server = server
        self.forward = LeaderForwarder(server)

    def _header(self) -> rpc_pb2.ResponseHeader:
        # Cluster responses carry no revision.
        h = self.server.header()
        h.ClearField("revision")
        return h

    @translate_errors
    async def MemberList(
        self, request: rpc_pb2.MemberListRequest, context: Ctx
    ) -> rpc_pb2.MemberListResponse:
        await require_user(self.server, context)
        if request.linearizable:
            await self.server.read_indexer.wait_linearizable()
        resp = rpc_pb2.MemberListResponse(header=self._header())
        for m in self.server.cluster.member_list():
            member_to_pb(m, resp.members.add())
        return resp

    def _members(self, out: object) -> None:
        for m in self.server.cluster.member_list():
            member_to_pb(m, out.add())  # type: ignore[attr-defined]

    @translate_errors
    async def MemberAdd(
        self, request: rpc_pb2.MemberAddRequest, context: Ctx
    ) -> rpc_pb2.MemberAddResponse:
        await require_admin(self.server, context)
        member, _ = await self.server.cluster.member_add(list(request.peerURLs), request.isLearner)
        resp = rpc_pb2.MemberAddResponse(header=self._header())
        member_to_pb(member, resp.member)
        self._members(resp.members)
        return resp

    @translate_errors
    async def MemberRemove(
        self, request: rpc_pb2.MemberRemoveRequest, context: Ctx
    ) -> rpc_pb2.MemberRemoveResponse:
        await require_admin(self.server, context)
        await self.server.cluster.member_remove(request.ID)
        resp = rpc_pb2.MemberRemoveResponse(header=self._header())
        self._members(resp.members)
        return resp

    @translate_errors
    async def MemberUpdate(
        self, request: rpc_pb2.MemberUpdateRequest, context: Ctx
    ) -> rpc_pb2.MemberUpdateResponse:
        await require_admin(self.server, context)
        await self.server.cluster.member_update(request.ID, list(request.peerURLs))
        resp = rpc_pb2.MemberUpdateResponse(header=self._header())
        self._members(resp.members)
        return resp

    @translate_errors
    async def MemberPromote(
        self, request: rpc_pb2.MemberPromoteRequest, context: Ctx
    ) -> rpc_pb2.MemberPromoteResponse:
        await require_admin(self.server, context)
        try:
            members = await self.server.cluster.member_promote(request.ID)
        except NotLeaderError:
            # Only the leader knows whether the learner caught up: ask it over the
            # peer port (the caller was checked here; nothing about it is sent).
            members = await self.forward.member_promote(request.ID)
        resp = rpc_pb2.MemberPromoteResponse(header=self._header())
        for m in members:
            member_to_pb(m, resp.members.add())
        return resp
