"""What the store and the lessor count, for etcd's ``etcd_mvcc_*``, ``etcd_debugging_mvcc_*``
and ``etcd_debugging_lease_*`` metrics.

The mvcc package knows nothing of Prometheus: counters are plain integers bumped on the
event loop (one attribute increment per event, cheaper than any metrics library), and
durations go to an :class:`Observer` the member hands in (a Prometheus histogram fits
the protocol as it is). One :class:`MvccMetrics` outlives the stores it is given to, so a
store rebuilt from a snapshot keeps counting where the old one stopped, as etcd's global
counters do.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["DISCARD", "MvccMetrics", "Observer"]


class Observer(Protocol):
    """Takes one measurement (seconds, milliseconds or a TTL, as its metric says)."""

    def observe(self, amount: float) -> None: ...


class _Discard:
    def observe(self, amount: float) -> None:
        pass


#: An observer that keeps nothing (stores opened by tools, tests).
DISCARD: Observer = _Discard()


class MvccMetrics:
    """Counters and observers of one member's store and lessor (see the module docstring).

    Counters (etcd's names): ``puts``, ``ranges``, ``deletes``, ``txns`` (write txns of
    more than one operation, as etcd counts them), ``put_bytes`` (key + value sizes of
    every put), ``events`` (events sent to watchers), ``compacted_keys``,
    ``compaction_last`` (Unix time of the last backend compaction), ``leases_granted``,
    ``leases_renewed``, ``leases_revoked``; and the gauge ``watch_streams`` (streams open).
    """

    __slots__ = (
        "backend_commit",
        "compacted_keys",
        "compaction_last",
        "db_compaction_pause",
        "db_compaction_total",
        "deletes",
        "events",
        "hash",
        "hash_rev",
        "index_compaction_pause",
        "lease_ttl",
        "leases_granted",
        "leases_renewed",
        "leases_revoked",
        "put_bytes",
        "puts",
        "ranges",
        "txns",
        "watch_streams",
    )

    def __init__(
        self,
        *,
        backend_commit: Observer = DISCARD,
        hash: Observer = DISCARD,
        hash_rev: Observer = DISCARD,
        index_compaction_pause: Observer = DISCARD,
        db_compaction_pause: Observer = DISCARD,
        db_compaction_total: Observer = DISCARD,
        lease_ttl: Observer = DISCARD,
    ) -> None:
        """Observers: ``backend_commit`` seconds per backend commit; ``hash``,
        ``hash_rev`` seconds per Hash / HashKV; ``index_compaction_pause``,
        ``db_compaction_pause`` (per batch) and ``db_compaction_total`` in milliseconds;
        ``lease_ttl`` the TTL of each granted lease in seconds."""
        self.backend_commit = backend_commit
        self.hash = hash
        self.hash_rev = hash_rev
        self.index_compaction_pause = index_compaction_pause
        self.db_compaction_pause = db_compaction_pause
        self.db_compaction_total = db_compaction_total
        self.lease_ttl = lease_ttl
        self.puts = 0
        self.ranges = 0
        self.deletes = 0
        self.txns = 0
        self.put_bytes = 0
        self.events = 0
        self.compacted_keys = 0
        self.compaction_last = 0.0
        self.leases_granted = 0
        self.leases_renewed = 0
        self.leases_revoked = 0
        self.watch_streams = 0
