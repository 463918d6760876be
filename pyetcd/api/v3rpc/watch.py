"""etcdserverpb.Watch over gRPC: many watchers per bidi stream.

Ordering rule: a watcher's ``created`` response is queued when the create request
is handled, before anything of that watcher can be buffered by the store, so the
client always sees ``created`` before its first event.

Memory rule: the responses waiting to be written (``_Session.out``) stay near
:data:`OUT_LIMIT`: the session takes from its store stream (itself bounded; a full one
turns its watchers into victims the store retries) only when everything taken before was
written, and handles the next client request only while fewer than :data:`OUT_LIMIT`
wait, so a client that does not read cannot grow the server.

Latency rule: one task per stream writes, and it is the one the store wakes: an event
is converted and written in the first loop turn after the write that caused it (the
same turn in which the put's own response is written), not handed through a second
task and queue.

Progress rule: a progress_notify watcher that saw no event during a period gets an
empty response at the store's revision when synced; the period is
``--experimental-watch-progress-notify-interval`` (floor 100 ms, as etcd) plus a jitter
of up to a tenth of it drawn once per stream.

A stream ends when the client leaves or its requests fail, not when the client stops
sending (etcd's recvLoop ends quietly at EOF and the watches go on).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import AsyncIterator

from pyetcd.mvcc.watchable_store import WatchFilter, WatchResponse, WatchStream, fragment
from pyetcd.pb import rpc_pb2
from pyetcd.server.auth.check import check_watch
from pyetcd.server.auth.errors import AuthOldRevisionError, InvalidAuthTokenError, UserEmptyError
from pyetcd.server.etcdserver import pbconv
from pyetcd.server.etcdserver.errors import ServerError
from pyetcd.server.etcdserver.server import EtcdServer

from .access import caller
from .common import Ctx, require_leader
from .errors import abort

__all__ = ["MIN_PROGRESS_INTERVAL", "WATCH_PERMISSION_DENIED", "WatchService"]

_END = object()
#: responses a stream keeps waiting for the client before it stops taking more
OUT_LIMIT = 64
_SYNC_INTERVAL = 0.1  # etcd's watchable store syncs unsynced watchers every 100 ms
#: etcd's floor for --experimental-watch-progress-notify-interval (minWatchProgressInterval)
MIN_PROGRESS_INTERVAL = 0.1
_DEFAULT_PROGRESS_INTERVAL = 600.0
#: etcd's cancel_reason for a watch the caller may not read (its gRPC error's text)
WATCH_PERMISSION_DENIED = "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
#: etcd 3.5.6 (#14547) tells a refused create why, in the text of the gRPC error it
#: stands for, so that a client can renew its token; anything else reads as denied
_DENIAL_REASONS: dict[type[Exception], str] = {
    InvalidAuthTokenError: (
        "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token"
    ),
    AuthOldRevisionError: (
        "rpc error: code = InvalidArgument desc = etcdserver: revision of auth store is old"
    ),
    UserEmptyError: "rpc error: code = InvalidArgument desc = etcdserver: user name is empty",
}


def _progress_interval(server: EtcdServer) -> float:
    """--experimental-watch-progress-notify-interval as etcd applies it: not positive
    keeps the default (10 m); under 100 ms is raised to 100 ms with etcd's warning."""
    interval = server.cfg.experimental_watch_progress_notify_interval
    if interval <= 0:
        return _DEFAULT_PROGRESS_INTERVAL
    if interval < MIN_PROGRESS_INTERVAL:
        server.log.warn(
            "adjusting watch progress notify interval to minimum period",
            {"min-watch-progress-notify-interval": "100ms"},
        )
        return MIN_PROGRESS_INTERVAL
    return interval


