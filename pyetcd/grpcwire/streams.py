"""Stream states of a server-side HTTP/2 connection (RFC 9113 section 5.1), as a table.

Rules:

1. ``TRANSITIONS`` is the whole state machine: (state, input) -> next state. A pair
   not in it is illegal and ``H2Stream.step`` raises the typed error the RFC names.
2. A server never pushes, so the reserved states do not occur: a stream starts idle,
   opens with the client's HEADERS and closes when both sides ended it or either reset it.
3. An illegal *received* frame on a half-closed (remote) or closed stream is a stream
   error STREAM_CLOSED; any frame but HEADERS on an idle stream is a connection error
   PROTOCOL_ERROR; an illegal *send* is our own bug, raised as StreamClosedError.
4. The windows on a stream are counted here, checked by the connection.
5. A closed stream leaves only a note of how it closed (``ClosedStreams``), for the last
   ``CLOSED_REMEMBERED`` of them: the rules for late frames depend on it (RFC 9113 5.1).
"""

from __future__ import annotations

import enum
from typing import Final

from .errors import H2Error, ProtocolError, StreamClosedError

__all__ = [
    "CLOSED_REMEMBERED",
    "TRANSITIONS",
    "ClosedBy",
    "ClosedStreams",
    "ConnectionState",
    "H2Stream",
    "PendingBlock",
    "StreamInput",
    "StreamState",
]

#: How many closed streams ``ClosedStreams`` remembers (a few bytes each).
CLOSED_REMEMBERED: Final = 1024


class ConnectionState(enum.IntEnum):
    AWAITING_PREFACE = 0
    OPEN = 1
    GOING_AWAY = 2  # we sent GOAWAY(NO_ERROR): open streams finish, new ones are refused
    CLOSED = 3  # a connection error (either side's): nothing more is read or sent


class StreamState(enum.IntEnum):
    IDLE = 0
    OPEN = 1
    HALF_CLOSED_LOCAL = 2  # we sent END_STREAM
    HALF_CLOSED_REMOTE = 3  # the peer sent END_STREAM
    CLOSED = 4


class StreamInput(enum.IntEnum):
    RECV_HEADERS = 0
    RECV_DATA = 1
    RECV_END_STREAM = 2
    RECV_RST_STREAM = 3
    SEND_HEADERS = 4
    SEND_DATA = 5
    SEND_END_STREAM = 6
    SEND_RST_STREAM = 7


_S = StreamState
_I = StreamInput
_SENDS: Final = frozenset((_I.SEND_HEADERS, _I.SEND_DATA, _I.SEND_END_STREAM))

#: RFC 9113 figure 2, without the push (reserved) states.
TRANSITIONS: Final[dict[tuple[StreamState, StreamInput], StreamState]] = {
    (_S.IDLE, _I.RECV_HEADERS): _S.OPEN,
    (_S.OPEN, _I.RECV_HEADERS): _S.OPEN,
    (_S.OPEN, _I.RECV_DATA): _S.OPEN,
    (_S.OPEN, _I.RECV_END_STREAM): _S.HALF_CLOSED_REMOTE,
    (_S.OPEN, _I.SEND_HEADERS): _S.OPEN,
    (_S.OPEN, _I.SEND_DATA): _S.OPEN,
    (_S.OPEN, _I.SEND_END_STREAM): _S.HALF_CLOSED_LOCAL,
    (_S.OPEN, _I.RECV_RST_STREAM): _S.CLOSED,
    (_S.OPEN, _I.SEND_RST_STREAM): _S.CLOSED,
    (_S.HALF_CLOSED_LOCAL, _I.RECV_HEADERS): _S.HALF_CLOSED_LOCAL,
    (_S.HALF_CLOSED_LOCAL, _I.RECV_DATA): _S.HALF_CLOSED_LOCAL,
    (_S.HALF_CLOSED_LOCAL, _I.RECV_END_STREAM): _S.CLOSED,
    (_S.HALF_CLOSED_LOCAL, _I.RECV_RST_STREAM): _S.CLOSED,
    (_S.HALF_CLOSED_LOCAL, _I.SEND_RST_STREAM): _S.CLOSED,
    (_S.HALF_CLOSED_REMOTE, _I.SEND_HEADERS): _S.HALF_CLOSED_REMOTE,
    (_S.HALF_CLOSED_REMOTE, _I.SEND_DATA): _S.HALF_CLOSED_REMOTE,
    (_S.HALF_CLOSED_REMOTE, _I.SEND_END_STREAM): _S.CLOSED,
    (_S.HALF_CLOSED_REMOTE, _I.RECV_RST_STREAM): _S.CLOSED,
    (_S.HALF_CLOSED_REMOTE, _I.SEND_RST_STREAM): _S.CLOSED,
    (_S.CLOSED, _I.RECV_RST_STREAM): _S.CLOSED,
    (_S.CLOSED, _I.SEND_RST_STREAM): _S.CLOSED,
}


