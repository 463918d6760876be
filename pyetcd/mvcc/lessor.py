"""The lessor: leases, their keys, expiry and checkpoints (etcd's lease package).

Rules this module keeps:

1. No clock of its own: time comes from the injected ``clock`` (monotonic
   seconds), so tests drive it deterministically.
2. Only the primary (the leader's lessor) lets leases expire. A non-primary
   lessor keeps every lease alive forever; :meth:`Lessor.promote` gives all
   leases a fresh TTL (plus ``extend``) when this member becomes leader.
3. Expiry never deletes anything here: :meth:`Lessor.expired_leases` returns
   lease IDs the server proposes as LeaseRevoke through Raft; the revoke is
   applied by the store on every member.
4. Grants, revokes and checkpoints are applied through Raft and persisted to
   the backend's ``lease`` table; renewals are leader-local and are not.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pyetcd.mvcc.backend import Backend
from pyetcd.mvcc.errors import (
    LeaseExistsError,
    LeaseExpiredError,
    LeaseNotFoundError,
    LeaseNotPrimaryError,
    LeaseTTLTooLargeError,
)
from pyetcd.mvcc.metrics import MvccMetrics

__all__ = [
    "EXPIRED_LEASE_RETRY_INTERVAL",
    "LEASE_REVOKE_RATE",
    "MAX_LEASE_TTL",
    "NO_LEASE",
    "IDGenerator",
    "Lease",
    "Lessor",
]

NO_LEASE = 0
MAX_LEASE_TTL = 9_000_000_000
# etcd revokes at most this many leases per second
LEASE_REVOKE_RATE = 1000
# an expired lease whose revoke did not arrive is reported again after this long
EXPIRED_LEASE_RETRY_INTERVAL = 3.0
MAX_LEASE_CHECKPOINT_BATCH = 1000
_FOREVER = math.inf


@dataclass(slots=True)
class Lease:
    """One lease; ``expiry`` is a clock reading, ``inf`` while not primary."""

    id: int
    ttl: int
    # remaining TTL from the last checkpoint (0: none); used instead of ttl on refresh
    remaining_ttl: int = 0
    expiry: float = _FOREVER
    keys: set[bytes] = field(default_factory=set)
    # when this lease's live entry in the expiry heap fires (older entries are stale)
    heap_time: float = _FOREVER

    def refresh_ttl(self) -> int:
        """The TTL a refresh starts from: the checkpointed remainder if any."""
        return self.remaining_ttl if self.remaining_ttl > 0 else self.ttl

    def remaining(self, now: float) -> float:
        """Seconds left (``inf`` when not expiring)."""
        return self.expiry - now


class IDGenerator:
    """etcd's request/lease ID scheme.

    ID = (low 16 bits of member ID) << 48 | ((Unix ms & (2**40 - 1)) << 8) + n,
    where n counts IDs handed out; the result is kept positive for leases.
    """

    def __init__(self, member_id: int, now_ms: int) -> None:
        """Seed from the member ID and the current Unix time in milliseconds."""
        self._prefix = (member_id & 0xFFFF) << 48
        self._suffix = (now_ms & ((1 << 40) - 1)) << 8

    def next(self) -> int:
        """The next ID (positive, never 0)."""
        self._suffix += 1
        return (self._prefix | (self._suffix & ((1 << 48) - 1))) & ((1 << 63) - 1)


class Lessor:
    """All leases of one member."""

    def __init__(
        self,
        backend: Backend | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        min_lease_ttl: int = 2,
        checkpoint_interval: float | None = None,
        checkpoint_persist: bool = False,
        metrics: MvccMetrics | None = None,
    ) -> None:
        """Create a lessor and recover the leases persisted in ``backend``.

        Args:
            backend: where grants/revokes/checkpoints are persisted (None: memory only).
            clock: monotonic seconds.
            min_lease_ttl: shorter TTLs are raised to this (etcd: ceil(1.5 x election timeout)).
            checkpoint_interval: seconds between remaining-TTL checkpoints of long
                leases; None disables checkpointing (etcd's default). With it the
                primary proposes checkpoints and a renewal clears a checkpointed TTL.
            checkpoint_persist: write each applied checkpoint's remaining TTL to the
                lease's backend record (etcd 3.5's
                --experimental-enable-lease-checkpoint-persist); without it the
                remainder lives in memory only and a restart forgets it.
            metrics: counts grants, renewals and revokes, observes granted TTLs.
        """
        self._backend = backend
        self.metrics = metrics if metrics is not None else MvccMetrics()
        #: the time source (monotonic seconds); a test may swap it for one it advances
        self.clock = clock
        self.min_lease_ttl = min_lease_ttl
        self.checkpoint_interval = checkpoint_interval
        self.checkpoint_persist = checkpoint_persist
        self._leases: dict[int, Lease] = {}
        self._key_lease: dict[bytes, int] = {}
        self._expiry_heap: list[tuple[float, int]] = []
        self._checkpoint_heap: list[tuple[float, int]] = []
        self._clear_checkpoints: list[int] = []
        self.primary = False
        if backend is not None:
            for lease_id, ttl, remaining in backend.leases():
                self._leases[lease_id] = Lease(lease_id, ttl, remaining)

    # -- applied through Raft on every member ------------------------------

    def grant(self, lease_id: int, ttl: int) -> Lease:
        """Create a lease; returns it (its ``ttl`` is raised to the minimum).

        Raises:
            LeaseNotFoundError: ``lease_id`` is 0.
            LeaseTTLTooLargeError: ``ttl`` above :data:`MAX_LEASE_TTL`.
            LeaseExistsError: the ID is taken.
        """
        if lease_id == NO_LEASE:
            raise LeaseNotFoundError()
        if ttl > MAX_LEASE_TTL:
            raise LeaseTTLTooLargeError()
        if lease_id in self._leases:
            raise LeaseExistsError()
        lease = Lease(lease_id, max(ttl, self.min_lease_ttl))
        self._leases[lease_id] = lease
        self.metrics.leases_granted += 1
        self.metrics.lease_ttl.observe(lease.ttl)
        if self.primary:
            self._refresh(lease, 0.0)
            self._schedule_checkpoint(lease)
        self._persist(lease)
        return lease

    def remove(self, lease_id: int) -> None:
        """Forget a lease whose keys the store has deleted (the end of a revoke)."""
        lease = self._leases.pop(lease_id, None)
        if lease is None:
            raise LeaseNotFoundError()
        self.metrics.leases_revoked += 1
        for k in lease.keys:
            self._key_lease.pop(k, None)
        if self._backend is not None:
            self._backend.lease_delete(lease_id)

    def checkpoint(self, lease_id: int, remaining_ttl: int) -> None:
        """Apply a LeaseCheckpoint: remember the remaining TTL (unknown IDs are ignored)."""
        lease = self._leases.get(lease_id)
        if lease is None:
            return
        lease.remaining_ttl = remaining_ttl
        if self.checkpoint_persist:
            self._persist(lease)
        if self.primary:
            self._schedule_checkpoint(lease)

    def attach(self, lease_id: int, key: bytes) -> None:
        """Attach ``key`` to a lease (the store checked that the lease exists)."""
        self._leases[lease_id].keys.add(key)
        self._key_lease[key] = lease_id

    def detach(self, lease_id: int, key: bytes) -> None:
        """Detach ``key`` from a lease (no-op if either is gone)."""
        lease = self._leases.get(lease_id)
        if lease is not None:
            lease.keys.discard(key)
        if self._key_lease.get(key) == lease_id:
            del self._key_lease[key]

    # -- queries -----------------------------------------------------------

    def lookup(self, lease_id: int) -> Lease | None:
        """The lease with this ID, or None."""
        return self._leases.get(lease_id)

    @property
    def lease_count(self) -> int:
        """How many leases are live (without sorting them as :meth:`leases` does)."""
        return len(self._leases)

    def leases(self) -> list[Lease]:
        """Every lease, soonest expiry first (etcd's LeaseLeases order); ties by ID."""
        return sorted(self._leases.values(), key=lambda item: (item.expiry, item.id))

    def lease_of(self, key: bytes) -> int:
        """The lease ``key`` is attached to (0: none)."""
        return self._key_lease.get(key, NO_LEASE)

    def time_to_live(self, lease_id: int) -> tuple[int, int, list[bytes]] | None:
        """(remaining TTL in whole seconds, granted TTL, sorted keys), or None if unknown.

        The remaining TTL is truncated toward zero as etcd does; it is huge on a
        non-primary lessor (the server forwards TimeToLive to the leader).
        """
        lease = self._leases.get(lease_id)
        if lease is None:
            return None
        rem = lease.remaining(self.clock())
        remaining = 2**63 - 1 if math.isinf(rem) else int(rem)
        return remaining, lease.ttl, sorted(lease.keys)

    # -- leader-local ------------------------------------------------------

    def renew(self, lease_id: int) -> int:
        """KeepAlive: restart the lease's TTL; returns the TTL.

        Raises:
            LeaseNotPrimaryError: this lessor is not primary.
            LeaseNotFoundError: unknown lease.
            LeaseExpiredError: the lease expired and awaits its revoke.
        """
        if not self.primary:
            raise LeaseNotPrimaryError()
        lease = self._leases.get(lease_id)
        if lease is None:
            raise LeaseNotFoundError()
        if lease.remaining(self.clock()) <= 0:
            raise LeaseExpiredError()
        if lease.remaining_ttl > 0 and self.checkpoint_interval is not None:
            # a checkpointed remainder must be cleared through Raft, or a new
            # leader would restore the stale value
            self._clear_checkpoints.append(lease_id)
            lease.remaining_ttl = 0
        self._refresh(lease, 0.0)
        self.metrics.leases_renewed += 1
        return lease.ttl

    def promote(self, extend: float) -> None:
        """Become primary: every lease gets its TTL again, plus ``extend`` seconds.

        When many leases would expire in one second, later ones are spread out
        so revokes stay under :data:`LEASE_REVOKE_RATE` (etcd's smoothing).
        """
        self.primary = True
        self._expiry_heap = []
        self._checkpoint_heap = []
        for lease in self._leases.values():
            self._refresh(lease, extend)
            self._schedule_checkpoint(lease)
        if len(self._leases) < LEASE_REVOKE_RATE:
            return
        self._smooth_expiries(extend)

    def _smooth_expiries(self, extend: float) -> None:
        now = self.clock()
        leases = sorted(self._leases.values(), key=lambda item: item.expiry)
        base = leases[0].remaining(now)
        next_window = base + 1.0
        expires = 0
        target = (3 * LEASE_REVOKE_RATE) // 4
        for lease in leases:
            remaining = lease.remaining(now)
            if remaining > next_window:
                base = remaining
                next_window = base + 1.0
                expires = 1
                continue
            expires += 1
            if expires <= target:
                continue
            delay = expires / target - (remaining - base)
            next_window = base + delay
            self._refresh(lease, delay + extend)

    def demote(self) -> None:
        """Stop being primary: leases no longer expire here."""
        self.primary = False
        for lease in self._leases.values():
            lease.expiry = _FOREVER
            lease.heap_time = _FOREVER
        self._expiry_heap = []
        self._checkpoint_heap = []
        self._clear_checkpoints = []

    def expired_leases(self, limit: int = LEASE_REVOKE_RATE // 2) -> list[int]:
        """IDs of leases that have expired, for the server to revoke through Raft.

        Each is reported again after :data:`EXPIRED_LEASE_RETRY_INTERVAL` if
        its revoke has not been applied by then. Empty unless primary.
        """
        if not self.primary:
            return []
        now = self.clock()
        out: list[int] = []
        heap = self._expiry_heap
        while heap and heap[0][0] <= now and len(out) < limit:
            when, lease_id = heapq.heappop(heap)
            lease = self._leases.get(lease_id)
            if lease is None or lease.heap_time != when or lease.expiry > now:
                continue  # revoked, or refreshed since this entry was queued
            out.append(lease_id)
            lease.heap_time = now + EXPIRED_LEASE_RETRY_INTERVAL
            heapq.heappush(heap, (lease.heap_time, lease_id))
        return out

    def due_checkpoints(self) -> list[tuple[int, int]]:
        """(lease ID, remaining TTL) checkpoints for the server to propose through Raft."""
        out = [(i, 0) for i in self._clear_checkpoints if i in self._leases]
        self._clear_checkpoints = []
        if not self.primary or self.checkpoint_interval is None:
            return out
        now = self.clock()
        heap = self._checkpoint_heap
        while heap and heap[0][0] <= now and len(out) < MAX_LEASE_CHECKPOINT_BATCH:
            _, lease_id = heapq.heappop(heap)
            lease = self._leases.get(lease_id)
            if lease is None or math.isinf(lease.expiry):
                continue
            remaining = math.ceil(lease.expiry - now)
            if remaining >= lease.ttl:
                continue
            out.append((lease_id, remaining))
        return out

    # -- helpers -----------------------------------------------------------

    def _refresh(self, lease: Lease, extend: float) -> None:
        lease.expiry = self.clock() + extend + lease.refresh_ttl()
        lease.heap_time = lease.expiry
        heapq.heappush(self._expiry_heap, (lease.expiry, lease.id))

    def _schedule_checkpoint(self, lease: Lease) -> None:
        interval = self.checkpoint_interval
        if interval is not None and lease.refresh_ttl() > interval:
            heapq.heappush(self._checkpoint_heap, (self.clock() + interval, lease.id))

    def _persist(self, lease: Lease) -> None:
        if self._backend is not None:
            self._backend.lease_put(lease.id, lease.ttl, lease.remaining_ttl)
