"""The peer transport's limits and timeouts, shared by its parts."""

from __future__ import annotations

from dataclasses import dataclass

from .codec import DEFAULT_MAX_FRAME_BYTES

__all__ = ["TransportOptions"]


@dataclass(frozen=True, slots=True)
class TransportOptions:
    """Limits and timeouts (seconds); the defaults follow etcd's rafthttp."""

    queue_size: int = 4096  # etcd's streamBufSize: messages queued per peer
    dial_timeout: float = 1.0  # connect + handshake
    write_timeout: float = 5.0  # a write that cannot drain this long means a dead peer
    snapshot_ack_timeout: float = 60.0  # receiver saves + fsyncs the database
    backoff_min: float = 0.05
    backoff_max: float = 1.0
    handshake_timeout: float = 5.0  # an accepted connection must say hello this fast
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    snapshot_chunk_bytes: int = 64 * 1024
