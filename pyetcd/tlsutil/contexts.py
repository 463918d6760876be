"""SSL contexts whose certificate follows the files: re-read for new connections.

etcd (since 3.2) loads the certificate and key again for every handshake, so a
certificate rotated on disk is served to the next connection without a restart.
Python's ``ssl`` takes one context per listener (``asyncio.start_server(ssl=...)``)
and per dial, so the same effect is had this way:

1. The context handed to asyncio (the *front*) makes its connections' ``SSLObject``
   a :class:`_RotatingSSLObject`. Its first ``do_handshake()``, before any byte of
   the other side is read, swaps ``sslobj.context`` to the context of the files as
   they are now (OpenSSL's ``SSL_set_SSL_CTX``: certificate and key swap; verify
   mode, hostname and SNI stay with the connection). An established connection
   keeps the context it started with.
2. :meth:`CertReloader.current` keys its cached context by the certificate and key
   files' (inode, size, mtime, ctime): two ``stat`` calls per handshake, a rebuild
   only when a file changed. A pair that cannot be loaded (a key not matching the
   certificate, half-written files) fails that handshake and is logged, as etcd
   does; the next connection tries the files again. The trusted CA is read once at
   start, as etcd 3.5 reads it.
3. When the handshake is done, etcd's checks of the other side's certificate run
   (``policy.check_peer_cert``: allowed CN or hostname, and on the listening side
   the CRL, read again when its file changes). A refusal fails the handshake: the
   connection is closed before the protocol above ever sees it.
4. Every context of one reloader is built by the one function, so ALPN, cipher
   suites and versions (the :class:`TLSPolicy`) are the same before and after a swap.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pyetcd.logutil import Logger
from pyetcd.tlsutil.policy import (
    PeerCertRules,
    TLSPolicy,
    TLSSetupError,
    cert_names,
    check_peer_cert,
    revoked_serials,
)

__all__ = ["CertReloader", "TLSInfo"]

_FileKey = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class TLSInfo:
    """One side's certificate, key, trusted CA, policy and checks of the other side."""

    cert_file: str
    key_file: str
    trusted_ca_file: str = ""
    # With a trusted CA the other side must show a certificate it signed, flag or not
    # (etcd 3.5's RequireAndVerifyClientCert when TrustedCAFile is set).
    client_cert_auth: bool = False
    self_signed: bool = False
    rules: PeerCertRules = field(default_factory=PeerCertRules)
    policy: TLSPolicy = field(default_factory=TLSPolicy)

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

    def server_context(
        self, alpn: Sequence[str] = (), logger: Logger | None = None
    ) -> ssl.SSLContext:
        """A listening context that serves the certificate files as they are at each
        handshake (see the module docstring).

        Raises:
            TLSSetupError: the files cannot be loaded now.
        """
        return CertReloader(self, server_side=True, alpn=alpn, logger=logger).context

    def client_context(self, logger: Logger | None = None) -> ssl.SSLContext:
        """A dialing context: presents our certificate as the files are at each
        handshake, checks the server's against the trusted CA (none with auto TLS and
        no CA: etcd's InsecureSkipVerify for self-signed peers).

        Raises:
            TLSSetupError: the files cannot be loaded now.
        """
        return CertReloader(self, server_side=False, logger=logger).context


class _ReloadingContext(ssl.SSLContext):
    """A context built by a :class:`CertReloader`; its connections rotate (rule 1)."""

    reloader: CertReloader


class _RotatingSSLObject(ssl.SSLObject):
    _swapped = False

    def do_handshake(self) -> None:
        ctx = self.context
        assert isinstance(ctx, _ReloadingContext)
        reloader = ctx.reloader
        if not self._swapped:
            self._swapped = True
            current = reloader.current()
            if current is not ctx:
                self.context = current
        super().do_handshake()
        reloader.after_handshake(self)


_ReloadingContext.sslobject_class = _RotatingSSLObject


