"""The cluster's members as the apply loop knows them, persisted in the backend.

Rule: membership changes only by applying committed entries (conf changes and
member attribute updates), so every member agrees on it at every index.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from pyetcd.mvcc import Backend

__all__ = ["Member", "Membership"]

_TABLE = "members"


@dataclass(frozen=True, slots=True)
class Member:
    id: int
    name: str = ""
    peer_urls: tuple[str, ...] = ()
    client_urls: tuple[str, ...] = ()
    is_learner: bool = False

    def _fields(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "peerURLs": list(self.peer_urls),
            "clientURLs": list(self.client_urls),
            "isLearner": self.is_learner,
        }

    def encode(self) -> bytes:
        """The conf change context / backend record (etcd's member JSON shape)."""
        return json.dumps(self._fields(), separators=(",", ":")).encode()

    def encode_with_request(self, req_id: int) -> bytes:
        """A conf change context that also names the request waiting for it."""
        return json.dumps({**self._fields(), "req": req_id}, separators=(",", ":")).encode()

    @staticmethod
    def request_id(data: bytes) -> int:
        try:
            return int(json.loads(data).get("req", 0))
        except (ValueError, AttributeError):
            return 0

    @staticmethod
    def decode(data: bytes) -> Member:
        raw = json.loads(data)
        return Member(
            id=int(raw["id"]),
            name=raw.get("name", ""),
            peer_urls=tuple(raw.get("peerURLs", ())),
            client_urls=tuple(raw.get("clientURLs", ())),
            is_learner=bool(raw.get("isLearner", False)),
        )


class Membership:
    """Members by ID, plus the IDs of removed members (never reusable)."""

    def __init__(self, backend: Backend, cluster_id: int) -> None:
        self.backend = backend
        self.cluster_id = cluster_id
        self.members: dict[int, Member] = {}
        self.removed: set[int] = set()
        for k, v in backend.items(_TABLE):
            member_id = int.from_bytes(k, "big")
            if v == b"removed":
                self.removed.add(member_id)
            else:
                self.members[member_id] = Member.decode(v)

    def add(self, m: Member) -> None:
        self.members[m.id] = m
        self.backend.put(_TABLE, m.id.to_bytes(8, "big"), m.encode())

    def remove(self, member_id: int) -> None:
        self.members.pop(member_id, None)
        self.removed.add(member_id)
        self.backend.put(_TABLE, member_id.to_bytes(8, "big"), b"removed")

    def promote(self, member_id: int) -> None:
        m = self.members.get(member_id)
        if m is not None:
            self.add(replace(m, is_learner=False))

    def set_attributes(self, member_id: int, name: str, client_urls: tuple[str, ...]) -> None:
        m = self.members.get(member_id)
        if m is not None:
            self.add(replace(m, name=name, client_urls=client_urls))

    def update_peer_urls(self, member_id: int, peer_urls: tuple[str, ...]) -> None:
        m = self.members.get(member_id)
        if m is not None:
            self.add(replace(m, peer_urls=peer_urls))

    def sorted(self) -> list[Member]:
        return [self.members[i] for i in sorted(self.members)]
