"""What the store counts for etcd's metrics (pyetcd/mvcc/metrics.py): each backend
commit observed once, operations counted as etcd counts them, counts that survive a
store reopened with the same MvccMetrics."""

from __future__ import annotations

from pathlib import Path

from pyetcd.mvcc import KVStore
from pyetcd.mvcc.backend import Backend
from pyetcd.mvcc.metrics import MvccMetrics


class Recorder:
    def __init__(self) -> None:
        self.seen: list[float] = []

    def observe(self, amount: float) -> None:
        self.seen.append(amount)


def test_each_backend_commit_is_observed_once(tmp_path: Path) -> None:
    commits = Recorder()
    be = Backend(str(tmp_path / "db"), commit_seconds=commits)
    before = len(commits.seen)
    for i in range(3):
        be.put("meta", b"k%d" % i, b"v")
        be.commit()
    assert len(commits.seen) - before == 3
    assert all(0 <= s < 10 for s in commits.seen)
    be.close()


def test_txn_counts_only_writes_of_more_than_one_operation(tmp_path: Path) -> None:
    m = MvccMetrics()
    kv = KVStore(str(tmp_path / "db"), metrics=m)
    kv.begin_write()
    kv.write_put(b"a", b"1", 0)
    kv.end_write()
    assert (m.puts, m.txns, m.put_bytes) == (1, 0, 2)
    kv.begin_write()
    kv.write_put(b"b", b"22", 0)
    kv.write_delete_range(b"a", None)
    kv.end_write()
    assert (m.puts, m.deletes, m.txns, m.put_bytes) == (2, 1, 1, 5)
    kv.close()
    # A store reopened (as after a snapshot install) keeps counting into the same object.
    again = KVStore(str(tmp_path / "db"), metrics=m)
    again.begin_write()
    again.write_put(b"c", b"3", 0)
    again.end_write()
    assert m.puts == 3
    again.close()


def test_lessor_counts_grants_renewals_revokes_and_ttls(tmp_path: Path) -> None:
    ttls = Recorder()
    m = MvccMetrics(lease_ttl=ttls)
    kv = KVStore(str(tmp_path / "db"), metrics=m)
    kv.lessor.grant(1, 30)
    kv.lessor.promote(0.0)
    kv.lessor.renew(1)
    kv.lease_revoke(1)
    assert (m.leases_granted, m.leases_renewed, m.leases_revoked) == (1, 1, 1)
    assert ttls.seen == [30]
    kv.close()
