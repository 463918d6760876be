"""Forwarding leader-only calls from a follower to the leader's client URL.

etcd forwards LeaseKeepAlive and LeaseTimeToLive to the leader (only its lessor knows
the remaining TTLs); a follower here does the same over the leader's gRPC endpoint.
"""

from __future__ import annotations

from typing import Any

import grpc

from pyetcd.pb import rpc_pb2, rpc_pb2_grpc
from pyetcd.server.errors import NoLeaderError
from pyetcd.server.server import EtcdServer
from pyetcd.server.tls import TLSInfo

from .common import grpc_bind_address

__all__ = ["LeaderForwarder", "Metadata"]

#: gRPC metadata pairs passed on to the leader (the caller's token)
Metadata = tuple[tuple[str, str], ...]


class LeaderForwarder:
    def __init__(self, server: EtcdServer, tls: TLSInfo | None = None) -> None:
        self.server = server
        self.tls = tls
        self._channels: dict[str, Any] = {}

    def _channel(self) -> Any:
        leader = self.server.leader
        member = self.server.membership.members.get(leader)
        if member is None or not member.client_urls:
            raise NoLeaderError()
        url = member.client_urls[0]
        addr = grpc_bind_address(url)
        ch = self._channels.get(addr)
        if ch is None:
            ch = self._new_channel(url, addr)
            self._channels[addr] = ch
        return ch

    def _stub(self) -> Any:
        return rpc_pb2_grpc.LeaseStub(self._channel())

    async def member_promote(
        self, req: rpc_pb2.MemberPromoteRequest, metadata: Metadata = ()
    ) -> rpc_pb2.MemberPromoteResponse:
        """Only the leader knows whether a learner caught up (etcd forwards it too)."""
        stub = rpc_pb2_grpc.ClusterStub(self._channel())
        resp: rpc_pb2.MemberPromoteResponse = await stub.MemberPromote(
            req, timeout=10, metadata=metadata
        )
        return resp

    def _new_channel(self, url: str, addr: str) -> Any:
        if not url.startswith("https://") or self.tls is None:
            return grpc.aio.insecure_channel(addr)
        # the member's own client certificate, checked against the trusted CA
        # (a member with only a self-signed --auto-tls certificate cannot forward)
        cert, key, ca = self.tls.read()
        creds = grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )
        return grpc.aio.secure_channel(addr, creds)

    async def keep_alive(self, lease_id: int, metadata: Metadata = ()) -> int:
        """The leader's answer to one keep-alive, sent with the caller's ``metadata``."""
        stub = self._stub()
        call = stub.LeaseKeepAlive(
            iter([rpc_pb2.LeaseKeepAliveRequest(ID=lease_id)]), metadata=metadata
        )
        async for resp in call:
            return int(resp.TTL)
        return 0

    async def time_to_live(
        self, req: rpc_pb2.LeaseTimeToLiveRequest, metadata: Metadata = ()
    ) -> rpc_pb2.LeaseTimeToLiveResponse:
        """The leader's LeaseTimeToLive, asked with the caller's ``metadata`` (its token)."""
        resp: rpc_pb2.LeaseTimeToLiveResponse = await self._stub().LeaseTimeToLive(
            req, timeout=5, metadata=metadata
        )
        return resp

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()
