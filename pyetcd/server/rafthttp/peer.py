"""One member's view of one peer: its outbound message stream and its status.

etcd splits this into peer, streamWriter and peerStatus; here one ``Peer`` holds the
URLs, the bounded send queue, the sender task that dials, handshakes and writes
coalesced bursts, and the active/inactive status with etcd's log lines. The
transport owns the peers; a ``Peer`` sees only the ``PeerHost`` part of it. See
``transport`` for the whole protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import ssl
import time
from collections import deque
from collections.abc import Sequence
from typing import Final, Protocol
from urllib.parse import urlsplit

from pyetcd.logutil import Logger
from pyetcd.raft import Message
from pyetcd.server.etcdserver.transport import PeerMetrics

from .codec import (
    PROTOCOL_VERSION,
    ByteStream,
    CodecError,
    FrameReader,
    Hello,
    HelloResp,
    HelloStatus,
    PeerRefusedError,
    StreamType,
    encode_frame,
    encode_message,
)
from .options import TransportOptions

__all__ = ["READ_BYTES", "Peer", "PeerHost", "checked_urls", "peer_address"]

#: Bytes asked of the socket per read.
READ_BYTES: Final = 256 * 1024


def peer_address(url: str) -> tuple[str | None, int]:
    """The (host, port) to listen on or dial for a peer URL like ``http://10.0.0.1:2380``.

    Raises:
        ValueError: not an http(s) URL with a port.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.port is None:
        raise ValueError(f"unsupported peer URL {url!r}: want http://host:port")
    return parts.hostname or None, parts.port


def checked_urls(urls: Sequence[str]) -> tuple[str, ...]:
    """``urls`` as a tuple, each checked with ``peer_address``.

    Raises:
        ValueError: no URL, or one that is not http(s)://host:port.
    """
    if not urls:
        raise ValueError("a peer needs at least one peer URL")
    for url in urls:
        peer_address(url)
    return tuple(urls)


def _hex(member: int) -> str:
    return f"{member:x}"


def _set_user_timeout(writer: asyncio.StreamWriter, seconds: float) -> None:
    # Data left unacknowledged this long aborts the connection (Linux TCP_USER_TIMEOUT):
    # across a partition, a write into the kernel buffer would otherwise wait for TCP's
    # retransmission backoff (minutes) before the stream is redialled.
    sock = writer.get_extra_info("socket")
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    if sock is not None and option is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, option, int(seconds * 1000))


class PeerHost(Protocol):
    """What a ``Peer`` uses of the transport that owns it."""

    @property
    def member_id(self) -> int: ...

    @property
    def cluster_id(self) -> int: ...

    @property
    def log(self) -> Logger: ...

    @property
    def options(self) -> TransportOptions: ...

    @property
    def rng(self) -> random.Random: ...

    @property
    def metrics(self) -> PeerMetrics: ...

    @property
    def client_ssl(self) -> ssl.SSLContext | None:
        """TLS for dialing ``https://`` peer URLs (read at each dial)."""
        ...

    def report_unreachable(self, peer_id: int) -> None:
        """Messages to ``peer_id`` were lost."""
        ...

    def member_removed(self, by_peer: int) -> None:
        """``by_peer`` refused this member as removed from the cluster."""
        ...


