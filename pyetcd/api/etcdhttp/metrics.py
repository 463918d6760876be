"""Prometheus metrics of one member, under etcd's metric names.

Most values are read from the server at scrape time (a custom collector), so the
server and raft code carry no metrics calls. Each member has its own
``CollectorRegistry``: several members may run in one process (tests).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from pyetcd.server.etcdserver.server import CLUSTER_VERSION, SERVER_VERSION, EtcdServer

__all__ = ["CONTENT_TYPE", "ServerMetrics"]

#: The Prometheus text exposition format prometheus_client writes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# etcd's buckets for disk latencies: 1 ms doubling up to ~8 s.
_DISK_BUCKETS = tuple(0.001 * 2**i for i in range(14))

_HAS_LEADER = "Whether or not a leader exists. 1 is existence, 0 is not."
_IS_LEADER = "Whether or not this member is a leader. 1 if is, 0 otherwise."
_PENDING = "The current number of pending proposals to commit."
_DB_SIZE = "Total size of the underlying database physically allocated in bytes."
_DB_IN_USE = "Total size of the underlying database logically in use in bytes."
_QUOTA = "Current backend storage quota size in bytes."
_CUR_REV = "The current revision of store."
_COMPACT_REV = "The revision of the last compaction in store."
_WATCHERS = "Total number of watchers."
_LEADER_CHANGES = "The number of leader changes seen."
_COMMITTED = "The total number of consensus proposals committed."
_APPLIED = "The total number of consensus proposals applied."
_FAILED = "The total number of failed proposals seen."
_SERVER_ID = "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID."
_SERVER_VERSION = "Which version is running. 1 for 'server_version' label with current version."
_CLUSTER_VERSION = (
    "Which version is running. 1 for 'cluster_version' label with current cluster version"
)


class _ObservingList(list[float]):
    """A ``list[float]`` whose ``append`` feeds a histogram instead of growing.

    RaftNode records each WAL fsync duration with ``fsync_seconds.append(d)``;
    swapping in this list turns that into a histogram observation and keeps
    memory flat however long the member runs.
    """

    def __init__(self, histogram: Histogram) -> None:
        super().__init__()
        self._histogram = histogram

    def append(self, value: float) -> None:
        self._histogram.observe(value)


class _ServerCollector(Collector):
    """Gauges and counters computed from the server's state at scrape time."""

    def __init__(self, server: EtcdServer) -> None:
        self.server = server

    def collect(self) -> Iterable[Metric]:
        return list(self._collect())

    def _collect(self) -> Iterator[Metric]:
        s = self.server
        store = s.stores.kv
        watchers = len(s.stores.watchable.synced) + len(s.stores.watchable.unsynced)
        status = s.maintenance.status()
        gauges = (
            ("etcd_server_has_leader", _HAS_LEADER, 1 if s.leader else 0),
            ("etcd_server_is_leader", _IS_LEADER, 1 if s.is_leader else 0),
            ("etcd_server_proposals_pending", _PENDING, len(s.waits)),
            ("etcd_mvcc_db_total_size_in_bytes", _DB_SIZE, store.db_size),
            ("etcd_mvcc_db_total_size_in_use_in_bytes", _DB_IN_USE, store.db_size_in_use),
            ("etcd_server_quota_backend_bytes", _QUOTA, s.cfg.quota_bytes),
            ("etcd_debugging_mvcc_current_revision", _CUR_REV, store.current_revision),
            ("etcd_debugging_mvcc_compact_revision", _COMPACT_REV, max(0, store.compact_revision)),
            ("etcd_debugging_mvcc_watcher_total", _WATCHERS, watchers),
        )
        for name, doc, value in gauges:
            yield GaugeMetricFamily(name, doc, value=value)
        # etcd sets "committed" and "applied" from the raft indexes, not by counting.
        counters = (
            ("etcd_server_leader_changes_seen", _LEADER_CHANGES, s.leadership.changes_seen),
            ("etcd_server_proposals_committed", _COMMITTED, status.raftIndex),
            ("etcd_server_proposals_applied", _APPLIED, status.raftAppliedIndex),
            ("etcd_server_proposals_failed", _FAILED, s.proposer.proposals_failed),
        )
        for name, doc, value in counters:
            yield CounterMetricFamily(name, doc, value=value)
        yield _labelled("etcd_server_id", _SERVER_ID, "server_id", f"{s.member_id:x}")
        yield _labelled("etcd_server_version", _SERVER_VERSION, "server_version", SERVER_VERSION)
        cluster = CLUSTER_VERSION.rsplit(".", 1)[0]  # etcd reports "3.5"
        yield _labelled("etcd_cluster_version", _CLUSTER_VERSION, "cluster_version", cluster)


def _labelled(name: str, doc: str, label: str, value: str) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc, labels=[label])
    g.add_metric([value], 1)
    return g


class ServerMetrics:
    """The registry behind ``/metrics`` for one member.

    Call :meth:`attach` once the server has started (its raft node exists).
    """

    def __init__(self, server: EtcdServer) -> None:
        self.server = server
        # etcd exposes no "_created" series; the switch is process-wide in prometheus_client.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        self.wal_fsync = Histogram(
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL.",
            buckets=_DISK_BUCKETS,
            registry=self.registry,
        )
        self.health_success = Counter(
            "etcd_server_health_success",
            "The total number of successful health checks",
            registry=self.registry,
        )
        self.health_failures = Counter(
            "etcd_server_health_failures",
            "The total number of failed health checks",
            registry=self.registry,
        )
        self.registry.register(_ServerCollector(server))
        ProcessCollector(registry=self.registry)

    def attach(self) -> None:
        """Start observing the WAL fsync durations the raft node records."""
        self.server.raft.fsync_seconds = _ObservingList(self.wal_fsync)

    def exposition(self) -> bytes:
        """The Prometheus text of every metric, as ``/metrics`` serves it."""
        return generate_latest(self.registry)
