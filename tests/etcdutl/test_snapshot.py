"""pyetcd's backend -> etcd's bbolt snapshot -> pyetcd's backend, in process: every table
comes back as it was, the buckets hold etcd's encodings, and hypothesis varies the keys."""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyetcd.bbolt import BoltReader, verify_sha256
from pyetcd.etcdutl.restore import load_backend
from pyetcd.mvcc import Backend, KVStore
from pyetcd.mvcc.backend import KEY_VALUE_SQL
from pyetcd.mvcc.types import DeleteRangeRequest, PutRequest
from pyetcd.pb import kv_pb2, lease_pb2, rpc_pb2
from pyetcd.raft import ConfState
from pyetcd.server.etcdserver import txn as kvtxn
from pyetcd.server.etcdserver.membership import Member
from pyetcd.server.storage import save_snapshot, write_snapshot_db
from pyetcd.server.storage import schema as s

TABLES = ("key", "lease", *s.TABLE_OF_BUCKET.values(), "members", "meta", "alarm")


def make_store(path: Path, puts: list[tuple[bytes, bytes]]) -> None:
    """A backend with puts, deletes, a compaction, a lease with a key, auth, members,
    a removed member and an alarm."""
    store = KVStore(str(path))
    for k, v in puts:
        kvtxn.put(store, PutRequest(k, v))
    if puts:
        kvtxn.delete_range(store, DeleteRangeRequest(puts[0][0]))
        kvtxn.compact(store, max(1, store.current_revision - 1))
    kvtxn.lease_grant(store, 0x1234, 600)
    kvtxn.put(store, PutRequest(b"leased", b"x", lease=0x1234))
    be = store.backend
    be.put("auth", b"authEnabled", b"\x01")
    be.put("auth_users", b"root", b"\n\x04root\x1a\x04root")
    be.put("auth_roles", b"root", b"\n\x04root")
    be.put(
        "members",
        (7).to_bytes(8, "big"),
        Member(7, "m7", ("http://a:1",), ("http://a:2",)).encode(),
    )
    be.put("members", (0xABCDEF).to_bytes(8, "big"), b"removed")
    be.put("alarm", (7).to_bytes(8, "big") + (1).to_bytes(4, "big"), b"")
    store.set_consistent_index(42, 3)
    store.close()


def tables(path: Path) -> dict[str, list[tuple[object, ...]]]:
    conn = sqlite3.connect(path)
    try:
        out = {}
        for t in TABLES:
            order = "rev" if t == "key" else "id" if t == "lease" else "k"
            # key records as read (long values live in key_blob under local ids)
            cols = f"rev, {KEY_VALUE_SQL}" if t == "key" else "*"
            out[t] = [tuple(r) for r in conn.execute(f"SELECT {cols} FROM {t} ORDER BY {order}")]
        return out
    finally:
        conn.close()


def expected(src: Path) -> dict[str, list[tuple[object, ...]]]:
    """The source's tables, plus the cluster version every etcd snapshot carries."""
    want = tables(src)
    want["cluster"] = want["cluster"] or [(b"clusterVersion", b"3.5.0")]
    return want


def round_trip(src: Path, tmp: Path) -> Path:
    snap = tmp / "snap.db"
    save_snapshot(str(src), str(snap))
    assert verify_sha256(snap)
    dst = tmp / "restored.db"
    be = Backend(str(dst))
    with BoltReader(snap) as r:
        assert r.check() == []
        load_backend(r, be)
    be.close()
    return dst


def test_every_table_comes_back(tmp_path: Path) -> None:
    src = tmp_path / "src.db"
    make_store(src, [(b"a", b"1"), (b"\x00\xff", b"\x00" * 5000), (b"a", b"2"), (b"b", b"")])
    assert tables(round_trip(src, tmp_path)) == expected(src)


def test_buckets_hold_etcd_encodings(tmp_path: Path) -> None:
    src = tmp_path / "src.db"
    make_store(src, [(b"a", b"1"), (b"a", b"2"), (b"b", b"3")])
    out = tmp_path / "snap.db"
    with out.open("w+b") as f:
        write_snapshot_db(str(src), f, conf_state=ConfState(voters=(7,), learners=(9,)))
    with BoltReader(out) as r:
        assert r.buckets() == list(s.ETCD_BUCKETS)
        recs = list(r.items(s.KEY))
        # revisions 2-4 put a, a, b; revision 5 deleted a (a tombstone holding only the key)
        tomb = [(k, v) for k, v in recs if k.endswith(b"t")]
        assert tomb == [
            (
                struct.pack(">Q", 5) + b"_" + bytes(8) + b"t",
                kv_pb2.KeyValue(key=b"a").SerializeToString(),
            )
        ]
        last = kv_pb2.KeyValue.FromString(recs[-1][1])
        assert (last.key, last.value, last.lease) == (b"leased", b"x", 0x1234)
        assert r.get(s.META, b"finishedCompactRev") == struct.pack(">Q", 4) + b"_" + bytes(8)
        assert r.get(s.META, b"consistent_index") == struct.pack(">Q", 42)
        assert r.get(s.META, b"term") == struct.pack(">Q", 3)
        assert r.get(s.META, b"confState") == b'{"voters":[7],"learners":[9],"auto_leave":false}'
        assert r.get(s.META, b"storageVersion") is None
        assert (
            r.get(s.LEASE, struct.pack(">Q", 0x1234))
            == lease_pb2.Lease(ID=0x1234, TTL=600).SerializeToString()
        )
        assert r.get(s.MEMBERS, b"7") == (
            b'{"id":7,"peerURLs":["http://a:1"],"name":"m7","clientURLs":["http://a:2"]}'
        )
        assert list(r.items(s.MEMBERS_REMOVED)) == [(b"abcdef", b"removed")]
        alarm = rpc_pb2.AlarmMember(memberID=7, alarm=rpc_pb2.NOSPACE).SerializeToString()
        assert list(r.items(s.ALARM)) == [(alarm, b"")]
        assert r.get(s.CLUSTER, b"clusterVersion") == b"3.5.0"


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.binary(min_size=1, max_size=64), st.binary(max_size=3000)),
        max_size=60,
    )
)
def test_round_trip_of_any_history(
    tmp_path_factory: object, puts: list[tuple[bytes, bytes]]
) -> None:
    tmp = tmp_path_factory.mktemp("rt")  # type: ignore[attr-defined]
    src = tmp / "src.db"
    make_store(src, puts)
    assert tables(round_trip(src, tmp)) == expected(src)