def _illegal(stream_id: int, state: StreamState, event: StreamInput) -> H2Error:
    what = f"{event.name} on stream {stream_id} in state {state.name}"
    if event in _SENDS:
        return StreamClosedError(f"cannot send: {what}", stream_id)
    if state == _S.IDLE:
        return ProtocolError(what)  # a connection error (stream id 0)
    return StreamClosedError(what, stream_id)


class H2Stream:
    """One stream's state and flow-control windows."""

    __slots__ = ("recv_unacked", "recv_window", "send_window", "state", "stream_id")

    def __init__(self, stream_id: int, send_window: int, recv_window: int) -> None:
        self.stream_id = stream_id
        self.state = StreamState.IDLE
        # What we may still send; the peer's INITIAL_WINDOW_SIZE changes move it, so it
        # may go negative (RFC 9113 6.9.2).
        self.send_window = send_window
        # What the peer may still send before our next WINDOW_UPDATE.
        self.recv_window = recv_window
        # Bytes the receiver consumed and we have not yet handed back.
        self.recv_unacked = 0

    def step(self, event: StreamInput) -> StreamState:
        """Move to the state ``event`` leads to, and return it.

        Raises:
            ProtocolError: a frame other than HEADERS on an idle stream (connection error).
            StreamClosedError: a frame on a stream its sender already ended.
        """
        try:
            self.state = TRANSITIONS[self.state, event]
        except KeyError:
            raise self.illegal(event) from None
        return self.state

    def illegal(self, event: StreamInput) -> H2Error:
        """The error ``event`` is in the current state (not in ``TRANSITIONS``)."""
        return _illegal(self.stream_id, self.state, event)

    @property
    def remote_open(self) -> bool:
        """The peer may still send on this stream."""
        return self.state in (StreamState.OPEN, StreamState.HALF_CLOSED_LOCAL)


class ClosedBy(enum.IntEnum):
    ENDED = 0  # both sides sent END_STREAM
    RESET_BY_PEER = 1
    RESET_BY_US = 2  # the peer may not have heard yet: its late frames are dropped


class ClosedStreams:
    """How the last ``CLOSED_REMEMBERED`` closed streams closed (older ones are forgotten,
    and their late frames dropped as after our own RST_STREAM)."""

    __slots__ = ("_by", "_next", "_ring")

    def __init__(self) -> None:
        self._by: dict[int, ClosedBy] = {}
        self._ring = [0] * CLOSED_REMEMBERED  # stream ids in closing order, 0: none
        self._next = 0

    def add(self, stream_id: int, closed_by: ClosedBy) -> None:
        i = self._next
        old = self._ring[i]
        if old:
            self._by.pop(old, None)
        self._ring[i] = stream_id
        self._next = (i + 1) % CLOSED_REMEMBERED
        self._by[stream_id] = closed_by

    def get(self, stream_id: int) -> ClosedBy | None:
        return self._by.get(stream_id)

    def __len__(self) -> int:
        return len(self._by)


class PendingBlock:
    """A header block whose END_HEADERS has not arrived: only CONTINUATION may follow."""

    __slots__ = ("block", "continuations", "flags", "stream_id")

    def __init__(self, stream_id: int, flags: int, block: bytes) -> None:
        self.stream_id = stream_id
        self.flags = flags
        self.block = bytearray(block)
        self.continuations = 0
