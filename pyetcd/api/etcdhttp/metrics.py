"""``/metrics``: etcd's metric families of one member, in Prometheus' text format.

The instruments the member's parts observe (histograms, event counters) are built
before them (``pyetcd.server.etcdserver.metrics.Metrics``); this module adds, on top,
what is read at scrape time: the member's state (leader, sizes, revisions, watchers,
versions), the counts the store, the peer transport and the gRPC wire keep as plain
integers, file descriptors and the process. Names, label names, types and help texts
are etcd 3.5's; ``tests/api/test_metrics_vs_etcd.py`` compares them with real etcd's.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from pyetcd.grpcwire import CODE_NAMES, MethodStats
from pyetcd.server.etcdserver.server import EtcdServer
from pyetcd.version import API_VERSION, SERVER_VERSION

__all__ = ["CHART_SERIES", "CONTENT_TYPE", "ServerMetrics"]

#: The Prometheus text exposition format prometheus_client writes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: The services whose methods etcd counts from the start (grpc_prometheus.Register runs
#: after these are registered); the others appear once called.
_PREINITIALIZED = frozenset(
    {
        "etcdserverpb.KV",
        "etcdserverpb.Watch",
        "etcdserverpb.Lease",
        "etcdserverpb.Cluster",
        "etcdserverpb.Auth",
        "etcdserverpb.Maintenance",
        "grpc.health.v1.Health",
    }
)

_CLUSTER_VERSION_HELP = (
    "Which version is running. 1 for 'cluster_version' label with current cluster version"
)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _labelled(name: str, doc: str, label: str, value: str) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc, labels=[label])
    g.add_metric([value], 1)
    return g


def _by_peer(
    name: str, doc: str, label: str, counts: Mapping[int, int], gauge: bool = False
) -> Metric:
    family = GaugeMetricFamily if gauge else CounterMetricFamily
    c = family(name, doc, labels=[label])
    for peer_id, n in sorted(counts.items()):
        c.add_metric([f"{peer_id:x}"], n)
    return c


class _ServerCollector(Collector):
    """The member's state and the counts its store keeps, at scrape time."""

    def __init__(self, server: EtcdServer) -> None:
        self.server = server

    def collect(self) -> Iterable[Metric]:
        return list(self._state()) + list(self._mvcc())

    def _state(self) -> Iterator[Metric]:
        s = self.server
        status = s.maintenance.status()
        kv = s.stores.kv
        yield _gauge(
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not.",
            1 if s.leader else 0,
        )
        yield _gauge(
            "etcd_server_is_leader",
            "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            1 if s.is_leader else 0,
        )
        yield _gauge(
            "etcd_server_is_learner",
            "Whether or not this member is a learner. 1 if is, 0 otherwise.",
            1 if status.isLearner else 0,
        )
        yield _counter(
            "etcd_server_leader_changes_seen",
            "The number of leader changes seen.",
            s.leadership.changes_seen,
        )
        yield _gauge(
            "etcd_server_proposals_pending",
            "The current number of pending proposals to commit.",
            len(s.waits),
        )
        # etcd sets "committed" and "applied" from the raft indexes, as gauges.
        yield _gauge(
            "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed.",
            status.raftIndex,
        )
        yield _gauge(
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied.",
            status.raftAppliedIndex,
        )
        yield _counter(
            "etcd_server_proposals_failed",
            "The total number of failed proposals seen.",
            s.proposer.proposals_failed,
        )
        # A gauge in etcd 3.5 too.
        yield _gauge(
            "etcd_disk_wal_write_bytes_total",
            "Total number of bytes written in WAL.",
            s.storage.wal.bytes_written,
        )
        yield _gauge(
            "etcd_server_quota_backend_bytes",
            "Current backend storage quota size in bytes.",
            s.cfg.quota_bytes,
        )
        yield _gauge(
            "etcd_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.",
            kv.db_size,
        )
        yield _gauge(
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Total size of the underlying database logically in use in bytes.",
            kv.db_size_in_use,
        )
        yield _labelled(
            "etcd_server_id",
            "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
            "server_id",
            f"{s.member_id:x}",
        )
        yield _labelled(
            "etcd_server_version",
            "Which version is running. 1 for 'server_version' label with current version.",
            "server_version",
            SERVER_VERSION,
        )
        # etcd labels the cluster version major.minor ("3.5")
        yield _labelled(
            "etcd_cluster_version", _CLUSTER_VERSION_HELP, "cluster_version", API_VERSION
        )
        yield _gauge(
            "etcd_debugging_auth_revision",
            "The current revision of auth store.",
            s.stores.auth.revision,
        )
        yield from self._peers()

    def _peers(self) -> Iterator[Metric]:
        s = self.server
        active = GaugeMetricFamily(
            "etcd_network_active_peers",
            "The current number of active peer connections.",
            labels=["Local", "Remote"],
        )
        for member_id in sorted(s.stores.membership.members):
            if member_id != s.member_id and s.transport.peer_active(member_id):
                active.add_metric([f"{s.member_id:x}", f"{member_id:x}"], 1)
        yield active
        peers = s.metrics.peers
        yield _by_peer(
            "etcd_network_peer_sent_bytes",
            "The total number of bytes sent to peers.",
            "To",
            peers.sent_bytes,
        )
        yield _by_peer(
            "etcd_network_peer_received_bytes",
            "The total number of bytes received from peers.",
            "From",
            peers.received_bytes,
        )
        yield _by_peer(
            "etcd_network_peer_sent_failures",
            "The total number of send failures from peers.",
            "To",
            peers.sent_failures,
        )
        yield _by_peer(
            "etcd_network_peer_received_failures",
            "The total number of receive failures from peers.",
            "From",
            peers.received_failures,
        )
        disconnected = CounterMetricFamily(
            "etcd_network_disconnected_peers",
            "The total number of disconnected peers.",
            labels=["Local", "Remote"],
        )
        for peer_id, n in sorted(peers.disconnected.items()):
            disconnected.add_metric([f"{s.member_id:x}", f"{peer_id:x}"], n)
        yield disconnected
        for direction, label, done, failed, inflight in (
            (
                "send",
                "To",
                peers.snapshots_sent,
                peers.snapshot_send_failures,
                peers.snapshot_sends_inflight,
            ),
            (
                "receive",
                "From",
                peers.snapshots_received,
                peers.snapshot_receive_failures,
                peers.snapshot_receives_inflight,
            ),
        ):
            name = f"etcd_network_snapshot_{direction}"
            yield _by_peer(
                f"{name}_success", f"Total number of successful snapshot {direction}s", label, done
            )
            yield _by_peer(
                f"{name}_failures", f"Total number of snapshot {direction} failures", label, failed
            )
            yield _by_peer(
                f"{name}_inflights_total",
                f"Total number of inflight snapshot {direction}s",
                label,
                inflight,
                gauge=True,
            )

    def _mvcc(self) -> Iterator[Metric]:
        s = self.server
        m = s.metrics.mvcc
        kv = s.stores.kv
        w = s.stores.watchable
        yield _gauge(
            "etcd_debugging_mvcc_current_revision",
            "The current revision of store.",
            kv.current_revision,
        )
        yield _gauge(
            "etcd_debugging_mvcc_compact_revision",
            "The revision of the last compaction in store.",
            kv.compact_revision,
        )
        yield _gauge("etcd_debugging_mvcc_keys_total", "Total number of keys.", len(kv.index))
        yield _gauge(
            "etcd_debugging_mvcc_watcher_total",
            "Total number of watchers.",
            w.synced_count + len(w.unsynced) + len(w.victims),
        )
        yield _gauge(
            "etcd_debugging_mvcc_watch_stream_total",
            "Total number of watch streams.",
            m.watch_streams,
        )
        yield _gauge(
            "etcd_debugging_mvcc_slow_watcher_total",
            "Total number of unsynced slow watchers.",
            len(w.unsynced) + len(w.victims),
        )
        yield _gauge(
            "etcd_debugging_mvcc_pending_events_total",
            "Total number of pending events to be sent.",
            sum(len(r.events) for r in w.victims.values()),
        )
        yield _gauge(
            "etcd_debugging_mvcc_total_put_size_in_bytes",
            "The total size of put kv pairs seen by this member.",
            m.put_bytes,
        )
        yield _gauge(
            "etcd_debugging_mvcc_db_compaction_last",
            "The unix time of the last db compaction. Resets to 0 on start.",
            m.compaction_last,
        )
        counters = (
            ("etcd_mvcc_put", "Total number of puts seen by this member.", m.puts),
            ("etcd_mvcc_range", "Total number of ranges seen by this member.", m.ranges),
            ("etcd_mvcc_delete", "Total number of deletes seen by this member.", m.deletes),
            ("etcd_mvcc_txn", "Total number of txns seen by this member.", m.txns),
            ("etcd_debugging_mvcc_range", "Total number of ranges seen by this member.", m.ranges),
            ("etcd_debugging_mvcc_events", "Total number of events sent by this member.", m.events),
            (
                "etcd_debugging_mvcc_db_compaction_keys",
                "Total number of db keys compacted.",
                m.compacted_keys,
            ),
            (
                "etcd_debugging_lease_granted",
                "The total number of granted leases.",
                m.leases_granted,
            ),
            (
                "etcd_debugging_lease_renewed",
                "The number of renewed leases seen by the leader.",
                m.leases_renewed,
            ),
            (
                "etcd_debugging_lease_revoked",
                "The total number of revoked leases.",
                m.leases_revoked,
            ),
        )
        for name, doc, value in counters:
            yield _counter(name, doc, value)


