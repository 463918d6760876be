"""pyetcd/tlsutil/info.py and the TLS flags' checks: etcd's names, YAML keys and
texts (``--tls-{min,max}-version`` as etcd 3.5.8 checks them; the others as etcd
3.5.1 prints them, see tests/e2e/test_tls_rotation.py for the side-by-side run)."""

from __future__ import annotations

import io
import json
import ssl
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from pyetcd import cli
from pyetcd.config import ServerConfig, config_from_file
from pyetcd.tlsutil import TLSSetupError, client_tls_info, peer_tls_info
from tests.e2e.tls_certs import CertAuthority


def run(args: list[str], env: dict[str, str] | None = None) -> tuple[int, list[dict[str, Any]]]:
    out, err = io.StringIO(), io.StringIO()
    rc = cli._run(list(args), env or {}, ["pyetcd", *args], out, err)
    return rc, [json.loads(line) for line in err.getvalue().splitlines() if line.startswith("{")]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[ServerConfig]:
    configs: list[ServerConfig] = []
    module = types.ModuleType("pyetcd.embed")

    def fake_run(cfg: ServerConfig) -> int:
        configs.append(cfg)
        return 0

    module.run = fake_run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pyetcd.embed", module)
    return configs


@pytest.mark.parametrize(
    ("args", "env", "error"),
    [
        (["--tls-min-version", "TLS1.1"], {},
         'unexpected TLS version "TLS1.1" (must be one of: TLS1.2, TLS1.3)'),
        ([], {"ETCD_TLS_MAX_VERSION": "tls1.3"},
         'unexpected TLS version "tls1.3" (must be one of: TLS1.2, TLS1.3)'),
        (["--tls-min-version", "TLS1.3", "--tls-max-version", "TLS1.2"], {},
         "min version (TLS1.3) is greater than max version (TLS1.2)"),
        (["--tls-min-version", "TLS1.3", "--cipher-suites", "TLS_AES_128_GCM_SHA256"], {},
         "cipher suites cannot be configured when only TLS1.3 is enabled"),
    ],
)  # fmt: skip
def test_version_errors_fail_verification(args: list[str], env: dict[str, str], error: str) -> None:
    rc, records = run(args, env)
    assert rc == 1
    assert [r["error"] for r in records if r["msg"] == "failed to verify flags"] == [error]


def test_tls_flags_reach_the_config(started: list[ServerConfig]) -> None:
    rc, _ = run(
        [
            "--cipher-suites", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_AES_128_GCM_SHA256",
            "--tls-max-version", "TLS1.3", "--client-crl-file", "c.crl",
            "--client-cert-allowed-hostname", "client.example", "--peer-crl-file", "p.crl",
            "--peer-cert-allowed-cn", "etcd-peer",
        ],
        {"ETCD_TLS_MIN_VERSION": "TLS1.2", "ETCD_PEER_CERT_ALLOWED_HOSTNAME": "peer.example"},
    )  # fmt: skip
    assert rc == 0
    cfg = started[0]
    assert cfg.cipher_suites == ("TLS_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
    assert (cfg.tls_min_version, cfg.tls_max_version) == ("TLS1.2", "TLS1.3")
    assert (cfg.client_crl_file, cfg.client_cert_allowed_hostname) == ("c.crl", "client.example")
    assert (cfg.peer_crl_file, cfg.peer_cert_allowed_cn) == ("p.crl", "etcd-peer")
    assert cfg.peer_cert_allowed_hostname == "peer.example"


def test_yaml_keys_are_etcds(tmp_path: Path) -> None:
    path = tmp_path / "etcd.yaml"
    path.write_text(
        "cipher-suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n"
        "tls-min-version: TLS1.2\n"
        "tls-max-version: TLS1.2\n"
        "client-transport-security:\n"
        "  crl-file: /c.crl\n"
        "  allowed-hostname: client.example\n"
        "peer-transport-security:\n"
        "  crl-file: /p.crl\n"
        "  allowed-cn: etcd-peer\n"
    )
    cfg, unknown = config_from_file(str(path))
    assert unknown == []
    assert cfg.cipher_suites == ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",)
    assert cfg.tls_max_version == "TLS1.2"
    assert (cfg.client_crl_file, cfg.client_cert_allowed_hostname) == ("/c.crl", "client.example")
    assert (cfg.peer_crl_file, cfg.peer_cert_allowed_cn) == ("/p.crl", "etcd-peer")


def test_cipher_suites_are_checked_even_without_tls() -> None:
    # etcd 3.5.1 refuses an unknown suite at start with plain http URLs too
    cfg = ServerConfig(data_dir="d", cipher_suites=("bogus",))
    with pytest.raises(TLSSetupError, match='unexpected TLS cipher suite "bogus"'):
        client_tls_info(cfg)


def test_infos_carry_each_sides_rules_and_the_shared_policy(tmp_path: Path) -> None:
    ca = CertAuthority(tmp_path)
    cert, key = ca.issue("m", "etcd-peer")
    cfg = ServerConfig(
        data_dir=str(tmp_path / "d"),
        listen_client_urls=("https://127.0.0.1:1",),
        advertise_client_urls=("https://127.0.0.1:1",),
        listen_peer_urls=("https://127.0.0.1:2",),
        initial_advertise_peer_urls=("https://127.0.0.1:2",),
        cert_file=str(cert), key_file=str(key), peer_cert_file=str(cert), peer_key_file=str(key),
        client_crl_file="c.crl", client_cert_allowed_hostname="client.example",
        peer_crl_file="p.crl", peer_cert_allowed_cn="etcd-peer",
        cipher_suites=("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",), tls_max_version="TLS1.2",
    )  # fmt: skip
    client, peer = client_tls_info(cfg), peer_tls_info(cfg)
    assert client is not None and peer is not None
    assert (client.rules.crl_file, client.rules.allowed_hostname) == ("c.crl", "client.example")
    assert client.rules.allowed_cn == ""
    assert (peer.rules.crl_file, peer.rules.allowed_cn) == ("p.crl", "etcd-peer")
    assert client.policy == peer.policy
    assert client.policy.ciphers == ("ECDHE-ECDSA-AES128-GCM-SHA256",)
    assert client.policy.max_version is ssl.TLSVersion.TLSv1_2
    with pytest.raises(TLSSetupError, match="mutually exclusive"):
        peer_tls_info(cfg.replace(peer_cert_allowed_hostname="h"))
