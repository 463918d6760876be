"""Decoded values of the revisions read lately, so a range read again skips sqlite.

A revision's record never changes once written (a txn is checked before it writes, so
none is rolled back), so a value read once can be served again from memory without any
invalidation. The key index holds revisions only (issue 22: memory at a million keys);
this cache holds what reads brought in, bounded by bytes and entries, the oldest read
leaving first.

Beside a revision's KeyValue it may hold that KeyValue's encoding for the wire (opaque
bytes that the API layer builds the first time it sends the value, see
``pbconv.range_encode_steps``): a large range read again is then answered by joining
stored bytes instead of encoding 10,000 messages again (issue 22). An encoding lives
and leaves with its KeyValue.
"""

from __future__ import annotations

from pyetcd.mvcc.revision import Revision
from pyetcd.mvcc.types import KeyValue

__all__ = ["READ_CACHE_BYTES", "READ_CACHE_ENTRIES", "ReadCache"]

#: Key and value bytes held at most (a 10,000-key range of 256 B values is ~3 MB).
READ_CACHE_BYTES = 32 << 20
#: Entries held at most.
READ_CACHE_ENTRIES = 65536


class ReadCache:
    """Revision -> KeyValue of recent reads, oldest out first."""

    __slots__ = ("_bytes", "kvs", "max_bytes", "max_entries", "wire")

    def __init__(
        self, max_bytes: int = READ_CACHE_BYTES, max_entries: int = READ_CACHE_ENTRIES
    ) -> None:
        #: The cached values (read it directly on a hot path; write through remember).
        self.kvs: dict[Revision, KeyValue] = {}
        #: The wire encoding of some of ``kvs`` (read it directly; write through
        #: remember_wire). Invariant: its revisions are a subset of ``kvs``'s.
        self.wire: dict[Revision, bytes] = {}
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._bytes = 0

    def __len__(self) -> int:
        return len(self.kvs)

    @property
    def size(self) -> int:
        """Key, value and wire-encoding bytes held."""
        return self._bytes

    def remember(self, rev: Revision, kv: KeyValue) -> KeyValue:
        """Keep ``kv`` as the value at ``rev``; returns it."""
        kvs = self.kvs
        if rev in kvs:
            self._forget(rev)
        kvs[rev] = kv
        self._bytes += len(kv.key) + len(kv.value)
        while self._bytes > self.max_bytes or len(kvs) > self.max_entries:
            self._forget(next(iter(kvs)))
        return kv

    def remember_wire(self, rev: Revision, encoded: bytes) -> None:
        """Keep ``encoded`` as the wire form of the value at ``rev``, if that value is
        held (an encoding without its KeyValue would never leave)."""
        if rev in self.kvs and rev not in self.wire:
            self.wire[rev] = encoded
            self._bytes += len(encoded)
            while self._bytes > self.max_bytes:
                self._forget(next(iter(self.kvs)))

    def _forget(self, rev: Revision) -> None:
        gone = self.kvs.pop(rev)
        self._bytes -= len(gone.key) + len(gone.value)
        encoded = self.wire.pop(rev, None)
        if encoded is not None:
            self._bytes -= len(encoded)
