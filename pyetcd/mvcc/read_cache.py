"""Decoded values of the revisions read lately, so a range read again skips sqlite.

A revision's record never changes once written (a txn is checked before it writes, so
none is rolled back), so a value read once can be served again from memory without any
invalidation. The key index holds revisions only (issue 22: memory at a million keys);
this cache holds what reads brought in, bounded by bytes and entries, the oldest read
leaving first.
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

    __slots__ = ("_bytes", "kvs", "max_bytes", "max_entries")

    def __init__(
        self, max_bytes: int = READ_CACHE_BYTES, max_entries: int = READ_CACHE_ENTRIES
    ) -> None:
        #: The cached values (read it directly on a hot path; write through remember).
        self.kvs: dict[Revision, KeyValue] = {}
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._bytes = 0

    def __len__(self) -> int:
        return len(self.kvs)

    @property
    def size(self) -> int:
        """Key and value bytes held."""
        return self._bytes

    def remember(self, rev: Revision, kv: KeyValue) -> KeyValue:
        """Keep ``kv`` as the value at ``rev``; returns it."""
        kvs = self.kvs
        old = kvs.get(rev)
        if old is not None:
            self._bytes -= len(old.key) + len(old.value)
        kvs[rev] = kv
        self._bytes += len(kv.key) + len(kv.value)
        while self._bytes > self.max_bytes or len(kvs) > self.max_entries:
            gone = kvs.pop(next(iter(kvs)))
            self._bytes -= len(gone.key) + len(gone.value)
        return kv
