"""A follower that fell behind the leader's compacted log catches up via a snapshot."""

from __future__ import annotations

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
