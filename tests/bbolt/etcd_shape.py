"""An etcd-shaped bbolt database, as the tests need one: etcd's buckets, the ``key``
bucket keyed by revision and holding ``mvccpb.KeyValue``, ``meta`` with the consistent
index and term. What etcd writes is the exporter's business (issue 18), not the codec's;
this is just enough for real ``etcdutl`` and ``etcd`` to take the file."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from pyetcd.bbolt import BoltReader, BoltWriter, Meta
from pyetcd.pb import kv_pb2

# In byte order, as the writer needs them.
ETCD_BUCKETS = (
    b"alarm",
    b"auth",
    b"authRoles",
    b"authUsers",
    b"cluster",
    b"key",
    b"lease",
    b"members",
    b"members_removed",
    b"meta",
)
assert list(ETCD_BUCKETS) == sorted(ETCD_BUCKETS)


def rev_key(main: int, sub: int = 0, tombstone: bool = False) -> bytes:
    """etcd's revision key: 8-byte big-endian main, ``_``, 8-byte big-endian sub."""
    return struct.pack(">Q", main) + b"_" + struct.pack(">Q", sub) + (b"t" if tombstone else b"")


def parse_rev_key(key: bytes) -> tuple[int, int, bool]:
    assert len(key) in (17, 18) and key[8:9] == b"_", key
    return struct.unpack_from(">Q", key)[0], struct.unpack_from(">Q", key, 9)[0], len(key) == 18


def write_etcd_db(
    fileobj: BinaryIO,
    kvs: Iterable[tuple[bytes, bytes]],
    *,
    consistent_index: int = 1,
    term: int = 1,
    page_size: int = 4096,
) -> tuple[Meta, int]:
    """One revision per put, from revision 2 as in a fresh etcd; returns the meta and
    the last revision."""
    rev = 1
    with BoltWriter(fileobj, page_size) as w:
        for name in ETCD_BUCKETS:
            w.bucket(name)
            if name == b"key":
                for key, value in kvs:
                    rev += 1
                    kv = kv_pb2.KeyValue(
                        key=key, value=value, create_revision=rev, mod_revision=rev, version=1
                    )
                    w.put(name, rev_key(rev), kv.SerializeToString())
            elif name == b"meta":
                w.put(name, b"consistent_index", struct.pack(">Q", consistent_index))
                w.put(name, b"term", struct.pack(">Q", term))
    return w.close(), rev


def replay(reader: BoltReader) -> Iterator[tuple[int, bytes, bytes | None]]:
    """The ``key`` bucket in revision order as ``(main revision, key, value)``; the
    value is None for a deletion (a tombstone)."""
    for rk, raw in reader.items(b"key"):
        main, _, tombstone = parse_rev_key(rk)
        kv = kv_pb2.KeyValue.FromString(raw)
        yield main, kv.key, None if tombstone else kv.value
