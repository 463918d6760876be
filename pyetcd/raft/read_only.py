"""Pending ReadIndex requests on the leader, confirmed by a heartbeat round.

A read request is recorded with the commit index at the time it arrived; it becomes
safe once a quorum has acknowledged a heartbeat carrying its context. Requests are
confirmed in arrival order: confirming one confirms every earlier one too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .types import Message

__all__ = ["ReadIndexStatus", "ReadOnly"]


@dataclass(slots=True)
class ReadIndexStatus:
    req: Message
    index: int
    acks: set[int] = field(default_factory=set)


class ReadOnly:
    def __init__(self) -> None:
        self.pending: dict[bytes, ReadIndexStatus] = {}
        self.queue: list[bytes] = []

    def add_request(self, index: int, req: Message) -> None:
        ctx = req.entries[0].data
        if ctx in self.pending:
            return
        self.pending[ctx] = ReadIndexStatus(req=req, index=index)
        self.queue.append(ctx)

    def recv_ack(self, node: int, ctx: bytes) -> set[int] | None:
        """Record ``node``'s heartbeat ack for ``ctx``; returns the acks so far."""
        rs = self.pending.get(ctx)
        if rs is None:
            return None
        rs.acks.add(node)
        return rs.acks

    def advance(self, ctx: bytes) -> list[ReadIndexStatus]:
        """Pop and return every request up to and including ``ctx``."""
        if ctx not in self.pending:
            return []
        i = self.queue.index(ctx)
        done = [self.pending.pop(c) for c in self.queue[: i + 1]]
        del self.queue[: i + 1]
        return done

    def last_pending_request_ctx(self) -> bytes:
        return self.queue[-1] if self.queue else b""

    def reset(self) -> None:
        self.pending.clear()
        self.queue.clear()
