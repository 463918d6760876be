"""The MVCC key-value store: revisions over the key index and the backend.

The store knows nothing of requests: it offers reads at a revision, write
transactions of puts and range deletes, compaction, hashes and lease revokes
(etcd's ``kv.Read()`` / ``kv.Write()``). Request semantics (compares, prev_kv,
ignore_value, sorting and limits) live in ``pyetcd.server.etcdserver.txn``.

Rules this module keeps:

1. Every write transaction (a Put, a DeleteRange, a Txn with writes, a lease
   revoke) takes main revision ``current + 1``; each change in it takes the
   next sub revision. A write transaction that changes nothing does not bump
   the revision.
2. A write transaction cannot fail halfway: the caller makes every check that
   can fail before ``begin_write``.
3. The in-memory index always equals what is in the backend's open transaction; a
   reopen rebuilds it from the backend. The index holds revisions, never values:
   every value is read from the backend by its revision.
4. The apply loop calls :meth:`KVStore.set_consistent_index` before applying
   each entry; the index is written in the same sqlite transaction as the
   changes (via the backend's pre-commit hook).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pyetcd.mvcc.backend import Backend
from pyetcd.mvcc.errors import (
    CompactedError,
    FutureRevisionError,
    LeaseNotFoundError,
    NoSpaceError,
)
from pyetcd.mvcc.hash import CompactionHasher, HashStorage, crc32c, hash_key_records
from pyetcd.mvcc.key_index import TreeIndex
from pyetcd.mvcc.lessor import Lessor
from pyetcd.mvcc.metrics import MvccMetrics
from pyetcd.mvcc.read_cache import ReadCache
from pyetcd.mvcc.restore import read_key_index
from pyetcd.mvcc.revision import (
    Revision,
    bytes_to_rev,
    decode_kv,
    encode_kv,
    encode_kv_fields,
    rev_key,
    rev_to_bytes,
)
from pyetcd.mvcc.types import KeyValue

__all__ = ["DEFAULT_QUOTA_BYTES", "KVStore", "RangeCursor"]

DEFAULT_QUOTA_BYTES = 2 * 1024 * 1024 * 1024
COMPACTION_BATCH_LIMIT = 1000
_META_CONSISTENT_INDEX = b"consistent_index"
_META_TERM = b"term"
_META_SCHEDULED_COMPACT = b"scheduledCompactRev"
_META_FINISHED_COMPACT = b"finishedCompactRev"

ChangeHook = Callable[[int, list[KeyValue]], None]


class KVStore:
    """Revisions, the key index, the backend and the lessor of one member."""

    def __init__(
        self,
        path: str,
        *,
        batch_limit: int = 10000,
        batch_interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        quota_bytes: int = 0,
        min_lease_ttl: int = 2,
        lease_checkpoint_interval: float | None = None,
        lease_checkpoint_persist: bool = False,
        compaction_batch_limit: int = COMPACTION_BATCH_LIMIT,
        compaction_hashes: bool = False,
        metrics: MvccMetrics | None = None,
    ) -> None:
        """Open the store at ``path`` (``<data-dir>/member/snap/db``), rebuilding the index.

        Args:
            path: the sqlite3 file.
            batch_limit, batch_interval: backend commit batching (etcd's defaults).
            clock: monotonic seconds for batching and the lessor.
            quota_bytes: --quota-backend-bytes; 0 = 2 GiB, negative = no quota.
            min_lease_ttl: the lessor's minimum TTL in seconds.
            lease_checkpoint_interval: None disables lease checkpoints.
            lease_checkpoint_persist: applied checkpoints are written to the backend.
            compaction_batch_limit: most records deleted per committed compaction batch
                (etcd's --experimental-compaction-batch-limit; <= 0: the default).
            compaction_hashes: hash the store as each compaction walks it and keep the
                last ten in ``hashes`` (etcd always does; here only for the compact
                hash check: re-marshalling each record as etcd stores it makes a
                compaction take about 2.5 times as long).
            metrics: what the store and its lessor count (kept across stores: the member
                passes the same one to each store it opens).
        """
        self.metrics = m = metrics if metrics is not None else MvccMetrics()
        self.backend = Backend(
            path,
            batch_limit=batch_limit,
            batch_interval=batch_interval,
            clock=clock,
            commit_seconds=m.backend_commit,
        )
        self.backend.pre_commit_hook = self._write_meta
        self.quota_bytes = DEFAULT_QUOTA_BYTES if quota_bytes == 0 else quota_bytes
        self.compaction_batch_limit = (
            compaction_batch_limit if compaction_batch_limit > 0 else COMPACTION_BATCH_LIMIT
        )
        # the NOSPACE alarm: set by a write that crossed the quota, cleared by the server
        self.nospace = False
        self.compaction_hashes = compaction_hashes
        self.hashes = HashStorage()
        self.index = TreeIndex()
        self.read_cache = ReadCache()  # decoded values of revisions read lately
        self._current_rev = 1
        self._compact_rev = -1
        self.consistent_index = self.backend.get_int("meta", _META_CONSISTENT_INDEX)
        self.term = self.backend.get_int("meta", _META_TERM)
        self.lessor = Lessor(
            self.backend,
            clock=clock,
            min_lease_ttl=min_lease_ttl,
            checkpoint_interval=lease_checkpoint_interval,
            checkpoint_persist=lease_checkpoint_persist,
            metrics=m,
        )
        # called after each write transaction with (revision, changes) while set: the
        # watchable store installs itself here while it has synced watchers
        self.on_changes: ChangeHook | None = None
        self._begin_rev = 0
        self._changes: list[KeyValue] = []
        # Operations (ranges, puts, deletes) so far, and at the running write's start:
        # a write transaction of more than one counts as a txn, as etcd counts it.
        self._ops = 0
        self._ops_at_begin = 0
        # set by close(): a range cursor still open on this store stops (see RangeCursor)
        self.closed = False
        self._restore()

    # -- properties ----------------------------------------------------------

    @property
    def current_revision(self) -> int:
        """The revision of the last write transaction (1 for an empty store)."""
        return self._current_rev

    @property
    def compact_revision(self) -> int:
        """The last compaction revision (-1: never compacted)."""
        return self._compact_rev

    @property
    def db_size(self) -> int:
        """Backend size in bytes (as of the last commit)."""
        return self.backend.size

    @property
    def db_size_in_use(self) -> int:
        """Backend bytes in use, free pages excluded (as of the last commit)."""
        return self.backend.size_in_use

    # -- durability -----------------------------------------------------------

    def set_consistent_index(self, index: int, term: int) -> None:
        """Record the Raft entry being applied; persisted with the next commit."""
        self.consistent_index = index
        self.term = term

    def _write_meta(self, be: Backend) -> None:
        be.put_int("meta", _META_CONSISTENT_INDEX, self.consistent_index)
        be.put_int("meta", _META_TERM, self.term)

    def commit(self) -> None:
        """Commit the backend's open batch now (etcd's ForceCommit)."""
        self.backend.commit()

    def close(self) -> None:
        """Commit and close the backend."""
        self.closed = True
        self.backend.close()

    def defragment(self) -> None:
        """Rewrite the backend compactly."""
        self.backend.defragment()

    # -- reads ----------------------------------------------------------------

    def range_keys(
        self, key: bytes, end: bytes | None, at_rev: int, cur_rev: int, limit: int, count: bool
    ) -> tuple[list[KeyValue], int]:
        """etcd's rangeKeys: (kvs up to limit, total count) at ``at_rev`` (<= 0: cur_rev),
        in one go (see :meth:`range_cursor` for the same read in slices).

        ``end`` uses the index convention (None: one key; b"": to the end).

        Raises:
            FutureRevisionError, CompactedError.
        """
        cursor = self.range_cursor(key, end, at_rev, cur_rev, limit, count)
        cursor.next_slice(0)
        return cursor.kvs, cursor.count

    def range_cursor(
        self, key: bytes, end: bytes | None, at_rev: int, cur_rev: int, limit: int, count: bool
    ) -> RangeCursor:
        """The read :meth:`range_keys` makes, to be taken in slices: the server runs
        a large range a slice at a time so that other work runs in between.

        Raises:
            FutureRevisionError, CompactedError.
        """
        if at_rev > cur_rev:
            raise FutureRevisionError()
        if at_rev <= 0:
            at_rev = cur_rev
        if at_rev < self._compact_rev:
            raise CompactedError()
        return RangeCursor(self, key, end, at_rev, limit, count)

    def count_range(self) -> None:
        """Count one Range request (or a txn's range op): however it is read (index,
        cursor), it is one range to etcd's metrics and one operation of its txn."""
        self.metrics.ranges += 1
        self._ops += 1

    def _kvs_at(self, revs: list[Revision]) -> list[KeyValue]:
        # the values at revisions the index found alive: the read cache's, and the rest
        # in one backend read
        cached = self.read_cache.kvs
        out: list[KeyValue | None] = list(map(cached.get, revs))
        missing = [i for i, kv in enumerate(out) if kv is None]
        if missing:
            raws = self.backend.key_get_many([rev_to_bytes(revs[i]) for i in missing])
            for i, raw in zip(missing, raws, strict=True):
                rev = revs[i]
                if raw is None:
                    raise RuntimeError(f"revision {rev} of a live key missing from the backend")
                out[i] = self.read_cache.remember(rev, decode_kv(raw))
        return out  # type: ignore[return-value]  # every None was filled

    def get(self, key: bytes) -> KeyValue | None:
        """The live KeyValue of ``key`` at the current revision, or None."""
        ki = self.index.get_index(key)
        if ki is None or not ki.revs:
            return None
        rev = ki.modified
        kv = self.read_cache.kvs.get(rev)
        if kv is not None:
            return kv
        raw = self.backend.key_get(rev_to_bytes(rev))
        if raw is None:
            raise RuntimeError(f"revision {rev} of {key!r} missing from the backend")
        return self.read_cache.remember(rev, decode_kv(raw))

    # -- writes: one write transaction is begin_write, write_*..., end_write ------

    def txn_rev(self) -> int:
        """The revision a read inside the running write transaction sees."""
        return self._begin_rev + 1 if self._changes else self._begin_rev

    def begin_write(self) -> None:
        """Open a write transaction (etcd's ``kv.Write()``)."""
        self._begin_rev = self._current_rev
        self._changes = []
        self._ops_at_begin = self._ops

    def end_write(self) -> int:
        """Close the write transaction; returns the current revision.

        A transaction that changed something takes the next main revision (rule 1),
        tells ``on_changes`` and lets the backend commit if its batch is due.
        """
        changes = self._changes
        if self._ops - self._ops_at_begin > 1:
            self.metrics.txns += 1
        if changes:
            self._current_rev = rev = self._begin_rev + 1
            self._changes = []
            if self.on_changes is not None:
                self.on_changes(rev, changes)
            self.backend.maybe_commit()
        return self._current_rev

    def _put_kv(self, key: bytes, value: bytes, lease: int, rev: int, sub: int) -> tuple[int, int]:
        create, ver, old_lease = self.index.put_live(key, (rev, sub), lease)
        m = self.metrics
        m.puts += 1
        m.put_bytes += len(key) + len(value)
        self._ops += 1
        record = encode_kv_fields(key, create, rev, ver, value, lease)
        self.backend.key_put(rev_key(rev, sub), record)
        if old_lease:
            self.lessor.detach(old_lease, key)
        if lease:
            self.lessor.attach(lease, key)
        return create, ver

    def write_put(self, key: bytes, value: bytes, lease: int) -> int:
        """One put inside the running write transaction; returns its main revision."""
        rev = self._begin_rev + 1
        create, ver = self._put_kv(key, value, lease, rev, len(self._changes))
        self._changes.append(KeyValue(key, create, rev, ver, value, lease))
        return rev

    def put(self, key: bytes, value: bytes, lease: int = 0) -> int:
        """A write transaction of one put (``begin_write``, ``write_put``, ``end_write``
        in one call; a KeyValue only if ``on_changes`` is set); returns its revision."""
        if self._changes:
            raise RuntimeError("KVStore.put inside a running write transaction")
        self._begin_rev = begin = self._current_rev
        self._ops_at_begin = self._ops
        create, ver = self._put_kv(key, value, lease, begin + 1, 0)
        self._current_rev = rev = begin + 1
        if self.on_changes is not None:
            self.on_changes(rev, [KeyValue(key, create, rev, ver, value, lease)])
        self.backend.maybe_commit()
        return rev

    def write_delete_range(self, key: bytes, end: bytes | None) -> int:
        """Delete every key alive in the range inside the running write transaction."""
        self.metrics.deletes += 1
        self._ops += 1
        at = self.txn_rev()
        doomed = [ki for ki in self.index.visit(key, end) if ki.get(at) is not None]
        rev = self._begin_rev + 1
        for ki in doomed:
            sub = len(self._changes)
            self.backend.key_put(rev_to_bytes((rev, sub), True), encode_kv(KeyValue(ki.key)))
            old_lease = ki.lease
            ki.tombstone((rev, sub))
            self._changes.append(KeyValue(ki.key))
            if old_lease:
                self.lessor.detach(old_lease, ki.key)
        return len(doomed)

    # -- quota ------------------------------------------------------------------

    def check_space(self, cost: int) -> bool:
        """Before a write of ``cost`` bytes: whether it will cross the quota.

        Raises:
            NoSpaceError: the NOSPACE alarm is active.
        """
        if self.nospace:
            raise NoSpaceError()
        return self.quota_bytes > 0 and self.backend.size + cost > self.quota_bytes

    def exceed_quota(self) -> None:
        """After a write that crossed the quota: etcd applies it, then answers NOSPACE
        and raises the alarm, which stops later writes.

        Raises:
            NoSpaceError: always.
        """
        self.nospace = True
        raise NoSpaceError()

    # -- leases -----------------------------------------------------------------

    def lease_revoke(self, lease_id: int) -> int:
        """Apply a LeaseRevoke: delete its keys in one revision; returns the revision.

        Raises:
            LeaseNotFoundError.
        """
        lease = self.lessor.lookup(lease_id)
        if lease is None:
            raise LeaseNotFoundError()
        self.begin_write()
        for key in sorted(lease.keys):
            self.write_delete_range(key, None)
        self.lessor.remove(lease_id)
        return self.end_write()

    def lease_checkpoint(self, lease_id: int, remaining_ttl: int) -> None:
        """Apply a LeaseCheckpoint."""
        self.lessor.checkpoint(lease_id, remaining_ttl)

    # -- compaction -------------------------------------------------------------

    def compact(self, rev: int) -> int:
        """Compact history at ``rev``: index first, then the backend in committed batches.
        Returns the current revision.

        Raises:
            CompactedError: ``rev`` <= the compaction revision.
            FutureRevisionError: ``rev`` > the current revision.
        """
        if rev <= self._compact_rev:
            raise CompactedError()
        if rev > self._current_rev:
            raise FutureRevisionError()
        prev, self._compact_rev = self._compact_rev, rev
        self.backend.put_int("meta", _META_SCHEDULED_COMPACT, rev)
        self.backend.commit()
        t0 = time.perf_counter()
        keep = self.index.compact(rev)
        self.metrics.index_compaction_pause.observe((time.perf_counter() - t0) * 1000)
        self._compact_backend(rev, keep, prev)
        return self._current_rev

    def _compact_backend(self, rev: int, keep: set[Revision], prev: int) -> None:
        # batches are committed one by one so a crash midway leaves a store the
        # next open can finish compacting (scheduled > finished)
        m = self.metrics
        start = time.perf_counter()
        end = rev_to_bytes((rev + 1, 0))
        last = rev_to_bytes((0, 0))
        hasher = CompactionHasher(prev, rev, keep) if self.compaction_hashes else None
        while True:
            t0 = time.perf_counter()
            limit = self.compaction_batch_limit
            rows = self.backend.key_range(last, end, limit)
            if hasher is not None:
                hasher.write(rows)
            doomed = [k for k, _ in rows if bytes_to_rev(k) not in keep]
            self.backend.key_delete(doomed)
            m.compacted_keys += len(doomed)
            done = len(rows) < limit
            if done:
                self.backend.put_int("meta", _META_FINISHED_COMPACT, rev)
            else:
                r = bytes_to_rev(rows[-1][0])
                last = rev_to_bytes((r[0], r[1] + 1))
            self.backend.commit()
            m.db_compaction_pause.observe((time.perf_counter() - t0) * 1000)
            if done:
                m.db_compaction_total.observe((time.perf_counter() - start) * 1000)
                m.compaction_last = time.time()
                if hasher is not None:
                    self.hashes.store(hasher.result())
                return

    # -- hashes -----------------------------------------------------------------

    def hash(self) -> int:
        """Maintenance.Hash: CRC-32 over the whole backend (equal stores, equal hash)."""
        t0 = time.perf_counter()
        h = self.backend.hash()
        self.metrics.hash.observe(time.perf_counter() - t0)
        return h

    def hash_kv(self, rev: int = 0) -> tuple[int, int, int]:
        """Maintenance.HashKV: (hash, current revision, compact revision).

        Hashes the key table's records up to ``rev`` (0: current), skipping
        records at or below the compaction revision that a compaction would
        drop, as etcd does.

        Raises:
            CompactedError, FutureRevisionError.
        """
        t0 = time.perf_counter()
        out = self._hash_kv(rev)
        self.metrics.hash_rev.observe(time.perf_counter() - t0)
        return out

    def _hash_kv(self, rev: int) -> tuple[int, int, int]:
        taken = self.hashes.get(rev) if rev > 0 else None
        if taken is not None:  # a compaction's hash, as etcd's HashStorage answers it
            return taken.hash, self._current_rev, taken.compact_revision
        compact = self._compact_rev
        if 0 < rev <= compact:
            raise CompactedError()
        if rev > self._current_rev:
            raise FutureRevisionError()
        if rev == 0:
            rev = self._current_rev
        if rev < 0:
            # etcd hashes the records below revision rev + 1: none at all
            return crc32c(b"key"), self._current_rev, compact
        # etcd keeps, below the compaction, only what a compaction AT ``rev`` would keep.
        keep = self.index.keep(rev)
        rows = self.backend.key_range(rev_to_bytes((0, 0)), rev_to_bytes((rev + 1, 0)))
        return hash_key_records(rows, (compact + 1, 0), keep), self._current_rev, compact

    # -- restore ----------------------------------------------------------------

    def _restore(self) -> None:
        finished = self._meta_rev(_META_FINISHED_COMPACT)
        scheduled = self._meta_rev(_META_SCHEDULED_COMPACT)
        self._compact_rev = finished
        # Built as a plain dict and sorted once: inserting key by key into the sorted
        # index costs several times more for a large store.
        keys, last_main = read_key_index(self.backend)
        self.index.load(keys)
        self._current_rev = max(last_main, finished, 1)
        lessor = self.lessor
        for key, ki in keys.items():
            if ki.lease and ki.revs:
                if lessor.lookup(ki.lease) is not None:
                    lessor.attach(ki.lease, key)
                else:
                    ki.lease = 0
        if scheduled > finished:
            # a compaction was interrupted by a crash: finish it
            self._current_rev = max(self._current_rev, scheduled)
            self._compact_rev = scheduled
            self._compact_backend(scheduled, self.index.compact(scheduled), finished)

    def _meta_rev(self, name: bytes) -> int:
        # absent means "never compacted" (-1); 0 is a valid compaction revision
        return -1 if self.backend.get("meta", name) is None else self.backend.get_int("meta", name)


class RangeCursor:
    """One range read at a fixed revision ``rev``, taken a slice at a time.

    Rules it keeps:

    1. Every slice reads the store as it is at ``rev``. Between slices the store may
       take writes (revisions above ``rev``: invisible here), deletes (their tombstones
       are above ``rev`` too) and compactions at or below ``rev`` (which keep every
       revision a read at ``rev`` needs). A compaction above ``rev`` removes history
       this read may still need, so the next slice raises CompactedError, as does a
       store closed under the read (a snapshot replaced it). Nothing read before is
       taken back: a read that raised must be abandoned (or started again).
    2. ``kvs`` holds the first ``limit`` keys alive at ``rev`` in key order (all of
       them with limit 0; none when counting only); ``count`` counts every one walked.
       Both are final once ``done``. ``revs[i]`` is the revision ``kvs[i]`` was read
       at (the read cache's key for it).
    """

    __slots__ = (
        "_after",
        "_end",
        "_key",
        "_limit",
        "_store",
        "count",
        "count_only",
        "done",
        "kvs",
        "rev",
        "revs",
    )

    def __init__(
        self,
        store: KVStore,
        key: bytes,
        end: bytes | None,
        rev: int,
        limit: int,
        count_only: bool,
    ) -> None:
        self._store = store
        self._key = key
        self._end = end
        self.rev = rev
        self._limit = limit
        self.count_only = count_only
        self._after: bytes | None = None  # the last key walked
        self.kvs: list[KeyValue] = []
        self.revs: list[Revision] = []
        self.count = 0
        self.done = False

    def next_slice(self, max_keys: int) -> None:
        """Walk up to ``max_keys`` more keys of the index (0: all that are left).

        Raises:
            CompactedError: history at ``rev`` was compacted, or the store closed.
        """
        store = self._store
        if store.closed or self.rev < store.compact_revision:
            raise CompactedError()
        rev, kvs, limit = self.rev, self.kvs, self._limit
        walked = store.index.walk(self._key, self._end, self._after, max_keys)
        alive: list[Revision] = []  # the revision each key alive at rev was read at
        add = alive.append
        for ki in walked:
            m = ki.modified
            if m[0] <= rev:
                # unchanged since rev (the common case): alive unless its last change
                # was a delete
                if ki.revs:
                    add(m)
            else:
                found = ki.mod_at(rev)
                if found is not None:
                    add(found)
        count = self.count + len(alive)
        if not self.count_only and alive:
            if limit > 0:
                del alive[max(0, limit - len(kvs)) :]
            if alive:
                kvs += store._kvs_at(alive)
                self.revs += alive
        self.count = count
        if walked:
            self._after = walked[-1].key
        if max_keys <= 0 or len(walked) < max_keys:
            self.done = True
