"""The ResponseHeader every v3 answer carries: cluster, member, revision, raft term."""

from __future__ import annotations

from typing import Protocol

from pyetcd.mvcc import KVStore
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