class CertReloader:
    """The contexts of one side and role (listening or dialing), following the files."""

    def __init__(
        self,
        info: TLSInfo,
        *,
        server_side: bool,
        alpn: Sequence[str] = (),
        logger: Logger | None = None,
    ) -> None:
        """Build the first context from the files.

        Raises:
            TLSSetupError: the certificate, key or CA cannot be loaded.
        """
        self.info = info
        self.server_side = server_side
        self.alpn = tuple(alpn)
        self.log = logger
        self.ca: str | None = None
        if info.trusted_ca_file:
            try:
                with open(info.trusted_ca_file, encoding="ascii") as f:
                    self.ca = f.read()
            except (OSError, ValueError) as err:
                raise TLSSetupError(f"cannot load TLS certificate: {err}") from err
        self._key: tuple[_FileKey, _FileKey] | None = None
        self._failed: tuple[Any, ssl.SSLError] | None = None
        self._crl_key: _FileKey | None = None
        self._revoked: frozenset[int] = frozenset()
        try:
            self._key = self._files_key()
            self._current = self._build()
        except (OSError, ssl.SSLError) as err:
            raise TLSSetupError(f"cannot load TLS certificate: {err}") from err
        #: The context to hand to asyncio; never itself replaced.
        self.context: ssl.SSLContext = self._current

    def _files_key(self) -> tuple[_FileKey, _FileKey]:
        return _stat_key(self.info.cert_file), _stat_key(self.info.key_file)

    def _build(self) -> _ReloadingContext:
        info = self.info
        ctx = _ReloadingContext(
            ssl.PROTOCOL_TLS_SERVER if self.server_side else ssl.PROTOCOL_TLS_CLIENT
        )
        ctx.reloader = self
        info.policy.apply(ctx)
        ctx.load_cert_chain(info.cert_file, info.key_file)
        if self.server_side:
            if self.ca is not None:
                ctx.load_verify_locations(cadata=self.ca)
                ctx.verify_mode = ssl.CERT_REQUIRED
            elif info.client_cert_auth:
                # Asked for client certificates with nothing to check them against:
                # refuse every one, as Go does with an empty pool.
                ctx.verify_mode = ssl.CERT_REQUIRED
        elif self.ca is not None:
            ctx.load_verify_locations(cadata=self.ca)
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.alpn:
            ctx.set_alpn_protocols(list(self.alpn))
        return ctx

    def current(self) -> ssl.SSLContext:
        """The context of the certificate and key files as they are now (rule 2).

        Raises:
            ssl.SSLError: the files cannot be loaded as a pair (logged here).
        """
        try:
            key = self._files_key()
        except OSError as err:
            return self._refuse(None, ssl.SSLError(f"cannot read TLS file: {err}"))
        if key == self._key:
            return self._current
        if self._failed is not None and self._failed[0] == key:
            return self._refuse(key, self._failed[1])
        try:
            ctx = self._build()
        except (OSError, ssl.SSLError) as err:
            return self._refuse(key, ssl.SSLError(str(err)))
        self._key, self._current, self._failed = key, ctx, None
        if self.log is not None:
            self.log.info(
                "loaded new TLS certificate",
                {"cert-file": self.info.cert_file, "key-file": self.info.key_file},
            )
        return ctx

    def _refuse(self, key: Any, err: ssl.SSLError) -> ssl.SSLContext:
        self._failed = (key, err)
        if self.log is not None:
            what = (
                "failed to create peer certificate"
                if self.server_side
                else ("failed to create client certificate")
            )
            self.log.warn(
                what,
                {
                    "cert-file": self.info.cert_file,
                    "key-file": self.info.key_file,
                    "error": str(err),
                },
            )
        raise err

    def after_handshake(self, sslobj: ssl.SSLObject) -> None:
        """etcd's checks of the other side's certificate (rule 3).

        Raises:
            ssl.SSLError: the certificate is refused (logged here).
        """
        rules = self.info.rules
        crl = bool(rules.crl_file) and self.server_side
        if not (crl or rules.names_checked):
            return
        der = sslobj.getpeercert(binary_form=True)
        try:
            revoked = self._crl() if crl else None
            reason = check_peer_cert(der, rules, revoked)
        except (OSError, ValueError) as err:
            reason = str(err)
        if reason is None:
            return
        if self.log is not None:
            fields: dict[str, Any] = {}
            if der is not None:
                ips, dns = cert_names(der)
                fields = {"ip-addresses": ips, "dns-names": dns}
            self.log.warn("rejected connection", {**fields, "error": reason})
        raise ssl.SSLError(reason)

    def _crl(self) -> frozenset[int]:
        # etcd reads the CRL for every connection; here again when the file changed.
        key = _stat_key(self.info.rules.crl_file)
        if key != self._crl_key:
            with open(self.info.rules.crl_file, "rb") as f:
                self._revoked = revoked_serials(f.read())
            self._crl_key = key
        return self._revoked


def _stat_key(path: str) -> _FileKey:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns
