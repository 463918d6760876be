"""The TCP transport between members (etcd's rafthttp, as a plain asyncio TCP protocol).

Readable in protocol order:

1. Each member listens on its peer URLs' host:port (our own framing, not HTTP).
2. For every peer, one sender task dials it and keeps ONE outbound MESSAGE stream:
   handshake (``Hello``: protocol version, cluster ID, sender and receiver member IDs),
   then raft messages, a queued burst coalesced into one write. The acceptor only reads.
   So a pair of members has two connections, one per direction, as etcd's streams do.
3. ``send`` never blocks: it appends to the peer's bounded queue. A full queue, or a
   peer whose stream is down, drops the message and reports the peer unreachable.
4. A lost stream is redialled with bounded, jittered exponential backoff.
5. MsgSnap never enters the message stream: each one gets its own SNAPSHOT connection
   that carries the message, then the backend database in chunks with back-pressure,
   then waits for the receiver's ack; the outcome is reported with
   ``on_snapshot_status``. Heartbeats and appends keep flowing on the message stream.
6. The acceptor refuses a handshake from another cluster, a removed member, a member it
   does not know, or one addressed to another member, with one log line in etcd's words.
   Until a handshake passed, a frame may be no longer than ``HANDSHAKE_MAX_FRAME_BYTES``:
   a stranger cannot make us buffer a large frame before we know who it is.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Protocol

from pyetcd.logutil import Logger
from pyetcd.raft import Message, MessageType
from pyetcd.server.etcdserver.transport import PeerMetrics

from .codec import (
    PROTOCOL_VERSION,
    CodecError,
    FrameReader,
    Hello,
    HelloResp,
    HelloStatus,
    PeerRefusedError,
    StreamType,
    encode_frame,
)
from .options import TransportOptions
from .peer import READ_BYTES, Peer, checked_urls, peer_address
from .receiver import MessageReceiver
from .snapshot import DBSource, OnSnapshot, OpenSnapshotDB, receive_snapshot, send_snapshot

__all__ = [
    "HANDSHAKE_MAX_FRAME_BYTES",
    "DBSource",
    "OnSnapshot",
    "OpenSnapshotDB",
    "PeerHTTPServe",
    "PeerRefusedError",
    "PeerTransport",
    "Raft",
    "TransportOptions",
    "peer_address",
]

#: The longest frame read before the handshake passed (a Hello is under 100 bytes; the
#: dialer sends nothing more before our answer).
HANDSHAKE_MAX_FRAME_BYTES: Final = 4096
# A heartbeat and its answer time a peer's round trip (etcd_network_peer_round_trip_time_seconds).
_HEARTBEAT: Final = MessageType.HEARTBEAT
_HEARTBEAT_RESP: Final = MessageType.HEARTBEAT_RESP

_REASONS: Final = {
    HelloStatus.CLUSTER_ID_MISMATCH: "cluster ID mismatch",
    HelloStatus.REMOVED_MEMBER: "removed member",
    HelloStatus.TO_MISMATCH: "to field mismatch",
    HelloStatus.INCOMPATIBLE_VERSION: "incompatible version",
    HelloStatus.UNKNOWN_SENDER: "error sender not found",
}


def _hex(member: int) -> str:
    return f"{member:x}"


class Raft(Protocol):
    """The Raft driver as the transport sees it (etcd's ``rafthttp.Raft``).

    Every method runs on the event loop and must not block.
    """

    def step(self, m: Message) -> None:
        """A raft message arrived from a peer."""
        ...

    def report_unreachable(self, peer_id: int) -> None:
        """Messages to ``peer_id`` were dropped."""
        ...

    def report_snapshot(self, peer_id: int, ok: bool) -> None:
        """A MsgSnap transfer to ``peer_id`` ended, successfully or not."""
        ...

    def is_removed(self, peer_id: int) -> bool:
        """Whether ``peer_id`` was removed from the cluster (its streams are refused)."""
        ...


#: Serves one plain HTTP request on the peer port (see ``PeerTransport``).
PeerHTTPServe = Callable[[bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class PeerTransport:
    """The asyncio TCP transport between members. See the module docstring.

    Callbacks run on the event loop and must not block: ``on_message`` for every raft
    message received (the driver's ``step``), ``on_unreachable(peer)`` when messages to a
    peer were dropped, ``on_snapshot_status(peer, ok)`` when a MsgSnap transfer ended.
    """

    def __init__(
        self,
        member_id: int,
        cluster_id: int,
        listen_urls: Sequence[str],
        peers: dict[int, tuple[str, ...]],
        on_message: Callable[[Message], None],
        on_unreachable: Callable[[int], None],
        on_snapshot_status: Callable[[int, bool], None],
        logger: Logger,
        *,
        open_snapshot_db: OpenSnapshotDB | None = None,
        on_snapshot: OnSnapshot | None = None,
        snapshot_dir: str | None = None,
        on_removed: Callable[[int], None] | None = None,
        options: TransportOptions | None = None,
        rng: random.Random | None = None,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
        is_removed: Callable[[int], bool] | None = None,
        http_handler: PeerHTTPServe | None = None,
        on_fatal: Callable[[str, BaseException], None] | None = None,
        metrics: PeerMetrics | None = None,
    ) -> None:
        """Build a transport; nothing runs until ``await start()``.

        Args:
            listen_urls: peer URLs to listen on (``http://host:port``; port 0 picks one,
                see ``listen_addresses``).
            peers: member id -> peer URLs of every other member.
            open_snapshot_db: sender hook giving the database to stream with a MsgSnap.
            on_snapshot: receiver hook told where a received database was saved.
            snapshot_dir: where received databases are written (``%016x.snap.db``).
            on_removed: called with the peer's id when a peer says this member was
                removed from the cluster (etcd then stops the member).
            server_ssl: TLS for ``https://`` listen URLs (peer TLS).
            client_ssl: TLS for dialing ``https://`` peer URLs.
            is_removed: whether a member id was removed from the cluster (besides the
                ids given to ``remove_peer``); its streams are refused.
            http_handler: serves plain HTTP on the peer port: called with the
                request's first 4 bytes ("GET " or "POST"), the reader positioned after
                them, and the writer. Without it such requests are refused.
            on_fatal: called with a message and the error when a task the transport
                runs for its life dies unexpectedly (the member then ends).
            metrics: counts bytes and failures per peer; told the round trip of each
                heartbeat (sent to a peer, answered by it).
        """
        self.member_id = member_id
        self.cluster_id = cluster_id
        self.listen_urls = tuple(listen_urls)
        self.log = logger
        self.options = options or TransportOptions()
        self.rng = rng or random.Random()
        self.server_ssl = server_ssl
        self.client_ssl = client_ssl
        self.removed: set[int] = set()
        self._on_message = on_message
        self._on_unreachable = on_unreachable
        self._on_snapshot_status = on_snapshot_status
        self.open_snapshot_db = open_snapshot_db
        self.on_snapshot = on_snapshot
        self.snapshot_dir = snapshot_dir
        self._on_removed = on_removed
        self._is_removed = is_removed
        self.http_handler = http_handler
        self._on_fatal = on_fatal
        self.metrics = metrics if metrics is not None else PeerMetrics()
        # peer -> when the oldest unanswered heartbeat to it was sent
        self._heartbeat_sent: dict[int, float] = {}
        self._peers: dict[int, Peer] = {}
        self._servers: list[asyncio.Server] = []
        self._inbound: dict[asyncio.Task[None], int] = {}
        self._message_streams: dict[int, asyncio.Task[None]] = {}
        # Tasks of removed peers, still winding down after their cancellation.
        self._retired: set[asyncio.Task[None]] = set()
        self._started = False
        self._closing = False
        for peer_id, urls in peers.items():
            if peer_id != member_id:
                self._peers[peer_id] = Peer(self, peer_id, urls)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on every listen URL and start dialling every peer.

        Raises:
            OSError: a listen address cannot be bound.
        """
        for url in self.listen_urls:
            host, port = peer_address(url)
            tls = self.server_ssl if url.startswith("https:") else None
            if url.startswith("https:") and tls is None:
                raise OSError(f"peer URL {url} needs peer TLS settings")
            server = await asyncio.start_server(
                self._accept, host, port, reuse_address=True, limit=READ_BYTES, ssl=tls
            )
            self._servers.append(server)
        self._started = True
        for peer in self._peers.values():
            self._start_peer(peer)

    @property
    def listen_addresses(self) -> list[tuple[str, int]]:
        """The (host, port) pairs actually bound (useful with port 0)."""
        out = []
        for server in self._servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                out.append((str(host), int(port)))
        return out

    async def close(self) -> None:
        """Stop listening, stop every task and close every connection."""
        self._closing = True
        for server in self._servers:
            server.close()
        tasks: list[asyncio.Task[None]] = [*self._inbound, *self._retired]
        for peer in self._peers.values():
            peer.cancel()
            tasks += [t for t in (peer.task, *peer.snap_tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    # -- membership ------------------------------------------------------------------------

    def add_peer(self, peer_id: int, urls: Sequence[str]) -> None:
        """Start talking to a new member (idempotent; a removed id stays removed)."""
        if peer_id == self.member_id or peer_id in self._peers:
            return
        if peer_id in self.removed:
            self.log.warn("ignored adding a removed member", {"remote-peer-id": _hex(peer_id)})
            return
        peer = Peer(self, peer_id, urls)
        self._peers[peer_id] = peer
        if self._started and not self._closing:
            self._start_peer(peer)
        self.log.info(
            "added remote peer",
            {
                "local-member-id": _hex(self.member_id),
                "remote-peer-id": _hex(peer_id),
                "remote-peer-urls": list(urls),
            },
        )

    def remove_peer(self, peer_id: int) -> None:
        """Stop talking to a member and refuse it from now on (also for unknown ids)."""
        self.removed.add(peer_id)
        peer = self._peers.pop(peer_id, None)
        if peer is not None:
            peer.cancel()
            for task in (peer.task, *peer.snap_tasks):
                if task is not None and not task.done():
                    self._retired.add(task)
                    task.add_done_callback(self._retired.discard)
            self.log.info(
                "removed remote peer",
                {"local-member-id": _hex(self.member_id), "removed-remote-peer-id": _hex(peer_id)},
            )
        for task, frm in list(self._inbound.items()):
            if frm == peer_id:
                task.cancel()

    def update_peer(self, peer_id: int, urls: Sequence[str]) -> None:
        """Dial ``urls`` from the next (re)connection on; the current stream stays."""
        peer = self._peers.get(peer_id)
        if peer is not None:
            peer.urls = checked_urls(urls)

    def has_peer(self, peer_id: int) -> bool:
        return peer_id in self._peers

    def peer_active(self, peer_id: int) -> bool:
        """Whether the outbound message stream to ``peer_id`` is established."""
        peer = self._peers.get(peer_id)
        return peer is not None and peer.active

    def active_since(self, peer_id: int) -> float | None:
        """Since when (``time.monotonic()``) the stream to ``peer_id`` has been up;
        None while it is down or ``peer_id`` is not a peer (etcd's ActiveSince)."""
        peer = self._peers.get(peer_id)
        return peer.active_since if peer is not None else None

    async def wait_active(self, peer_id: int, active: bool = True) -> None:
        """Wait until the stream to ``peer_id`` is up (or, with ``active=False``, down).

        Raises:
            KeyError: ``peer_id`` is not a peer.
        """
        peer = self._peers[peer_id]
        await (peer.up if active else peer.down).wait()

    def _start_peer(self, peer: Peer) -> None:
        peer.task = asyncio.create_task(peer.run(), name=f"peer-sender-{peer.id:x}")
        peer.task.add_done_callback(self._sender_done)

    def _sender_done(self, task: asyncio.Task[None]) -> None:
        # A sender only ends by cancellation; anything else is a bug that would leave
        # the peer unreachable for good: it ends the member (on_fatal), or says so loudly.
        if task.cancelled() or task.exception() is None:
            return
        err = task.exception()
        assert err is not None
        if self._on_fatal is not None:
            self._on_fatal("peer sender stopped", err)
        else:
            self.log.error("peer sender stopped", {"task": task.get_name(), "error": repr(err)})

    # -- sending ---------------------------------------------------------------------------

    def send(self, msgs: Sequence[Message]) -> None:
        """Queue ``msgs`` for their peers; never blocks.

        Messages that cannot be queued (peer down, queue full) are dropped and the peer
        reported unreachable once per call. Messages to unknown peers are ignored.
        """
        unreachable: set[int] = set()
        touched: dict[int, Peer] = {}
        failures = self.metrics.sent_failures
        for m in msgs:
            if m.type == _HEARTBEAT:
                self._heartbeat_timed(m.to)
            peer = self._peers.get(m.to)
            if peer is None or peer.task is None:
                if m.to not in self._peers:
                    self.log.debug(
                        "ignored message send request; unknown remote peer target",
                        {"type": m.type.name, "unknown-target-peer-id": _hex(m.to)},
                    )
                else:
                    unreachable.add(m.to)
                    failures[m.to] = failures.get(m.to, 0) + 1
                    if m.type == MessageType.SNAP:
                        self.report_snapshot_status(m.to, False)
                continue
            if m.type == MessageType.SNAP:
                self._start_snapshot(peer, m)
            elif peer.enqueue(m):
                touched[m.to] = peer
            else:
                unreachable.add(m.to)
                failures[m.to] = failures.get(m.to, 0) + 1
        # One write per peer for the whole call (a Ready's messages), see Peer.flush.
        for peer in touched.values():
            peer.flush()
        for peer_id in unreachable:
            self.report_unreachable(peer_id)

    def _heartbeat_timed(self, peer_id: int) -> None:
        # The oldest unanswered heartbeat is timed; one never answered (lost with a
        # connection) stops counting after etcd's 5 s connection read timeout.
        now = time.perf_counter()
        sent = self._heartbeat_sent.get(peer_id)
        if sent is None or now - sent > 5.0:
            self._heartbeat_sent[peer_id] = now

    def report_unreachable(self, peer_id: int) -> None:
        """Tell the driver messages to ``peer_id`` were lost."""
        if not self._closing:
            self._on_unreachable(peer_id)

    def report_snapshot_status(self, peer_id: int, ok: bool) -> None:
        """Tell the driver how a MsgSnap transfer to ``peer_id`` ended."""
        if not self._closing:
            self._on_snapshot_status(peer_id, ok)

    def deliver(self, m: Message) -> None:
        """Hand a received message to the driver; a failing callback drops only ``m``."""
        if m.type == _HEARTBEAT_RESP:
            sent = self._heartbeat_sent.pop(m.frm, None)
            if sent is not None:
                self.metrics.observe_rtt(m.frm, time.perf_counter() - sent)
        try:
            self._on_message(m)
        except Exception as exc:  # the driver's bug must not kill the connection
            self.log.warn(
                "failed to process Raft message",
                {"local-member-id": _hex(self.member_id), "error": repr(exc)},
            )

    def member_removed(self, by_peer: int) -> None:
        """A peer refused us as a removed member: etcd stops such a member."""
        self.log.warn(
            "the member has been permanently removed from the cluster",
            {"local-member-id": _hex(self.member_id), "remote-peer-id": _hex(by_peer)},
        )
        if self._on_removed is not None:
            self._on_removed(by_peer)

    # -- snapshots (sender) ------------------------------------------------------------------

    def _start_snapshot(self, peer: Peer, m: Message) -> None:
        task = asyncio.create_task(send_snapshot(self, peer, m), name=f"snap-to-{peer.id:x}")
        peer.snap_tasks.add(task)
        task.add_done_callback(peer.snap_tasks.discard)

    # -- accepting ---------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self._closing:
            writer.close()
            return
        self._inbound[task] = 0  # sender not known until the handshake
        frames = FrameReader(reader, HANDSHAKE_MAX_FRAME_BYTES)
        remote = writer.get_extra_info("peername")
        try:
            async with asyncio.timeout(self.options.handshake_timeout):
                first = await reader.readexactly(4)
                http = self.http_handler if first in (b"GET ", b"POST") else None
                if http is None:
                    frames.pending.extend(frames.decoder.feed(first))
                    hello = await frames.next()
            if http is not None:
                # Plain HTTP on the peer port (etcd's /members, /leases, /members/promote):
                # the handler keeps its own time limits (a promote outlasts a handshake).
                await http(first, reader, writer)
                return
            if not isinstance(hello, Hello):
                raise CodecError("expected a handshake frame")
            status = self._check_hello(hello)
            writer.write(encode_frame(HelloResp(status, self.cluster_id, _REASONS.get(status, ""))))
            if status != HelloStatus.OK:
                async with asyncio.timeout(self.options.write_timeout):
                    await writer.drain()
                return
            self._inbound[task] = hello.frm
            frames.decoder.max_frame_bytes = self.options.max_frame_bytes
            if hello.stream == StreamType.MESSAGE:
                await self._serve_messages(hello.frm, frames, writer.transport, task)
            else:
                await receive_snapshot(self, hello.frm, frames, writer)
        except CodecError as exc:
            frm = self._inbound.get(task, 0)
            if frm:  # a known peer's frames (etcd: "failed to unmarshal raft message")
                self.metrics.receive_failed(frm)
            self.log.warn(
                "failed to decode raft message",
                {
                    "local-member-id": _hex(self.member_id),
                    "remote-addr": str(remote),
                    "error": str(exc),
                },
            )
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            self.log.debug(
                "peer connection failed", {"remote-addr": str(remote), "error": repr(exc)}
            )
        except asyncio.CancelledError:
            # close() or remove_peer() cut this connection. Ending normally, not
            # cancelled: Python 3.11's start_server callback logs a cancelled handler
            # task as an error.
            pass
        finally:
            self._inbound.pop(task, None)
            writer.close()

    def _check_hello(self, hello: Hello) -> HelloStatus:
        fields = {"local-member-id": _hex(self.member_id), "remote-peer-id-from": _hex(hello.frm)}
        if hello.version != PROTOCOL_VERSION:
            self.log.warn(
                "failed version compatibility check",
                {
                    **fields,
                    "local-protocol-version": PROTOCOL_VERSION,
                    "remote-protocol-version": hello.version,
                },
            )
            return HelloStatus.INCOMPATIBLE_VERSION
        if hello.cluster_id != self.cluster_id:
            self.log.warn(
                "request cluster ID mismatch",
                {
                    **fields,
                    "local-member-cluster-id": _hex(self.cluster_id),
                    "remote-peer-cluster-id": _hex(hello.cluster_id),
                },
            )
            return HelloStatus.CLUSTER_ID_MISMATCH
        if hello.frm in self.removed or (
            self._is_removed is not None and self._is_removed(hello.frm)
        ):
            self.log.warn("rejected stream from remote peer because it was removed", fields)
            return HelloStatus.REMOVED_MEMBER
        if hello.frm not in self._peers:
            self.log.warn(
                "failed to find remote peer in cluster",
                {**fields, "cluster-id": _hex(self.cluster_id)},
            )
            return HelloStatus.UNKNOWN_SENDER
        if hello.to != self.member_id:
            self.log.warn(
                "ignored streaming request; ID mismatch",
                {**fields, "remote-peer-id-header": _hex(hello.to)},
            )
            return HelloStatus.TO_MISMATCH
        return HelloStatus.OK

    async def _serve_messages(
        self,
        frm: int,
        frames: FrameReader,
        transport: asyncio.BaseTransport,
        task: asyncio.Task[None],
    ) -> None:
        # A peer that redials (after a restart, say) replaces its half-open old stream.
        old = self._message_streams.get(frm)
        if old is not None:
            old.cancel()
        self._message_streams[frm] = task
        fields = {
            "stream-reader-type": "stream Message",
            "local-member-id": _hex(self.member_id),
            "remote-peer-id": _hex(frm),
        }
        self.log.info("established TCP streaming connection with remote peer", fields)
        received = self.metrics.received_bytes

        def count(n: int) -> None:
            received[frm] = received.get(frm, 0) + n

        # From here the connection's bytes are decoded and delivered as they arrive,
        # with no task woken per message (see receiver.py).
        receiver = MessageReceiver(frames.decoder, self.deliver, count)
        pending, frames.pending = list(frames.pending), deque()
        try:
            receiver.take_over(transport, pending)
            await receiver.done
            if not self._closing:
                self.log.warn(
                    "lost TCP streaming connection with remote peer", {**fields, "error": "EOF"}
                )
        finally:
            if self._message_streams.get(frm) is task:
                del self._message_streams[frm]
