"""Fixed edge cases, byte-level and limit-level, on etcd and pyetcd."""

from __future__ import annotations

import grpc
import pytest
from conformance_client import Conformance
from conformance_ops import (
    Cmp,
    Compact,
    Delete,
    HashKV,
    LeaseGrant,
    LeaseLeases,
    LeaseRevoke,
    LeaseTTL,
    Op,
    Put,
    Range,
    Txn,
    prefix_end,
)
from conformance_run import run_program

from pyetcd.pb import rpc_pb2

CT = rpc_pb2.Compare
MAX_REQUEST_BYTES = 1_572_864  # etcd's default --max-request-bytes

BINARY_KEYS = [b"\x00", b"\x00\x00", b"\x00\xff", b"\xff", b"\xff\x00", b"\xff\xff", b"a\xff\xff"]


@pytest.mark.parametrize(
    "op",
    [
        Put(b""),
        Range(b""),
        Range(b"", b"\x00"),
        Delete(b""),
        Delete(b"", b"\x00"),
        Txn(compare=(Cmp(b"", CT.VERSION, CT.EQUAL, 0),)),
        Txn(success=(Put(b""),)),
        Txn(failure=(Range(b""),)),
    ],
    ids=repr,
)
def test_empty_key_is_refused(conf: Conformance, op: Op) -> None:
    run_program(conf, [op])


def test_empty_values(conf: Conformance) -> None:
    run_program(
        conf,
        [
            Put(b"a", b""),
            Range(b"a"),
            Put(b"a", b"", prev_kv=True),
            Range(b"a", b"\x00", keys_only=True),
            Txn((Cmp(b"a", CT.VALUE, CT.EQUAL, b""),), (Range(b"a"),), ()),
            Txn((Cmp(b"b", CT.VALUE, CT.EQUAL, b""),), (), (Range(b"b"),)),
        ],
    )


def test_binary_keys_and_prefix_ends(conf: Conformance) -> None:
    ops: list[Op] = [Put(k, k) for k in BINARY_KEYS]
    for k in BINARY_KEYS:
        ops += [Range(k, prefix_end(k)), Range(k, b"\x00"), Range(k, k + b"\x00"), Range(k)]
    ops += [Range(b"\x00", b"\x00", count_only=True), Range(b"\xff", b"\x00", sort_order=2)]
    ops += [Delete(b"\xff", prefix_end(b"\xff"), prev_kv=True), Range(b"\x00", b"\x00")]
    run_program(conf, ops)


def test_inverted_and_degenerate_ranges(conf: Conformance) -> None:
    ops: list[Op] = [Put(b"a"), Put(b"b"), Put(b"c")]
    ops += [Range(b"b", b"a"), Range(b"b", b"b"), Delete(b"c", b"b"), Range(b"a", b"\x00\x00")]
    ops += [Txn((Cmp(b"c", CT.VERSION, CT.EQUAL, 1, b"a"),), (Range(b"a", b"\x00"),), ())]
    run_program(conf, ops)


def test_negative_limit_and_revisions(conf: Conformance) -> None:
    ops: list[Op] = [Put(b"a"), Put(b"b")]
    ops += [Range(b"a", b"\x00", limit=-1), Range(b"a", revision=-(10**6)), Compact(-(10**6))]
    ops += [HashKV(-(10**6)), Txn(success=(Range(b"a", revision=-(10**6)),))]
    run_program(conf, ops)


@pytest.mark.parametrize("size", [1 << 10, 32 << 10, 1 << 20])
def test_long_keys(conf: Conformance, size: int) -> None:
    key = b"k" * size
    run_program(conf, [Put(key, b"v"), Range(key), Range(key[:-1], b"\x00", keys_only=True)])


def test_request_over_grpc_receive_limit_code(conf: Conformance) -> None:
    # etcd's gRPC receive limit is max-request-bytes + 512 KiB; the status code
    # agrees, and so does the message text (checked by the test below)
    a, b = conf.raw("KV", "Put", Put(b"k", b"v" * (2 << 20)).request(0))
    assert isinstance(a, grpc.RpcError) and isinstance(b, grpc.RpcError)
    assert a.code() == b.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_regression_grpc_receive_limit_message(conf: Conformance) -> None:
    run_program(conf, [Put(b"k", b"v" * (2 << 20))])


