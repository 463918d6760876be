"""What ``H2Connection.receive_data`` reports: one event per fact a frame carried.

Rules:

1. Events are frozen, slotted dataclasses: values, never live views of the connection.
2. An event is reported after the connection's own state has taken the frame in (its
   stream state moved, its windows counted), so a handler may act on it at once.
3. ``end_stream`` rides on the event whose frame ended the peer's side (HEADERS,
   trailers or DATA) instead of a separate event per stream.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A client opened ``stream_id`` with this header block."""

    stream_id: int
    headers: Headers
    end_stream: bool


@dataclass(frozen=True, slots=True)
class TrailersReceived:
    """A header block that ended the client's side of an open stream."""

    stream_id: int
    headers: Headers


@dataclass(frozen=True, slots=True)
class DataReceived:
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


@dataclass(frozen=True, slots=True)
class WindowUpdated:
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
