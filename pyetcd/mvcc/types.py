"""Plain request/response values of the MVCC store.

Field names and enum values mirror etcd's protobuf messages (``etcdserverpb``
and ``mvccpb``) one to one, so the API layer maps between protobuf and these
types field by field. A protobuf ``oneof`` becomes several optional fields of
which at most one is set.

Range ends follow etcd's wire conventions: ``b""`` means "just ``key``",
``b"\\x00"`` means "every key >= ``key``", anything else is an exclusive end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

__all__ = [
    "CompactionRequest",
    "CompactionResponse",
    "Compare",
    "CompareResult",
    "CompareTarget",
    "DeleteRangeRequest",
    "DeleteRangeResponse",
    "Event",
    "EventType",
    "KeyValue",
    "PutRequest",
    "PutResponse",
    "RangeRequest",
    "RangeResponse",
    "RequestOp",
    "ResponseHeader",
    "ResponseOp",
    "SortOrder",
    "SortTarget",
    "TxnRequest",
    "TxnResponse",
]


class EventType(IntEnum):
    """mvccpb.Event.EventType."""

    PUT = 0
    DELETE = 1


class SortOrder(IntEnum):
    """etcdserverpb.RangeRequest.SortOrder."""

    NONE = 0
    ASCEND = 1
    DESCEND = 2


class SortTarget(IntEnum):
    """etcdserverpb.RangeRequest.SortTarget."""

    KEY = 0
    VERSION = 1
    CREATE = 2
    MOD = 3
    VALUE = 4


class CompareResult(IntEnum):
    """etcdserverpb.Compare.CompareResult."""

    EQUAL = 0
    GREATER = 1
    LESS = 2
    NOT_EQUAL = 3


class CompareTarget(IntEnum):
    """etcdserverpb.Compare.CompareTarget."""

    VERSION = 0
    CREATE = 1
    MOD = 2
    VALUE = 3
    LEASE = 4


@dataclass(frozen=True, slots=True)
class KeyValue:
    """mvccpb.KeyValue: one revision of one key.

    A tombstone (the record a delete writes) has only ``key`` and, in watch
    events, ``mod_revision`` set; ``create_revision == 0`` marks it.
    """

    key: bytes
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    value: bytes = b""
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Event:
    """mvccpb.Event: one change seen by a watcher."""

    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class ResponseHeader:
    """etcdserverpb.ResponseHeader; the store fills only ``revision``."""

    cluster_id: int = 0
    member_id: int = 0
    revision: int = 0
    raft_term: int = 0


@dataclass(frozen=True, slots=True)
class RangeRequest:
    """etcdserverpb.RangeRequest."""

    key: bytes
    range_end: bytes = b""
    limit: int = 0
    revision: int = 0
    sort_order: SortOrder = SortOrder.NONE
    sort_target: SortTarget = SortTarget.KEY
    serializable: bool = False
    keys_only: bool = False
    count_only: bool = False
    min_mod_revision: int = 0
    max_mod_revision: int = 0
    min_create_revision: int = 0
    max_create_revision: int = 0


@dataclass(frozen=True, slots=True)
class RangeResponse:
    """etcdserverpb.RangeResponse.

    ``revs``, not a protobuf field: the store revision (main, sub) each of ``kvs`` was
    read at, when they are the stored records as read (empty otherwise, e.g. keys
    only): the key under which the store's read cache may hold their wire encoding.
    """

    header: ResponseHeader
    kvs: tuple[KeyValue, ...] = ()
    more: bool = False
    count: int = 0
    revs: tuple[tuple[int, int], ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class PutRequest:
    """etcdserverpb.PutRequest."""

    key: bytes
    value: bytes = b""
    lease: int = 0
    prev_kv: bool = False
    ignore_value: bool = False
    ignore_lease: bool = False


@dataclass(frozen=True, slots=True)
class PutResponse:
    """etcdserverpb.PutResponse; ``prev_kv`` only when asked for and present."""

    header: ResponseHeader
    prev_kv: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class DeleteRangeRequest:
    """etcdserverpb.DeleteRangeRequest."""

    key: bytes
    range_end: bytes = b""
    prev_kv: bool = False


@dataclass(frozen=True, slots=True)
class DeleteRangeResponse:
    """etcdserverpb.DeleteRangeResponse."""

    header: ResponseHeader
    deleted: int = 0
    prev_kvs: tuple[KeyValue, ...] = ()


@dataclass(frozen=True, slots=True)
class Compare:
    """etcdserverpb.Compare.

    ``version``, ``create_revision``, ``mod_revision``, ``value`` and ``lease``
    are the protobuf ``target_union`` oneof: only the one named by ``target``
    is read.
    """

    key: bytes
    result: CompareResult = CompareResult.EQUAL
    target: CompareTarget = CompareTarget.VERSION
    version: int = 0
    create_revision: int = 0
    mod_revision: int = 0
    value: bytes = b""
    lease: int = 0
    range_end: bytes = b""


@dataclass(frozen=True, slots=True)
class RequestOp:
    """etcdserverpb.RequestOp: exactly one field is set (a protobuf oneof)."""

    request_range: RangeRequest | None = None
    request_put: PutRequest | None = None
    request_delete_range: DeleteRangeRequest | None = None
    request_txn: TxnRequest | None = None


@dataclass(frozen=True, slots=True)
class TxnRequest:
    """etcdserverpb.TxnRequest."""

    compare: tuple[Compare, ...] = ()
    success: tuple[RequestOp, ...] = ()
    failure: tuple[RequestOp, ...] = ()


@dataclass(frozen=True, slots=True)
class ResponseOp:
    """etcdserverpb.ResponseOp: exactly one field is set (a protobuf oneof)."""

    response_range: RangeResponse | None = None
    response_put: PutResponse | None = None
    response_delete_range: DeleteRangeResponse | None = None
    response_txn: TxnResponse | None = None


@dataclass(frozen=True, slots=True)
class TxnResponse:
    """etcdserverpb.TxnResponse."""

    header: ResponseHeader
    succeeded: bool = False
    responses: tuple[ResponseOp, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class CompactionRequest:
    """etcdserverpb.CompactionRequest."""

    revision: int
    physical: bool = False


@dataclass(frozen=True, slots=True)
class CompactionResponse:
    """etcdserverpb.CompactionResponse."""

    header: ResponseHeader
