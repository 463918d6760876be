"""pyetcd/tlsutil/policy.py: Go's cipher suite names, TLS versions, and etcd's checks of
the other side's certificate (allowed CN, allowed hostname, CRL)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from pyetcd.tlsutil.policy import (
    GO_CIPHER_SUITES,
    PeerCertRules,
    TLSSetupError,
    check_peer_cert,
    revoked_serials,
    tls_policy,
)
from tests.e2e.tls_certs import CertAuthority, serial_of


def _der(cert_file: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert_file.read_text())


def test_go_names_map_to_openssl_names() -> None:
    p = tls_policy(
        ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"],
        "TLS1.2",
        "",
    )
    assert p.ciphers == ("ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305")
    assert p.min_version is ssl.TLSVersion.TLSv1_2
    assert p.max_version is None
    assert not p.tls13_suites_only


def test_every_available_suite_is_accepted_by_openssl() -> None:
    # Each mapped name is a real OpenSSL suite (or refused with a clear line below).
    for go_name, openssl_name in GO_CIPHER_SUITES.items():
        if not openssl_name or "RC4" in go_name or "3DES" in go_name:
            continue
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls_policy([go_name], "", "").apply(ctx)
        assert [c["name"] for c in ctx.get_ciphers() if c["protocol"] != "TLSv1.3"] == [
            openssl_name
        ]


def test_unknown_suite_gets_etcds_text() -> None:
    with pytest.raises(TLSSetupError) as err:
        tls_policy(["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "bogus"], "", "")
    assert str(err.value) == 'unexpected TLS cipher suite "bogus"'
    # etcd does not trim: a space after a comma is part of the name
    with pytest.raises(TLSSetupError) as err:
        tls_policy([" TLS_RSA_WITH_AES_128_GCM_SHA256"], "", "")
    assert str(err.value) == 'unexpected TLS cipher suite " TLS_RSA_WITH_AES_128_GCM_SHA256"'


def test_suite_go_knows_but_openssl_lacks_is_refused_clearly() -> None:
    with pytest.raises(TLSSetupError) as err:
        tls_policy(["TLS_RSA_WITH_RC4_128_SHA"], "", "")
    assert 'TLS cipher suite "TLS_RSA_WITH_RC4_128_SHA" is not supported by pyetcd' in str(
        err.value
    )


def test_tls13_suite_names_are_accepted_and_leave_only_tls13() -> None:
    p = tls_policy(["TLS_AES_128_GCM_SHA256"], "", "")
    assert p.ciphers == () and p.tls13_suites_only
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    p.apply(ctx)
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_3


def test_versions() -> None:
    p = tls_policy([], "TLS1.3", "TLS1.3")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    p.apply(ctx)
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_3
    assert ctx.maximum_version is ssl.TLSVersion.TLSv1_3
    assert tls_policy([], "", "TLS1.2").min_version is ssl.TLSVersion.TLSv1_2


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertAuthority:
    return CertAuthority(tmp_path_factory.mktemp("policy-ca"))


def test_allowed_cn(ca: CertAuthority) -> None:
    cert, _ = ca.issue("cn-a", "member-a")
    ok = PeerCertRules(allowed_cn="member-a")
    assert check_peer_cert(_der(cert), ok) is None
    refused = check_peer_cert(_der(cert), PeerCertRules(allowed_cn="member-b"))
    assert refused == "client certificate authentication failed"
    # a name rule needs a certificate
    assert check_peer_cert(None, ok) == "client certificate authentication failed"
    assert check_peer_cert(None, PeerCertRules()) is None


def test_allowed_hostname_uses_sans_like_gos_verify_hostname(ca: CertAuthority) -> None:
    cert, _ = ca.issue(
        "h", "not-a-host", dns_names=("m1.example.com", "*.pods.local"), ips=("10.0.0.7",)
    )
    der = _der(cert)

    def verdict(host: str) -> str | None:
        return check_peer_cert(der, PeerCertRules(allowed_hostname=host))

    assert verdict("m1.example.com") is None
    assert verdict("M1.Example.COM.") is None
    assert verdict("x.pods.local") is None
    assert verdict("a.b.pods.local") is not None  # a wildcard is one label
    assert verdict("pods.local") is not None
    assert verdict("10.0.0.7") is None
    assert verdict("10.0.0.8") is not None
    assert verdict("not-a-host") is not None  # no fallback to the common name


def test_crl_refuses_revoked_serial_with_etcds_text(ca: CertAuthority, tmp_path: Path) -> None:
    good, _ = ca.issue("good", "good")
    bad, _ = ca.issue("bad", "bad")
    for der_form in (False, True):
        crl = ca.crl([bad], tmp_path / "crl", der=der_form)
        revoked = revoked_serials(crl.read_bytes())
        assert revoked == {serial_of(bad)}
        assert check_peer_cert(_der(good), PeerCertRules(crl_file=str(crl)), revoked) is None
        reason = check_peer_cert(_der(bad), PeerCertRules(crl_file=str(crl)), revoked)
        serial = serial_of(bad)
        hexed = serial.to_bytes((serial.bit_length() + 7) // 8, "big").hex()
        assert reason == f"transport: certificate serial {hexed} revoked"
    with pytest.raises(ValueError):
        revoked_serials(b"not a crl")
