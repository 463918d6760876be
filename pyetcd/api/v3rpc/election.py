"""v3electionpb.Election: leader election as etcd's concurrency.Election runs it.

A candidate's key is ``<name>/<lease in hex>`` with its value as the proclamation;
the leader is the key with the lowest create revision under ``<name>/``. A
``LeaderKey`` (name, key, create revision, lease) proves leadership to Proclaim and
Resign: they only act while that key still has that create revision.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from pyetcd.grpcwire.status import StatusCode
from pyetcd.mvcc import errors as mvcc_errors
from pyetcd.mvcc.types import EventType
from pyetcd.pb import kv_pb2, rpc_pb2, v3election_pb2
from pyetcd.server.auth.store import AuthInfo
from pyetcd.server.etcdserver import errors as server_errors
from pyetcd.server.etcdserver import pbconv
from pyetcd.server.etcdserver.server import EtcdServer

from .access import caller
from .common import Ctx
from .concurrency import (
    KeyWatch,
    RecipeError,
    first_create,
    prefix_end,
    recipe_errors,
    session_lease,
    spawn_cleanup,
    wait_deletes,
)

__all__ = ["ElectionService"]

ERR_NO_LEADER = "election: no leader"
ERR_NOT_LEADER = "election: not leader"
ERR_MISSING_LEADER_KEY = '"leader" field must be provided'


def _owns(key: bytes, rev: int) -> rpc_pb2.Compare:
    return rpc_pb2.Compare(
        key=key, target=rpc_pb2.Compare.CREATE, result=rpc_pb2.Compare.EQUAL, create_revision=rev
    )


class ElectionService:
    """The Election service of one member."""

    def __init__(self, server: EtcdServer) -> None:
        self.server = server

    @recipe_errors
    async def Campaign(
        self, request: v3election_pb2.CampaignRequest, context: Ctx
    ) -> v3election_pb2.CampaignResponse:
        server = self.server
        auth = await caller(server, context)
        lease = await session_lease(server, request.lease, auth)
        prefix = request.name + b"/"
        key = prefix + f"{lease:x}".encode()
        resp = await server.kv.txn(
            rpc_pb2.TxnRequest(
                compare=[_owns(key, 0)],
                success=[
                    rpc_pb2.RequestOp(
                        request_put=rpc_pb2.PutRequest(key=key, value=request.value, lease=lease)
                    )
                ],
                failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=key))],
            ),
            auth,
        )
        rev = resp.header.revision
        leader = v3election_pb2.LeaderKey(name=request.name, key=key, rev=rev, lease=lease)
        if not resp.succeeded:
            kv = resp.responses[0].response_range.kvs[0]
            leader.rev = kv.create_revision
            if kv.value != request.value:
                # Already a candidate (same lease): proclaim the new value.
                try:
                    await self._proclaim(leader, request.value, auth)
                except RecipeError:
                    await self._resign(leader, auth)
                    raise
        try:
            await wait_deletes(server, prefix, leader.rev - 1, auth)
        except asyncio.CancelledError:
            spawn_cleanup(self._resign(leader, auth))
            raise
        return v3election_pb2.CampaignResponse(header=resp.header, leader=leader)

    @recipe_errors
    async def Proclaim(
        self, request: v3election_pb2.ProclaimRequest, context: Ctx
    ) -> v3election_pb2.ProclaimResponse:
        if not request.HasField("leader"):
            raise RecipeError(ERR_MISSING_LEADER_KEY)
        auth = await caller(self.server, context)
        header = await self._proclaim(request.leader, request.value, auth)
        return v3election_pb2.ProclaimResponse(header=header)

    async def _proclaim(
        self, leader: v3election_pb2.LeaderKey, value: bytes, auth: AuthInfo | None
    ) -> rpc_pb2.ResponseHeader:
        put = rpc_pb2.PutRequest(key=leader.key, value=value, lease=leader.lease)
        resp = await self.server.kv.txn(
            rpc_pb2.TxnRequest(
                compare=[_owns(leader.key, leader.rev)],
                success=[rpc_pb2.RequestOp(request_put=put)],
            ),
            auth,
        )
        if not resp.succeeded:
            raise RecipeError(ERR_NOT_LEADER)
        return resp.header

    @recipe_errors
    async def Resign(
        self, request: v3election_pb2.ResignRequest, context: Ctx
    ) -> v3election_pb2.ResignResponse:
        if not request.HasField("leader"):
            raise RecipeError(ERR_MISSING_LEADER_KEY)
        auth = await caller(self.server, context)
        header = await self._resign(request.leader, auth)
        return v3election_pb2.ResignResponse(header=header)

    async def _resign(
        self, leader: v3election_pb2.LeaderKey, auth: AuthInfo | None
    ) -> rpc_pb2.ResponseHeader:
        # Deletes the key only while it is still this leader's; succeeds either way.
        resp = await self.server.kv.txn(
            rpc_pb2.TxnRequest(
                compare=[_owns(leader.key, leader.rev)],
                success=[
                    rpc_pb2.RequestOp(
                        request_delete_range=rpc_pb2.DeleteRangeRequest(key=leader.key)
                    )
                ],
            ),
            auth,
        )
        return resp.header

    @recipe_errors
    async def Leader(
        self, request: v3election_pb2.LeaderRequest, context: Ctx
    ) -> v3election_pb2.LeaderResponse:
        auth = await caller(self.server, context)
        resp = await first_create(self.server, request.name + b"/", auth=auth)
        if not resp.kvs:
            raise RecipeError(ERR_NO_LEADER)
        return v3election_pb2.LeaderResponse(header=resp.header, kv=resp.kvs[0])

    async def Observe(
        self, request: v3election_pb2.LeaderRequest, context: Ctx
    ) -> AsyncIterator[v3election_pb2.LeaderResponse]:
        """Stream the leader's key: each new leader and each of its proclamations."""
        try:
            auth = await caller(self.server, context)
            async for resp in self._observe(request.name + b"/", auth):
                yield resp
        except (mvcc_errors.MvccError, server_errors.ServerError) as err:
            # etcd's observer ends its stream quietly (status OK, no message) when a
            # read or watch fails, an auth failure included: no token, a bad token or
            # no READ on the election ends the stream empty on etcd 3.5.13 as on 3.5.1.
            if isinstance(err, server_errors.StoppedError):
                await context.abort(StatusCode.UNAVAILABLE, str(err))

    async def _observe(
        self, prefix: bytes, auth: AuthInfo | None
    ) -> AsyncIterator[v3election_pb2.LeaderResponse]:
        # The watches below stay inside the prefix first_create checked READ on.
        server = self.server
        while True:
            resp = await first_create(server, prefix, auth=auth)
            if resp.kvs:
                header, kv = resp.header, resp.kvs[0]
            else:
                header, kv = await self._first_put(prefix, resp.header.revision)
            yield v3election_pb2.LeaderResponse(header=header, kv=kv)
            # Follow this leader until its key is deleted.
            async with KeyWatch(server, kv.key, start_revision=header.revision + 1) as w:
                deleted = False
                while not deleted:
                    got = await w.next()
                    for ev in got.events:
                        if ev.type == EventType.DELETE:
                            deleted = True
                            break
                        yield v3election_pb2.LeaderResponse(
                            header=server.header(got.revision), kv=pbconv.kv_to_pb(ev.kv)
                        )

    async def _first_put(
        self, prefix: bytes, revision: int
    ) -> tuple[rpc_pb2.ResponseHeader, kv_pb2.KeyValue]:
        # No candidate yet: wait for the first put under the prefix.
        end = prefix_end(prefix)
        async with KeyWatch(self.server, prefix, end, start_revision=revision) as w:
            while True:
                got = await w.next()
                for ev in got.events:
                    if ev.type == EventType.PUT:
                        return self.server.header(ev.kv.mod_revision), pbconv.kv_to_pb(ev.kv)
