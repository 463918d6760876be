"""What ``H2Connection.receive_data`` reports: one event per fact a frame carried.

Rules:

1. Events are immutable values, never live views of the connection: frozen, slotted
   dataclasses, but NamedTuples for the three every unary call brings (HEADERS, DATA,
   WINDOW_UPDATE): one costs half a frozen dataclass to build, which sets each field
   through ``object.__setattr__`` (about 1.4 us of a call's receive). Each event type
   has its own field count or field types, so no two types' events compare equal.
2. An event is reported after the connection's own state has taken the frame in (its
   stream state moved, its windows counted), so a handler may act on it at once.
3. ``end_stream`` rides on the event whose frame ended the peer's side (HEADERS,
   trailers or DATA) instead of a separate event per stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from .frames import ErrorCode
from .hpack import HeaderList

__all__ = [
    "ConnectionTerminated",
    "DataReceived",
    "Event",
    "PingAckReceived",
    "PingReceived",
    "RemoteSettingsChanged",
    "RequestReceived",
    "SettingsAcknowledged",
    "StreamReset",
    "TrailersReceived",
    "WindowUpdated",
]

#: (name, value) pairs as HPACK decoded them (shared: never modified).
Headers = HeaderList


class RequestReceived(NamedTuple):
    """A client opened ``stream_id`` with this header block."""

    stream_id: int
    headers: Headers
    end_stream: bool


@dataclass(frozen=True, slots=True)
class TrailersReceived:
    """A header block that ended the client's side of an open stream."""

    stream_id: int
    headers: Headers


class DataReceived(NamedTuple):
    """DATA on ``stream_id``; ``flow_controlled_length`` (padding included) is what the
    receiver must hand back with ``acknowledge_received_data`` once it consumed it."""

    stream_id: int
    data: bytes
    flow_controlled_length: int
    end_stream: bool


@dataclass(frozen=True, slots=True)
class StreamReset:
    """``stream_id`` ended abruptly: the peer's RST_STREAM (``remote``), or our answer to
    a stream error it made."""

    stream_id: int
    error_code: int
    remote: bool


class WindowUpdated(NamedTuple):
    """A send window grew by ``delta`` (``stream_id`` 0: the connection's)."""

    stream_id: int
    delta: int


@dataclass(frozen=True, slots=True)
class RemoteSettingsChanged:
    """The peer's SETTINGS (already acknowledged), as (parameter, value) in order."""

    changed: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class SettingsAcknowledged:
    """The peer acknowledged our SETTINGS."""


@dataclass(frozen=True, slots=True)
class PingReceived:
    """A PING, already answered."""

    data: bytes


@dataclass(frozen=True, slots=True)
class PingAckReceived:
    """The answer to one of our PINGs."""

    data: bytes


@dataclass(frozen=True, slots=True)
class ConnectionTerminated:
    """The peer's GOAWAY."""

    error_code: ErrorCode | int
    last_stream_id: int
    additional_data: bytes


Event = (
    RequestReceived
    | TrailersReceived
    | DataReceived
    | StreamReset
    | WindowUpdated
    | RemoteSettingsChanged
    | SettingsAcknowledged
    | PingReceived
    | PingAckReceived
    | ConnectionTerminated
)
