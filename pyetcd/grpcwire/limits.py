"""What one client connection may ask of the server before it is told to calm down.

grpc-go's server limits, and those the HTTP/2 floods of 2019 and 2023 taught servers,
as one frozen value (``ServerLimits``) and two small counters that take the time as an
argument (this module reads no clock). Rules:

1. A limit that is crossed ends the connection with GOAWAY(ENHANCE_YOUR_CALM) and a
   short reason in its debug data (grpc-go's ``too_many_pings`` for pings), never by
   dropping frames silently: the client learns why.
2. Work is bounded per turn of the event loop (``frames_per_turn``), so one connection's
   burst cannot hold the loop that also runs Raft's ticks and every other connection.
3. Memory is bounded per stream (its receive window plus one message being read) and
   per connection (the connection window plus ``max_concurrent_streams`` such streams):
   windows are handed back only when a call consumed what they let in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["DEFAULT_LIMITS", "PingPolicy", "RateCap", "ServerLimits"]

#: grpc-go's keepalive.EnforcementPolicy: the pings tolerated before GOAWAY, and the
#: least interval between pings when no call is open and pings without calls are not
#: permitted (its ``defaultPingTimeout``, two hours).
MAX_PING_STRIKES: Final = 2
IDLE_PING_INTERVAL: Final = 7200.0


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """The limits of every connection of one server.

    Attributes:
        max_concurrent_streams: advertised SETTINGS_MAX_CONCURRENT_STREAMS; a stream
            beyond it is refused (REFUSED_STREAM), and no more calls than this run at once
            (reset calls count until their task ended, as grpc-go counts handlers).
        max_header_list_size: advertised SETTINGS_MAX_HEADER_LIST_SIZE, and the most
            decoded header bytes (RFC 7541 sizes) accepted in one block.
        max_header_block: the most encoded bytes of one header block (HEADERS plus its
            CONTINUATION frames).
        max_continuations: the most CONTINUATION frames after one HEADERS.
        keepalive_min_time: the least seconds between a client's pings (grpc-go's
            EnforcementPolicy.MinTime; etcd's --grpc-keepalive-min-time).
        keepalive_permit_without_stream: whether pings are fine while no call is open
            (etcd sets false).
        max_resets / reset_interval: client RST_STREAMs of running calls tolerated in a
            burst, and the seconds to earn that many again (rapid reset).
        max_settings / settings_interval: the same for SETTINGS frames.
        frames_per_turn: the most frames read from one connection per turn of the loop.
    """

    max_concurrent_streams: int = 1000
    max_header_list_size: int = 1 << 20
    max_header_block: int = 1 << 20
    max_continuations: int = 128
    keepalive_min_time: float = 300.0
    keepalive_permit_without_stream: bool = False
    max_resets: int = 1000
    reset_interval: float = 10.0
    max_settings: int = 100
    settings_interval: float = 10.0
    frames_per_turn: int = 64


DEFAULT_LIMITS: Final = ServerLimits()


class RateCap:
    """A token bucket: ``burst`` events at once, ``burst`` more per ``interval`` seconds."""

    __slots__ = ("_at", "_burst", "_rate", "_tokens")

    def __init__(self, burst: int, interval: float) -> None:
        self._burst = float(burst)
        self._rate = burst / interval if interval > 0 else float("inf")
        self._tokens = float(burst)
        self._at: float | None = None

    def take(self, now: float) -> bool:
        """Count one event at ``now``; False once the bucket is empty."""
        if self._at is not None:
            self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class PingPolicy:
    """grpc-go's keepalive enforcement on the server: a PING sooner than allowed after
    the previous one is a strike; the third strike ends the connection. Sending the
    client HEADERS or DATA forgives every strike (it may ping to measure bandwidth)."""

    __slots__ = ("_last", "_min_time", "_permit_idle", "_strikes", "forgive")

    def __init__(self, min_time: float, permit_without_stream: bool) -> None:
        self._min_time = min_time
        self._permit_idle = permit_without_stream
        self._strikes = 0
        self._last: float | None = None
        #: Set by the owner when it sent HEADERS or DATA since the last PING.
        self.forgive = False

    def ping(self, now: float, open_calls: int) -> bool:
        """Count a PING at ``now``; False when it is one too many (GOAWAY)."""
        last, self._last = self._last, now
        if self.forgive:
            self.forgive = False
            self._strikes = 0
            return True
        least = self._min_time if open_calls or self._permit_idle else IDLE_PING_INTERVAL
        if last is not None and now - last < least:
            self._strikes += 1
        return self._strikes <= MAX_PING_STRIKES
