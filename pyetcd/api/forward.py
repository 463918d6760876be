"""Forwarding leader-only lease calls from a follower to the leader's client URL.

etcd forwards LeaseKeepAlive and LeaseTimeToLive to the leader (only its lessor knows
the remaining TTLs); a follower here does the same over the leader's gRPC endpoint.
"""

from __future__ import annotations

from typing import Any

import grpc

from pyetcd.pb import rpc_pb2, rpc_pb2_grpc
from pyetcd.server.errors import NoLeaderError
from pyetcd.server.server import EtcdServer

from .common import grpc_bind_address

__all__ = ["LeaderForwarder"]


class LeaderForwarder:
    def __init__(self, server: EtcdServer) -> None:
        self.server = server
        self._channels: dict[str, Any] = {}

    def _stub(self) -> Any:
        leader = self.server.leader
        member = self.server.membership.members.get(leader)
        if member is None or not member.client_urls:
            raise NoLeaderError()
        addr = grpc_bind_address(member.client_urls[0])
        ch = self._channels.get(addr)
        if ch is None:
            ch = grpc.aio.insecure_channel(addr)
            self._channels[addr] = ch
        return rpc_pb2_grpc.LeaseStub(ch)

    async def keep_alive(self, lease_id: int) -> int:
        stub = self._stub()
        call = stub.LeaseKeepAlive(iter([rpc_pb2.LeaseKeepAliveRequest(ID=lease_id)]))
        async for resp in call:
            return int(resp.TTL)
        return 0

    async def time_to_live(
        self, req: rpc_pb2.LeaseTimeToLiveRequest
    ) -> rpc_pb2.LeaseTimeToLiveResponse:
        resp: rpc_pb2.LeaseTimeToLiveResponse = await self._stub().LeaseTimeToLive(req, timeout=5)
        return resp

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()
