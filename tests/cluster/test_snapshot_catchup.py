"""A follower that fell behind the leader's compacted log catches up via a snapshot
(and both count the transfer, as etcd's /metrics does)."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.framework import Member

from .client import get_prefix, missing_acked, put_many, wait_converged
from .conftest import DEFAULT_KIND, MakeCluster

# etcd keeps 5000 entries behind a raft snapshot for slow followers
# (SnapshotCatchUpEntries); only a follower further behind than that needs a snapshot.
CATCHUP_ENTRIES = 5000
KEYS = CATCHUP_ENTRIES + 1000
RESTORED_LOG_LINE = {
    "pyetcd": "restored backend from snapshot",
    "etcd": "applied snapshot",
}


def metrics(m: Member) -> dict[str, float]:
    """``name{label="value",...}`` -> value (counters by family name: no ``_total``)."""
    with urllib.request.urlopen(f"http://{m.endpoint}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for f in text_string_to_metric_families(text):
        for s in f.samples:
            name = f.name if f.type in ("counter", "gauge") else s.name
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{name}{{{labels}}}"] = s.value
    return out


def test_stopped_follower_catches_up_through_snapshot(make_cluster: MakeCluster) -> None:
    c = make_cluster(extra_args=["--snapshot-count", "100"])
    leader = c.wait_leader()
    follower = next(m for m in c.members if m is not leader)
    follower.stop()
    assert RESTORED_LOG_LINE[DEFAULT_KIND] not in follower.log_text()

    items = [(f"s/{i:05d}", f"value-{i}") for i in range(KEYS)]
    put_many(leader, items)
    acked = dict(items)

    c.restart(follower)
    c.wait_leader(timeout=20)
    wait_converged(c.members, timeout=30)
    assert missing_acked(follower, "s/", acked, serializable=True) == []
    assert len(get_prefix(follower, "s/", serializable=True)) == KEYS
    assert RESTORED_LOG_LINE[DEFAULT_KIND] in follower.log_text()

    leader = c.wait_leader()
    to = f'To="{c.member_id(follower):x}"'
    sent = metrics(leader)
    assert sent[f"etcd_network_snapshot_send_success{{{to}}}"] >= 1
    assert sent[f"etcd_network_snapshot_send_inflights_total{{{to}}}"] == 0
    assert sent[f"etcd_network_snapshot_send_total_duration_seconds_count{{{to}}}"] >= 1
    pair = f'Local="{c.member_id(leader):x}",Remote="{c.member_id(follower):x}"'
    assert sent[f"etcd_network_disconnected_peers{{{pair}}}"] >= 1  # while it was down
    frm = f'From="{c.member_id(leader):x}"'
    got = metrics(follower)
    assert got[f"etcd_network_snapshot_receive_success{{{frm}}}"] >= 1
    assert got[f"etcd_network_snapshot_receive_inflights_total{{{frm}}}"] == 0
    assert got[f"etcd_network_snapshot_receive_total_duration_seconds_count{{{frm}}}"] >= 1
    assert got["etcd_snap_db_save_total_duration_seconds_count{}"] >= 1
    assert got["etcd_snap_db_fsync_duration_seconds_count{}"] >= 1