class _Session:
    """One client stream: its WatchStream and the responses waiting to be written."""

    def __init__(self, server: EtcdServer, progress_interval: float) -> None:
        self.server = server
        self.progress_interval = progress_interval
        # control responses (created, canceled) and converted store responses, in the
        # order they are written; the writer is woken by ``wake`` for both
        self.out: deque[object] = deque()
        self.wake = asyncio.Event()
        self.room = asyncio.Event()  # set when the writer took a response
        self.stream: WatchStream = server.watchable.new_stream(notify=self.wake.set)
        self.fragment: set[int] = set()
        # progress_notify watchers -> whether the next tick owes them a notification
        # (an event since the last tick makes it False: etcd elides that one)
        self.progress: dict[int, bool] = {}
        # a RequestProgress that waits for every watcher of the stream to be synced
        self.deferred = False
        # started only when needed (a progress_notify watcher; a deferred progress
        # request): most streams never have either, and 10k watchers may mean 100s of streams
        self._ticker: asyncio.Task[None] | None = None
        self._retry: asyncio.Task[None] | None = None

    def tasks(self) -> list[asyncio.Task[None]]:
        """The helper tasks started for this stream (to cancel when it ends)."""
        return [t for t in (self._ticker, self._retry) if t is not None]

    async def wait_room(self) -> None:
        """Wait until fewer than OUT_LIMIT responses wait to be written."""
        while len(self.out) >= OUT_LIMIT:
            self.room.clear()
            await self.room.wait()

    def put(self, item: object) -> None:
        """Queue a response (or the end) for the writer and wake it; what the store
        buffered before goes first, so a cancel is never overtaken by an older event."""
        if len(self.stream):
            self.pump()
        self.out.append(item)
        self.wake.set()

    def handle(self, req: rpc_pb2.WatchRequest) -> None:
        which = req.WhichOneof("request_union")
        if which == "create_request":
            self._create(req.create_request)
        elif which == "cancel_request":
            self._cancel(req.cancel_request.watch_id)
        elif which == "progress_request":
            self._progress()

    def _create(self, c: rpc_pb2.WatchCreateRequest) -> None:
        key = c.key or b"\x00"  # etcd watches from "\0" when no key is given
        try:
            watch_id = self.stream.watch(
                key,
                c.range_end,
                start_revision=c.start_revision,
                filters=[WatchFilter(f) for f in c.filters],
                prev_kv=c.prev_kv,
                watch_id=c.watch_id if c.watch_id else -1,
            )
        except ValueError as err:
            self.put(
                rpc_pb2.WatchResponse(
                    header=self.server.header(),
                    watch_id=-1,
                    created=True,
                    canceled=True,
                    cancel_reason=f"mvcc: {err}" if "mvcc" not in str(err) else str(err),
                )
            )
            return
        if c.fragment:
            self.fragment.add(watch_id)
        if c.progress_notify:
            self.progress[watch_id] = True
            if self._ticker is None:
                self._ticker = asyncio.ensure_future(self._progress_ticks())
        self.put(
            rpc_pb2.WatchResponse(header=self.server.header(), watch_id=watch_id, created=True)
        )
        self.server.kick_watch_sync()

    def deny(self, reason: str) -> None:
        """Answer a create the caller may not read: created and canceled at once.

        The watch ID is -1, not the one asked for (etcd 3.5.6, #14563): a client that
        let the server choose (ID 0) would otherwise close its existing watch 0.
        """
        self.put(
            rpc_pb2.WatchResponse(
                header=self.server.header(),
                watch_id=-1,
                created=True,
                canceled=True,
                cancel_reason=reason,
            )
        )

    def _cancel(self, watch_id: int) -> None:
        if self.stream.cancel(watch_id):
            self.fragment.discard(watch_id)
            self.progress.pop(watch_id, None)
            self.put(
                rpc_pb2.WatchResponse(header=self.server.header(), watch_id=watch_id, canceled=True)
            )

    def _progress(self) -> None:
        # etcd 3.5.13+: a stream-wide notification (watch_id -1, the current revision)
        # once every watcher of the stream has caught up; until then it is deferred, so
        # that its revision never runs ahead of an event still to come.
        if not self.deferred and not self.server.watchable.progress_all(
            self.stream.watchers.values()
        ):
            self.deferred = True
            if self._retry is None or self._retry.done():
                self._retry = asyncio.ensure_future(self._retry_deferred())

    def try_deferred(self) -> None:
        """Send a deferred progress notification if the stream has caught up."""
        if self.deferred and self.server.watchable.progress_all(self.stream.watchers.values()):
            self.deferred = False

    def tick(self) -> None:
        """The progress-notify interval passed: notify each progress_notify watcher that
        saw no event since the last tick (only if it is synced, as etcd)."""
        for watch_id, owed in self.progress.items():
            if owed:
                self.stream.request_progress(watch_id)
            self.progress[watch_id] = True

    async def _progress_ticks(self) -> None:
        # etcd draws each stream's period once: the interval plus up to a tenth of it, so
        # the watchers of a restarted client are not all notified at the same moment
        interval = self.progress_interval * (1 + random.random() / 10)
        while True:
            await asyncio.sleep(interval)
            self.tick()

    async def _retry_deferred(self) -> None:
        # A watcher may catch up without an event to send; look again every sync
        # interval while a progress request waits.
        while self.deferred:
            await asyncio.sleep(_SYNC_INTERVAL)
            self.try_deferred()

    def pump(self) -> None:
        """Move buffered store responses into the output queue as protobuf."""
        for r in self.stream.pop_all():
            parts = [r]
            if r.watch_id in self.fragment and r.events:
                parts = fragment(r, self.server.cfg.max_request_bytes)
            for part in parts:
                self.out.append(self._to_pb(part))
            if r.events and r.watch_id in self.progress:
                self.progress[r.watch_id] = False
            if r.canceled:
                self.fragment.discard(r.watch_id)
                self.progress.pop(r.watch_id, None)
                self.stream.watchers.pop(r.watch_id, None)
        self.try_deferred()
        self.server.kick_watch_sync()

    def _to_pb(self, r: WatchResponse) -> rpc_pb2.WatchResponse:
        # etcd's cancel for a compacted start revision has header revision 0 and no
        # cancel_reason; other responses without a revision carry the current one
        compacted = r.canceled and r.compact_revision != 0
        m = rpc_pb2.WatchResponse(
            header=self.server.header(0 if compacted else (r.revision or None)),
            watch_id=r.watch_id,
            compact_revision=r.compact_revision,
            canceled=r.canceled,
            fragment=r.fragment,
        )
        for e in r.events:
            m.events.append(pbconv.event_to_pb(e))
        return m


