"""Every difference the conformance suite found, kept as a fixed example.

Each test is the shrunk program hypothesis reported; the comment says what pyetcd
answered before the fix. Differences whose fix lies outside the files this suite
may change are ``xfail(strict=True)``: they start failing once fixed.
"""

from __future__ import annotations

from conformance_client import Conformance
from conformance_ops import Cmp, Compact, LeaseGrant, LeaseLeases, Op, Put, Range, Txn
from conformance_run import run_program
from conformance_watch import Watch, run_watch_program

from pyetcd.pb import rpc_pb2

CT = rpc_pb2.Compare


def test_regression_txn_checks_puts_before_ranges(conf: Conformance) -> None:
    # pyetcd checked the branch in op order and answered "required revision is a
    # future revision"; etcd checks all puts first: "requested lease not found"
    fails = Cmp(b"\xff", CT.VALUE, CT.EQUAL, b"\x00")
    run_program(conf, [Txn((fails,), (), (Range(b"b", revision=20), Put(b"a", lease=777)))])


def test_regression_watch_future_start_revision(conf: Conformance) -> None:
    # a watcher created with start_revision in the future got events before it
    run_watch_program(conf, [], [Watch(b"a"), Watch(b"a", start=2)], [])


def test_regression_watch_compacted_cancel_response(conf: Conformance) -> None:
    # pyetcd's cancel for a compacted start revision had the current revision in
    # its header and a cancel_reason; etcd sends header revision 0 and no reason
    run_watch_program(
        conf, [Put(b"a", b"1"), Put(b"a", b"2"), Compact(2)], [Watch(b"a", start=1)], []
    )


def test_regression_watch_empty_range_refused(conf: Conformance) -> None:
    # pyetcd created watchers for key >= range_end; etcd refuses them with
    # created+canceled, watch_id -1, "mvcc: watcher range is empty"
    run_watch_program(conf, [], [Watch(b"b", b"a"), Watch(b"b", b"b"), Watch(b"a")], [])


def test_regression_watch_duplicate_id_message(conf: Conformance) -> None:
    # pyetcd said "mvcc: watch id 7 already in use"
    run_watch_program(conf, [], [Watch(b"a", watch_id=7), Watch(b"b", watch_id=7)], [])


def test_regression_hash_kv_negative_revision(conf: Conformance) -> None:
    # pyetcd failed with UNKNOWN "struct.error"; etcd hashes no records and answers
    from conformance_ops import HashKV

    ops: list[Op] = [Put(b"a"), HashKV(-(10**6)), HashKV(None)]
    run_program(conf, ops)


def test_regression_lease_leases_expiry_order(conf: Conformance) -> None:
    ops: list[Op] = [LeaseGrant(1, 3600), LeaseGrant(2, 60), LeaseGrant(3, 100_000)]
    run_program(conf, ops)
    a, b = conf.raw("Lease", "LeaseLeases", LeaseLeases().request(0))
    assert [x.ID for x in a.leases] == [2, 1, 3]
    assert [x.ID for x in b.leases] == [2, 1, 3]
