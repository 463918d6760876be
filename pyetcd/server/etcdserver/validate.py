"""Request checks etcd makes before proposing a request (v3rpc's key checks).

The KV server makes these before a request enters Raft; apply does not repeat
them, so apply stays deterministic and cheap.
"""

from __future__ import annotations

from pyetcd.mvcc.errors import (
    DuplicateKeyError,
    EmptyKeyError,
    KeyNotFoundError,
    LeaseProvidedError,
    TooManyOpsError,
    ValueProvidedError,
)
from pyetcd.mvcc.types import (
    DeleteRangeRequest,
    PutRequest,
    RangeRequest,
    RequestOp,
    TxnRequest,
)

__all__ = [
    "DEFAULT_MAX_TXN_OPS",
    "check_delete_request",
    "check_intervals",
    "check_put_request",
    "check_range_request",
    "check_txn_request",
]

DEFAULT_MAX_TXN_OPS = 128


def check_range_request(r: RangeRequest) -> None:
    """Raises EmptyKeyError for an empty key."""
    if not r.key:
        raise EmptyKeyError()


def check_put_request(r: PutRequest) -> None:
    """Raises EmptyKeyError, ValueProvidedError or LeaseProvidedError as etcd does."""
    if not r.key:
        raise EmptyKeyError()
    if r.ignore_value and r.value:
        raise ValueProvidedError()
    if r.ignore_lease and r.lease != 0:
        raise LeaseProvidedError()


def check_delete_request(r: DeleteRangeRequest) -> None:
    """Raises EmptyKeyError for an empty key."""
    if not r.key:
        raise EmptyKeyError()


def _check_request_op(op: RequestOp, max_txn_ops: int) -> None:
    if op.request_range is not None:
        check_range_request(op.request_range)
    elif op.request_put is not None:
        check_put_request(op.request_put)
    elif op.request_delete_range is not None:
        check_delete_request(op.request_delete_range)
    elif op.request_txn is not None:
        _check_txn(op.request_txn, max_txn_ops)
    else:
        raise KeyNotFoundError()  # an empty RequestOp, as etcd answers it


def _check_txn(r: TxnRequest, max_txn_ops: int) -> None:
    opc = max(len(r.compare), len(r.success), len(r.failure))
    if opc > max_txn_ops:
        raise TooManyOpsError()
    for c in r.compare:
        if not c.key:
            raise EmptyKeyError()
    # nested txns share the budget left by this level
    for op in r.success:
        _check_request_op(op, max_txn_ops - opc)
    for op in r.failure:
        _check_request_op(op, max_txn_ops - opc)


def check_txn_request(r: TxnRequest, max_txn_ops: int = DEFAULT_MAX_TXN_OPS) -> None:
    """All of etcd's Txn checks: op counts, empty keys, then put/delete overlaps.

    Raises:
        TooManyOpsError, EmptyKeyError, ValueProvidedError, LeaseProvidedError,
        KeyNotFoundError (empty op), DuplicateKeyError.
    """
    _check_txn(r, max_txn_ops)
    check_intervals(r.success)
    check_intervals(r.failure)


# A delete interval is (begin, end) with end b"" meaning "no upper bound";
# a single-key delete of k is (k, k + b"\0"), as etcd's affine intervals.
_Interval = tuple[bytes, bytes]


def _delete_interval(key: bytes, range_end: bytes) -> _Interval:
    return (key, range_end) if range_end else (key, key + b"\x00")


def _hits(dels: list[_Interval], key: bytes) -> bool:
    return any(b <= key and (e == b"" or key < e) for b, e in dels)


def check_intervals(ops: tuple[RequestOp, ...]) -> tuple[set[bytes], list[_Interval]]:
    """etcd's checkIntervals: no key put twice, nor put where a delete reaches.

    Puts in the success and failure branches of one nested txn may overlap
    (only one branch runs). Returns this level's (puts, deletes).

    Raises:
        DuplicateKeyError: a forbidden overlap.
    """
    dels = [
        _delete_interval(op.request_delete_range.key, op.request_delete_range.range_end)
        for op in ops
        if op.request_delete_range is not None
    ]
    puts: set[bytes] = set()
    for op in ops:
        if op.request_txn is None:
            continue
        puts_then, dels_then = check_intervals(op.request_txn.success)
        puts_else, dels_else = check_intervals(op.request_txn.failure)
        for k in puts_then:
            if k in puts or _hits(dels, k):
                raise DuplicateKeyError()
            puts.add(k)
        for k in puts_else:
            if (k in puts and k not in puts_then) or _hits(dels, k):
                raise DuplicateKeyError()
            puts.add(k)
        dels.extend(dels_then)
        dels.extend(dels_else)
    for op in ops:
        if op.request_put is None:
            continue
        k = op.request_put.key
        if k in puts or _hits(dels, k):
            raise DuplicateKeyError()
        puts.add(k)
    return puts, dels