class Peer:
    """Everything this member keeps about one remote member: its URLs, its outbound
    message stream (a sender task and queue) and its snapshot transfers."""

    def __init__(self, tr: PeerHost, peer_id: int, urls: Sequence[str]) -> None:
        self.tr = tr
        self.id = peer_id
        self.urls = checked_urls(urls)
        self.queue: deque[Message] = deque()
        self.wakeup = asyncio.Event()
        self.up = asyncio.Event()
        self.down = asyncio.Event()
        self.active = False
        #: When (time.monotonic()) the stream last became active; None while it is
        #: not (etcd's peerStatus.since, zero when inactive): reconfiguration checks
        #: ask how long every peer has been connected.
        self.active_since: float | None = None
        # Set once a dial or write failed; until the stream is back, send() drops.
        self.failed = False
        self.broken = False
        self.task: asyncio.Task[None] | None = None
        # The stream's writer while ``_write_loop`` runs: ``flush`` writes through it
        # from the caller when nothing is waiting to drain (see ``flush``).
        self._writer: asyncio.StreamWriter | None = None
        self._stream_error: Exception | None = None  # what broke a write in ``flush``
        self.snap_tasks: set[asyncio.Task[None]] = set()
        self._url_index = 0
        self._last_refusal: HelloStatus | None = None

    # -- status (etcd's peerStatus) --------------------------------------------------------

    def activate(self) -> None:
        self.failed = False
        self._last_refusal = None
        if not self.active:
            self.active = True
            self.active_since = time.monotonic()
            self.down.clear()
            self.up.set()
            self.tr.log.info("peer became active", {"peer-id": _hex(self.id)})

    def deactivate(self, action: str, reason: str) -> None:
        self.failed = True
        err = f"failed to {action} {_hex(self.id)} on stream Message ({reason})"
        if self.active:
            self.active = False
            self.active_since = None
            self.up.clear()
            self.down.set()
            self.tr.metrics.peer_disconnected(self.id)
            self.tr.log.warn(
                "peer became inactive (message send to peer failed)",
                {"peer-id": _hex(self.id), "error": err},
            )
        else:
            self.down.set()
            self.tr.log.debug("peer deactivated again", {"peer-id": _hex(self.id), "error": err})
        dropped = len(self.queue)
        self.queue.clear()
        if dropped:
            self.tr.report_unreachable(self.id)

    # -- dialing ---------------------------------------------------------------------------

    async def dial(self, stream: StreamType) -> tuple[FrameReader, asyncio.StreamWriter]:
        """Connect and handshake on the current URL; a failure moves on to the next URL.

        Raises:
            PeerRefusedError: the peer refused the handshake.
            OSError, TimeoutError, CodecError: no connection, or no sensible answer.
        """
        tr = self.tr
        url = self.urls[self._url_index % len(self.urls)]
        try:
            host, port = peer_address(url)
            async with asyncio.timeout(tr.options.dial_timeout):
                tls = tr.client_ssl if url.startswith("https:") else None
                reader, writer = await asyncio.open_connection(
                    host, port, limit=READ_BYTES, ssl=tls, server_hostname=host if tls else None
                )
                try:
                    _set_user_timeout(writer, tr.options.write_timeout)
                    hello = Hello(PROTOCOL_VERSION, tr.cluster_id, tr.member_id, self.id, stream)
                    writer.write(encode_frame(hello))
                    frames = FrameReader(reader, tr.options.max_frame_bytes)
                    resp = await frames.next()
                    if not isinstance(resp, HelloResp):
                        raise CodecError("peer did not answer the handshake")
                    if resp.status != HelloStatus.OK:
                        raise PeerRefusedError(resp)
                except BaseException:
                    writer.close()
                    raise
        except BaseException:
            self._url_index += 1
            raise
        return frames, writer

    def refused(self, exc: PeerRefusedError) -> None:
        """Log a refusal once (not on every redial) in etcd's words."""
        resp = exc.resp
        if resp.status == self._last_refusal:
            return
        self._last_refusal = resp.status
        tr = self.tr
        fields = {"local-member-id": _hex(tr.member_id), "remote-peer-id": _hex(self.id)}
        if resp.status == HelloStatus.CLUSTER_ID_MISMATCH:
            fields["remote-peer-cluster-id"] = _hex(resp.cluster_id)
            fields["local-member-cluster-id"] = _hex(tr.cluster_id)
            tr.log.warn(
                "request sent was ignored by remote peer due to cluster ID mismatch", fields
            )
        elif resp.status == HelloStatus.INCOMPATIBLE_VERSION:
            tr.log.warn(
                "request sent was ignored by remote peer due to server version incompatibility",
                fields,
            )
        elif resp.status == HelloStatus.REMOVED_MEMBER:
            tr.member_removed(self.id)

    # -- the message stream ----------------------------------------------------------------

    async def run(self) -> None:
        """Keep one outbound message stream to the peer, redialling with backoff."""
        opts = self.tr.options
        delay = opts.backoff_min
        while True:
            try:
                frames, writer = await self.dial(StreamType.MESSAGE)
            except PeerRefusedError as exc:
                self.refused(exc)
                self.deactivate("dial", str(exc))
            except (OSError, TimeoutError, CodecError) as exc:
                self.deactivate("dial", str(exc) or type(exc).__name__)
            else:
                delay = opts.backoff_min
                try:
                    await self._stream(frames.stream, writer)
                except Exception as exc:
                    # A bug in one stream must not silence the peer for good: say it
                    # loudly, then redial as after any lost connection.
                    self.tr.log.error(
                        "peer stream failed", {"remote-peer-id": _hex(self.id), "error": repr(exc)}
                    )
                    self.deactivate("write", repr(exc))
            # Full jitter: members that lost a peer together do not redial in lockstep.
            await asyncio.sleep(delay * self.tr.rng.uniform(0.5, 1.0))
            delay = min(delay * 2, opts.backoff_max)

    async def _stream(self, reader: ByteStream, writer: asyncio.StreamWriter) -> None:
        tr = self.tr
        fields = {
            "stream-writer-type": "stream Message",
            "local-member-id": _hex(tr.member_id),
            "remote-peer-id": _hex(self.id),
        }
        tr.log.info("established TCP streaming connection with remote peer", fields)
        self.broken = False
        self.activate()
        watcher = asyncio.create_task(self._watch_eof(reader), name=f"peer-eof-{self.id:x}")
        try:
            await self._write_loop(writer)
        except (OSError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            tr.log.warn(
                "lost TCP streaming connection with remote peer", {**fields, "error": reason}
            )
            self.deactivate("write", reason)
        finally:
            watcher.cancel()
            writer.close()

    async def _watch_eof(self, reader: ByteStream) -> None:
        # The acceptor never writes after the handshake: any read result means it closed.
        with contextlib.suppress(OSError):
            await reader.read(1)
        self.broken = True
        self.wakeup.set()

    async def _write_loop(self, writer: asyncio.StreamWriter) -> None:
        opts = self.tr.options
        transport = writer.transport
        self._writer, self._stream_error = writer, None
        try:
            while True:
                await self.wakeup.wait()
                self.wakeup.clear()
                # The transport closes on its own when the peer resets the connection;
                # a write after that raises RuntimeError under uvloop, not an OSError.
                if self._stream_error is not None:
                    err, self._stream_error = self._stream_error, None
                    raise err
                if self.broken or transport.is_closing():
                    raise ConnectionResetError("connection closed by remote peer")
                if self.queue:
                    self._write_queued(writer)
                if transport.get_write_buffer_size():
                    async with asyncio.timeout(opts.write_timeout):
                        await writer.drain()
        finally:
            self._writer = None

    def _write_queued(self, writer: asyncio.StreamWriter) -> None:
        batch, self.queue = self.queue, deque()
        buf = self._encode(batch)
        if buf:
            writer.write(buf)
            sent = self.tr.metrics.sent_bytes
            sent[self.id] = sent.get(self.id, 0) + len(buf)

    def flush(self) -> None:
        """Write what is queued now, from the caller, when the stream is up and its
        socket has nothing waiting to drain; otherwise wake the sender task.

        The driver sends a Ready's messages and then, on a leader, writes and syncs
        its WAL on the same turn of the loop: written here, the appends reach the
        followers before that sync instead of after it, and no task wakes per
        message. The sender task keeps what needs waiting: drains, errors, redials.
        """
        writer = self._writer
        if not self.queue:
            return
        if (
            writer is None
            or self.broken
            or self._stream_error is not None
            or writer.transport.is_closing()
            or writer.transport.get_write_buffer_size()
        ):
            self.wakeup.set()
            return
        try:
            self._write_queued(writer)
        except Exception as exc:
            # Not the caller's failure (the driver's): the sender task ends this
            # stream with it and redials, as after a failure of its own write.
            self._stream_error = exc
            self.wakeup.set()
            return
        if writer.transport.get_write_buffer_size():
            self.wakeup.set()  # the sender task waits for the drain

    def _encode(self, batch: deque[Message]) -> bytes:
        # One write per burst: the frames of every queued message, concatenated.
        limit = self.tr.options.max_frame_bytes + 4
        frames = [encode_message(m) for m in batch]
        if any(len(f) > limit for f in frames):
            kept = [f for f in frames if len(f) <= limit]
            self.tr.log.warn(
                "dropped raft message larger than the frame limit",
                {"remote-peer-id": _hex(self.id), "dropped": len(frames) - len(kept)},
            )
            self.tr.report_unreachable(self.id)
            frames = kept
        return b"".join(frames)

    def enqueue(self, m: Message) -> bool:
        """Queue ``m``; False when it was dropped (stream down or queue full). While
        the stream is up, the caller writes the queue out with ``flush``."""
        if self.failed:
            return False
        if len(self.queue) >= self.tr.options.queue_size:
            if self.active:
                self.tr.log.warn(
                    "dropped internal Raft message since sending buffer is full "
                    "(overloaded network)",
                    {
                        "message-type": m.type.name,
                        "local-member-id": _hex(self.tr.member_id),
                        "from": _hex(m.frm),
                        "remote-peer-id": _hex(self.id),
                        "remote-peer-active": self.active,
                    },
                )
            return False
        self.queue.append(m)
        if self._writer is None:
            self.wakeup.set()
        return True

    def cancel(self) -> None:
        """Stop the sender and every snapshot transfer (the tasks finish on their own)."""
        if self.task is not None:
            self.task.cancel()
        for task in self.snap_tasks:
            task.cancel()
