"""Every member killed -9 under writes, then restarted on its data dir."""

from __future__ import annotations

import time

from tests.framework import Cluster

from .client import Writer, increasing, missing_acked, wait_converged, wrong_revisions


def test_whole_cluster_kill_and_restart(cluster: Cluster) -> None:
    cluster.wait_leader()
    with Writer(cluster.members) as w:
        w.wait_acks_after(0.0, 60, timeout=15)
        terms_before = {}
        for m in cluster.members:
            st = m.status()
            assert st is not None
            terms_before[m.name] = st.raftTerm
        for m in cluster.members:
            m.kill()
    assert w.acked

    for m in cluster.members:
        cluster.restart(m)
    cluster.wait_leader(timeout=30)
    for m in cluster.members:
        st = m.status()
        assert st is not None
        # The term is durable: a restarted member never starts below what it had seen.
        assert st.raftTerm >= terms_before[m.name], (m.name, st.raftTerm, terms_before)
    assert increasing(list(w.revisions.values()))
    for m in cluster.members:
        assert missing_acked(m, "w/", w.acked, serializable=False) == []
    wait_converged(cluster.members)
    for m in cluster.members:
        assert missing_acked(m, "w/", w.acked, serializable=True) == []
        assert wrong_revisions(m, "w/", w.revisions) == []


def test_followers_killed_and_restarted_under_writes(cluster: Cluster) -> None:
    leader = cluster.wait_leader()
    followers = [m for m in cluster.members if m is not leader]
    with Writer([leader]) as w:
        for i in range(3):
            victim = followers[i % 2]
            w.wait_acks_after(0.0, 20 * (i + 1), timeout=15)
            victim.kill()  # mid-write: its WAL may end in a torn record
            t0 = time.monotonic()
            w.wait_acks_after(t0, 20, timeout=15)
            cluster.restart(victim)
            cluster.wait_leader(timeout=20)
    assert cluster.wait_leader() is leader
    wait_converged(cluster.members)
    assert increasing(list(w.revisions.values()))
    for m in cluster.members:
        assert missing_acked(m, "w/", w.acked, serializable=True) == []
        assert wrong_revisions(m, "w/", w.revisions) == []
