"""pyetcd.config and pyetcd.flagspec: the flag table, value parsing, validation, YAML."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pyetcd.config import (
    CONFIG_FIELDS,
    ConfigError,
    ServerConfig,
    config_from_file,
    field_name,
    validate,
)
from pyetcd.flagspec import FLAGS, FLAGS_BY_NAME, FlagKind, FlagValueError, parse_value
from pyetcd.logutil import LogLevelError

CLI_ONLY = {"config-file", "version"}


def test_every_supported_flag_is_a_config_field_with_etcds_default() -> None:
    defaults = {f.name: f.default for f in dataclasses.fields(ServerConfig)}
    for spec in FLAGS:
        if not spec.supported or spec.name in CLI_ONLY:
            assert field_name(spec.name) not in CONFIG_FIELDS or spec.name in CLI_ONLY
            continue
        assert field_name(spec.name) in CONFIG_FIELDS, spec.name
        assert parse_value(spec, spec.default) == defaults[field_name(spec.name)], spec.name


def test_compat_doc_flags_are_supported() -> None:
    listed = """name data-dir wal-dir listen-client-urls advertise-client-urls listen-peer-urls
    initial-advertise-peer-urls initial-cluster initial-cluster-token initial-cluster-state
    snapshot-count heartbeat-interval election-timeout quota-backend-bytes
    auto-compaction-mode auto-compaction-retention max-request-bytes max-txn-ops
    max-snapshots max-wals logger log-outputs log-level pre-vote
    strict-reconfig-check enable-grpc-gateway auth-token bcrypt-cost
    auth-token-ttl config-file cert-file key-file client-cert-auth
    trusted-ca-file auto-tls peer-cert-file peer-key-file peer-client-cert-auth
    peer-trusted-ca-file peer-auto-tls"""
    for name in listed.split():
        assert FLAGS_BY_NAME[name].supported, name


def test_defaults_match_etcd() -> None:
    cfg = ServerConfig()
    assert cfg.name == "default"
    assert cfg.listen_client_urls == cfg.advertise_client_urls == ("http://localhost:2379",)
    assert cfg.listen_peer_urls == cfg.initial_advertise_peer_urls == ("http://localhost:2380",)
    assert cfg.initial_cluster == "default=http://localhost:2380"
    assert (cfg.heartbeat_interval, cfg.election_timeout, cfg.election_ticks) == (100, 1000, 10)
    assert cfg.quota_bytes == 2 * 1024**3
    assert cfg.grpc_keepalive_timeout == 20.0 and cfg.grpc_keepalive_interval == 7200.0
    assert FLAGS_BY_NAME["initial-cluster-token"].env_name == "ETCD_INITIAL_CLUSTER_TOKEN"


@pytest.mark.parametrize(
    ("flag", "text", "expected"),
    [
        ("snapshot-count", "0x10", 16),
        ("snapshot-count", "010", 8),  # Go: a leading 0 is octal
        ("quota-backend-bytes", "-5", -5),
        ("pre-vote", "F", False),
        ("pre-vote", "1", True),
        ("grpc-keepalive-interval", "1h30m", 5400.0),
        ("grpc-keepalive-interval", "250ms", 0.25),
        ("grpc-keepalive-interval", "0", 0.0),
        ("listen-client-urls", "http://b:2,http://a:1,http://b:2", ("http://a:1", "http://b:2")),
        ("listen-client-urls", "unix://sock", ("unix://sock",)),
        ("log-outputs", "stdout,stderr", ("stderr", "stdout")),
        ("initial-cluster-state", "existing", "existing"),
    ],
)
def test_parse_value(flag: str, text: str, expected: object) -> None:
    assert parse_value(FLAGS_BY_NAME[flag], text) == expected


@pytest.mark.parametrize(
    ("flag", "text", "reason"),
    [
        ("snapshot-count", "abc", "parse error"),
        ("heartbeat-interval", "-1", "parse error"),
        ("snapshot-count", "99999999999999999999", "value out of range"),
        ("grpc-keepalive-interval", "5", "parse error"),  # Go needs a unit
        ("pre-vote", "yes", "parse error"),
        ("initial-cluster-state", "bogus", "invalid value"),
        ("listen-peer-urls", "foo", "URL scheme must be http, https, unix, or unixs: foo"),
        ("listen-client-urls", "http://127.0.0.1:2379/foo",
         "URL must not contain a path: http://127.0.0.1:2379/foo"),
        ("listen-client-urls", "http://127.0.0.1",
         'URL address does not have the form "host:port": http://127.0.0.1'),
        ("listen-client-urls", "127.0.0.1:2379",
         'parse "127.0.0.1:2379": first path segment in URL cannot contain colon'),
    ],
)
def test_parse_value_errors_have_gos_reason(flag: str, text: str, reason: str) -> None:
    with pytest.raises(FlagValueError) as info:
        parse_value(FLAGS_BY_NAME[flag], text)
    assert str(info.value) == reason


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"heartbeat_interval": 300},
         "--election-timeout[1000ms] should be at least as 5 times as "
         "--heartbeat-interval[300ms]"),
        ({"election_timeout": 60000},
         "--election-timeout[60000ms] is too long, and should be set less than 50000ms"),
        ({"heartbeat_interval": 0}, "--heartbeat-interval must be >0 (set to 0ms)"),
        ({"election_timeout": 0}, "--election-timeout must be >0 (set to 0ms)"),
        ({"advertise_client_urls": ()},
         "--advertise-client-urls is required when --listen-client-urls is set explicitly"),
        ({"auto_compaction_mode": "bogus"}, 'unknown auto-compaction-mode "bogus"'),
        ({"listen_client_urls": ("http://example.com:2379",)},
         "expected IP in URL for binding (http://example.com:2379)"),
        ({"initial_advertise_peer_urls": ("http://:2380",)},
         '--initial-advertise-peer-urls "http://:2380" must be "host:port" '
         "(unexpected empty host (http://:2380))"),
        ({"logger": "capnslog"}, "--logger=capnslog is removed in v3.5"),
        ({"logger": "other"}, 'unknown logger option "other"'),
        ({"log_outputs": ("default", "stdout")},
         'multi logoutput for "default" is not supported yet'),
        ({"initial_cluster_state": "old"}, 'unexpected clusterState "old"'),
        # etcd 3.5.13's texts (3.5.1 has neither flag)
        ({"experimental_enable_lease_checkpoint_persist": True},
         "setting experimental-enable-lease-checkpoint-persist requires "
         "experimental-enable-lease-checkpoint"),
        ({"experimental_compact_hash_check_time": -1.5},
         "--experimental-compact-hash-check-time must be >0 (set to -1.5s)"),
    ],
)
def test_validate_errors_have_etcds_text(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate(ServerConfig().replace(**changes))
    assert str(info.value) == message


def test_validate_accepts_defaults_and_bind_forms() -> None:
    validate(ServerConfig())
    validate(ServerConfig(listen_client_urls=("http://0.0.0.0:2379", "http://[::1]:2379",
                                        "unix://sock")))


def test_validate_unknown_log_level_is_a_panic() -> None:
    with pytest.raises(LogLevelError, match='unrecognized level: "bogus"'):
        validate(ServerConfig(log_level="bogus"))


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "etcd.yaml"
    path.write_text(text)
    return str(path)


def test_config_file_uses_etcds_keys(tmp_path: Path) -> None:
    path = _write(tmp_path, """
