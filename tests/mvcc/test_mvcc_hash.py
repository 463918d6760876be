"""etcd's HashKV building blocks: CRC-32C and KeyValue marshalling as Go does it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pyetcd.mvcc.hash import crc32c, marshal_kv
from pyetcd.mvcc.types import KeyValue
from pyetcd.pb import kv_pb2


def test_crc32c_check_value() -> None:
    # The standard check value of CRC-32C (Castagnoli).
    assert crc32c(b"123456789") == 0xE3069283


def test_crc32c_continues_like_one_pass() -> None:
    assert crc32c(b"world", crc32c(b"hello ")) == crc32c(b"hello world")


i64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@settings(max_examples=300, derandomize=True)
@given(st.binary(max_size=40), i64, i64, i64, st.binary(max_size=40), i64)
def test_marshal_kv_is_protobufs(
    key: bytes, create: int, mod: int, version: int, value: bytes, lease: int
) -> None:
    kv = KeyValue(key, create, mod, version, value, lease)
    want = kv_pb2.KeyValue(
        key=key,
        create_revision=create,
        mod_revision=mod,
        version=version,
        value=value,
        lease=lease,
    ).SerializeToString()
    assert marshal_kv(kv) == want


def test_tombstone_holds_only_the_key() -> None:
    kv = KeyValue(b"k", mod_revision=7)
    assert marshal_kv(kv, tombstone=True) == kv_pb2.KeyValue(key=b"k").SerializeToString()
