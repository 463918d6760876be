"""Operations as small values, and hypothesis strategies that generate them.

Revisions inside operations are offsets from the example's clean-slate revision
``base`` (``Rev(k)`` is ``base + k`` on the wire; offset 0 is the compaction
revision, negative offsets are compacted, offsets past the last write are in the
future). ``None`` sends 0 ("current"). Leases are client-chosen IDs from a small
pool, so both servers use the same IDs.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import Message
from hypothesis import strategies as st

from pyetcd.pb import rpc_pb2

__all__ = [
    "KEYS",
    "LEASE_IDS",
    "Compact",
    "Delete",
    "HashKV",
    "LeaseGrant",
    "LeaseLeases",
    "LeaseRevoke",
    "LeaseTTL",
    "Op",
    "Put",
    "Range",
    "Txn",
    "prefix_end",
]

# Keys with byte-level edges: \x00 and \xff inside and at the end, prefixes of
# each other, a key that is all \xff (its prefix end is "\0", i.e. no bound).
KEYS: tuple[bytes, ...] = (
    b"a",
    b"a\x00",
    b"a\xff",
    b"ab",
    b"abc",
    b"b",
    b"b\x00\xff",
    b"\x00",
    b"\x00\x00",
    b"\xff",
    b"\xff\xff",
    b"z" * 300,
)
VALUES: tuple[bytes, ...] = (b"", b"v", b"\x00", b"\xff\x00", b"value-2", b"x" * 2000)
# Client-chosen lease IDs; 777 is never granted (a lease that does not exist).
LEASE_IDS: tuple[int, ...] = (1, 2, 0x7FFF_FFFF_FFFF_FFFF)
NO_SUCH_LEASE = 777


def prefix_end(key: bytes) -> bytes:
    """clientv3.GetPrefixRangeEnd: bump the last byte below 0xff; all 0xff -> "\\0"."""
    b = bytearray(key)
    for i in range(len(b) - 1, -1, -1):
        if b[i] < 0xFF:
            b[i] += 1
            return bytes(b[: i + 1])
    return b"\x00"


def rev(offset: int | None, base: int) -> int:
    return 0 if offset is None else base + offset


class Op:
    """One request to send to both servers."""

    service = "KV"
    method = ""

    def request(self, base: int) -> Message:
        raise NotImplementedError


@dataclass(frozen=True)
class Put(Op):
    key: bytes
    value: bytes = b""
    lease: int = 0
    prev_kv: bool = False
    ignore_value: bool = False
    ignore_lease: bool = False
    method = "Put"

    def request(self, base: int) -> rpc_pb2.PutRequest:
        return rpc_pb2.PutRequest(
            key=self.key,
            value=self.value,
            lease=self.lease,
            prev_kv=self.prev_kv,
            ignore_value=self.ignore_value,
            ignore_lease=self.ignore_lease,
        )


@dataclass(frozen=True)
class Range(Op):
    key: bytes
    range_end: bytes = b""
    limit: int = 0
    revision: int | None = None
    sort_order: int = 0
    sort_target: int = 0
    serializable: bool = False
    keys_only: bool = False
    count_only: bool = False
    min_mod: int | None = None
    max_mod: int | None = None
    min_create: int | None = None
    max_create: int | None = None
    method = "Range"

    def request(self, base: int) -> rpc_pb2.RangeRequest:
        return rpc_pb2.RangeRequest(
            key=self.key,
            range_end=self.range_end,
            limit=self.limit,
            revision=rev(self.revision, base),
            sort_order=self.sort_order,  # type: ignore[arg-type]
            sort_target=self.sort_target,  # type: ignore[arg-type]
            serializable=self.serializable,
            keys_only=self.keys_only,
            count_only=self.count_only,
            min_mod_revision=rev(self.min_mod, base),
            max_mod_revision=rev(self.max_mod, base),
            min_create_revision=rev(self.min_create, base),
            max_create_revision=rev(self.max_create, base),
        )


@dataclass(frozen=True)
class Delete(Op):
    key: bytes
    range_end: bytes = b""
    prev_kv: bool = False
    method = "DeleteRange"

    def request(self, base: int) -> rpc_pb2.DeleteRangeRequest:
        return rpc_pb2.DeleteRangeRequest(
            key=self.key, range_end=self.range_end, prev_kv=self.prev_kv
        )


@dataclass(frozen=True)
class Cmp:
    key: bytes
    target: int  # Compare.CompareTarget
    result: int  # Compare.CompareResult
    operand: int | bytes  # version, relative revision, value or lease
    range_end: bytes = b""

    def pb(self, base: int) -> rpc_pb2.Compare:
        c = rpc_pb2.Compare(key=self.key, target=self.target, result=self.result)  # type: ignore[arg-type]
        c.range_end = self.range_end
        t = rpc_pb2.Compare
        if self.target == t.VALUE:
            assert isinstance(self.operand, bytes)
            c.value = self.operand
        elif self.target == t.VERSION:
            c.version = int(self.operand)
        elif self.target == t.CREATE:
            c.create_revision = base + int(self.operand)
        elif self.target == t.MOD:
            c.mod_revision = base + int(self.operand)
        else:
            c.lease = int(self.operand)
        return c


@dataclass(frozen=True)
class Txn(Op):
    compare: tuple[Cmp, ...] = ()
    success: tuple[Op, ...] = ()
    failure: tuple[Op, ...] = ()
    method = "Txn"

    def request(self, base: int) -> rpc_pb2.TxnRequest:
        return rpc_pb2.TxnRequest(
            compare=[c.pb(base) for c in self.compare],
            success=[_request_op(op, base) for op in self.success],
            failure=[_request_op(op, base) for op in self.failure],
        )


def _request_op(op: Op, base: int) -> rpc_pb2.RequestOp:
    if isinstance(op, Range):
        return rpc_pb2.RequestOp(request_range=op.request(base))
    if isinstance(op, Put):
        return rpc_pb2.RequestOp(request_put=op.request(base))
    if isinstance(op, Delete):
        return rpc_pb2.RequestOp(request_delete_range=op.request(base))
    assert isinstance(op, Txn)
    return rpc_pb2.RequestOp(request_txn=op.request(base))


@dataclass(frozen=True)
class Compact(Op):
    revision: int
    physical: bool = False
    method = "Compact"

    def request(self, base: int) -> rpc_pb2.CompactionRequest:
        return rpc_pb2.CompactionRequest(revision=base + self.revision, physical=self.physical)


@dataclass(frozen=True)
class LeaseGrant(Op):
    id: int
    ttl: int = 3600
    service = "Lease"
    method = "LeaseGrant"

    def request(self, base: int) -> rpc_pb2.LeaseGrantRequest:
        return rpc_pb2.LeaseGrantRequest(ID=self.id, TTL=self.ttl)


@dataclass(frozen=True)
class LeaseRevoke(Op):
    id: int
    service = "Lease"
    method = "LeaseRevoke"

    def request(self, base: int) -> rpc_pb2.LeaseRevokeRequest:
        return rpc_pb2.LeaseRevokeRequest(ID=self.id)


@dataclass(frozen=True)
class LeaseTTL(Op):
    id: int
    keys: bool = False
    service = "Lease"
    method = "LeaseTimeToLive"

    def request(self, base: int) -> rpc_pb2.LeaseTimeToLiveRequest:
        return rpc_pb2.LeaseTimeToLiveRequest(ID=self.id, keys=self.keys)


@dataclass(frozen=True)
class LeaseLeases(Op):
    service = "Lease"
    method = "LeaseLeases"

    def request(self, base: int) -> rpc_pb2.LeaseLeasesRequest:
        return rpc_pb2.LeaseLeasesRequest()


@dataclass(frozen=True)
class HashKV(Op):
    revision: int | None = None
    service = "Maintenance"
    method = "HashKV"

    def request(self, base: int) -> rpc_pb2.HashKVRequest:
        return rpc_pb2.HashKVRequest(revision=rev(self.revision, base))


# -- strategies ------------------------------------------------------------------------------

keys = st.sampled_from(KEYS)
values = st.sampled_from(VALUES)
leases = st.sampled_from((0, 0, 0, *LEASE_IDS, NO_SUCH_LEASE))
rel_revs = st.none() | st.integers(min_value=-2, max_value=14)


@st.composite
def range_ends(draw: st.DrawFn, key: bytes) -> bytes:
    """Every range_end form: one key, from-key, prefix end, key+\\0, any other key."""
    return draw(
        st.sampled_from((b"", b"\x00", prefix_end(key), key + b"\x00")) | st.sampled_from(KEYS)
    )


@st.composite
def puts(draw: st.DrawFn) -> Put:
    ignore_value = draw(st.booleans()) if draw(st.integers(0, 4)) == 0 else False
    ignore_lease = draw(st.booleans()) if draw(st.integers(0, 4)) == 0 else False
    return Put(
        key=draw(keys),
        # ignore_value with a value is an error; make both forms possible
        value=b"" if ignore_value and draw(st.booleans()) else draw(values),
        lease=0 if ignore_lease and draw(st.booleans()) else draw(leases),
        prev_kv=draw(st.booleans()),
        ignore_value=ignore_value,
        ignore_lease=ignore_lease,
    )


@st.composite
def ranges(draw: st.DrawFn) -> Range:
    key = draw(keys)
    filters = draw(st.booleans())
    return Range(
        key=key,
        range_end=draw(range_ends(key)),
        limit=draw(st.sampled_from((0, 0, 1, 2, 3, -1))),
        revision=draw(rel_revs),
        sort_order=draw(st.sampled_from((0, 0, 1, 2))),
        sort_target=draw(st.sampled_from((0, 0, 1, 2, 3, 4))),
        serializable=draw(st.booleans()),
        keys_only=draw(st.booleans()),
        count_only=draw(st.sampled_from((False, False, True))),
        min_mod=draw(rel_revs) if filters else None,
        max_mod=draw(rel_revs) if filters else None,
        min_create=draw(rel_revs) if filters else None,
        max_create=draw(rel_revs) if filters else None,
    )


@st.composite
def deletes(draw: st.DrawFn) -> Delete:
    key = draw(keys)
    return Delete(
        key=key,
        range_end=draw(
            st.sampled_from((b"", b"", b"\x00", prefix_end(key))) | st.sampled_from(KEYS)
        ),
        prev_kv=draw(st.booleans()),
    )


_CT = rpc_pb2.Compare


@st.composite
def compares(draw: st.DrawFn) -> Cmp:
    key = draw(keys)
    target = draw(st.sampled_from((_CT.VERSION, _CT.CREATE, _CT.MOD, _CT.VALUE, _CT.LEASE)))
    operand: int | bytes
    if target == _CT.VALUE:
        operand = draw(values)
    elif target == _CT.VERSION:
        operand = draw(st.integers(0, 3))
    elif target == _CT.LEASE:
        operand = draw(leases)
    else:
        operand = draw(st.integers(-1, 8))
    return Cmp(
        key=key,
        target=target,
        result=draw(st.sampled_from((_CT.EQUAL, _CT.GREATER, _CT.LESS, _CT.NOT_EQUAL))),
        operand=operand,
        range_end=draw(st.sampled_from((b"", b"", b"", b"\x00", prefix_end(key)))),
    )


def txns(depth: int = 2) -> st.SearchStrategy[Txn]:
    leaf: st.SearchStrategy[Op] = st.one_of(puts(), ranges(), deletes())
    op = leaf if depth <= 0 else st.one_of(leaf, leaf, txns(depth - 1))
    return st.builds(
        Txn,
        compare=st.lists(compares(), max_size=3).map(tuple),
        success=st.lists(op, max_size=3).map(tuple),
        failure=st.lists(op, max_size=3).map(tuple),
    )


compacts = st.builds(Compact, revision=st.integers(-1, 12), physical=st.booleans())
lease_grants = st.builds(
    LeaseGrant,
    id=st.sampled_from(LEASE_IDS),
    ttl=st.sampled_from((60, 3600, 9_000_000_000, 9_000_000_001)),
)
lease_ops: st.SearchStrategy[Op] = st.one_of(
    lease_grants,
    st.builds(LeaseRevoke, id=leases),
    st.builds(LeaseTTL, id=leases, keys=st.booleans()),
    st.just(LeaseLeases()),
)
hash_kvs = st.builds(HashKV, revision=rel_revs)

kv_ops: st.SearchStrategy[Op] = st.one_of(puts(), puts(), ranges(), deletes())
any_ops: st.SearchStrategy[Op] = st.one_of(
    puts(), puts(), puts(), ranges(), ranges(), deletes(), txns(), compacts, lease_ops, hash_kvs
)
