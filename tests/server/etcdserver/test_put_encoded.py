"""A put's answer encoded by hand (``KVServer.put_encoded``, ``ResponseHeaders.encoded``)
is byte for byte what protobuf serializes for the same message."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import pytest

from pyetcd.pb import rpc_pb2
from pyetcd.server.etcdserver.header import ResponseHeaders
from tests.server.test_inprocess_cluster import MakeCluster, make_cluster

__all__ = ["make_cluster"]  # the fixture, used here

EDGES = [0, 1, 127, 128, 16_383, 16_384, 2**21, 2**35 + 7, 2**63 - 1]
IDS = [0, 1, 0x8E9E05C52164694D, 2**64 - 1]


@dataclass
class Term:
    term: int = 0


def headers(cluster_id: int, member_id: int, raft: Term) -> ResponseHeaders:
    return ResponseHeaders(member_id, cluster_id, stores=Any, raft=raft)  # type: ignore[arg-type]


@pytest.mark.parametrize(("cluster_id", "member_id"), itertools.product(IDS, IDS))
def test_header_bytes_are_protobufs(cluster_id: int, member_id: int) -> None:
    raft = Term()
    h = headers(cluster_id, member_id, raft)
    for term, revision in itertools.product(EDGES, [*EDGES, -1]):
        raft.term = term
        assert h.encoded(revision) == h.header(revision).SerializeToString(), (term, revision)


def test_header_follows_a_changed_cluster_id_and_term() -> None:
    raft = Term(2)
    h = headers(0, 5, raft)
    assert h.encoded(9) == h.header(9).SerializeToString()
    h.cluster_id, raft.term = 0xABCDEF, 3  # a joining member learns its cluster's id
    assert h.encoded(9) == h.header(9).SerializeToString()
    assert rpc_pb2.ResponseHeader.FromString(h.encoded(9)).cluster_id == 0xABCDEF


@pytest.mark.parametrize("prev_kv", [False, True])
async def test_put_encoded_is_the_serialized_put_answer(
    make_cluster: MakeCluster, prev_kv: bool
) -> None:
    (server,) = (await make_cluster(1)).servers
    await server.wait_leader()
    kv = server.kv
    first = (await kv.put(rpc_pb2.PutRequest(key=b"k", value=b"v0"))).header.revision
    for i in range(1, 3):  # each finds a previous value
        req = rpc_pb2.PutRequest(key=b"k", value=b"v%d" % i, prev_kv=prev_kv)
        raw = await kv.put_encoded(req)
        answer = rpc_pb2.PutResponse.FromString(raw)
        assert answer.header.revision == first + i
        expected = rpc_pb2.PutResponse(header=server.headers.header(first + i))
        if prev_kv:
            assert answer.prev_kv.value == b"v%d" % (i - 1)
            expected.prev_kv.CopyFrom(answer.prev_kv)
        assert raw == expected.SerializeToString()
