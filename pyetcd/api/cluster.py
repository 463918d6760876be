"""etcdserverpb.Cluster over grpc.aio."""

from __future__ import annotations

from pyetcd.pb import rpc_pb2
from pyetcd.server.errors import NotSupportedError
from pyetcd.server.membership import Member
from pyetcd.server.server import EtcdServer

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

    def _header(self) -> rpc_pb2.ResponseHeader:
        # Cluster responses carry no revision.
        h = self.server.header()
        h.ClearField("revision")
        return h

    @translate_errors
    async def MemberList(
        self, request: rpc_pb2.MemberListRequest, context: Ctx
    ) -> rpc_pb2.MemberListResponse:
        if request.linearizable:
            await self.server.read_indexer.wait_linearizable()
        resp = rpc_pb2.MemberListResponse(header=self._header())
        for m in self.server.member_list():
            member_to_pb(m, resp.members.add())
        return resp

    @translate_errors
    async def MemberAdd(
        self, request: rpc_pb2.MemberAddRequest, context: Ctx
    ) -> rpc_pb2.MemberAddResponse:
        raise NotSupportedError()

    @translate_errors
    async def MemberRemove(
        self, request: rpc_pb2.MemberRemoveRequest, context: Ctx
    ) -> rpc_pb2.MemberRemoveResponse:
        raise NotSupportedError()

    @translate_errors
    async def MemberUpdate(
        self, request: rpc_pb2.MemberUpdateRequest, context: Ctx
    ) -> rpc_pb2.MemberUpdateResponse:
        raise NotSupportedError()

    @translate_errors
    async def MemberPromote(
        self, request: rpc_pb2.MemberPromoteRequest, context: Ctx
    ) -> rpc_pb2.MemberPromoteResponse:
        raise NotSupportedError()
