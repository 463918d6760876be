"""TLS settings of the client and peer URLs, as etcd's flags describe them.

Rules this module keeps:

1. TLS is on for a side (client or peer) when its URLs are ``https://``; then a
   certificate comes from ``--[peer-]cert-file``/``--[peer-]key-file`` or, with
   ``--[peer-]auto-tls`` and no files, is generated self-signed into
   ``<data-dir>/fixtures/{client,peer}/`` (etcd's place), valid for the URLs'
   hosts plus localhost and 127.0.0.1.
2. ``--[peer-]client-cert-auth`` requires the other side's certificate, checked
   against ``--[peer-]trusted-ca-file``. A dialing peer presents its own peer
   certificate and checks the server's against the trusted CA; with auto TLS and
   no CA it checks nothing (etcd's InsecureSkipVerify for self-signed peers).
3. Key material is read from files here and handed on as bytes or contexts;
   nothing of it is ever logged.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from pyetcd.config import ServerConfig

__all__ = [
    "TLSInfo",
    "TLSSetupError",
    "client_tls_info",
    "peer_tls_info",
    "self_signed_cert",
]

_DEFAULT_HOSTS = ("localhost", "127.0.0.1")


class TLSSetupError(Exception):
    """The TLS flags are incomplete or their files unusable; ``str()`` says which."""


@dataclass(frozen=True, slots=True)
class TLSInfo:
    """One side's certificate, key, trusted CA and whether peers must show certificates."""

    cert_file: str
    key_file: str
    trusted_ca_file: str = ""
    client_cert_auth: bool = False
    self_signed: bool = False

    def read(self) -> tuple[bytes, bytes, bytes | None]:
        """(certificate chain PEM, private key PEM, trusted CA PEM or None)."""
        try:
            with open(self.cert_file, "rb") as f:
                cert = f.read()
            with open(self.key_file, "rb") as f:
                key = f.read()
            ca = None
            if self.trusted_ca_file:
                with open(self.trusted_ca_file, "rb") as f:
                    ca = f.read()
        except OSError as err:
            raise TLSSetupError(f"cannot read TLS file: {err}") from err
        return cert, key, ca

    def server_context(self, alpn: Sequence[str] = ()) -> ssl.SSLContext:
        """A server-side context: our certificate; client certificates per rule 2."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(self.cert_file, self.key_file)
            if self.trusted_ca_file:
                ctx.load_verify_locations(self.trusted_ca_file)
                ctx.verify_mode = ssl.CERT_REQUIRED if self.client_cert_auth else ssl.CERT_OPTIONAL
        except (OSError, ssl.SSLError) as err:
            raise TLSSetupError(f"cannot load TLS certificate: {err}") from err
        if alpn:
            ctx.set_alpn_protocols(list(alpn))
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A dialing context: presents our certificate, checks the server's (rule 2)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(self.cert_file, self.key_file)
            if self.trusted_ca_file:
                ctx.load_verify_locations(self.trusted_ca_file)
            else:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
        except (OSError, ssl.SSLError) as err:
            raise TLSSetupError(f"cannot load TLS certificate: {err}") from err
        return ctx


def _uses_tls(urls: Sequence[str]) -> bool:
    return any(urlsplit(u).scheme == "https" for u in urls)


def _hosts(urls: Sequence[str]) -> list[str]:
    hosts = [urlsplit(u).hostname or "" for u in urls]
    return sorted({h for h in (*hosts, *_DEFAULT_HOSTS) if h})


def _tls_info(
    cfg: ServerConfig,
    side: str,
    urls: Sequence[str],
    cert_file: str,
    key_file: str,
    trusted_ca_file: str,
    client_cert_auth: bool,
    auto_tls: bool,
) -> TLSInfo | None:
    if not _uses_tls(urls):
        return None
    if cert_file or key_file:
        if not (cert_file and key_file):
            raise TLSSetupError(f"--{side}cert-file and --{side}key-file must be given together")
        return TLSInfo(cert_file, key_file, trusted_ca_file, client_cert_auth)
    if not auto_tls:
        raise TLSSetupError(
            f"TLS {side or 'client '}URLs need --{side}cert-file and --{side}key-file "
            f"or --{side}auto-tls"
        )
    where = os.path.join(cfg.data_dir, "fixtures", "peer" if side else "client")
    cert, key = self_signed_cert(where, _hosts(urls))
    return TLSInfo(cert, key, trusted_ca_file, client_cert_auth, self_signed=True)


def client_tls_info(cfg: ServerConfig) -> TLSInfo | None:
    """The client URLs' TLS settings, or None when they are plain http."""
    return _tls_info(
        cfg,
        "",
        [*cfg.listen_client_urls, *cfg.advertise_client_urls],
        cfg.cert_file,
        cfg.key_file,
        cfg.trusted_ca_file,
        cfg.client_cert_auth,
        cfg.auto_tls,
    )


def peer_tls_info(cfg: ServerConfig) -> TLSInfo | None:
    """The peer URLs' TLS settings, or None when they are plain http."""
    return _tls_info(
        cfg,
        "peer-",
        [*cfg.listen_peer_urls, *cfg.initial_advertise_peer_urls],
        cfg.peer_cert_file,
        cfg.peer_key_file,
        cfg.peer_trusted_ca_file,
        cfg.peer_client_cert_auth,
        cfg.peer_auto_tls,
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
