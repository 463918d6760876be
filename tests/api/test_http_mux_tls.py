"""Routing TLS connections by the ALPN protocols of their ClientHello."""

from __future__ import annotations

import ssl

import pytest

from pyetcd.api.http_mux import client_hello_alpn, wants_grpc


def _client_hello(alpn: list[str]) -> bytes:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize(
    ("offered", "grpc"),
    [
        (["h2"], True),  # grpc-go (etcdctl)
        (["grpc-exp", "h2"], True),  # grpc-core (Python clients)
        (["h2", "http/1.1"], False),  # curl: served as HTTP/1.1
        (["http/1.1"], False),
        ([], False),  # urllib, openssl s_client
    ],
)
def test_alpn_decides_grpc_or_http(offered: list[str], grpc: bool) -> None:
    alpn = client_hello_alpn(_client_hello(offered))
    assert alpn == [p.encode() for p in offered]
    assert wants_grpc(alpn) is grpc


def test_garbage_is_no_client_hello() -> None:
    assert client_hello_alpn(b"GET / HTTP/1.1\r\n\r\n") is None
    assert client_hello_alpn(b"\x16\x03\x01\x00\x05\x01\x00") is None
