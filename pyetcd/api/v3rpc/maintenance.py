"""etcdserverpb.Maintenance over gRPC."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import AsyncIterator

from pyetcd.grpcwire.status import StatusCode
from pyetcd.pb import rpc_pb2
from pyetcd.server.auth.errors import AuthError
from pyetcd.server.etcdserver.errors import NotSupportedError, ServerError
from pyetcd.server.etcdserver.server import EtcdServer

from .access import require_admin, require_user
from .common import Ctx
from .errors import abort, translate_errors

__all__ = ["MaintenanceService"]

SNAPSHOT_CHUNK = 32 * 1024


async def _require_admin(server: EtcdServer, context: Ctx) -> None:
    # etcd's maintenance server checks admin itself and returns the auth store's
    # error untranslated: code Unknown, text "auth: ..." instead of "etcdserver: ...".
    try:
        await require_admin(server, context)
    except AuthError as err:
        await context.abort(StatusCode.UNKNOWN, str(err).replace("etcdserver: ", "auth: ", 1))


class MaintenanceService:
    def __init__(self, server: EtcdServer) -> None:
        self.server = server

    @translate_errors
    async def Alarm(self, request: rpc_pb2.AlarmRequest, context: Ctx) -> rpc_pb2.AlarmResponse:
        if request.action == rpc_pb2.AlarmRequest.GET:
            await require_user(self.server, context)
        else:
            await require_admin(self.server, context)
        return await self.server.maintenance.alarm(request)

    @translate_errors
    async def Status(self, request: rpc_pb2.StatusRequest, context: Ctx) -> rpc_pb2.StatusResponse:
        return self.server.maintenance.status()

    @translate_errors
    async def Defragment(
        self, request: rpc_pb2.DefragmentRequest, context: Ctx
    ) -> rpc_pb2.DefragmentResponse:
        await _require_admin(self.server, context)
        await self.server.maintenance.defragment()
        # etcd 3.5 answers Defragment, MoveLeader and Snapshot with an empty header.
        return rpc_pb2.DefragmentResponse()

    @translate_errors
    async def Hash(self, request: rpc_pb2.HashRequest, context: Ctx) -> rpc_pb2.HashResponse:
        await _require_admin(self.server, context)
        return rpc_pb2.HashResponse(
            header=self.server.header(), hash=self.server.maintenance.hash()
        )

    @translate_errors
    async def HashKV(self, request: rpc_pb2.HashKVRequest, context: Ctx) -> rpc_pb2.HashKVResponse:
        await _require_admin(self.server, context)
        h, rev, compact_rev = self.server.maintenance.hash_kv(request.revision)
        return rpc_pb2.HashKVResponse(
            header=self.server.header(rev), hash=h, compact_revision=compact_rev
        )

    @translate_errors
    async def MoveLeader(
        self, request: rpc_pb2.MoveLeaderRequest, context: Ctx
    ) -> rpc_pb2.MoveLeaderResponse:
        await require_admin(self.server, context)
        await self.server.cluster.move_leader(request.targetID)
        return rpc_pb2.MoveLeaderResponse()

    @translate_errors
    async def Downgrade(
        self, request: rpc_pb2.DowngradeRequest, context: Ctx
    ) -> rpc_pb2.DowngradeResponse:
        await require_admin(self.server, context)
        raise NotSupportedError()

    async def Snapshot(
        self, request: rpc_pb2.SnapshotRequest, context: Ctx
    ) -> AsyncIterator[rpc_pb2.SnapshotResponse]:
        """The backend in 32 KiB chunks, then the SHA-256 of everything before."""
        try:
            await _require_admin(self.server, context)
        except ServerError as err:
            await abort(context, err)
        store = self.server.stores.kv
        db_path = store.backend.path
        fd, path = tempfile.mkstemp(
            prefix="pyetcd-snapshot-", suffix=".db", dir=os.path.dirname(db_path) or None
        )
        os.close(fd)
        start = time.monotonic()
        try:
            # etcd's format, exported off the event loop from one read transaction on
            # a connection of its own (the file lock keeps a defrag's swap out).
            with open(path, "w+b") as f:
                async with self.server.stores.file_lock:
                    store.commit()
                    # etcd's bbolt format: loaded by the first snapshot, not by every
                    # member (issue 22).
                    from pyetcd.server.storage import stream_snapshot

                    snap = await asyncio.to_thread(
                        stream_snapshot, db_path, f, conf_state=self.server.raft.conf_state
                    )
                remaining = snap.size
                while (chunk := await asyncio.to_thread(next, snap.chunks, None)) is not None:
                    # etcd counts the backend bytes still to come, not the hash trailer.
                    remaining = max(0, remaining - len(chunk))
                    yield rpc_pb2.SnapshotResponse(remaining_bytes=remaining, blob=chunk)
        finally:
            os.unlink(path)
            # etcd times a backend snapshot from its start until it has been read out.
            self.server.metrics.backend_snapshot.observe(time.monotonic() - start)
