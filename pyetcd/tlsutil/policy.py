"""What a TLS connection may negotiate and which certificates the other side may show.

Rules this module keeps:

1. ``--cipher-suites`` takes Go's names (etcd's flag is handed to Go's crypto/tls),
   mapped here to OpenSSL's. A name Go does not know is refused with etcd's text
   (``unexpected TLS cipher suite "x"``); a name Go knows but this OpenSSL cannot
   offer (RC4, 3DES) is refused with a line saying so. TLS 1.3 suites are accepted
   and always on, as in Go: neither Go nor Python lets them be chosen.
2. ``--tls-min-version``/``--tls-max-version`` (etcd 3.5.8+) are ``TLS1.2`` or
   ``TLS1.3``; empty means TLS 1.2 at least and the highest both sides speak at most.
   Their checks against each other are etcd's and live in ``pyetcd.config.validate``.
3. The certificate rules are etcd's ``TLSInfo`` checks after the chain was verified:
   the leaf's common name equals ``allowed_cn``, or the leaf is valid for
   ``allowed_hostname`` (its DNS or IP subject alternative names, as Go's
   ``VerifyHostname``: no fallback to the common name); a serial listed in the CRL
   file is refused (the file is read for each new connection, as etcd reads it).
   Each refusal is a short text, logged by the caller with etcd's "rejected connection".
4. Pure: nothing here opens a socket; the CRL is parsed from bytes handed in.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.x509 import Certificate

__all__ = [
    "GO_CIPHER_SUITES",
    "TLS_VERSIONS",
    "PeerCertRules",
    "TLSPolicy",
    "TLSSetupError",
    "cert_names",
    "check_peer_cert",
    "revoked_serials",
    "tls_policy",
]


class TLSSetupError(Exception):
    """The TLS flags are incomplete or their files unusable; ``str()`` says which."""


#: Go's cipher suite names (crypto/tls ``CipherSuites()`` and ``InsecureCipherSuites()``,
#: plus the two legacy CHACHA20 aliases, which etcd 3.5.1 accepts) -> OpenSSL's name.
#: "" marks the TLS 1.3 suites, which cannot be configured and are always on.
GO_CIPHER_SUITES: dict[str, str] = {
    "TLS_RSA_WITH_RC4_128_SHA": "RC4-SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": "ECDHE-ECDSA-RC4-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA": "ECDHE-RSA-RC4-SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_AES_128_GCM_SHA256": "",
    "TLS_AES_256_GCM_SHA384": "",
    "TLS_CHACHA20_POLY1305_SHA256": "",
}

#: ``--tls-min-version``/``--tls-max-version`` values; "" leaves the bound to OpenSSL.
TLS_VERSIONS: dict[str, ssl.TLSVersion | None] = {
    "": None,
    "TLS1.2": ssl.TLSVersion.TLSv1_2,
    "TLS1.3": ssl.TLSVersion.TLSv1_3,
}


@dataclass(frozen=True, slots=True)
class TLSPolicy:
    """What a connection may negotiate; the same for the client and peer URLs."""

    # OpenSSL names of the TLS 1.2 suites allowed; empty: OpenSSL's defaults.
    ciphers: tuple[str, ...] = ()
    # Only TLS 1.3 suite names were given: no TLS 1.2 suite is allowed (as in Go).
    tls13_suites_only: bool = False
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion | None = None

    def apply(self, ctx: ssl.SSLContext) -> None:
        """Set ``ctx``'s versions and TLS 1.2 cipher suites."""
        ctx.minimum_version = self.min_version
        if self.tls13_suites_only:
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        if self.max_version is not None:
            ctx.maximum_version = self.max_version
        if self.ciphers:
            ctx.set_ciphers(":".join(self.ciphers))