name: infra1
data-dir: "/var/lib/etcd "
listen-client-urls: http://127.0.0.1:2379,http://10.0.0.1:2379
advertise-client-urls: http://10.0.0.1:2379
initial-cluster: infra1=http://10.0.0.1:2380
initial-cluster-state: existing
heartbeat-interval: 200
election-timeout: 2000
grpc-keepalive-timeout: 10000000000
auto-compaction-retention: "24"
log-outputs: [stderr]
pre-vote: false
client-transport-security:
  cert-file: /c.pem
  client-cert-auth: true
peer-transport-security:
  trusted-ca-file: /ca.pem
some-future-key: 1
""")
    cfg, unknown = config_from_file(path)
    assert cfg.name == "infra1" and cfg.data_dir == "/var/lib/etcd "
    assert cfg.listen_client_urls == ("http://10.0.0.1:2379", "http://127.0.0.1:2379")
    assert cfg.initial_cluster_state == "existing"
    assert (cfg.heartbeat_interval, cfg.election_timeout) == (200, 2000)
    assert cfg.grpc_keepalive_timeout == 10.0
    assert cfg.auto_compaction_retention == "24"
    assert cfg.log_outputs == ("stderr",) and cfg.pre_vote is False
    assert cfg.cert_file == "/c.pem" and cfg.client_cert_auth is True
    assert cfg.peer_trusted_ca_file == "/ca.pem"
    assert cfg.config_file == path
    assert unknown == ["some-future-key"]


def test_config_file_takes_later_releases_keys(tmp_path: Path) -> None:
    # etcd 3.5.10 (#16435): the socket options in a config file; 3.5.5's stream limit
    path = _write(tmp_path, """
socket-reuse-port: true
socket-reuse-address: true
max-concurrent-streams: 64
""")
    cfg, unknown = config_from_file(path)
    assert (cfg.socket_reuse_port, cfg.socket_reuse_address) == (True, True)
    assert cfg.max_concurrent_streams == 64 and unknown == []


def test_config_file_listen_client_alone_keeps_default_advertise(tmp_path: Path) -> None:
    # Unlike the command line, etcd's file mode does not clear the advertise default.
    cfg, _ = config_from_file(_write(tmp_path, "listen-client-urls: http://127.0.0.1:40011\n"))
    assert cfg.advertise_client_urls == ("http://localhost:2379",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("heartbeat-interval: 300\n",
         "--election-timeout[1000ms] should be at least as 5 times as "
         "--heartbeat-interval[300ms]"),
        ("enable-v2: true\n", "--enable-v2 is not supported by pyetcd"),
        ("listen-peer-urls: foo\n",
         "unexpected error setting up listen-peer-urls: URL scheme must be http, https, "
         "unix, or unixs: foo"),
    ],
)
def test_config_file_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_file(_write(tmp_path, text))
    assert str(info.value) == message


def test_config_file_unsupported_flag_with_default_value_is_fine(tmp_path: Path) -> None:
    cfg, unknown = config_from_file(_write(tmp_path, "enable-v2: false\nproxy: 'off'\n"))
    assert cfg == ServerConfig(config_file=cfg.config_file,
                         flags_explicitly_set=frozenset({"enable-v2", "proxy"}))
    assert unknown == []


def test_flag_kinds_cover_table() -> None:
    assert {spec.kind for spec in FLAGS} == set(FlagKind)
