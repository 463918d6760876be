"""grpcwire.service (handlers from a service descriptor) and grpcwire.status (codes)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from pyetcd.grpcwire import GrpcServer, StatusCode, add_servicer, code_number, service_handlers
from pyetcd.pb import rpc_pb2

KV = rpc_pb2.DESCRIPTOR.services_by_name["KV"]
WATCH = rpc_pb2.DESCRIPTOR.services_by_name["Watch"]
MAINTENANCE = rpc_pb2.DESCRIPTOR.services_by_name["Maintenance"]


class _Log:
    def error(self, msg: str, fields: Any) -> None:
        raise AssertionError(msg)


class _KV:
    async def Range(self, request: Any, context: Any) -> Any:
        return rpc_pb2.RangeResponse(count=len(request.key))

    async def Put(self, request: Any, context: Any) -> Any:
        return rpc_pb2.PutResponse()


class _Watch:
    async def Watch(self, requests: Any, context: Any) -> None:
        return None


class _Maintenance:
    async def Snapshot(self, request: Any, context: Any) -> Any:
        yield rpc_pb2.SnapshotResponse()


def test_handlers_follow_the_descriptor() -> None:
    kv = _KV()
    h = service_handlers(KV, kv)
    # Only what the servicer defines: DeleteRange, Txn, Compact stay unregistered.
    assert sorted(h) == ["Put", "Range"]
    rng = h["Range"]
    assert (rng.request_streaming, rng.response_streaming) == (False, False)
    assert rng.unary_unary == kv.Range and rng.stream_stream is None
    req = rng.request_deserializer(rpc_pb2.RangeRequest(key=b"abc").SerializeToString())
    assert isinstance(req, rpc_pb2.RangeRequest) and req.key == b"abc"
    out = rng.response_serializer(rpc_pb2.RangeResponse(count=3))
    assert rpc_pb2.RangeResponse.FromString(out).count == 3
    watch = service_handlers(WATCH, _Watch())["Watch"]
    assert (watch.request_streaming, watch.response_streaming) == (True, True)
    assert watch.stream_stream is not None and watch.unary_unary is None
    snap = service_handlers(MAINTENANCE, _Maintenance())["Snapshot"]
    assert (snap.request_streaming, snap.response_streaming) == (False, True)
    assert snap.unary_stream is not None


def test_a_servicer_of_nothing_is_refused() -> None:
    with pytest.raises(TypeError, match=r"serves no method of etcdserverpb\.KV"):
        service_handlers(KV, object())


async def test_add_servicer_registers_paths_and_stats() -> None:
    g = GrpcServer(_Log(), 1 << 20)
    add_servicer(g, KV, _KV())
    assert g.services == {"etcdserverpb.KV"}
    assert g.lookup("/etcdserverpb.KV/Range") is not None
    assert g.lookup("/etcdserverpb.KV/Txn") is None  # answered "unknown method"
    assert g.method_stats["/etcdserverpb.KV/Put"].grpc_type == "unary"


def test_status_codes_are_grpcs() -> None:
    assert len(StatusCode) == len(grpc.StatusCode) == 17
    for code in grpc.StatusCode:
        ours = StatusCode[code.name]
        assert ours == code.value[0] == code_number(code) == code_number(ours)
    assert StatusCode.OK == 0 and StatusCode.UNAUTHENTICATED == 16
