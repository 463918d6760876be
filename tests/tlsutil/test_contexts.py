"""pyetcd/tlsutil/contexts.py: contexts that follow the certificate files for each new
connection (listening and dialing), a bad pair failing only the handshakes that meet
it, and etcd's checks (CRL, allowed CN) after the handshake; against a real asyncio
server and client on 127.0.0.1."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from pyetcd.logutil import Logger
from pyetcd.tlsutil import PeerCertRules, TLSInfo, tls_policy
from tests.e2e.tls_certs import CertAuthority

HOST = "127.0.0.1"


def _cn(cert: dict[str, object] | None) -> str:
    assert cert
    subject = cert["subject"]
    assert isinstance(subject, tuple)
    return next(v for rdn in subject for k, v in rdn if k == "commonName")


def install(src: tuple[Path, Path], dst: tuple[Path, Path]) -> None:
    """Put a certificate and key in place the way rotation tools do: write aside, rename."""
    for s, d in zip(src, dst, strict=True):
        tmp = d.with_name(d.name + ".new")
        shutil.copyfile(s, tmp)
        tmp.replace(d)


class Logs:
    def __init__(self) -> None:
        self.buf = io.StringIO()
        self.logger = Logger([self.buf])

    def records(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.buf.getvalue().splitlines()]

    def msgs(self) -> list[str]:
        return [str(r["msg"]) for r in self.records()]


async def _echo_cn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # Answers each line with the client certificate's CN (or "-").
    sslobj = writer.get_extra_info("ssl_object")
    peer = sslobj.getpeercert() if sslobj is not None else None
    who = _cn(peer) if peer else "-"
    try:
        while line := await reader.readline():
            writer.write(f"{who} {line.decode().strip()}\n".encode())
            await writer.drain()
    finally:
        writer.close()


@asynccontextmanager
async def serving(ctx: ssl.SSLContext) -> AsyncIterator[int]:
    server = await asyncio.start_server(_echo_cn, HOST, 0, ssl=ctx)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.sslobj = writer.get_extra_info("ssl_object")

    @property
    def server_cn(self) -> str:
        return _cn(self.sslobj.getpeercert())

    async def ask(self, text: str) -> str:
        self.writer.write(f"{text}\n".encode())
        await self.writer.drain()
        line = await asyncio.wait_for(self.reader.readline(), 5)
        if not line:
            # TLS 1.3: the client's handshake ends before the server judged its
            # certificate; a refusal shows as the server closing.
            raise ConnectionError("closed by the server")
        return line.decode().strip()

    def close(self) -> None:
        self.writer.close()


async def dial(port: int, ctx: ssl.SSLContext) -> Conn:
    r, w = await asyncio.wait_for(
        asyncio.open_connection(HOST, port, ssl=ctx, server_hostname=HOST), 5
    )
    return Conn(r, w)


@pytest.fixture
def ca(tmp_path: Path) -> CertAuthority:
    return CertAuthority(tmp_path)


def _client_ctx(ca: CertAuthority, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca.ca_file))
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


async def test_listener_serves_the_rotated_certificate_to_new_connections(
    ca: CertAuthority, tmp_path: Path
) -> None:
    live = (tmp_path / "live.pem", tmp_path / "live-key.pem")
    install(ca.issue("one", "server-one"), live)
    second = ca.issue("two", "server-two")
    logs = Logs()
    info = TLSInfo(str(live[0]), str(live[1]))
    async with serving(info.server_context(logger=logs.logger)) as port:
        old = await dial(port, _client_ctx(ca))
        assert old.server_cn == "server-one"
        assert await old.ask("a") == "- a"
        install(second, live)
        new = await dial(port, _client_ctx(ca))
        assert new.server_cn == "server-two"
        assert await new.ask("b") == "- b"
        # the connection made before the rotation keeps working, on its certificate
        assert await old.ask("c") == "- c"
        assert old.server_cn == "server-one"
        old.close()
        new.close()
    assert logs.msgs().count("loaded new TLS certificate") == 1
    assert "BEGIN" not in logs.buf.getvalue()


async def test_a_bad_pair_fails_new_handshakes_until_fixed(
    ca: CertAuthority, tmp_path: Path
) -> None:
    live = (tmp_path / "live.pem", tmp_path / "live-key.pem")
    install(ca.issue("one", "server-one"), live)
    other_cert, other_key = ca.issue("two", "server-two")
    logs = Logs()
    info = TLSInfo(str(live[0]), str(live[1]))
    async with serving(info.server_context(logger=logs.logger)) as port:
        old = await dial(port, _client_ctx(ca))
        # the new certificate lands before its key: the files do not match
        install((other_cert, live[1]), live)
        for _ in range(2):
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await dial(port, _client_ctx(ca))
        assert await old.ask("still") == "- still"
        bad = [r for r in logs.records() if r["msg"] == "failed to create peer certificate"]
        assert len(bad) == 2 and "error" in bad[0] and bad[0]["cert-file"] == str(live[0])
        # the key follows: the next connection gets the new certificate
        install((other_cert, other_key), live)
        assert (await dial(port, _client_ctx(ca))).server_cn == "server-two"
        old.close()


async def test_dialing_side_presents_the_rotated_client_certificate(
    ca: CertAuthority, tmp_path: Path
) -> None:
    server = TLSInfo(*map(str, ca.issue("srv", "server")), str(ca.ca_file), True)
    live = (tmp_path / "peer.pem", tmp_path / "peer-key.pem")
    install(ca.issue("p1", "peer-one"), live)
    dialer = TLSInfo(str(live[0]), str(live[1]), str(ca.ca_file)).client_context()
    async with serving(server.server_context()) as port:
        first = await dial(port, dialer)
        assert await first.ask("x") == "peer-one x"
        install(ca.issue("p2", "peer-two"), live)
        second = await dial(port, dialer)
        assert await second.ask("y") == "peer-two y"
        assert await first.ask("z") == "peer-one z"
        first.close()
        second.close()


async def test_trusted_ca_alone_requires_a_client_certificate(ca: CertAuthority) -> None:
    # etcd 3.5: RequireAndVerifyClientCert as soon as a trusted CA is given
    server = TLSInfo(*map(str, ca.issue("srv", "server")), str(ca.ca_file))
    async with serving(server.server_context()) as port:
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            conn = await dial(port, _client_ctx(ca))
            await conn.ask("x")
        conn = await dial(port, _client_ctx(ca, ca.issue("c", "client")))
        assert await conn.ask("x") == "client x"
        conn.close()


async def test_crl_refuses_revoked_client_and_is_reread(ca: CertAuthority, tmp_path: Path) -> None:
    alice, bob = ca.issue("alice", "alice"), ca.issue("bob", "bob")
    crl = ca.crl([bob[0]], tmp_path / "crl.pem")
    logs = Logs()
    server = TLSInfo(
        *map(str, ca.issue("srv", "server")),
        str(ca.ca_file),
        True,
        rules=PeerCertRules(crl_file=str(crl)),
    )

    async def refused(cert: tuple[Path, Path]) -> bool:
        try:
            conn = await dial(port, _client_ctx(ca, cert))
            await conn.ask("x")
        except (ssl.SSLError, ConnectionError, asyncio.IncompleteReadError):
            return True
        return False

    async with serving(server.server_context(logger=logs.logger)) as port:
        assert not await refused(alice)
        assert await refused(bob)
        rejected = [r for r in logs.records() if r["msg"] == "rejected connection"]
        assert len(rejected) == 1
        assert str(rejected[0]["error"]).startswith("transport: certificate serial ")
        assert rejected[0]["dns-names"] == ["localhost"]
        ca.crl([alice[0]], crl)  # the CRL is replaced: alice revoked, bob no longer
        assert await refused(alice)
        assert not await refused(bob)
        crl.unlink()  # etcd refuses every client while its CRL cannot be read
        assert await refused(bob)


async def test_allowed_cn_applies_to_the_dialing_side_too(ca: CertAuthority) -> None:
    server = TLSInfo(*map(str, ca.issue("srv", "member-x")), str(ca.ca_file), True)
    client_cert = tuple(map(str, ca.issue("cli", "member-y")))
    async with serving(server.server_context()) as port:
        ok = TLSInfo(*client_cert, str(ca.ca_file), rules=PeerCertRules(allowed_cn="member-x"))
        conn = await dial(port, ok.client_context())
        assert await conn.ask("hi") == "member-y hi"
        conn.close()
        no = TLSInfo(*client_cert, str(ca.ca_file), rules=PeerCertRules(allowed_cn="member-z"))
        with pytest.raises(ssl.SSLError, match="client certificate authentication failed"):
            await dial(port, no.client_context())


_AES256 = "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
_CHACHA = "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"


@pytest.mark.parametrize(
    ("suites", "low", "high", "version", "cipher"),
    [
        ([_AES256], "", "TLS1.2", "TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384"),
        ([_CHACHA], "TLS1.2", "TLS1.2", "TLSv1.2", "ECDHE-ECDSA-CHACHA20-POLY1305"),
        ([], "TLS1.3", "", "TLSv1.3", None),
    ],
)
async def test_policy_shows_in_the_negotiated_connection(
    ca: CertAuthority, suites: list[str], low: str, high: str, version: str, cipher: str | None
) -> None:
    policy = tls_policy(suites, low, high)
    server = TLSInfo(*map(str, ca.issue("srv", "server")), policy=policy)
    async with serving(server.server_context()) as port:
        conn = await dial(port, _client_ctx(ca))
        assert conn.sslobj.version() == version
        if cipher is not None:
            assert conn.sslobj.cipher()[0] == cipher
        conn.close()
        # a client that cannot meet the policy is refused
        narrow = _client_ctx(ca)
        if version == "TLSv1.3":
            narrow.maximum_version = ssl.TLSVersion.TLSv1_2
        else:
            narrow.maximum_version = ssl.TLSVersion.TLSv1_2
            narrow.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await dial(port, narrow)
