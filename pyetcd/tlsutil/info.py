"""TLS settings of the client and peer URLs, as etcd's flags describe them.

Rules this module keeps:

1. TLS is on for a side (client or peer) when its URLs are ``https://``; then a
   certificate comes from ``--[peer-]cert-file``/``--[peer-]key-file`` or, with
   ``--[peer-]auto-tls`` and no files, is generated self-signed into
   ``<data-dir>/fixtures/{client,peer}/`` (etcd's place), valid for the URLs'
   hosts plus localhost and 127.0.0.1.
2. ``--[peer-]client-cert-auth`` or ``--[peer-]trusted-ca-file`` requires the other
   side's certificate, checked against the trusted CA (etcd 3.5 requires it as soon
   as a CA is given). A dialing peer presents its own peer certificate and checks the
   server's against the trusted CA; with auto TLS and no CA it checks nothing (etcd's
   InsecureSkipVerify for self-signed peers).
3. ``--cipher-suites`` and ``--tls-{min,max}-version`` apply to both sides and are
   checked even when neither uses TLS, as etcd checks them; ``--client-crl-file``,
   ``--client-cert-allowed-hostname``, ``--peer-crl-file``, ``--peer-cert-allowed-cn``
   and ``--peer-cert-allowed-hostname`` are each side's :class:`PeerCertRules`.
4. Key material is read from files and handed on as contexts; nothing of it is ever
   logged.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
from collections.abc import Sequence
from urllib.parse import urlsplit

from pyetcd.config import ServerConfig
from pyetcd.tlsutil.contexts import TLSInfo
from pyetcd.tlsutil.policy import PeerCertRules, TLSPolicy, TLSSetupError, tls_policy

__all__ = [
    "client_tls_info",
    "peer_tls_info",
    "self_signed_cert",
]

_DEFAULT_HOSTS = ("localhost", "127.0.0.1")


def _uses_tls(urls: Sequence[str]) -> bool:
    return any(urlsplit(u).scheme == "https" for u in urls)


def _hosts(urls: Sequence[str]) -> list[str]:
    hosts = [urlsplit(u).hostname or "" for u in urls]
    return sorted({h for h in (*hosts, *_DEFAULT_HOSTS) if h})


def _policy(cfg: ServerConfig) -> TLSPolicy:
    return tls_policy(cfg.cipher_suites, cfg.tls_min_version, cfg.tls_max_version)


def _tls_info(
    cfg: ServerConfig,
    side: str,
    urls: Sequence[str],
    files: tuple[str, str, str],
    client_cert_auth: bool,
    auto_tls: bool,
    rules: PeerCertRules,
) -> TLSInfo | None:
    policy = _policy(cfg)
    if not _uses_tls(urls):
        return None
    if rules.allowed_cn and rules.allowed_hostname:
        raise TLSSetupError(
            f"AllowedCN and AllowedHostname are mutually exclusive "
            f"(cn={json.dumps(rules.allowed_cn)}, hostname={json.dumps(rules.allowed_hostname)})"
        )
    cert_file, key_file, trusted_ca_file = files
    if cert_file or key_file:
        if not (cert_file and key_file):
            raise TLSSetupError(f"--{side}cert-file and --{side}key-file must be given together")
        return TLSInfo(
            cert_file, key_file, trusted_ca_file, client_cert_auth, rules=rules, policy=policy
        )
    if not auto_tls:
        raise TLSSetupError(
            f"TLS {side or 'client '}URLs need --{side}cert-file and --{side}key-file "
            f"or --{side}auto-tls"
        )
    where = os.path.join(cfg.data_dir, "fixtures", "peer" if side else "client")
    cert, key = self_signed_cert(where, _hosts(urls))
    return TLSInfo(
        cert, key, trusted_ca_file, client_cert_auth, self_signed=True, rules=rules, policy=policy
    )


def client_tls_info(cfg: ServerConfig) -> TLSInfo | None:
    """The client URLs' TLS settings, or None when they are plain http.

    Raises:
        TLSSetupError: with etcd's text where etcd has one (a cipher suite, allowed
            names, missing files).
    """
    return _tls_info(
        cfg,
        "",
        [*cfg.listen_client_urls, *cfg.advertise_client_urls],
        (cfg.cert_file, cfg.key_file, cfg.trusted_ca_file),
        cfg.client_cert_auth,
        cfg.auto_tls,
        PeerCertRules(
            allowed_hostname=cfg.client_cert_allowed_hostname, crl_file=cfg.client_crl_file
        ),
    )


def peer_tls_info(cfg: ServerConfig) -> TLSInfo | None:
    """The peer URLs' TLS settings, or None when they are plain http.

    Raises:
        TLSSetupError: as :func:`client_tls_info`.
    """
    return _tls_info(
        cfg,
        "peer-",
        [*cfg.listen_peer_urls, *cfg.initial_advertise_peer_urls],
        (cfg.peer_cert_file, cfg.peer_key_file, cfg.peer_trusted_ca_file),
        cfg.peer_client_cert_auth,
        cfg.peer_auto_tls,
        PeerCertRules(
            allowed_cn=cfg.peer_cert_allowed_cn,
            allowed_hostname=cfg.peer_cert_allowed_hostname,
            crl_file=cfg.peer_crl_file,
        ),
    )


def self_signed_cert(directory: str, hosts: Sequence[str], years: int = 1) -> tuple[str, str]:
    """Write (or reuse) a self-signed ECDSA P-256 certificate for ``hosts``.

    Returns the certificate and key paths (``cert.pem``, ``key.pem`` in ``directory``).
    """
    cert_path = os.path.join(directory, "cert.pem")
    key_path = os.path.join(directory, "key.pem")
    if os.path.exists(cert_path) and os.path.exists(key_path):
        return cert_path, key_path
    # imported here: only members with auto TLS pay for loading cryptography's x509
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    os.makedirs(directory, mode=0o700, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "etcd")])
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365 * max(1, years)))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path
