"""The client port over TLS: each connection goes where ALPN sent it (the server prefers
http/1.1, then h2), and a TLS client's certificate reaches ``auth_context()``."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from e2e.tls_certs import CertAuthority

from pyetcd.api.etcdhttp.handler import HTTPFrontend
from pyetcd.api.listener import _Sorter
from pyetcd.grpcwire import GrpcServer
from pyetcd.logutil import Logger
from pyetcd.pb import kv_pb2, rpc_pb2, rpc_pb2_grpc
from pyetcd.tlsutil import TLSInfo

from .conftest import read_reply, start_member

HOST = "127.0.0.1"
T = 20.0


@dataclass
class TLSMember:
    port: int
    ca: CertAuthority

    @property
    def target(self) -> str:
        return f"{HOST}:{self.port}"

    def client_context(self, alpn: list[str] | None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca.ca_file))
        if alpn is not None:
            ctx.set_alpn_protocols(alpn)
        return ctx


@pytest.fixture
async def tls_member(tmp_path: Path) -> AsyncIterator[TLSMember]:
    ca = CertAuthority(tmp_path)
    cert, key = ca.issue("server", "member")
    m, stop, task = await start_member(tmp_path, "https", cert_file=str(cert), key_file=str(key))
    try:
        yield TLSMember(m.port, ca)
    finally:
        stop.set()
        assert await asyncio.wait_for(task, T) == 0


async def connect(
    m: TLSMember, alpn: list[str] | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str | None]:
    reader, writer = await asyncio.open_connection(
        HOST, m.port, ssl=m.client_context(alpn), server_hostname=HOST
    )
    return reader, writer, writer.get_extra_info("ssl_object").selected_alpn_protocol()


async def test_h2_alone_gets_grpc(tls_member: TLSMember) -> None:
    from pyetcd.grpcwire.frames import PREFACE, settings

    reader, writer, chosen = await connect(tls_member, ["h2"])
    try:
        assert chosen == "h2"
        writer.write(PREFACE + settings(()))
        head = await asyncio.wait_for(reader.readexactly(9), T)
        assert (head[3], head[5:9]) == (4, bytes(4))  # the gRPC server's SETTINGS
    finally:
        writer.close()
    creds = grpc.ssl_channel_credentials(root_certificates=tls_member.ca.ca_file.read_bytes())
    async with grpc.aio.secure_channel(tls_member.target, creds) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        put = await kv.Put(rpc_pb2.PutRequest(key=b"tls", value=b"h2"))
        got = await kv.Range(rpc_pb2.RangeRequest(key=b"tls"))
    assert [(x.key, x.value) for x in got.kvs] == [(b"tls", b"h2")]
    assert got.header.revision == put.header.revision


@pytest.mark.parametrize(
    ("alpn", "chosen"), [(["h2", "http/1.1"], "http/1.1"), (["http/1.1"], "http/1.1"), (None, None)]
)
async def test_http11_or_no_alpn_gets_http(
    tls_member: TLSMember, alpn: list[str] | None, chosen: str | None
) -> None:
    reader, writer, got = await connect(tls_member, alpn)
    try:
        assert got == chosen
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        r = await asyncio.wait_for(read_reply(reader), T)
    finally:
        writer.close()
    assert (r.status, json.loads(r.body)) == (200, {"health": "true", "reason": ""})


# -- a TLS client's certificate, as a handler sees it (GrpcServer behind _Sorter) ----------


class _KV(rpc_pb2_grpc.KVServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.seen: list[tuple[dict[str, list[bytes]], str]] = []

    async def Put(self, request: rpc_pb2.PutRequest, context: Any) -> rpc_pb2.PutResponse:
        self.seen.append((context.auth_context(), context.peer()))
        return rpc_pb2.PutResponse(prev_kv=kv_pb2.KeyValue(key=request.key))


class _NoHTTP:
    def accept(self, transport: asyncio.Transport, first: bytes, eof: bool = False) -> None:
        transport.close()


async def test_client_certificate_reaches_auth_context(tmp_path: Path) -> None:
    ca = CertAuthority(tmp_path)
    cert, key = ca.issue("server", "member")
    client_cert, client_key = ca.issue("alice", "alice")
    tls = TLSInfo(str(cert), str(key), str(ca.ca_file), client_cert_auth=True)
    g = GrpcServer(Logger([]), max_receive=1 << 20)
    kv = _KV()
    rpc_pb2_grpc.add_KVServicer_to_server(kv, g)
    loop = asyncio.get_running_loop()
    http = cast(HTTPFrontend, _NoHTTP())
    srv = await loop.create_server(
        lambda: _Sorter(g, http), HOST, 0, ssl=tls.server_context(alpn=("http/1.1", "h2"))
    )
    port = srv.sockets[0].getsockname()[1]
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca.ca_file.read_bytes(),
        private_key=client_key.read_bytes(),
        certificate_chain=client_cert.read_bytes(),
    )
    try:
        async with grpc.aio.secure_channel(f"{HOST}:{port}", creds) as ch:
            reply = await rpc_pb2_grpc.KVStub(ch).Put(rpc_pb2.PutRequest(key=b"who"))
        assert reply.prev_kv.key == b"who"
    finally:
        srv.close()
        await g.stop(0)
        await srv.wait_closed()
    ((auth, peer),) = kv.seen
    assert auth == {"transport_security_type": [b"ssl"], "x509_common_name": [b"alice"]}
    assert peer.startswith(f"ipv4:{HOST}:")
