"""The seed procedure with stock etcdctl 3.5.1 against a 3-member pyetcd cluster."""

from __future__ import annotations

import json

from tests.framework import ORACLE_VERSION, REPORTED_VERSION, Cluster


def _get(c: Cluster, endpoints: str, key: str) -> str:
    return c.etcdctl("get", key, endpoints=endpoints).stdout


def test_put_get_delete_across_members(cluster: Cluster) -> None:
    a, b, c3 = cluster.members
    assert cluster.etcdctl("put", "foo", "bar", endpoints=a.endpoint).stdout == "OK\n"
    # A linearizable get on another member must see the put at once.
    assert _get(cluster, b.endpoint, "foo") == "foo\nbar\n"
    assert _get(cluster, c3.endpoint, "foo") == "foo\nbar\n"
    assert cluster.etcdctl("del", "foo", endpoints=c3.endpoint).stdout == "1\n"
    for m in cluster.members:
        assert _get(cluster, m.endpoint, "foo") == ""
        ser = cluster.etcdctl("get", "foo", "--consistency=s", endpoints=m.endpoint).stdout
        # A serializable read may lag, but never shows a key that was deleted before
        # the linearizable read above returned.
        assert ser == ""


def test_all_endpoints_at_once(cluster: Cluster) -> None:
    eps = cluster.endpoints
    assert cluster.etcdctl("put", "k1", "v1", endpoints=eps).stdout == "OK\n"
    assert _get(cluster, eps, "k1") == "k1\nv1\n"
    for m in cluster.members:
        assert _get(cluster, m.endpoint, "k1") == "k1\nv1\n"
    assert cluster.etcdctl("del", "k1", endpoints=eps).stdout == "1\n"
    for m in cluster.members:
        assert _get(cluster, m.endpoint, "k1") == ""


def test_endpoint_status_health_member_list(cluster: Cluster) -> None:
    leader = cluster.wait_leader()
    ids = {m.name: cluster.member_id(m) for m in cluster.members}
    out = cluster.etcdctl("endpoint", "status", "-w", "json").stdout
    statuses = json.loads(out)
    assert [s["Endpoint"] for s in statuses] == [m.endpoint for m in cluster.members]
    lead_id = ids[leader.name]
    for s, m in zip(statuses, cluster.members, strict=True):
        st = s["Status"]
        assert st["header"]["member_id"] == ids[m.name]
        assert st["leader"] == lead_id
        assert st["raftTerm"] >= 2
        assert st["raftIndex"] >= st["raftAppliedIndex"] > 0
        assert st["version"] == (REPORTED_VERSION if cluster.kind == "pyetcd" else ORACLE_VERSION)
        assert not st.get("isLearner", False)
        assert not st.get("errors")
    cluster_ids = {s["Status"]["header"]["cluster_id"] for s in statuses}
    assert len(cluster_ids) == 1

    leaders = [s for s in statuses if s["Status"]["leader"] == s["Status"]["header"]["member_id"]]
    assert len(leaders) == 1

    health = cluster.etcdctl("endpoint", "health", "--cluster", endpoints=leader.endpoint)
    lines = sorted(health.stdout.splitlines() + health.stderr.splitlines())
    assert len(lines) == 3, lines
    for line, m in zip(lines, sorted(cluster.members, key=lambda m: m.client_url), strict=True):
        assert line.startswith(f"{m.client_url} is healthy: successfully committed proposal")

    members = cluster.etcdctl("member", "list").stdout.splitlines()
    expected = sorted(
        f"{ids[m.name]:x}, started, {m.name}, {m.peer_url}, {m.client_url}, false"
        for m in cluster.members
    )
    assert sorted(members) == expected