@pytest.mark.parametrize("slack", [200, 40, 30, 20, 10, 0, -1, -1000])
def test_values_near_max_request_bytes(conf: Conformance, slack: int) -> None:
    # A put's InternalRaftRequest adds a few dozen bytes around the value
    size = MAX_REQUEST_BYTES - slack
    run_program(conf, [Put(b"big", b"x" * size), Range(b"big", count_only=True)])


def test_ignore_value_and_lease(conf: Conformance) -> None:
    ops: list[Op] = [
        Put(b"a", ignore_value=True),
        Put(b"a", b"v", ignore_value=True),
        Put(b"a", lease=1, ignore_lease=True),
        LeaseGrant(1),
        Put(b"a", b"v", lease=1),
        Put(b"a", b"w", ignore_lease=True, prev_kv=True),
        Put(b"a", ignore_value=True, prev_kv=True),
        Put(b"a", ignore_value=True, ignore_lease=True),
        LeaseTTL(1, keys=True),
        Put(b"a", b"z"),
        LeaseTTL(1, keys=True),
        Put(b"b", lease=777),
    ]
    run_program(conf, ops)


def test_txn_limits_and_duplicates(conf: Conformance) -> None:
    many = tuple(Put(b"k%d" % i) for i in range(129))
    ops: list[Op] = [
        Txn(success=many[:128]),
        Txn(success=many),
        Txn(compare=tuple(Cmp(b"k1", CT.VERSION, CT.GREATER, 0) for _ in range(129))),
        Txn(success=(Put(b"a"), Put(b"a"))),
        Txn(success=(Put(b"a"), Delete(b"a"))),
        Txn(success=(Delete(b"a", b"c"), Put(b"b"))),
        Txn(success=(Delete(b"a"), Delete(b"a"))),
        Txn(success=(Put(b"a"), Txn(success=(Put(b"a"),)))),
        Txn(success=(Txn(success=(Put(b"a"),), failure=(Put(b"a"),)),)),
        Txn(success=(Txn(success=(Put(b"a"),)), Txn(failure=(Put(b"a"),)))),
        Txn(success=(Range(b"a"), Range(b"a"), Put(b"b"))),
    ]
    run_program(conf, ops)


def test_txn_error_precedence(conf: Conformance) -> None:
    # etcd checks every put on the chosen path before any range
    ops: list[Op] = [
        Put(b"a", b"1"),
        Txn(success=(Range(b"a", revision=50), Put(b"b", lease=777))),
        Txn(success=(Range(b"a", revision=-1), Put(b"c", ignore_value=True))),
        Txn(success=(Txn(success=(Range(b"a", revision=50),)), Put(b"b", lease=777))),
        Txn(success=(Put(b"b", ignore_lease=True), Put(b"c", lease=777))),
        Txn(success=(Put(b"c", lease=777), Put(b"b", ignore_lease=True))),
    ]
    run_program(conf, ops)


def test_txn_response_headers_and_nesting(conf: Conformance) -> None:
    ops: list[Op] = [
        Txn(success=(Put(b"a", b"1"), Range(b"a"), Delete(b"a", prev_kv=True), Range(b"a"))),
        Txn(success=(Range(b"a"),)),
        Txn(success=(Txn(success=(Range(b"a"),)),)),
        Txn(success=(Txn(success=(Put(b"x"),), failure=(Range(b"y"),)), Range(b"x"))),
        Txn(success=(Delete(b"nothing"),)),
        Txn(
            success=(Put(b"q", prev_kv=True), Txn((Cmp(b"q", CT.VERSION, CT.EQUAL, 1),))),
        ),
    ]
    run_program(conf, ops)


