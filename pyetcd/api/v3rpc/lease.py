"""etcdserverpb.Lease over gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator

from pyetcd.mvcc import errors as mvcc_errors
from pyetcd.pb import rpc_pb2
from pyetcd.server.etcdserver import errors as server_errors
from pyetcd.server.etcdserver.forward import LeaderForwarder
from pyetcd.server.etcdserver.server import EtcdServer

from .access import caller, require_user
from .common import Ctx, require_leader
from .errors import abort, translate_errors

__all__ = ["LeaseService"]


class LeaseService:
    def __init__(self, server: EtcdServer) -> None:
        # Leader-only calls are forwarded over the peer port (see forward.py).
        self.server = server
        self.forward = LeaderForwarder(server)

    @translate_errors
    async def LeaseGrant(
        self, request: rpc_pb2.LeaseGrantRequest, context: Ctx
    ) -> rpc_pb2.LeaseGrantResponse:
        auth = await require_user(self.server, context)
        return await self.server.lease.lease_grant(request, auth)

    @translate_errors
    async def LeaseRevoke(
        self, request: rpc_pb2.LeaseRevokeRequest, context: Ctx
    ) -> rpc_pb2.LeaseRevokeResponse:
        # WRITE on the lease's keys is checked at apply
        auth = await require_user(self.server, context)
        return await self.server.lease.lease_revoke(request, auth)

    @translate_errors
    async def LeaseTimeToLive(
        self, request: rpc_pb2.LeaseTimeToLiveRequest, context: Ctx
    ) -> rpc_pb2.LeaseTimeToLiveResponse:
        # etcd 3.5.13 asks who calls only when the keys are asked for (check_lease_time_to_live)
        auth = await caller(self.server, context) if request.keys else None
        if not self.server.is_leader:
            await self.server.wait_leader()
            if not self.server.is_leader:
                try:
                    # the caller's READ on the lease's keys is checked here, then asked
                    return await self.forward.time_to_live(request, auth)
                except mvcc_errors.LeaseNotFoundError:
                    # etcd answers an unknown lease with TTL -1, not an error
                    return rpc_pb2.LeaseTimeToLiveResponse(
                        header=self.server.header(), ID=request.ID, TTL=-1
                    )
        return await self.server.lease.lease_time_to_live(request, auth)

    @translate_errors
    async def LeaseLeases(
        self, request: rpc_pb2.LeaseLeasesRequest, context: Ctx
    ) -> rpc_pb2.LeaseLeasesResponse:
        await require_user(self.server, context)
        return await self.server.lease.lease_leases()

    async def LeaseKeepAlive(
        self, request_iterator: AsyncIterator[rpc_pb2.LeaseKeepAliveRequest], context: Ctx
    ) -> AsyncIterator[rpc_pb2.LeaseKeepAliveResponse]:
        try:
            require_leader(self.server, context)
            # No auth check, as in etcd 3.5.13: a renewal is answered whatever token the
            # stream carries (none, or one expired since). HA managers renew over the
            # gateway with the token they authenticated with minutes earlier.
            async for req in request_iterator:
                yield await self._keep_alive(req.ID)
        except (mvcc_errors.MvccError, server_errors.ServerError) as err:
            await abort(context, err)

    async def _keep_alive(self, lease_id: int) -> rpc_pb2.LeaseKeepAliveResponse:
        try:
            try:
                ttl = await self.server.lease.lease_renew(lease_id)
            except mvcc_errors.LeaseNotPrimaryError:
                ttl = await self.forward.keep_alive(lease_id)
        except (mvcc_errors.LeaseNotFoundError, mvcc_errors.LeaseExpiredError):
            # etcd answers an unknown (or just expired) lease with TTL 0, not an error.
            ttl = 0
        return rpc_pb2.LeaseKeepAliveResponse(header=self.server.header(), ID=lease_id, TTL=ttl)
