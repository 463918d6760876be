"""Absolute state: status, members, alarms, server-chosen IDs and restarts.

These use ``fresh_conf`` (both servers restarted on empty data dirs) where the
clean-slate reset cannot reproduce the state under test.
"""

from __future__ import annotations

from conformance_client import Conformance, normalize
from conformance_ops import Compact, Delete, HashKV, LeaseGrant, LeaseTTL, Op, Put, Range
from conformance_run import run_program

from pyetcd.pb import rpc_pb2


def test_fresh_store_revision_one(fresh_conf: Conformance) -> None:
    # revision 1, never compacted: compact_revision -1 and every edge around it
    ops: list[Op] = [HashKV(None), Range(b"a"), Range(b"a", revision=1), Range(b"a", revision=2)]
    ops += [HashKV(1), HashKV(2), Compact(1), HashKV(None), Compact(1), Compact(0), Put(b"a")]
    ops += [Range(b"a", revision=1), HashKV(1)]
    run_program(fresh_conf, ops, reset=False)


def test_status_after_boot(fresh_conf: Conformance) -> None:
    fresh_conf.check("Maintenance", "Status", rpc_pb2.StatusRequest())
    fresh_conf.check("KV", "Put", rpc_pb2.PutRequest(key=b"a", value=b"b"))
    fresh_conf.check("Maintenance", "Status", rpc_pb2.StatusRequest())


def test_status_member_and_cluster_ids(conf: Conformance) -> None:
    a, b = conf.check("Maintenance", "Status", rpc_pb2.StatusRequest())
    assert a.leader == b.leader == a.header.member_id


def test_member_list(conf: Conformance) -> None:
    a, b = conf.check("Cluster", "MemberList", rpc_pb2.MemberListRequest())
    for resp, server in zip((a, b), conf.pair.servers, strict=True):
        urls = [list(m.clientURLs) for m in resp.members]
        assert urls == [[f"http://{server.endpoint}"]]


def test_alarm_list_empty(conf: Conformance) -> None:
    conf.check("Maintenance", "Alarm", rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.GET))


def test_hash_kv_and_defragment(conf: Conformance) -> None:
    run_program(conf, [Put(b"a"), Put(b"b"), Delete(b"a"), HashKV(None), HashKV(2)])
    conf.raw("Maintenance", "Defragment", rpc_pb2.DefragmentRequest())  # see the xfail below
    run_program(conf, [HashKV(None), HashKV(2), Range(b"a", b"\x00")], reset=False)


def test_regression_defragment_response_has_no_header(conf: Conformance) -> None:
    conf.check("Maintenance", "Defragment", rpc_pb2.DefragmentRequest())


def test_server_chosen_lease_ids(conf: Conformance) -> None:
    # IDs are time-based, so only their shape can agree: positive, and the low 16
    # bits of the member ID in the top bits (the sign bit masked off)
    a, b = conf.raw("Lease", "LeaseGrant", rpc_pb2.LeaseGrantRequest(TTL=60))
    ids = []
    for resp in (a, b):
        assert isinstance(resp, rpc_pb2.LeaseGrantResponse)
        assert resp.ID > 0 and resp.TTL == 60
        assert resp.header.member_id & 0x7FFF == resp.ID >> 48
        ids.append(resp.ID)
    ea, eb = (normalize(x, exclude=("etcdserverpb.LeaseGrantResponse.ID",)) for x in (a, b))
    assert ea == eb


def test_restart_keeps_state(fresh_conf: Conformance) -> None:
    ops: list[Op] = [Put(b"a", b"1"), Put(b"b", b"2"), Put(b"a", b"3"), Delete(b"b")]
    ops += [LeaseGrant(9, 3600), Put(b"c", lease=9), Compact(3)]
    run_program(fresh_conf, ops, reset=False)
    fresh_conf.pair.restart(fresh=False)
    after: list[Op] = [Range(b"\x00", b"\x00"), Range(b"a", revision=3), Range(b"a", revision=2)]
    after += [HashKV(None), LeaseTTL(9, keys=True), Put(b"d"), Range(b"\x00", b"\x00")]
    run_program(fresh_conf, after, reset=False)
