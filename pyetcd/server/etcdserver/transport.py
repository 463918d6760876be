"""The peer transport interface the Raft driver sends through.

A single-member cluster has no peers, so ``NullTransport`` drops everything; the TCP
transport between members implements the same two methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pyetcd.raft import Message

__all__ = ["NullTransport", "Transport"]


class Transport(Protocol):
    async def start(self) -> None: ...

    def add_peer(self, peer_id: int, urls: Sequence[str]) -> None: ...

    def remove_peer(self, peer_id: int) -> None: ...

    def update_peer(self, peer_id: int, urls: Sequence[str]) -> None: ...

    def has_peer(self, peer_id: int) -> bool: ...

    def peer_active(self, peer_id: int) -> bool: ...

    def send(self, msgs: Sequence[Message]) -> None:
        """Queue ``msgs`` for their peers; never blocks. Undeliverable messages are
        reported to the Raft driver as unreachable."""
        ...

    async def close(self) -> None: ...


class NullTransport:
    """Drops every message: the transport of a single-member cluster."""

    async def start(self) -> None:
        pass

    def add_peer(self, peer_id: int, urls: Sequence[str]) -> None:
        pass

    def remove_peer(self, peer_id: int) -> None:
        pass

    def update_peer(self, peer_id: int, urls: Sequence[str]) -> None:
        pass

    def has_peer(self, peer_id: int) -> bool:
        return False

    def peer_active(self, peer_id: int) -> bool:
        return False

    def send(self, msgs: Sequence[Message]) -> None:
        pass

    async def close(self) -> None:
        pass
