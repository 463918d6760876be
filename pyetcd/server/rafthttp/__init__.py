"""pyetcd.server.rafthttp: the peer transport (etcd's rafthttp).

``PeerTransport`` speaks to the other members over TCP (one stream per peer, the frame
codec of ``codec``, snapshots with their backend, etcd's peer HTTP endpoints of
``handler``); ``MemoryNetwork`` joins members on one event loop for tests.
"""

from __future__ import annotations

from .memory import MemoryNetwork, MemoryTransport
from .options import TransportOptions
from .transport import PeerTransport

__all__ = ["MemoryNetwork", "MemoryTransport", "PeerTransport", "TransportOptions"]
