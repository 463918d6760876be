"""TLS on the client and peer URLs, with a test CA made here: stock etcdctl 3.5 over
https (client certificates required, the certificate's CN as the user once auth is
enabled), the HTTP endpoints over https on the same port, ``--auto-tls``, and a
three-member cluster whose peers talk TLS with client certificates.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from pyetcd.pb import rpc_pb2, rpc_pb2_grpc
from tests.framework import Etcdctl, Member

from .tls_certs import CertAuthority


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix="e2e-tls-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def ca(workdir: Path) -> CertAuthority:
    return CertAuthority(workdir)


def wait_until(check: object, timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()  # type: ignore[operator]
            if result:
                return result
        except Exception:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.1)


def single(workdir: Path, name: str, *tls: str) -> Member:
    """A one-member pyetcd in ``workdir`` with an https client URL (plain peer URL)."""
    return Member("pyetcd", name, workdir, client_scheme="https", extra_args=tls)


def ctl(etcdctl: Etcdctl, endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [etcdctl.path, "--endpoints", endpoint, *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**etcdctl.env()},
        stdin=subprocess.DEVNULL,
    )


def test_client_tls_with_client_cert_auth(
    workdir: Path, ca: CertAuthority, etcdctl35: Etcdctl
) -> None:
    server_cert, server_key = ca.issue("server", "server")
    root_cert, root_key = ca.issue("root", "root")
    alice_cert, alice_key = ca.issue("alice", "alice")
    member = single(
        workdir,
        "c1",
        "--cert-file",
        str(server_cert),
        "--key-file",
        str(server_key),
        "--trusted-ca-file",
        str(ca.ca_file),
        "--client-cert-auth",
        "--bcrypt-cost",
        "4",
    )
    ep = member.client_url
    tls = ["--cacert", str(ca.ca_file)]
    as_root = [*tls, "--cert", str(root_cert), "--key", str(root_key)]
    as_alice = [*tls, "--cert", str(alice_cert), "--key", str(alice_key)]
    with member:
        wait_until(lambda: ctl(etcdctl35, ep, *as_root, "put", "a", "1").returncode == 0)
        assert ctl(etcdctl35, ep, *as_root, "get", "a", "--print-value-only").stdout == "1\n"
        # no client certificate: the handshake fails
        assert ctl(etcdctl35, ep, *tls, "--dial-timeout", "2s", "get", "a").returncode != 0
        # HTTP/1.1 over TLS on the same port
        ctx = ssl.create_default_context(cafile=str(ca.ca_file))
        ctx.load_cert_chain(str(alice_cert), str(alice_key))
        with urllib.request.urlopen(f"{ep}/health", context=ctx, timeout=10) as r:
            assert json.loads(r.read())["health"] == "true"
        with urllib.request.urlopen(f"{ep}/version", context=ctx, timeout=10) as r:
            assert json.loads(r.read())["etcdserver"].startswith("3.5")
        # the certificate's CN is the user once auth is enabled
        for cmd in (
            ["user", "add", "root", "--no-password"],
            ["role", "add", "root"],
            ["user", "grant-role", "root", "root"],
            ["user", "add", "alice", "--no-password"],
            ["role", "add", "reader"],
            ["role", "grant-permission", "reader", "read", "a"],
            ["user", "grant-role", "alice", "reader"],
            ["auth", "enable"],
        ):
            r = ctl(etcdctl35, ep, *as_root, *cmd)
            assert r.returncode == 0, (cmd, r.stderr)
        assert ctl(etcdctl35, ep, *as_alice, "get", "a", "--print-value-only").stdout == "1\n"
        denied = ctl(etcdctl35, ep, *as_alice, "put", "a", "2")
        assert "etcdserver: permission denied" in denied.stderr
        assert ctl(etcdctl35, ep, *as_root, "put", "a", "3").returncode == 0
    log = (workdir / "c1.log").read_text()
    assert "serving client traffic securely" in log
    assert "BEGIN" not in log  # no key material in the log


def test_auto_tls(workdir: Path, etcdctl35: Etcdctl) -> None:
    member = single(workdir, "auto", "--auto-tls")
    ep = member.client_url
    insecure = ["--insecure-transport=false", "--insecure-skip-tls-verify"]
    with member:
        wait_until(lambda: ctl(etcdctl35, ep, *insecure, "put", "k", "v").returncode == 0)
        assert ctl(etcdctl35, ep, *insecure, "get", "k", "--print-value-only").stdout == "v\n"
        # plain gRPC on an https URL is refused
        assert (
            ctl(
                etcdctl35, ep.replace("https", "http"), "--dial-timeout", "2s", "get", "k"
            ).returncode
            != 0
        )
    assert (workdir / "auto.etcd" / "fixtures" / "client" / "cert.pem").exists()


def peer_tls_member(ca: CertAuthority, workdir: Path, name: str) -> Member:
    """A pyetcd member with a plain client URL and TLS peers (client certs required)."""
    cert, key = ca.issue(f"peer-{name}", name)
    return Member(
        "pyetcd", name, workdir, peer_scheme="https",
        extra_args=[
            "--peer-cert-file", str(cert),
            "--peer-key-file", str(key),
            "--peer-trusted-ca-file", str(ca.ca_file),
            "--peer-client-cert-auth",
        ],
    )  # fmt: skip


def test_peer_tls_cluster_of_three_and_a_join(
    workdir: Path, ca: CertAuthority, etcdctl35: Etcdctl
) -> None:
    members = [peer_tls_member(ca, workdir, n) for n in ("p1", "p2", "p3")]
    cluster = ",".join(f"{m.name}={m.peer_url}" for m in members)
    with contextlib.ExitStack() as stack:
        for m in members:
            m.initial_cluster = cluster
            stack.enter_context(m)
        eps = [m.endpoint for m in members]
        wait_until(lambda: ctl(etcdctl35, eps[0], "put", "pk", "pv").returncode == 0, 60)
        for ep in eps:
            got = wait_until(
                lambda ep=ep: (
                    ctl(etcdctl35, ep, "get", "pk", "--print-value-only", "--consistency=s").stdout
                    == "pv\n"
                )
            )
            assert got
        members = ctl(etcdctl35, eps[1], "member", "list").stdout
        assert members.count("https://127.0.0.1:") == 3

        # A fourth member joins over https: it learns the cluster from a peer's
        # /members with its peer certificate, then catches up over TLS.
        m4 = peer_tls_member(ca, workdir, "p4")
        def add() -> subprocess.CompletedProcess[str] | None:
            out = ctl(etcdctl35, eps[0], "member", "add", "p4", f"--peer-urls={m4.peer_url}")
            # etcd (and pyetcd) refuse reconfiguration until every peer has been
            # connected for 5 s: "etcdserver: unhealthy cluster"
            return None if "unhealthy cluster" in out.stderr else out

        added = wait_until(add, 20)
        assert isinstance(added, subprocess.CompletedProcess)
        assert added.returncode == 0, added.stderr
        m4.initial_cluster = f"{cluster},p4={m4.peer_url}"
        m4.initial_cluster_state = "existing"
        stack.enter_context(m4)
        p4 = m4.endpoint
        assert wait_until(
            lambda: (
                ctl(etcdctl35, p4, "get", "pk", "--print-value-only", "--consistency=s").stdout
                == "pv\n"
            ),
            60,
        )
        members = ctl(etcdctl35, p4, "member", "list").stdout
        assert members.count("https://127.0.0.1:") == 4


def test_large_answer_over_tls(workdir: Path, ca: CertAuthority, etcdctl35: Etcdctl) -> None:
    # a range answer of ~2.3 MB leaves grpcwire as many pieces (frame headers and views
    # of the payload) through the TLS transport's writelines: grpcio and etcdctl read it
    server_cert, server_key = ca.issue("server", "server")
    member = single(workdir, "big", "--cert-file", str(server_cert), "--key-file", str(server_key))
    value = b"v" * 1024
    with member:
        creds = grpc.ssl_channel_credentials(root_certificates=ca.ca_file.read_bytes())
        options = [("grpc.max_receive_message_length", -1)]
        with grpc.secure_channel(member.endpoint, creds, options=options) as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            wait_until(lambda: kv.Put(rpc_pb2.PutRequest(key=b"k", value=b"")) is not None)
            for i in range(2000):
                kv.Put(rpc_pb2.PutRequest(key=b"k%05d" % i, value=value))
            for _ in range(2):  # encoded, then from the read cache
                r = kv.Range(rpc_pb2.RangeRequest(key=b"k0", range_end=b"k1"))
                assert r.count == 2000 and len(r.kvs) == 2000
                assert all(x.key == b"k%05d" % i and x.value == value for i, x in enumerate(r.kvs))
        out = ctl(etcdctl35, member.client_url, "--cacert", str(ca.ca_file), "get", "k0", "k1")
        assert out.returncode == 0, out.stderr
        lines = out.stdout.split()
        assert lines[::2] == [f"k{i:05d}" for i in range(2000)]
        assert set(lines[1::2]) == {value.decode()}
