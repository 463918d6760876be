"""The server's configuration: etcd's flags as one frozen value, with etcd's rules.

Rules this module keeps:

1. One field per supported etcd flag, named like the flag with ``-`` → ``_``
   (``--initial-cluster-token`` → ``initial_cluster_token``), defaulting to etcd
   3.5's default. Millisecond flags stay integers in milliseconds; Go durations
   (``5s``, ``2h``) become float seconds; URL lists are sorted, de-duplicated tuples
   of URL strings, as etcd keeps them.
2. etcd flags pyetcd does not implement are in :data:`FLAGS` with ``supported=False``:
   giving one with its default value is harmless, any other value is refused with
   ``--<flag> is not supported by pyetcd`` (never silently ignored).
3. Error texts are etcd 3.5.1's, observed on the real binary; they are what scripts
   and operators grep for.

The command line and ``ETCD_*`` variables are read by :mod:`pyetcd.cli`; YAML config
files by :func:`config_from_file` here. Both end in :func:`validate`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pyetcd.flagspec import (
    FLAGS,
    FLAGS_BY_NAME,
    MAX_UINT32,
    FlagKind,
    FlagSpec,
    FlagValueError,
    Value,
    parse_duration,
    parse_value,
    split_host_port,
)
from pyetcd.logrotate import LogRotation, LogRotationError, parse_log_rotation
from pyetcd.logutil import DEFAULT_LOG_OUTPUT, go_duration, parse_level

__all__ = [
    "CLUSTER_STATE_EXISTING",
    "CLUSTER_STATE_NEW",
    "DEFAULT_INITIAL_CLUSTER",
    "DEFAULT_NAME",
    "DEFAULT_QUOTA_BYTES",
    "ERR_CONFLICT_BOOTSTRAP_FLAGS",
    "MAX_ELECTION_MS",
    "ConfigError",
    "ServerConfig",
    "compaction_retention",
    "config_from_file",
    "discovery_clears_initial_cluster",
    "log_rotation",
    "validate",
]

DEFAULT_NAME = "default"
DEFAULT_INITIAL_CLUSTER = "default=http://localhost:2380"
CLUSTER_STATE_NEW = "new"
CLUSTER_STATE_EXISTING = "existing"
MAX_ELECTION_MS = 50000
# --quota-backend-bytes 0 means etcd's default quota of 2 GiB.
DEFAULT_QUOTA_BYTES = 2 * 1024 * 1024 * 1024
ERR_UNSET_ADVERTISE_CLIENT_URLS = (
    "--advertise-client-urls is required when --listen-client-urls is set explicitly"
)


class ConfigError(Exception):
    """The configuration is refused; ``str(exc)`` is etcd's error text."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything a pyetcd member is started with (the one config object)."""

    # Member
    name: str = DEFAULT_NAME
    data_dir: str = ""  # "" until resolved: cli turns it into "<name>.etcd"
    wal_dir: str = ""
    snapshot_count: int = 100000
    heartbeat_interval: int = 100  # ms
    election_timeout: int = 1000  # ms; >= 5 * heartbeat_interval, <= MAX_ELECTION_MS
    initial_election_tick_advance: bool = True
    listen_peer_urls: tuple[str, ...] = ("http://localhost:2380",)
    listen_client_urls: tuple[str, ...] = ("http://localhost:2379",)
    max_snapshots: int = 5
    max_wals: int = 5
    quota_backend_bytes: int = 0  # 0 = DEFAULT_QUOTA_BYTES
    backend_batch_interval: float = 0.0  # seconds; 0 = the backend's default
    backend_batch_limit: int = 0  # 0 = the backend's default
    max_txn_ops: int = 128
    max_request_bytes: int = 1572864
    max_concurrent_streams: int = MAX_UINT32  # etcd's default: no limit
    grpc_keepalive_min_time: float = 5.0
    grpc_keepalive_interval: float = 7200.0
    grpc_keepalive_timeout: float = 20.0
    socket_reuse_port: bool = False
    socket_reuse_address: bool = False
    # Clustering
    initial_advertise_peer_urls: tuple[str, ...] = ("http://localhost:2380",)
    initial_cluster: str = DEFAULT_INITIAL_CLUSTER
    initial_cluster_state: str = CLUSTER_STATE_NEW
    initial_cluster_token: str = "etcd-cluster"
    discovery_srv: str = ""  # DNS domain whose SRV records give the initial cluster
    discovery_srv_name: str = ""
    # Empty only when --listen-client-urls was given without it (then invalid).
    advertise_client_urls: tuple[str, ...] = ("http://localhost:2379",)
    strict_reconfig_check: bool = True
    pre_vote: bool = True
    auto_compaction_retention: str = "0"
    auto_compaction_mode: str = "periodic"
    enable_grpc_gateway: bool = True
    # Security
    cert_file: str = ""
    key_file: str = ""
    client_cert_auth: bool = False
    trusted_ca_file: str = ""
    auto_tls: bool = False
    peer_cert_file: str = ""
    peer_key_file: str = ""
    peer_client_cert_auth: bool = False
    peer_trusted_ca_file: str = ""
    peer_auto_tls: bool = False
    client_crl_file: str = ""
    client_cert_allowed_hostname: str = ""
    peer_crl_file: str = ""
    peer_cert_allowed_cn: str = ""
    peer_cert_allowed_hostname: str = ""
    cipher_suites: tuple[str, ...] = ()  # Go's names, checked when TLS is set up
    tls_min_version: str = "TLS1.2"  # "", TLS1.2 or TLS1.3 (etcd 3.5.8+)
    tls_max_version: str = ""
    # Auth
    auth_token: str = "simple"
    bcrypt_cost: int = 10
    auth_token_ttl: int = 300  # seconds
    enable_dashboard: bool = True  # pyetcd's own flag
    # Profiling and monitoring
    metrics: str = "basic"  # "extensive": gRPC handling-time histograms too (as etcd)
    listen_metrics_urls: tuple[str, ...] = ()
    # Logging
    logger: str = "zap"
    log_outputs: tuple[str, ...] = (DEFAULT_LOG_OUTPUT,)
    log_level: str = "info"
    enable_log_rotation: bool = False
    log_rotation_config_json: str = (
        '{"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false}'
    )
    # Experimental and unsafe
    experimental_initial_corrupt_check: bool = False
    experimental_watch_progress_notify_interval: float = 600.0
    experimental_corrupt_check_time: float = 0.0  # seconds; 0 disables
    experimental_compact_hash_check_enabled: bool = False
    experimental_enable_lease_checkpoint: bool = False
    experimental_enable_lease_checkpoint_persist: bool = False
    experimental_compact_hash_check_time: float = 60.0  # seconds
    experimental_compaction_batch_limit: int = 1000
    experimental_warning_apply_duration: float = 0.1
    unsafe_no_fsync: bool = False
    # Where this config came from: the flag names given explicitly (command line or
    # ETCD_* variable, as etcd's FlagsExplicitlySet), and the YAML file if one was used.
    flags_explicitly_set: frozenset[str] = field(default=frozenset())
    config_file: str = ""

    @property
    def member_dir(self) -> str:
        """``<data-dir>/member``, where etcd keeps the WAL and snapshots."""
        return os.path.join(self.data_dir, "member")

    @property
    def wal_path(self) -> str:
        """The WAL directory: ``--wal-dir`` if set, else ``<data-dir>/member/wal``."""
        return self.wal_dir or os.path.join(self.member_dir, "wal")

    @property
    def snap_path(self) -> str:
        """``<data-dir>/member/snap``: the backend ``db`` and raft snapshots."""
        return os.path.join(self.member_dir, "snap")

    @property
    def election_ticks(self) -> int:
        """Election timeout in heartbeat ticks, as etcd hands it to raft."""
        return self.election_timeout // self.heartbeat_interval

    @property
    def quota_bytes(self) -> int:
        """The backend quota in bytes with etcd's 0 → 2 GiB default applied."""
        return self.quota_backend_bytes if self.quota_backend_bytes > 0 else DEFAULT_QUOTA_BYTES

    def replace(self, **changes: Any) -> ServerConfig:
        """A copy with ``changes`` applied (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


CONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(ServerConfig))


def field_name(flag: str) -> str:
    """The :class:`ServerConfig` field of an etcd flag name."""
    return flag.replace("-", "_")


def check_unsupported(values: Mapping[str, Value], origin: Mapping[str, str]) -> None:
    """Refuse any unsupported flag whose value differs from etcd's default.

    Args:
        values: flag name -> parsed value for the flags that were given.
        origin: flag name -> how the user spelled it (``--flag`` or ``ETCD_FLAG``).
    """
    for name, value in values.items():
        spec = FLAGS_BY_NAME[name]
        if spec.supported:
            continue
        if value != parse_value(spec, spec.default):
            shown = origin.get(name, f"--{name}")
            added = f" (a flag of etcd {spec.since})" if spec.since else ""
            raise ConfigError(f"{shown} is not supported by pyetcd{added}")


# ---------------------------------------------------------------- validation


def _check_bind_urls(urls: tuple[str, ...]) -> None:
    for url in urls:
        scheme, _, rest = url.partition("://")
        if scheme in ("unix", "unixs"):
            continue
        host, _port = split_host_port(rest)
        if host == "localhost":
            continue
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(f"expected IP in URL for binding ({url})") from None


def _check_host_urls(flag: str, urls: tuple[str, ...]) -> None:
    for url in urls:
        host, _port = split_host_port(url.partition("://")[2])
        if host == "":
            joined = ",".join(urls)
            raise ConfigError(
                f'{flag} "{joined}" must be "host:port" (unexpected empty host ({url}))'
            )


def _check_logging(cfg: ServerConfig) -> None:
    if cfg.logger == "capnslog":
        raise ConfigError("--logger=capnslog is removed in v3.5")
    if cfg.logger != "zap":
        raise ConfigError(f'unknown logger option "{cfg.logger}"')
    if len(cfg.log_outputs) > 1 and DEFAULT_LOG_OUTPUT in cfg.log_outputs:
        raise ConfigError(f'multi logoutput for "{DEFAULT_LOG_OUTPUT}" is not supported yet')
    log_rotation(cfg)
    parse_level(cfg.log_level)  # LogLevelError: etcd panics here


ERR_LOG_ROTATION_INVALID_LOG_OUTPUT = (
    "--log-outputs requires a single file path when --log-rotate-config-json is defined"
)


def log_rotation(cfg: ServerConfig) -> LogRotation | None:
    """The rotation of the file log output, None without ``--enable-log-rotation``.

    Raises:
        ConfigError: etcd's text: not exactly one file output (a lone stream output, or
            several files), or a ``--log-rotation-config-json`` that does not parse.
    """
    if not cfg.enable_log_rotation:
        return None
    outputs = cfg.log_outputs or (DEFAULT_LOG_OUTPUT,)
    files = [o for o in outputs if o not in (DEFAULT_LOG_OUTPUT, "stderr", "stdout")]
    # etcd's own rule: [stderr, stdout] passes (and rotates nothing)
    if (len(outputs) == 1 and not files) or len(files) > 1:
        raise ConfigError(ERR_LOG_ROTATION_INVALID_LOG_OUTPUT)
    try:
        return parse_log_rotation(cfg.log_rotation_config_json)
    except LogRotationError as exc:
        raise ConfigError(str(exc)) from None


ERR_CONFLICT_BOOTSTRAP_FLAGS = (
    'multiple discovery or bootstrap flags are set. Choose one of "initial-cluster", '
    '"discovery" or "discovery-srv"'
)


def discovery_clears_initial_cluster(cfg: ServerConfig) -> ServerConfig:
    """etcd drops the default ``--initial-cluster`` when a discovery flag is set and
    ``--initial-cluster`` was not given: the cluster then comes from DNS."""
    if (cfg.discovery_srv or cfg.discovery_srv_name) and (
        "initial-cluster" not in cfg.flags_explicitly_set
    ):
        return cfg.replace(initial_cluster="")
    return cfg


def validate(cfg: ServerConfig) -> None:
    """Check ``cfg`` the way etcd's ``embed.ServerConfig.Validate`` does, in the same order.

    Raises:
        ConfigError: with etcd's message.
        LogLevelError: for an unknown ``--log-level`` (etcd panics, exit status 2).
    """
    _check_logging(cfg)
    _check_bind_urls(cfg.listen_peer_urls)
    _check_bind_urls(cfg.listen_client_urls)
    _check_bind_urls(cfg.listen_metrics_urls)
    _check_host_urls("--initial-advertise-peer-urls", cfg.initial_advertise_peer_urls)
    _check_host_urls("--advertise-client-urls", cfg.advertise_client_urls)
    if cfg.initial_cluster_state not in (CLUSTER_STATE_NEW, CLUSTER_STATE_EXISTING):
        raise ConfigError(f'unexpected clusterState "{cfg.initial_cluster_state}"')
    if cfg.initial_cluster and cfg.discovery_srv:
        raise ConfigError(ERR_CONFLICT_BOOTSTRAP_FLAGS)
    if cfg.heartbeat_interval == 0:
        raise ConfigError("--heartbeat-interval must be >0 (set to 0ms)")
    if cfg.election_timeout == 0:
        raise ConfigError("--election-timeout must be >0 (set to 0ms)")
    if 5 * cfg.heartbeat_interval > cfg.election_timeout:
        raise ConfigError(
            f"--election-timeout[{cfg.election_timeout}ms] should be at least as 5 times "
            f"as --heartbeat-interval[{cfg.heartbeat_interval}ms]"
        )
    if cfg.election_timeout > MAX_ELECTION_MS:
        raise ConfigError(
            f"--election-timeout[{cfg.election_timeout}ms] is too long, and should be set "
            f"less than {MAX_ELECTION_MS}ms"
        )
    if cfg.listen_client_urls and not cfg.advertise_client_urls:
        raise ConfigError(ERR_UNSET_ADVERTISE_CLIENT_URLS)
    if cfg.auto_compaction_mode not in ("", "periodic", "revision"):
        raise ConfigError(f'unknown auto-compaction-mode "{cfg.auto_compaction_mode}"')
    compaction_retention(cfg)
    if cfg.experimental_enable_lease_checkpoint_persist and not (
        cfg.experimental_enable_lease_checkpoint
    ):
        raise ConfigError(
            "setting experimental-enable-lease-checkpoint-persist requires "
            "experimental-enable-lease-checkpoint"
        )
    if cfg.experimental_compact_hash_check_time <= 0:
        raise ConfigError(
            "--experimental-compact-hash-check-time must be >0 (set to "
            f"{go_duration(cfg.experimental_compact_hash_check_time)})"
        )
    _check_tls_versions(cfg)


_GO_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def compaction_retention(cfg: ServerConfig) -> float:
    """``--auto-compaction-retention`` as etcd reads it: a whole number is hours in
    periodic mode and revisions in revision mode; anything else is a Go duration
    (``30m``, ``2s``; in revision mode its nanoseconds count, as in etcd).

    Returns:
        Seconds (periodic) or revisions (revision); 0 disables auto-compaction.

    Raises:
        ConfigError: etcd's ``error parsing CompactionRetention: ...``.
    """
    text = cfg.auto_compaction_retention or "0"
    if text.isdigit():
        if cfg.auto_compaction_mode == "":
            raise ConfigError("--auto-compaction-mode is undefined")
        value = int(text)
        return float(value) if cfg.auto_compaction_mode == "revision" else value * 3600.0
    try:
        seconds = parse_duration(text)
    except FlagValueError:
        # Go's time.ParseDuration wording: a bare number lacks its unit.
        why = "missing unit in duration" if _GO_NUMBER.fullmatch(text) else "invalid duration"
        raise ConfigError(f'error parsing CompactionRetention: time: {why} "{text}"') from None
    return float(round(seconds * 1e9)) if cfg.auto_compaction_mode == "revision" else seconds


# etcd's tlsutil.GetTLSVersion: "" lets Go choose.
_TLS_VERSION_ORDER = {"": 0, "TLS1.2": 12, "TLS1.3": 13}


def _check_tls_versions(cfg: ServerConfig) -> None:
    # etcd 3.5.8's embed.Config.Validate, in its order and with its texts.
    for given in (cfg.tls_min_version, cfg.tls_max_version):
        if given not in _TLS_VERSION_ORDER:
            raise ConfigError(f'unexpected TLS version "{given}" (must be one of: TLS1.2, TLS1.3)')
    low = _TLS_VERSION_ORDER[cfg.tls_min_version]
    high = _TLS_VERSION_ORDER[cfg.tls_max_version]
    if high and low > high:
        raise ConfigError(
            f"min version ({cfg.tls_min_version}) is greater than max version "
            f"({cfg.tls_max_version})"
        )
    if low == 13 and cfg.cipher_suites:
        raise ConfigError("cipher suites cannot be configured when only TLS1.3 is enabled")


# ---------------------------------------------------------------- YAML config file

# etcd nests the TLS settings of each side under one key with shorter names.
_TLS_SECTIONS: dict[str, dict[str, str]] = {
    "client-transport-security": {
        "cert-file": "cert-file",
        "key-file": "key-file",
        "client-cert-auth": "client-cert-auth",
        "trusted-ca-file": "trusted-ca-file",
        "auto-tls": "auto-tls",
        "crl-file": "client-crl-file",
        "allowed-hostname": "client-cert-allowed-hostname",
    },
    "peer-transport-security": {
        "cert-file": "peer-cert-file",
        "key-file": "peer-key-file",
        "client-cert-auth": "peer-client-cert-auth",
        "trusted-ca-file": "peer-trusted-ca-file",
        "auto-tls": "peer-auto-tls",
        "crl-file": "peer-crl-file",
        "allowed-cn": "peer-cert-allowed-cn",
        "allowed-hostname": "peer-cert-allowed-hostname",
    },
}
# Flags that are not YAML keys: they only make sense on a command line.
_NOT_IN_FILE = frozenset({"config-file", "version"})


def _yaml_value(spec: FlagSpec, key: str, raw: object) -> Value:
    """Convert one YAML value the way etcd's JSON-tagged struct would accept it."""
    if raw is None:
        return parse_value(spec, spec.default)
    kind = spec.kind
    if isinstance(raw, str):
        return parse_value(spec, raw)
    if kind is FlagKind.BOOL and isinstance(raw, bool):
        return raw
    integer = (FlagKind.INT, FlagKind.UINT, FlagKind.UINT32)
    if kind in integer and isinstance(raw, int) and not isinstance(raw, bool):
        return parse_value(spec, str(raw))
    if kind is FlagKind.DURATION and isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw) / 1e9  # a Go time.Duration in JSON is nanoseconds
    if kind in (FlagKind.STRINGS, FlagKind.URLS) and isinstance(raw, list):
        return parse_value(spec, ",".join(str(item) for item in raw))
    if kind is FlagKind.STRING and isinstance(raw, int | float) and not isinstance(raw, bool):
        return str(raw)
    raise FlagValueError(
        f"error unmarshaling JSON: json: cannot unmarshal {type(raw).__name__} "
        f"into Go struct field configYAML.{key}"
    )


