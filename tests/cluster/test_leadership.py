"""Leadership hand-over: etcdctl move-leader, and a leader stopped with SIGTERM."""

from __future__ import annotations

from tests.framework import Cluster

from .client import put


def test_move_leader(cluster: Cluster) -> None:
    leader = cluster.wait_leader()
    lead_id = cluster.member_id(leader)
    target = next(m for m in cluster.members if m is not leader)
    target_id = cluster.member_id(target)

    out = cluster.etcdctl("move-leader", f"{target_id:x}", endpoints=leader.endpoint)
    assert out.stdout == f"Leadership transferred from {lead_id:x} to {target_id:x}\n"
    assert cluster.wait_leader(timeout=10) is target
    put(leader, "after-move", "1")
    # etcdctl itself refuses when none of the given endpoints is the leader.
    out = cluster.etcdctl("move-leader", f"{lead_id:x}", endpoints=leader.endpoint, check=False)
    assert out.returncode != 0
    assert f"Error: no leader endpoint given at [{leader.endpoint}]" in out.stderr


def test_sigterm_leader_hands_leadership_over(cluster: Cluster) -> None:
    leader = cluster.wait_leader()
    lead_id = cluster.member_id(leader)
    survivors = [m for m in cluster.members if m is not leader]
    leader.stop()
    # Asked right after the old leader exited: etcd has already transferred
    # leadership, so the survivors name a new leader instead of the dead one.
    for m in survivors:
        st = m.status()
        assert st is not None
        assert st.leader not in (0, lead_id), m.name
