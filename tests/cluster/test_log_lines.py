"""etcd's log lines that harnesses and supervisors scrape, checked against etcd 3.5.1.

Real etcd and pyetcd go through the same sequence (three members started, a learner
added right away and again once the cluster is healthy, started, promoted, removed, a
peer stopped); each member log must hold every line of the curated chains below in the
chain's order. The chains are orders etcd itself guarantees (one step causes the
next): the etcd run checks the list, the pyetcd run checks pyetcd.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.framework import Cluster, Member, free_ports, wait_until

from .conftest import MakeCluster

Line = str | re.Pattern[str]

ELECTED = re.compile(r"raft\.node: [0-9a-f]+ elected leader [0-9a-f]+ at term \d+")
BECAME_LEADER = re.compile(r"[0-9a-f]+ became leader at term \d+")

# What the member the membership requests go to must log, chain by chain. Chosen from
# what etcd's own e2e harness waits for ("ready to serve client requests", "published
# local member to cluster through raft", "enabled capabilities for version", "elected
# leader"), what process supervisors and operators grep for (start-up, serving, peer
# up/down), and the membership lines that cluster tooling follows.
CHAINS: list[list[Line]] = [
    [
        "starting an etcd server",
        "starting local member",
        "starting etcd server",
        "now serving peer/client/metrics",
    ],
    # etcd logs "serving peer traffic" from the peer listener's own goroutine, so it may
    # come before or after "now serving peer/client/metrics" (seen both ways in CI).
    ["starting etcd server", "serving peer traffic"],
    ["starting etcd server", "peer became active"],
    ["starting etcd server", "established TCP streaming connection with remote peer"],
    ["starting etcd server", ELECTED, "published local member to cluster through raft"],
    [
        ELECTED,
        "ready to serve client requests",
        "serving client traffic insecurely; this is strongly discouraged!",
    ],
    [
        "set initial cluster version",
        "enabled capabilities for version",
        "rejecting member add request; local member has not been connected to all peers, "
        "reconfigure breaks active quorum",
        "added member",
        "applied a configuration change through raft",
        "promote member",
        "removed member",
        "peer became inactive (message send to peer failed)",
    ],
    ["starting etcd server", "added member", "added member", "added member"],
]

# What the member stopped with SIGTERM logs on its way out.
STOP_CHAIN: list[Line] = [
    "received signal; shutting down",
    "closing etcd server",
    "closed etcd server",
]


def _matches(line: Line, msg: str) -> bool:
    return msg == line if isinstance(line, str) else line.fullmatch(msg) is not None


def _msgs(m: Member) -> list[str]:
    out = []
    for text in m.log_text().splitlines():
        try:
            rec = json.loads(text)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("msg"), str):
            out.append(rec["msg"])
    return out


def _missing(chain: list[Line], msgs: list[str]) -> Line | None:
    """The first line of ``chain`` not found, in order, in ``msgs`` (None: all are)."""
    i = 0
    for line in chain:
        while i < len(msgs) and not _matches(line, msgs[i]):
            i += 1
        if i == len(msgs):
            return line
        i += 1
    return None


def _ctl(c: Cluster, m: Member, *args: str) -> subprocess.CompletedProcess[str]:
    return c.etcdctl(*args, endpoints=m.endpoint, check=False)


def _retry(c: Cluster, m: Member, *args: str) -> str:
    def ok() -> str | None:
        out = _ctl(c, m, *args)
        return out.stdout if out.returncode == 0 else None

    return wait_until(f"etcdctl {' '.join(args)}", ok, 30, step=0.2)


@pytest.mark.parametrize("kind", ["etcd", "pyetcd"])
def test_log_lines_in_etcds_order(make_cluster: MakeCluster, kind: str) -> None:
    c = make_cluster(kind)
    at = c.members[-1]  # started last: its peers have been up the shortest time
    cp, pp = free_ports(2)
    m4 = c.new_member("infra4", cp, pp)
    add = ("member", "add", "infra4", f"--peer-urls={m4.peer_url}", "--learner")
    first = _ctl(c, at, *add)
    assert first.returncode != 0 and "etcdserver: unhealthy cluster" in first.stderr
    out = _retry(c, at, *add)
    match = re.search(r"Member +([0-9a-f]+) added", out)
    assert match, out
    new_id = match.group(1)
    env = dict(re.findall(r'^(ETCD_[A-Z_]+)="(.*)"$', out, re.MULTILINE))
    m4.initial_cluster, m4.initial_cluster_state = env["ETCD_INITIAL_CLUSTER"], "existing"
    m4.start()
    c.members.append(m4)
    _retry(c, at, "member", "promote", new_id)
    _retry(c, at, "member", "remove", new_id)
    assert m4.proc is not None
    m4.proc.wait(timeout=20)
    c.members.remove(m4)
    stopped = c.members[1]
    stopped.stop()
    wait_until(
        "the stopped peer seen inactive",
        lambda: "peer became inactive (message send to peer failed)" in _msgs(at),
        20,
    )

    msgs = _msgs(at)
    for chain in CHAINS:
        missing = _missing(chain, msgs)
        assert missing is None, (
            f"{kind} {at.name}: {missing!r} missing or out of order in {chain}; "
            f"its log's msgs:\n" + "\n".join(msgs)
        )
    missing = _missing(STOP_CHAIN, _msgs(stopped))
    assert missing is None, f"{kind} {stopped.name}: {missing!r} missing or out of order"
    everyone = [msg for m in c.members for msg in _msgs(m)]
    assert any(BECAME_LEADER.fullmatch(msg) for msg in everyone)
    assert all(any(ELECTED.fullmatch(msg) for msg in _msgs(m)) for m in c.members)