def test_compaction_edges(conf: Conformance) -> None:
    ops: list[Op] = [
        Put(b"a", b"1"),
        Put(b"a", b"2"),
        Delete(b"a"),
        Put(b"a", b"3"),
        Compact(0),
        Compact(5),
        Compact(2, physical=True),
        Range(b"a", revision=1),
        Range(b"a", revision=2),
        Range(b"a", b"\x00", revision=3),
        Compact(2),
        Compact(1),
        HashKV(1),
        HashKV(2),
        HashKV(4),
        HashKV(5),
        Compact(4),
        HashKV(None),
        Range(b"a", revision=3),
        Range(b"a", revision=4),
    ]
    run_program(conf, ops)


def test_compare_targets_on_missing_keys(conf: Conformance) -> None:
    ops: list[Op] = [Put(b"k", b"v")]
    targets: list[tuple[int, int | bytes]] = [
        (CT.VERSION, 0), (CT.CREATE, 0), (CT.MOD, 0), (CT.VALUE, b""), (CT.LEASE, 0)
    ]  # fmt: skip
    for target, operand in targets:
        for result in (CT.EQUAL, CT.GREATER, CT.LESS, CT.NOT_EQUAL):
            cmp = Cmp(b"missing", target, result, operand)
            ops.append(Txn((cmp,), (Range(b"k"),), (Range(b"missing"),)))
            ops.append(Txn((Cmp(b"a", target, result, operand, b"\x00"),), (Range(b"k"),)))
    run_program(conf, ops)


def test_sort_and_limit_every_target(conf: Conformance) -> None:
    ops: list[Op] = [Put(b"c", b"1"), Put(b"a", b"3"), Put(b"b", b"2"), Put(b"a", b"0")]
    ops += [Put(b"d", b"3"), Delete(b"b"), Put(b"b", b"9")]
    for target in range(5):
        for order in range(3):
            for limit in (0, 1, 2, 4):
                ops.append(Range(b"a", b"\x00", limit, None, order, target))
                ops.append(Range(b"a", b"\x00", limit, 3, order, target, keys_only=True))
    run_program(conf, ops)


def test_min_max_filters(conf: Conformance) -> None:
    ops: list[Op] = [Put(b"a"), Put(b"b"), Put(b"a"), Put(b"c"), Put(b"b")]
    for lo, hi in [(2, 4), (3, None), (None, 2), (6, None), (None, 0), (4, 3)]:
        ops.append(Range(b"a", b"\x00", min_mod=lo, max_mod=hi))
        ops.append(Range(b"a", b"\x00", 1, min_create=lo, max_create=hi))
        ops.append(Range(b"a", b"\x00", 1, min_mod=lo, count_only=True))
    run_program(conf, ops)


def test_leases(conf: Conformance) -> None:
    ops: list[Op] = [
        LeaseGrant(1, 60),
        LeaseGrant(1, 60),
        LeaseGrant(2, 9_000_000_000),
        LeaseGrant(3, 9_000_000_001),
        Put(b"a", lease=1),
        Put(b"b", lease=1),
        Put(b"c", lease=2),
        LeaseTTL(1, keys=True),
        LeaseTTL(777, keys=True),
        LeaseLeases(),
        LeaseRevoke(1),
        LeaseRevoke(1),
        LeaseRevoke(777),
        Range(b"a", b"\x00"),
        Put(b"c", b"x"),
        LeaseTTL(2, keys=True),
        LeaseRevoke(2),
        Range(b"a", b"\x00"),
        LeaseLeases(),
    ]
    run_program(conf, ops)


@pytest.mark.parametrize("ttl", [-5, 0, 1, 2, 3])
def test_lease_minimum_ttl(conf: Conformance, ttl: int) -> None:
    run_program(conf, [LeaseGrant(5, ttl), LeaseTTL(5), LeaseRevoke(5)])


@pytest.mark.parametrize("lease_id", [-1, 1 << 62, -(1 << 63)])
def test_lease_unusual_ids(conf: Conformance, lease_id: int) -> None:
    run_program(conf, [LeaseGrant(lease_id), LeaseLeases(), LeaseRevoke(lease_id)])
