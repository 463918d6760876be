"""TLS for the client and peer URLs: etcd's flags (``info``), what a connection may
negotiate and which certificates are accepted (``policy``), and contexts that follow
certificate files rotated on disk (``contexts``)."""

from __future__ import annotations

from pyetcd.tlsutil.contexts import CertReloader, TLSInfo
from pyetcd.tlsutil.info import client_tls_info, peer_tls_info, self_signed_cert
from pyetcd.tlsutil.policy import PeerCertRules, TLSPolicy, TLSSetupError, tls_policy

__all__ = [
    "CertReloader",
    "PeerCertRules",
    "TLSInfo",
    "TLSPolicy",
    "TLSSetupError",
    "client_tls_info",
    "peer_tls_info",
    "self_signed_cert",
    "tls_policy",
]