class _GrpcCollector(Collector):
    """go-grpc-prometheus' server counters, from the wire's per-method counts."""

    def __init__(self, stats: Mapping[str, MethodStats]) -> None:
        self.stats = stats

    def collect(self) -> Iterable[Metric]:
        labels = ["grpc_type", "grpc_service", "grpc_method"]
        started = CounterMetricFamily(
            "grpc_server_started", "Total number of RPCs started on the server.", labels=labels
        )
        handled = CounterMetricFamily(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            labels=[*labels, "grpc_code"],
        )
        received = CounterMetricFamily(
            "grpc_server_msg_received",
            "Total number of RPC stream messages received on the server.",
            labels=labels,
        )
        sent = CounterMetricFamily(
            "grpc_server_msg_sent",
            "Total number of gRPC stream messages sent by the server.",
            labels=labels,
        )
        client_requests: dict[tuple[str, str], int] = {}
        bytes_in = bytes_out = 0
        for st in sorted(self.stats.values(), key=lambda st: (st.service, st.method)):
            bytes_in += st.bytes_received
            bytes_out += st.bytes_sent
            kind = "unary" if st.unary else "stream"
            for version, n in st.client_api_versions.items():
                client_requests[kind, version] = client_requests.get((kind, version), 0) + n
            if st.service not in _PREINITIALIZED and not st.started:
                continue
            key = [st.grpc_type, st.service, st.method]
            started.add_metric(key, st.started)
            for code, n in enumerate(st.handled):
                handled.add_metric([*key, CODE_NAMES[code]], n)
            received.add_metric(key, st.msg_received)
            sent.add_metric(key, st.msg_sent)
        requests = CounterMetricFamily(
            "etcd_server_client_requests",
            "The total number of client requests per client version.",
            labels=["type", "client_api_version"],
        )
        for (kind, version), n in sorted(client_requests.items()):
            requests.add_metric([kind, version], n)
        return [
            started,
            handled,
            received,
            sent,
            requests,
            _counter(
                "etcd_network_client_grpc_received_bytes",
                "The total number of bytes received from grpc clients.",
                bytes_in,
            ),
            _counter(
                "etcd_network_client_grpc_sent_bytes",
                "The total number of bytes sent to grpc clients.",
                bytes_out,
            ),
        ]


class _OSCollector(Collector):
    """etcd's file-descriptor gauges, and the address-space limit Go's process
    collector reports (prometheus_client's has no such series)."""

    def collect(self) -> Iterable[Metric]:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        try:
            used = len(os.listdir("/proc/self/fd"))
        except OSError:
            used = 0
        vm_max = resource.getrlimit(resource.RLIMIT_AS)[0]
        return [
            _gauge("os_fd_used", "The number of used file descriptors.", used),
            _gauge("os_fd_limit", "The file descriptor limit.", soft),
            _gauge(
                "process_virtual_memory_max_bytes",
                "Maximum amount of virtual memory available in bytes.",
                float(2**64 - 1) if vm_max == resource.RLIM_INFINITY else vm_max,
            ),
        ]


#: etcd's counters whose samples carry no ``_total`` (Go's client writes the name it is
#: given; prometheus_client always appends ``_total`` to a counter's samples, so the
#: exposition drops it again for these names).
UNSUFFIXED_COUNTERS = (
    b"etcd_server_health_success",
    b"etcd_server_health_failures",
    b"etcd_server_learner_promote_successes",
    b"etcd_server_learner_promote_failures",
    b"etcd_network_snapshot_send_success",
    b"etcd_network_snapshot_send_failures",
    b"etcd_network_snapshot_receive_success",
    b"etcd_network_snapshot_receive_failures",
)


def _etcd_counter_names(text: bytes) -> bytes:
    """The exposition with etcd's own sample names for :data:`UNSUFFIXED_COUNTERS`."""
    for name in UNSUFFIXED_COUNTERS:
        text = text.replace(name + b"_total", name)
    return text


#: The dashboard's series read by :meth:`ServerMetrics.chart_values` that are one
#: unlabelled ``/metrics`` sample each, and that sample's name.
CHART_SERIES = {
    "committed": "etcd_server_proposals_committed_total",
    "applied": "etcd_server_proposals_applied_total",
    "failed": "etcd_server_proposals_failed_total",
    "pending": "etcd_server_proposals_pending",
    "revision": "etcd_debugging_mvcc_current_revision",
    "fsync_sum": "etcd_disk_wal_fsync_duration_seconds_sum",
    "fsync_count": "etcd_disk_wal_fsync_duration_seconds_count",
    "db_size": "etcd_mvcc_db_total_size_in_bytes",
    "watchers": "etcd_debugging_mvcc_watcher_total",
    "leader_changes": "etcd_server_leader_changes_seen_total",
    "commit_sum": "etcd_disk_backend_commit_duration_seconds_sum",
    "commit_count": "etcd_disk_backend_commit_duration_seconds_count",
}


def _unary_sum_and_count(histogram: Collector) -> tuple[float, float]:
    """``grpc_server_handling_seconds``' ``_sum`` and ``_count`` over the unary calls."""
    total = count = 0.0
    for family in histogram.collect():
        for sample in family.samples:
            if sample.labels.get("grpc_type") != "unary":
                continue
            if sample.name.endswith("_sum"):
                total += sample.value
            elif sample.name.endswith("_count"):
                count += sample.value
    return total, count


class _RegistryCollector(Collector):
    """Every metric of another registry (the instruments the member's parts observe)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        return self.registry.collect()


class ServerMetrics:
    """What ``/metrics`` serves for one member.

    Args:
        server: the member (its ``metrics`` are the observed instruments).
        grpc_stats: the gRPC server's per-method counts (``GrpcServer.method_stats``);
            empty when the member serves no gRPC.
    """

    def __init__(
        self, server: EtcdServer, grpc_stats: Mapping[str, MethodStats] | None = None
    ) -> None:
        self.server = server
        observed = server.metrics
        self.health_success = observed.health_success
        self.health_failures = observed.health_failures
        stats = grpc_stats if grpc_stats is not None else {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_RegistryCollector(observed.registry))
        self.registry.register(_ServerCollector(server))
        self.registry.register(_GrpcCollector(stats))
        self.grpc_stats = stats
        self.registry.register(_OSCollector())
        ProcessCollector(registry=self.registry)
        # promhttp's own counter of scrapes, by HTTP status.
        self.scrapes = Counter(
            "promhttp_metric_handler_requests",
            "Total number of scrapes by HTTP status code.",
            ["code"],
            registry=self.registry,
        )
        self._scrapes_ok = self.scrapes.labels("200")
        self.in_flight = Gauge(
            "promhttp_metric_handler_requests_in_flight",
            "Current number of scrapes being served.",
            registry=self.registry,
        )

    def chart_values(self) -> dict[str, float]:
        """The few numbers the dashboard charts, read from the objects that hold them
        (what ``/metrics`` would expose for them, see :data:`CHART_SERIES`), without
        building every family: the dashboard samples them once a second, page open or not.

        ``requests`` and ``requests_failed`` sum ``grpc_server_handled`` over the
        methods (failed: a code other than OK); ``latency_sum`` and ``latency_count``
        sum the unary calls' ``grpc_server_handling_seconds``, present only with
        ``--metrics=extensive`` (a stream's handling time is its lifetime).
        """
        s = self.server
        observed = s.metrics
        w = s.stores.watchable
        requests = failed = 0
        for st in self.grpc_stats.values():
            handled = st.handled
            n = sum(handled)
            requests += n
            failed += n - handled[0]
        values = {
            "committed": float(s.rawnode.committed),
            "applied": float(s.applied.applied),
            "failed": float(s.proposer.proposals_failed),
            "pending": float(len(s.waits)),
            "revision": float(s.stores.kv.current_revision),
            "fsync_sum": observed.wal_fsync.sum,
            "fsync_count": float(observed.wal_fsync.count),
            "db_size": float(s.stores.kv.db_size),
            "watchers": float(w.synced_count + len(w.unsynced) + len(w.victims)),
            "leader_changes": float(s.leadership.changes_seen),
            "commit_sum": observed.backend_commit.sum,
            "commit_count": float(observed.backend_commit.count),
            "requests": float(requests),
            "requests_failed": float(failed),
        }
        if observed.grpc_handling is not None:  # a histogram child per method called
            values["latency_sum"], values["latency_count"] = _unary_sum_and_count(
                observed.grpc_handling
            )
        return values

    def exposition(self) -> bytes:
        """The Prometheus text of every metric, as ``/metrics`` serves it."""
        self._scrapes_ok.inc()
        with self.in_flight.track_inprogress():
            return _etcd_counter_names(generate_latest(self.registry))