class WatchService:
    def __init__(self, server: EtcdServer) -> None:
        self.server = server
        self.progress_interval = _progress_interval(server)

    async def Watch(
        self, request_iterator: AsyncIterator[rpc_pb2.WatchRequest], context: Ctx
    ) -> None:
        try:
            require_leader(self.server, context)
        except ServerError as err:
            await abort(context, err)
        session = _Session(self.server, self.progress_interval)
        reader = asyncio.ensure_future(self._read(request_iterator, session, context))
        try:
            await self._write(session, context)
        finally:
            tasks = (reader, *session.tasks())
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            session.stream.close()

    @staticmethod
    async def _write(session: _Session, context: Ctx) -> None:
        # The stream's one writer: woken by the store (an event was buffered) or by a
        # request's response; takes the store's responses only once everything taken
        # before was written (the memory rule), then writes in order.
        out, wake, stream = session.out, session.wake, session.stream
        while True:
            if not out and not len(stream):
                wake.clear()
                await wake.wait()
            session.pump()
            while out:
                item = out.popleft()
                session.room.set()
                if item is _END:
                    return
                await context.write(item)

    async def _read(
        self,
        request_iterator: AsyncIterator[rpc_pb2.WatchRequest],
        session: _Session,
        context: Ctx,
    ) -> None:
        try:
            async for req in request_iterator:
                await session.wait_room()
                if self.server.auth_store.enabled and req.HasField("create_request"):
                    refused = await self._refusal(req.create_request, context)
                    if refused is not None:
                        session.deny(refused)
                        continue
                session.handle(req)
        except Exception:
            session.put(_END)
            raise

    async def _refusal(self, c: rpc_pb2.WatchCreateRequest, context: Ctx) -> str | None:
        # READ over the whole watched range (a from-key watch needs a from-key grant);
        # None when permitted, else the cancel_reason etcd 3.5.13 gives
        try:
            auth = await caller(self.server, context)
            check_watch(self.server.auth_store, auth, c.key, c.range_end)
        except ServerError as err:
            return _DENIAL_REASONS.get(type(err), WATCH_PERMISSION_DENIED)
        return None
