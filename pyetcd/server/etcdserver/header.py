"""The ResponseHeader every v3 answer carries: cluster, member, revision, raft term."""

from __future__ import annotations

from typing import Protocol

from pyetcd.mvcc import KVStore
from pyetcd.mvcc.hash import varint
from pyetcd.pb import rpc_pb2

__all__ = ["ResponseHeaders"]


class KVSource(Protocol):
    @property
    def kv(self) -> KVStore: ...


class TermSource(Protocol):
    @property
    def term(self) -> int: ...


class ResponseHeaders:
    """Builds and fills response headers for one member."""

    def __init__(self, member_id: int, cluster_id: int, stores: KVSource, raft: TermSource) -> None:
        self.member_id = member_id
        self.cluster_id = cluster_id
        self._stores = stores
        self._raft = raft
        # (cluster_id, member_id, their fields encoded) and (raft_term, its field), for
        # ``encoded``: zeros encode as nothing
        self._ids: tuple[int, int, bytes] = (0, 0, b"")
        self._term: tuple[int, bytes] = (0, b"")

    def header(self, revision: int | None = None) -> rpc_pb2.ResponseHeader:
        """A header at ``revision`` (default: the store's current revision)."""
        return rpc_pb2.ResponseHeader(
            cluster_id=self.cluster_id,
            member_id=self.member_id,
            revision=self._stores.kv.current_revision if revision is None else revision,
            raft_term=self._raft.term,
        )

    def fill(self, h: rpc_pb2.ResponseHeader) -> None:
        """Fill the member fields of a header whose revision the store set."""
        h.cluster_id = self.cluster_id
        h.member_id = self.member_id
        h.raft_term = self._raft.term

    def encoded(self, revision: int) -> bytes:
        """The header at ``revision`` serialized, the same bytes as ``header(revision)``'s
        ``SerializeToString()``: fields in number order, zero ones left out."""
        ids, term = self._ids, self._term
        if (ids[0], ids[1], term[0]) != (self.cluster_id, self.member_id, self._raft.term):
            ids, term = self._encode_fixed()
        return b"".join((ids[2], b"\x18" + varint(revision) if revision else b"", term[1]))

    def _encode_fixed(self) -> tuple[tuple[int, int, bytes], tuple[int, bytes]]:
        # The fields around the revision change seldom: encoded again when they do.
        cluster_id, member_id, term = self.cluster_id, self.member_id, self._raft.term
        self._ids = (cluster_id, member_id, _field(0x08, cluster_id) + _field(0x10, member_id))
        self._term = (term, _field(0x20, term))
        return self._ids, self._term


def _field(key: int, value: int) -> bytes:
    """A varint field (``key``: its number and wire type 0), empty when zero."""
    return bytes((key,)) + varint(value) if value else b""
