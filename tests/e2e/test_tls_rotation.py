"""Issue 19 item 4 on real members: certificates rotated on disk reach new connections
while old ones keep working (client URLs; peer URLs in a three-member cluster that keeps
replicating and takes a restarted member back), a CRL refuses a revoked client,
``--cipher-suites``/``--tls-{min,max}-version`` show in the negotiated connection,
``--peer-cert-allowed-cn`` refuses a stranger on the peer port, and bad values get
etcd's messages (compared with etcd 3.5.1 where it has the flag).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import shutil
import socket
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.framework import Etcdctl, Member, etcd_binary

from .test_tls import ctl, wait_until
from .tls_certs import CertAuthority, serial_of

HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix="e2e-tls-rot-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def ca(workdir: Path) -> CertAuthority:
    return CertAuthority(workdir)


def install(src: tuple[Path, Path], dst: tuple[Path, Path]) -> None:
    """Rotate as tools do: write next to the live file, rename over it; key last."""
    for s, d in zip(src, dst, strict=True):
        tmp = d.with_name(d.name + ".new")
        shutil.copyfile(s, tmp)
        tmp.replace(d)


def client_ctx(ca: CertAuthority, cert: tuple[Path, Path] | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca.ca_file))
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


def https(port: int, ctx: ssl.SSLContext) -> http.client.HTTPSConnection:
    conn = http.client.HTTPSConnection(HOST, port, context=ctx, timeout=10)
    conn.connect()
    return conn


def get(conn: http.client.HTTPSConnection, path: str = "/version") -> dict[str, str]:
    """One request on a kept-alive connection."""
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    assert resp.status == 200, body
    data = json.loads(body)
    assert isinstance(data, dict)
    return data


def served_serial(conn: http.client.HTTPSConnection) -> int:
    assert isinstance(conn.sock, ssl.SSLSocket)
    der = conn.sock.getpeercert(binary_form=True)
    assert der is not None
    from cryptography import x509

    return x509.load_der_x509_certificate(der).serial_number


def refused(port: int, ctx: ssl.SSLContext) -> bool:
    """Whether the member refuses a client: a failed handshake or (TLS 1.3, where the
    client finishes first) the connection closed before an answer."""
    try:
        conn = https(port, ctx)
        get(conn)
    except (ssl.SSLError, ConnectionError, http.client.RemoteDisconnected, OSError):
        return True
    conn.close()
    return False


def client_tls_member(workdir: Path, name: str, ca: CertAuthority, *extra: str) -> Member:
    live = (workdir / f"{name}-live.pem", workdir / f"{name}-live-key.pem")
    install(ca.issue(f"{name}-first", f"{name}-first"), live)
    return Member(
        "pyetcd", name, workdir, client_scheme="https",
        extra_args=[
            "--cert-file", str(live[0]), "--key-file", str(live[1]),
            "--trusted-ca-file", str(ca.ca_file), "--client-cert-auth", *extra,
        ],
    )  # fmt: skip


def test_rotated_client_certificate_reaches_new_connections_only(
    workdir: Path, ca: CertAuthority, etcdctl35: Etcdctl
) -> None:
    member = client_tls_member(workdir, "rot", ca)
    live = (workdir / "rot-live.pem", workdir / "rot-live-key.pem")
    me = ca.issue("rot-client", "root")
    ctx = client_ctx(ca, me)
    tls = ["--cacert", str(ca.ca_file), "--cert", str(me[0]), "--key", str(me[1])]
    with member:
        old = wait_until(lambda: https(member.client_port, ctx))
        assert isinstance(old, http.client.HTTPSConnection)
        assert get(old)["etcdserver"].startswith("3.5")
        first = served_serial(old)
        assert first == serial_of(live[0])
        second_files = ca.issue("rot-second", "rot-second")
        install(second_files, live)
        new = https(member.client_port, ctx)
        assert served_serial(new) == serial_of(second_files[0]) != first
        assert get(new)["etcdserver"].startswith("3.5")
        # the connection opened before the rotation still answers, on its certificate
        assert get(old)["etcdserver"].startswith("3.5")
        assert served_serial(old) == first
        # gRPC (etcdctl) on new connections after the rotation
        ep = member.client_url
        assert ctl(etcdctl35, ep, *tls, "put", "rk", "rv").returncode == 0
        assert ctl(etcdctl35, ep, *tls, "get", "rk", "--print-value-only").stdout == "rv\n"
        old.close()
        new.close()
    assert "loaded new TLS certificate" in member.log_text()


def test_crl_refuses_a_revoked_client_certificate(
    workdir: Path, ca: CertAuthority, etcdctl35: Etcdctl
) -> None:
    alice, bob = ca.issue("crl-alice", "alice"), ca.issue("crl-bob", "bob")
    crl = ca.crl([bob[0]], workdir / "client-crl.pem")
    member = client_tls_member(workdir, "crl", ca, "--client-crl-file", str(crl))
    with member:
        assert wait_until(lambda: not refused(member.client_port, client_ctx(ca, alice)))
        assert refused(member.client_port, client_ctx(ca, bob))
        as_bob = ["--cacert", str(ca.ca_file), "--cert", str(bob[0]), "--key", str(bob[1])]
        r = ctl(etcdctl35, member.client_url, *as_bob, "--dial-timeout", "2s", "get", "k")
        assert r.returncode != 0
        # the CRL file is read again for new connections: alice revoked at run time
        ca.crl([alice[0], bob[0]], crl)
        assert refused(member.client_port, client_ctx(ca, alice))
    log = member.log_text()
    assert "rejected connection" in log and "transport: certificate serial" in log


@pytest.mark.parametrize(
    ("flags", "version", "cipher"),
    [
        (
            ["--cipher-suites", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
             "--tls-max-version", "TLS1.2"],
            "TLSv1.2",
            "ECDHE-ECDSA-AES256-GCM-SHA384",
        ),
        (["--tls-min-version", "TLS1.3"], "TLSv1.3", None),
    ],
)  # fmt: skip
def test_cipher_and_version_flags_show_in_the_connection(
    workdir: Path, ca: CertAuthority, flags: list[str], version: str, cipher: str | None
) -> None:
    name = "pol12" if cipher else "pol13"
    member = client_tls_member(workdir, name, ca, *flags)
    me = ca.issue(f"{name}-client", "root")
    with member:
        conn = wait_until(lambda: https(member.client_port, client_ctx(ca, me)))
        assert isinstance(conn, http.client.HTTPSConnection)
        sock = conn.sock
        assert isinstance(sock, ssl.SSLSocket)
        assert sock.version() == version
        if cipher is not None:
            c = sock.cipher()
            assert c is not None and c[0] == cipher
        get(conn)
        conn.close()
        # a client outside the policy is refused
        narrow = client_ctx(ca, me)
        narrow.maximum_version = ssl.TLSVersion.TLSv1_2
        if cipher is not None:
            narrow.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
        assert refused(member.client_port, narrow)


def peer_member(workdir: Path, ca: CertAuthority, name: str, live: tuple[Path, Path]) -> Member:
    """Plain client URL, TLS peers whose certificates must all carry CN etcd-peer."""
    install(ca.issue(f"{name}-peer-1", "etcd-peer"), live)
    return Member(
        "pyetcd", name, workdir, peer_scheme="https",
        extra_args=[
            "--peer-cert-file", str(live[0]), "--peer-key-file", str(live[1]),
            "--peer-trusted-ca-file", str(ca.ca_file), "--peer-client-cert-auth",
            "--peer-cert-allowed-cn", "etcd-peer",
        ],
    )  # fmt: skip


def peer_get(m: Member, ctx: ssl.SSLContext) -> tuple[int, int]:
    """(HTTP status of GET /members on the peer port, serial of the certificate served)."""
    raw = socket.create_connection((HOST, m.peer_port), timeout=5)
    with ctx.wrap_socket(raw, server_hostname=HOST) as s:
        der = s.getpeercert(binary_form=True)
        assert der is not None
        from cryptography import x509

        serial = x509.load_der_x509_certificate(der).serial_number
        s.sendall(b"GET /members HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head = s.recv(64)
    if not head:
        raise ConnectionError("closed by the member")
    return int(head.split()[1]), serial


def test_peer_certificate_rotation_in_a_cluster_of_three(
    workdir: Path, ca: CertAuthority, etcdctl35: Etcdctl
) -> None:
    names = ("q1", "q2", "q3")
    lives = {n: (workdir / f"{n}-peer.pem", workdir / f"{n}-peer-key.pem") for n in names}
    members = [peer_member(workdir, ca, n, lives[n]) for n in names]
    cluster = ",".join(f"{m.name}={m.peer_url}" for m in members)
    peer_ctx = client_ctx(ca, ca.issue("probe", "etcd-peer"))
    with contextlib.ExitStack() as stack:
        for m in members:
            m.initial_cluster = cluster
            stack.enter_context(m)
        eps = [m.endpoint for m in members]

        def replicated(key: str, value: str) -> bool:
            return all(
                ctl(etcdctl35, ep, "get", key, "--print-value-only", "--consistency=s").stdout
                == f"{value}\n"
                for ep in eps
            )

        assert wait_until(lambda: ctl(etcdctl35, eps[0], "put", "a", "1").returncode == 0, 60)
        assert wait_until(lambda: replicated("a", "1"))
        # every member's peer certificate is replaced on disk
        fresh = {n: ca.issue(f"{n}-peer-2", "etcd-peer") for n in names}
        for n in names:
            install(fresh[n], lives[n])
        for m in members:
            status, serial = peer_get(m, peer_ctx)
            assert status == 200 and serial == serial_of(fresh[m.name][0])
        # the existing peer streams carry on: writes keep replicating
        for i in range(5):
            assert ctl(etcdctl35, eps[i % 3], "put", f"b{i}", str(i)).returncode == 0
        assert wait_until(lambda: replicated("b4", "4"))
        # a restarted member dials and is dialled with the new certificates, and catches up
        members[1].restart()
        assert ctl(etcdctl35, eps[0], "put", "c", "after-restart").returncode == 0
        assert wait_until(lambda: replicated("c", "after-restart"), 60)
        assert ctl(etcdctl35, eps[1], "put", "d", "from-q2").returncode == 0
        assert wait_until(lambda: replicated("d", "from-q2"))
        # a certificate from the right CA with another CN is refused on the peer port
        stranger = client_ctx(ca, ca.issue("stranger", "intruder"))
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            peer_get(members[0], stranger)
    assert "rejected connection" in members[0].log_text()


def _run_to_exit(m: Member, timeout: float = 20.0) -> list[dict[str, object]]:
    m.start()
    assert m.proc is not None
    try:
        m.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        m.close()
        raise AssertionError(f"{m.kind} did not exit:\n{m.log_tail()}") from None
    records = []
    for line in m.log_text().splitlines():
        with contextlib.suppress(ValueError):
            rec = json.loads(line)
            if isinstance(rec, dict):
                records.append(rec)
    return records


def _errors(records: list[dict[str, object]]) -> list[tuple[object, object, object]]:
    return [
        (r["level"], r["msg"], r.get("error")) for r in records if r["level"] in ("warn", "fatal")
        and r["msg"] in ("failed to start etcd", "discovery failed", "failed to verify flags")
    ]  # fmt: skip


_EXCLUSIVE = 'AllowedCN and AllowedHostname are mutually exclusive (cn="a", hostname="b")'


@pytest.mark.parametrize(
    ("case", "want"),
    [
        ("cipher", 'unexpected TLS cipher suite "TLS_NOT_A_SUITE"'),
        ("cn+hostname", _EXCLUSIVE),
    ],
)  # fmt: skip
def test_bad_values_fail_like_etcd(workdir: Path, ca: CertAuthority, case: str, want: str) -> None:
    if etcd_binary("etcd") is None:
        pytest.skip("etcd 3.5.1 not available")
    cert, key = ca.issue(f"bad-{case}", "etcd-peer")
    peer = [
        "--peer-cert-file", str(cert), "--peer-key-file", str(key),
        "--peer-trusted-ca-file", str(ca.ca_file),
    ]  # fmt: skip
    extra = {
        "cipher": ["--cipher-suites", "TLS_NOT_A_SUITE"],
        "cn+hostname": [*peer, "--peer-cert-allowed-cn", "a", "--peer-cert-allowed-hostname", "b"],
    }[case]
    scheme = "https" if case == "cn+hostname" else "http"
    got = {}
    for kind in ("pyetcd", "etcd"):
        m = Member(kind, f"bad-{case}-{kind}", workdir, peer_scheme=scheme, extra_args=extra)
        got[kind] = _errors(_run_to_exit(m))
        assert m.proc is not None and m.proc.returncode != 0
    assert (
        got["pyetcd"]
        == got["etcd"]
        == [
            ("warn", "failed to start etcd", want),
            ("fatal", "discovery failed", want),
        ]
    )