def tls_policy(cipher_suites: Iterable[str], min_version: str, max_version: str) -> TLSPolicy:
    """The policy of ``--cipher-suites`` and ``--tls-{min,max}-version`` (rule 1, 2).

    Raises:
        TLSSetupError: etcd's ``unexpected TLS cipher suite "x"``, or a suite Go knows
            that this OpenSSL cannot offer.
    """
    ciphers: list[str] = []
    names = list(cipher_suites)
    for name in names:
        openssl_name = GO_CIPHER_SUITES.get(name)
        if openssl_name is None:
            raise TLSSetupError(f'unexpected TLS cipher suite "{name}"')
        if openssl_name and not _available(openssl_name):
            raise TLSSetupError(
                f'TLS cipher suite "{name}" is not supported by pyetcd: '
                f"{ssl.OPENSSL_VERSION} does not offer {openssl_name}"
            )
        if openssl_name and openssl_name not in ciphers:
            ciphers.append(openssl_name)
    low = TLS_VERSIONS.get(min_version) or ssl.TLSVersion.TLSv1_2
    return TLSPolicy(
        ciphers=tuple(ciphers),
        tls13_suites_only=bool(names) and not ciphers,
        min_version=low,
        max_version=TLS_VERSIONS.get(max_version),
    )


def _available(openssl_name: str) -> bool:
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        probe.set_ciphers(openssl_name)
    except ssl.SSLError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class PeerCertRules:
    """etcd's checks of the other side's certificate beyond chain verification (rule 3)."""

    allowed_cn: str = ""
    allowed_hostname: str = ""
    crl_file: str = ""  # checked by the listening side only, as etcd's tlsListener does

    @property
    def names_checked(self) -> bool:
        """Whether the leaf's name is checked (which then must be present)."""
        return bool(self.allowed_cn or self.allowed_hostname)


def revoked_serials(crl: bytes) -> frozenset[int]:
    """The serial numbers a CRL (PEM or DER) lists.

    Raises:
        ValueError: not a CRL.
    """
    from cryptography import x509  # only members with a CRL file pay for it

    if crl.lstrip().startswith(b"-----BEGIN"):
        parsed = x509.load_pem_x509_crl(crl)
    else:
        parsed = x509.load_der_x509_crl(crl)
    return frozenset(entry.serial_number for entry in parsed)


def check_peer_cert(
    der: bytes | None, rules: PeerCertRules, revoked: frozenset[int] | None = None
) -> str | None:
    """Why the verified leaf ``der`` is refused under ``rules``, or None when it is not.

    ``revoked``: the CRL's serials when the CRL applies to this side.
    """
    if der is None:
        return "client certificate authentication failed" if rules.names_checked else None
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    if revoked is not None and cert.serial_number in revoked:
        return f"transport: certificate serial {_serial_hex(cert.serial_number)} revoked"
    if rules.allowed_cn and _common_name(cert) != rules.allowed_cn:
        return "client certificate authentication failed"
    if rules.allowed_hostname and not _valid_for(cert, rules.allowed_hostname):
        return "client certificate authentication failed"
    return None


def cert_names(der: bytes) -> tuple[list[str], list[str]]:
    """The (IP addresses, DNS names) of a certificate's subject alternative names."""
    from cryptography import x509

    return _san(x509.load_der_x509_certificate(der))


def _san(cert: Certificate) -> tuple[list[str], list[str]]:
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return [], []
    ips = [str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)]
    return ips, list(san.value.get_values_for_type(x509.DNSName))


def _serial_hex(serial: int) -> str:
    # Go prints the serial's big-endian bytes with %x.
    return serial.to_bytes(max(1, (serial.bit_length() + 7) // 8), "big").hex()


def _common_name(cert: Certificate) -> str:
    from cryptography.x509.oid import NameOID

    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    # Go's pkix.Name keeps the last CommonName attribute of the sequence.
    value = names[-1].value if names else ""
    return value if isinstance(value, str) else value.decode()


def _valid_for(cert: Certificate, host: str) -> bool:
    ips, dns_names = _san(cert)
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return _dns_match(host, dns_names)
    return any(ipaddress.ip_address(a) == ip for a in ips)


def _dns_match(host: str, patterns: Sequence[str]) -> bool:
    want = host.lower().rstrip(".")
    labels = want.split(".")
    for pattern in patterns:
        pat = pattern.lower().rstrip(".")
        if pat == want:
            return True
        # A wildcard stands for exactly one whole leftmost label.
        wildcard = pat.startswith("*.") and len(labels) > 1 and bool(labels[0])
        if wildcard and ".".join(labels[1:]) == pat[2:]:
            return True
    return False
