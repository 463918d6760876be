"""The member's measurements, built before the parts that take them.

etcd's histograms and event counters live here, under etcd's names, help texts and
bucket boundaries: WAL fsync, backend commit/defrag/snapshot, applies, raft snapshot
saves, hashes, compactions, lease TTLs, peer round trips and snapshot transfers, the
received database's save, gRPC handling times; and the counters the server's parts
bump (slow applies, slow and failed read indexes, learner promotions, heartbeat send
failures, expired leases, health checks). The parts are given what they observe when
they are built: the mvcc store an ``MvccMetrics`` (mvcc knows nothing of Prometheus: a
histogram fits its ``Observer``), the WAL storage a ``wal.SnapMetrics``, the peer
transport ``PeerMetrics``. What is a state rather than an event (has a
leader, sizes, revisions, watchers) is read at scrape time by the collectors
``pyetcd.api.etcdhttp.metrics`` adds to :attr:`Metrics.registry`.

Each member has its own ``CollectorRegistry``: several members may run in one process
(tests).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from itertools import accumulate

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import disable_created_metrics as _disable_created
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from pyetcd.mvcc.metrics import MvccMetrics
from pyetcd.wal import SnapMetrics

from .transport import PeerMetrics

__all__ = ["ApplyDurations", "Metrics", "PlainHistogram", "exponential_buckets"]


def exponential_buckets(start: float, factor: float, count: int) -> tuple[float, ...]:
    """Prometheus' ExponentialBuckets: ``count`` upper bounds from ``start``."""
    return tuple(start * factor**i for i in range(count))


#: 1 ms doubling to ~8 s: etcd's disk latencies (WAL fsync, backend commit, snap fsync).
DISK_BUCKETS = exponential_buckets(0.001, 2, 14)
#: grpc-go-prometheus' default buckets (Prometheus' DefBuckets).
GRPC_HANDLING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Series:
    """One histogram series kept as plain numbers: counts per bucket (the last one is
    +Inf), not cumulative, and the sum."""

    __slots__ = ("counts", "sum")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * (buckets + 1)
        self.sum = 0.0

    def observe(self, buckets: tuple[float, ...], seconds: float) -> None:
        self.counts[bisect_left(buckets, seconds)] += 1
        self.sum += seconds

    def cumulative(self, bounds: Sequence[str]) -> list[tuple[str, int]]:
        """(upper bound, observations up to it) for each of ``bounds`` (+Inf last)."""
        return list(zip(bounds, accumulate(self.counts), strict=True))


def _go_bounds(buckets: Sequence[float]) -> list[str]:
    # a histogram's "le" labels as etcd's Go client writes them, +Inf last
    return [*map(floatToGoString, buckets), "+Inf"]


class PlainHistogram(Collector):
    """A histogram without labels observed on the hot path (one per put): a bisect and
    two additions on plain numbers, where a prometheus_client ``Histogram`` takes a lock
    per bucket and sum; exposed as the same family when scraped. Not thread-safe:
    observe from one thread (the event loop's)."""

    def __init__(self, name: str, doc: str, buckets: Sequence[float]) -> None:
        self.name = name
        self.doc = doc
        self.buckets = tuple(buckets)
        self._series = _Series(len(self.buckets))

    def observe(self, seconds: float) -> None:
        self._series.observe(self.buckets, seconds)

    @property
    def count(self) -> int:
        """Observations so far (the ``_count`` sample)."""
        return sum(self._series.counts)

    @property
    def sum(self) -> float:
        """The observed values added up (the ``_sum`` sample)."""
        return self._series.sum

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(self.name, self.doc)
        series = self._series
        family.add_metric([], series.cumulative(_go_bounds(self.buckets)), series.sum)
        return [family]


class ApplyDurations(Collector):
    """``etcd_server_apply_duration_seconds``: one observation per applied request, by
    etcd's operation name and success. A request's apply pays a bisect and two
    additions on plain numbers (a prometheus_client observation costs several times
    that); the histogram is built from them when scraped."""

    NAME = "etcd_server_apply_duration_seconds"
    HELP = "The latency distributions of v2 apply called by backend."
    BUCKETS = exponential_buckets(0.0001, 2, 20)

    def __init__(self) -> None:
        # by InternalRaftRequest field, for successful and for failed applies
        self._ok: dict[str, _Series] = {}
        self._failed: dict[str, _Series] = {}

    def observe(self, field: str, success: bool, seconds: float) -> None:
        """``field``: the InternalRaftRequest field applied (``put``, ``lease_grant``...)."""
        by_field = self._ok if success else self._failed
        series = by_field.get(field)
        if series is None:
            series = by_field[field] = _Series(len(self.BUCKETS))
        series.observe(self.BUCKETS, seconds)

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(self.NAME, self.HELP, labels=["version", "op", "success"])
        bounds = _go_bounds(self.BUCKETS)
        for success, by_field in (("true", self._ok), ("false", self._failed)):
            for field, series in sorted(by_field.items()):
                # etcd's op label is the field's Go name: lease_grant -> LeaseGrant.
                op = "".join(p.capitalize() for p in field.split("_")) or "unknown"
                family.add_metric(["v3", op, success], series.cumulative(bounds), series.sum)
        return [family]


class Metrics:
    """One member's instruments (see the module docstring).

    Args:
        extensive: ``--metrics=extensive``: also keep gRPC handling-time histograms.
    """

    def __init__(self, extensive: bool = False) -> None:
        # etcd exposes no "_created" series; the switch is process-wide in prometheus_client.
        _disable_created()  # type: ignore[no-untyped-call]
        self.extensive = extensive
        self.registry = r = CollectorRegistry(auto_describe=True)

        def histogram(
            name: str, doc: str, buckets: Sequence[float], labels: Sequence[str] = ()
        ) -> Histogram:
            return Histogram(name, doc, labels, buckets=buckets, registry=r)

        def counter(name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
            return Counter(name, doc, labels, registry=r)

        self.wal_fsync = PlainHistogram(
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL.",
            DISK_BUCKETS,
        )
        r.register(self.wal_fsync)
        # Plain: the backend commits on the event loop, and the dashboard reads its sum
        # and count every second.
        self.backend_commit = PlainHistogram(
            "etcd_disk_backend_commit_duration_seconds",
            "The latency distributions of commit called by backend.",
            DISK_BUCKETS,
        )
        r.register(self.backend_commit)
        self.backend_defrag = histogram(
            "etcd_disk_backend_defrag_duration_seconds",
            "The latency distribution of backend defragmentation.",
            exponential_buckets(0.1, 2, 13),
        )
        self.backend_snapshot = histogram(
            "etcd_disk_backend_snapshot_duration_seconds",
            "The latency distribution of backend snapshots.",
            exponential_buckets(0.01, 2, 17),
        )
        self.defrag_inflight = Gauge(
            "etcd_disk_defrag_inflight",
            "Whether or not defrag is active on the member. 1 means active, 0 means not.",
            registry=r,
        )
        self.snapshot_apply_in_progress = Gauge(
            "etcd_server_snapshot_apply_in_progress_total",
            "1 if the server is applying the incoming snapshot. 0 if none.",
            registry=r,
        )
        self.slow_applies = counter(
            "etcd_server_slow_apply",
            "The total number of slow apply requests (likely overloaded from slow disk).",
        )
        self.apply_durations = ApplyDurations()
        r.register(self.apply_durations)
        self.slow_read_indexes = counter(
            "etcd_server_slow_read_indexes",
            "The total number of pending read indexes not in sync with leader's "
            "or timed out read index requests.",
        )
        self.read_indexes_failed = counter(
            "etcd_server_read_indexes_failed", "The total number of failed read indexes seen."
        )
        self.learner_promote_successes = counter(
            "etcd_server_learner_promote_successes",
            "The total number of successful learner promotions while this member is leader.",
        )
        self.learner_promote_failures = counter(
            "etcd_server_learner_promote_failures",
            "The total number of failed learner promotions (likely learner not ready) "
            "while this member is leader.",
            ("Reason",),
        )
        #: The raft snapshot files saved (etcd's snap package, etcd_debugging_snap_*).
        self.snap = SnapMetrics(
            marshalling=histogram(
                "etcd_debugging_snap_save_marshalling_duration_seconds",
                "The marshalling cost distributions of save called by snapshot.",
                DISK_BUCKETS,
            ),
            fsync=histogram(
                "etcd_snap_fsync_duration_seconds",
                "The latency distributions of fsync called by snap.",
                DISK_BUCKETS,
            ),
            total=histogram(
                "etcd_debugging_snap_save_total_duration_seconds",
                "The total latency distributions of save called by snapshot.",
                DISK_BUCKETS,
            ),
        )
        self.heartbeat_send_failures = counter(
            "etcd_server_heartbeat_send_failures",
            "The total number of leader heartbeat send failures "
            "(likely overloaded from slow disk).",
        )
        self.leases_expired = counter(
            "etcd_debugging_server_lease_expired",
            "The total number of expired leases.",
        )
        self.health_success = counter(
            "etcd_server_health_success", "The total number of successful health checks"
        )
        self.health_failures = counter(
            "etcd_server_health_failures", "The total number of failed health checks"
        )
        self.peer_rtt = histogram(
            "etcd_network_peer_round_trip_time_seconds",
            "Round-Trip-Time histogram between peers.",
            exponential_buckets(0.0001, 2, 16),
            ("To",),
        )
        self.grpc_handling = (
            histogram(
                "grpc_server_handling_seconds",
                "Histogram of response latency (seconds) of gRPC that had been "
                "application-level handled by the server.",
                GRPC_HANDLING_BUCKETS,
                ("grpc_type", "grpc_service", "grpc_method"),
            )
            if extensive
            else None
        )
        #: What the store and the lessor count (one for every store the member opens).
        self.mvcc = MvccMetrics(
            backend_commit=self.backend_commit,
            hash=histogram(
                "etcd_mvcc_hash_duration_seconds",
                "The latency distribution of storage hash operation.",
                exponential_buckets(0.01, 2, 15),
            ),
            hash_rev=histogram(
                "etcd_mvcc_hash_rev_duration_seconds",
                "The latency distribution of storage hash by revision operation.",
                exponential_buckets(0.01, 2, 15),
            ),
            index_compaction_pause=histogram(
                "etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds",
                "Bucketed histogram of index compaction pause duration.",
                exponential_buckets(0.5, 2, 14),
            ),
            db_compaction_pause=histogram(
                "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds",
                "Bucketed histogram of db compaction pause duration.",
                exponential_buckets(1, 2, 13),
            ),
            db_compaction_total=histogram(
                "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds",
                "Bucketed histogram of db compaction total duration.",
                exponential_buckets(100, 2, 14),
            ),
            lease_ttl=histogram(
                "etcd_debugging_lease_ttl_total",
                "Bucketed histogram of lease TTLs.",
                exponential_buckets(1, 2, 24),
            ),
        )
        #: What the peer transport counts, its round trips and its snapshot transfers.
        self.peers = PeerMetrics(
            self.peer_rtt,
            snapshot_send=histogram(
                "etcd_network_snapshot_send_total_duration_seconds",
                "Total latency distributions of v3 snapshot sends",
                exponential_buckets(0.1, 2, 10),
                ("To",),
            ),
            snapshot_receive=histogram(
                "etcd_network_snapshot_receive_total_duration_seconds",
                "Total latency distributions of v3 snapshot receives",
                exponential_buckets(0.1, 2, 10),
                ("From",),
            ),
            snap_db_fsync=histogram(
                "etcd_snap_db_fsync_duration_seconds",
                "The latency distributions of fsyncing .snap.db file",
                DISK_BUCKETS,
            ),
            snap_db_save=histogram(
                "etcd_snap_db_save_total_duration_seconds",
                "The total latency distributions of v3 snapshot save",
                exponential_buckets(0.1, 2, 10),
            ),
        )
