"""The receiving end of a MESSAGE stream: frames decoded and delivered as bytes arrive.

After the handshake the acceptor's connection stops being a ``StreamReader`` read by a
task and becomes this protocol: each segment the socket gives is split into frames,
decoded and handed to the driver's inbox from ``data_received`` itself. Read by a task,
every received message cost a wake-up of that task (one more turn of the event loop,
and a ``StreamReader`` buffer copy) before the driver could even be woken; on one
client's put that is two of the critical path's hops (the follower receiving MsgApp,
the leader receiving MsgAppResp) and eight messages across a 3-member cluster
(issue 22).

Rules:
1. ``take_over`` runs right after the acceptor wrote its ``HelloResp``, before the loop
   turns: the dialer sends nothing until it reads that answer, and every byte read with
   the handshake is in the ``FrameReader`` (its pending frames and its decoder), which
   are handed over, so nothing is lost or reordered.
2. A frame that does not decode, or that is not a non-snapshot raft message, ends the
   stream: ``done`` fails with the ``CodecError`` and later bytes are ignored.
3. ``done`` completes when the connection ends: None at EOF, the error otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from pyetcd.raft import Message, MessageType

from .codec import CodecError, FrameDecoder, decode_frame

__all__ = ["MessageReceiver"]


class MessageReceiver(asyncio.Protocol):
    """Delivers every message of one inbound MESSAGE stream to ``deliver``;
    ``count(n)`` is told of every ``n`` bytes received."""

    def __init__(
        self,
        decoder: FrameDecoder,
        deliver: Callable[[Message], None],
        count: Callable[[int], None],
    ) -> None:
        self._decoder = decoder
        self._deliver = deliver
        self._count = count
        self._transport: asyncio.BaseTransport | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def take_over(self, transport: asyncio.BaseTransport, pending: Iterable[bytes]) -> None:
        """Become ``transport``'s protocol and deliver ``pending`` (frame payloads
        already read) first (rule 1)."""
        self._transport = transport
        transport.set_protocol(self)
        self._frames(pending)

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        self._count(len(data))
        try:
            payloads = self._decoder.feed(data)
        except CodecError as exc:
            self._fail(exc)
            return
        self._frames(payloads)

    def _frames(self, payloads: Iterable[bytes]) -> None:
        deliver = self._deliver
        for payload in payloads:
            try:
                f = decode_frame(payload)
                if type(f) is not Message or f.type == MessageType.SNAP:
                    raise CodecError(f"unexpected {type(f).__name__} on a message stream")
            except CodecError as exc:
                self._fail(exc)
                return
            deliver(f)

    def _fail(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)
        if self._transport is not None:
            self._transport.close()

    def eof_received(self) -> bool | None:
        return None  # close our side too: the acceptor never writes after the handshake

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done.done():
            return
        if exc is None:
            self.done.set_result(None)
        else:
            self.done.set_exception(exc)
