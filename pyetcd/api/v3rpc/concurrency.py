"""etcd's clientv3/concurrency recipes, run inside the server: sessions' keys,
waiting for deletions, first/last creators under a prefix.

etcd's v3lock and v3election services are built on its own client; pyetcd builds
them on EtcdServer's methods and the watchable store instead, with the same
requests (so the same revisions, headers and errors) as the client would send.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pyetcd.grpcwire.status import StatusCode
from pyetcd.mvcc import errors as mvcc_errors
from pyetcd.mvcc.types import EventType
from pyetcd.mvcc.watchable_store import WatchResponse
from pyetcd.pb import rpc_pb2
from pyetcd.server.auth.store import AuthInfo
from pyetcd.server.etcdserver import errors as server_errors
from pyetcd.server.etcdserver.server import EtcdServer

from .common import Ctx

__all__ = [
    "DEFAULT_SESSION_TTL",
    "KeyWatch",
    "RecipeError",
    "first_create",
    "prefix_end",
    "recipe_errors",
    "session_lease",
    "spawn_cleanup",
    "wait_deletes",
]

#: concurrency.NewSession's TTL when no lease is given.
DEFAULT_SESSION_TTL = 60

T = TypeVar("T")


def prefix_end(prefix: bytes) -> bytes:
    """clientv3.GetPrefixRangeEnd: the range end covering every key under ``prefix``."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"


async def session_lease(server: EtcdServer, lease: int, auth: AuthInfo | None = None) -> int:
    """The lease of a session: ``lease``, or a new one with etcd's default TTL when 0."""
    if lease:
        return lease
    if server.auth_store.enabled:
        server.auth_store.authorized_user(auth)
    resp = await server.lease.lease_grant(rpc_pb2.LeaseGrantRequest(TTL=DEFAULT_SESSION_TTL), auth)
    return int(resp.ID)


async def first_create(
    server: EtcdServer,
    prefix: bytes,
    descend: bool = False,
    max_create_revision: int = 0,
    auth: AuthInfo | None = None,
) -> rpc_pb2.RangeResponse:
    """clientv3.WithFirstCreate (or WithLastCreate): the oldest (newest) key under prefix."""
    order = rpc_pb2.RangeRequest.DESCEND if descend else rpc_pb2.RangeRequest.ASCEND
    return await server.kv.range(
        rpc_pb2.RangeRequest(
            key=prefix,
            range_end=prefix_end(prefix),
            limit=1,
            sort_order=order,
            sort_target=rpc_pb2.RangeRequest.CREATE,
            max_create_revision=max_create_revision,
        ),
        auth,
    )


class KeyWatch:
    """A watch on a key or range, consumed in-process: ``await next()`` per response.

    Use as an async context manager; leaving it cancels the watch.
    """

    def __init__(
        self, server: EtcdServer, key: bytes, range_end: bytes = b"", start_revision: int = 0
    ) -> None:
        self.server = server
        self._wake = asyncio.Event()
        self._stream = server.watchable.new_stream(notify=self._wake.set)
        self._stream.watch(key, range_end, start_revision=start_revision)
        self._ready: list[WatchResponse] = []
        server.kick_watch_sync()

    async def __aenter__(self) -> KeyWatch:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stream.close()

    async def next(self) -> WatchResponse:
        """The next response with events.

        Raises:
            CompactedError: the start revision was compacted.
        """
        while True:
            while not self._ready:
                await self._wake.wait()
                self._wake.clear()
                self._ready.extend(self._stream.pop_all())
                self.server.kick_watch_sync()
            resp = self._ready.pop(0)
            if resp.canceled:
                raise mvcc_errors.CompactedError()
            if resp.events:
                return resp


async def wait_delete(server: EtcdServer, key: bytes, revision: int) -> None:
    """Return once ``key`` is deleted at or after ``revision``."""
    async with KeyWatch(server, key, start_revision=revision) as w:
        while True:
            resp = await w.next()
            if any(ev.type == EventType.DELETE for ev in resp.events):
                return


async def wait_deletes(
    server: EtcdServer, prefix: bytes, max_create_revision: int, auth: AuthInfo | None = None
) -> None:
    """Wait until no key under ``prefix`` was created at or before ``max_create_revision``.

    The watches stay inside the prefix that ``auth`` was checked to READ.
    """
    while True:
        resp = await first_create(server, prefix, True, max_create_revision, auth)
        if not resp.kvs:
            return
        await wait_delete(server, resp.kvs[0].key, resp.header.revision)


_cleanups: set[asyncio.Future[object]] = set()


def spawn_cleanup(coro: Awaitable[object]) -> None:
    """Run a clean-up (e.g. deleting a waiter's key) in the background; errors are dropped.

    Used when the client went away: the handler is being cancelled, so the clean-up
    cannot be awaited there (etcd runs it on its client's background context too).
    """

    async def run() -> object:
        with contextlib.suppress(Exception):
            return await coro
        return None

    task = asyncio.ensure_future(run())
    _cleanups.add(task)
    task.add_done_callback(_cleanups.discard)


def recipe_errors(
    fn: Callable[[Any, Any, Ctx], Awaitable[T]],
) -> Callable[[Any, Any, Ctx], Awaitable[T]]:
    """Errors of the recipes reach clients as etcd's do: code UNKNOWN, etcd's text.

    (etcd runs these services on its own client, so every error it forwards has
    lost its gRPC code on the way.)
    """

    async def wrapper(self: Any, request: Any, context: Ctx) -> T:
        try:
            return await fn(self, request, context)
        except (mvcc_errors.MvccError, server_errors.ServerError, RecipeError) as err:
            await context.abort(StatusCode.UNKNOWN, str(err))
            raise AssertionError("unreachable") from err

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


class RecipeError(Exception):
    """An error of the lock and election recipes; ``str()`` is etcd's text."""