def _flatten_yaml(doc: Mapping[str, object]) -> tuple[dict[str, object], list[str]]:
    """Map YAML keys to flag names; return (flag -> raw value, unknown keys)."""
    flat: dict[str, object] = {}
    unknown: list[str] = []
    for key, raw in doc.items():
        if key in _TLS_SECTIONS and isinstance(raw, Mapping):
            for sub, sub_raw in raw.items():
                flag = _TLS_SECTIONS[key].get(str(sub))
                if flag is None:
                    unknown.append(f"{key}.{sub}")
                else:
                    flat[flag] = sub_raw
        elif key in FLAGS_BY_NAME and key not in _NOT_IN_FILE:
            flat[key] = raw
        else:
            unknown.append(str(key))
    return flat, unknown


def config_from_file(path: str) -> tuple[ServerConfig, list[str]]:
    """Load a YAML file with etcd's keys (``name``, ``data-dir``, ``initial-cluster``...).

    As in etcd, URL lists are comma-separated strings, ``log-outputs`` is a list,
    durations are nanosecond integers (Go strings like ``5s`` are accepted too), TLS
    settings sit under ``client-transport-security`` / ``peer-transport-security``,
    and ``--listen-client-urls`` alone keeps the default advertise URL.

    Returns:
        The validated config and the YAML keys pyetcd does not know (etcd silently
        ignores those; the caller warns about them).

    Raises:
        ConfigError: unreadable file, bad YAML, a bad value, an unsupported setting or
            a validation failure.
    """
    import yaml  # only --config-file needs it: ~10 ms off every start without one

    try:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError(f"open {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"error converting YAML to JSON: {exc}") from exc
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise ConfigError("error unmarshaling JSON: the config file is not a YAML mapping")
    flat, unknown = _flatten_yaml(doc)
    values: dict[str, Value] = {}
    for flag, raw in flat.items():
        try:
            values[flag] = _yaml_value(FLAGS_BY_NAME[flag], flag, raw)
        except FlagValueError as exc:
            raise ConfigError(f"unexpected error setting up {flag}: {exc}") from exc
    check_unsupported(values, {})
    changes = {field_name(f): v for f, v in values.items() if field_name(f) in CONFIG_FIELDS}
    cfg = ServerConfig(config_file=path, flags_explicitly_set=frozenset(values)).replace(**changes)
    cfg = discovery_clears_initial_cluster(cfg)
    if not cfg.initial_cluster_state:
        cfg = cfg.replace(initial_cluster_state=CLUSTER_STATE_NEW)
    validate(cfg)
    return cfg, unknown


def all_flags() -> tuple[FlagSpec, ...]:
    """Every etcd server flag pyetcd knows, supported or not (for ``--help``)."""
    return FLAGS
