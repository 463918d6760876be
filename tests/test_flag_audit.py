"""Every flag pyetcd accepts has an effect; every other one is refused.

``USES`` names, for each supported flag, the module that reads it for its effect and
what to look for there (default: the ``ServerConfig`` field, ``.<field>``). The table
must list exactly the supported flags, each pattern must be found in its module, and
no entry may point at ``config.py`` or ``flagspec.py``: a field read only to validate
it does not count. A flag added as supported without a use, or a use removed, fails
here. ``NO_OP`` is the short list of flags whose effect pyetcd has without reading
them, each with the reason.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pyetcd.config import ConfigError, check_unsupported, field_name
from pyetcd.flagspec import FLAGS, FlagKind, FlagSpec, parse_value

ROOT = Path(__file__).resolve().parents[1]

# flag -> (module that acts on it, regex; None means r"\.<field>\b")
USES: dict[str, tuple[str, str | None]] = {
    "name": ("pyetcd/server/etcdserver/server.py", r"cfg\.name\b"),
    "data-dir": ("pyetcd/server/etcdserver/server.py", None),
    "wal-dir": ("pyetcd/server/etcdserver/server.py", None),
    "snapshot-count": ("pyetcd/server/etcdserver/server.py", None),
    "heartbeat-interval": ("pyetcd/server/etcdserver/server.py", None),
    "election-timeout": ("pyetcd/server/etcdserver/server.py", None),
    "initial-election-tick-advance": ("pyetcd/server/etcdserver/server.py", None),
    "listen-peer-urls": ("pyetcd/server/etcdserver/server.py", None),
    "listen-client-urls": ("pyetcd/api/listener.py", None),
    "max-snapshots": ("pyetcd/server/etcdserver/server.py", None),
    "max-wals": ("pyetcd/server/etcdserver/server.py", None),
    "quota-backend-bytes": ("pyetcd/server/etcdserver/stores.py", None),
    "backend-batch-interval": ("pyetcd/server/etcdserver/stores.py", None),
    "backend-batch-limit": ("pyetcd/server/etcdserver/stores.py", None),
    "max-txn-ops": ("pyetcd/server/etcdserver/server.py", None),
    "max-request-bytes": ("pyetcd/api/v3rpc/grpc.py", None),
    "experimental-watch-progress-notify-interval": ("pyetcd/api/v3rpc/watch.py", None),
    "max-concurrent-streams": ("pyetcd/api/v3rpc/grpc.py", None),
    "grpc-keepalive-min-time": ("pyetcd/api/v3rpc/grpc.py", r"cfg\.grpc_keepalive_min_time"),
    "grpc-keepalive-interval": ("pyetcd/api/v3rpc/grpc.py", None),
    "grpc-keepalive-timeout": ("pyetcd/api/v3rpc/grpc.py", None),
    "socket-reuse-port": ("pyetcd/api/listener.py", None),
    "initial-advertise-peer-urls": ("pyetcd/ids.py", None),
    "initial-cluster": ("pyetcd/ids.py", None),
    "initial-cluster-state": ("pyetcd/server/etcdserver/server.py", None),
    "initial-cluster-token": ("pyetcd/ids.py", None),
    "discovery-srv": ("pyetcd/srv.py", None),
    "discovery-srv-name": ("pyetcd/srv.py", None),
    "advertise-client-urls": ("pyetcd/server/etcdserver/server.py", None),
    "strict-reconfig-check": ("pyetcd/server/etcdserver/server.py", None),
    "pre-vote": ("pyetcd/server/etcdserver/server.py", None),
    # config.compaction_retention parses it; the server builds the compactor with it
    "auto-compaction-retention": (
        "pyetcd/server/etcdserver/server.py",
        r"compaction_retention\(cfg\)",
    ),
    "auto-compaction-mode": ("pyetcd/server/etcdserver/server.py", None),
    "enable-grpc-gateway": ("pyetcd/api/etcdhttp/handler.py", None),
    "enable-dashboard": ("pyetcd/embed.py", r"cfg\.enable_dashboard"),
    "metrics": ("pyetcd/server/etcdserver/server.py", r"cfg\.metrics == \"extensive\""),
    "listen-metrics-urls": ("pyetcd/api/listener.py", None),
    "cert-file": ("pyetcd/tlsutil/info.py", None),
    "key-file": ("pyetcd/tlsutil/info.py", None),
    "client-cert-auth": ("pyetcd/tlsutil/info.py", None),
    "trusted-ca-file": ("pyetcd/tlsutil/info.py", None),
    "auto-tls": ("pyetcd/tlsutil/info.py", None),
    "peer-cert-file": ("pyetcd/tlsutil/info.py", None),
    "peer-key-file": ("pyetcd/tlsutil/info.py", None),
    "peer-client-cert-auth": ("pyetcd/tlsutil/info.py", None),
    "peer-trusted-ca-file": ("pyetcd/tlsutil/info.py", None),
    "peer-auto-tls": ("pyetcd/tlsutil/info.py", None),
    "client-crl-file": ("pyetcd/tlsutil/info.py", None),
    "peer-crl-file": ("pyetcd/tlsutil/info.py", None),
    "client-cert-allowed-hostname": ("pyetcd/tlsutil/info.py", None),
    "peer-cert-allowed-cn": ("pyetcd/tlsutil/info.py", None),
    "peer-cert-allowed-hostname": ("pyetcd/tlsutil/info.py", None),
    "cipher-suites": ("pyetcd/tlsutil/info.py", None),
    "tls-min-version": ("pyetcd/tlsutil/info.py", None),
    "tls-max-version": ("pyetcd/tlsutil/info.py", None),
    "auth-token": ("pyetcd/server/etcdserver/stores.py", None),
    "bcrypt-cost": ("pyetcd/server/etcdserver/stores.py", None),
    "auth-token-ttl": ("pyetcd/server/etcdserver/stores.py", None),
    "logger": ("pyetcd/cli.py", r"new_logger\(cfg\.logger"),
    "log-outputs": ("pyetcd/cli.py", r"cfg\.log_outputs"),
    "log-level": ("pyetcd/cli.py", r"cfg\.log_level"),
    # config.log_rotation reads both; the loggers are built with what it returns
    "enable-log-rotation": ("pyetcd/cli.py", r"rotation=log_rotation\(cfg\)"),
    "log-rotation-config-json": ("pyetcd/embed.py", r"rotation=log_rotation\(cfg\)"),
    "experimental-initial-corrupt-check": ("pyetcd/server/etcdserver/server.py", None),
    "experimental-corrupt-check-time": ("pyetcd/server/etcdserver/server.py", None),
    "experimental-compaction-batch-limit": ("pyetcd/server/etcdserver/stores.py", None),
    "experimental-compact-hash-check-enabled": ("pyetcd/server/etcdserver/stores.py", None),
    "experimental-compact-hash-check-time": ("pyetcd/server/etcdserver/server.py", None),
    "experimental-enable-lease-checkpoint": ("pyetcd/server/etcdserver/stores.py", None),
    "experimental-enable-lease-checkpoint-persist": (
        "pyetcd/server/etcdserver/stores.py",
        None,
    ),
    "experimental-warning-apply-duration": ("pyetcd/server/etcdserver/server.py", None),
    "unsafe-no-fsync": ("pyetcd/server/etcdserver/server.py", None),
    # command-line only: read before a ServerConfig exists
    "config-file": ("pyetcd/cli.py", r'values\.get\("config-file"'),
    "version": ("pyetcd/cli.py", r'values\.get\("version"\)'),
}

NO_OP: dict[str, str] = {
    "socket-reuse-address": "SO_REUSEADDR is set on every listener, as Go's net package "
    "does on Linux (api/listener.py)",
}


def _supported() -> list[FlagSpec]:
    return [spec for spec in FLAGS if spec.supported]


def test_table_lists_exactly_the_supported_flags() -> None:
    names = {spec.name for spec in _supported()}
    listed = set(USES) | set(NO_OP)
    assert names - listed == set(), "accepted flags with no recorded use"
    assert listed - names == set(), "recorded uses of flags that are not accepted"
    assert not set(USES) & set(NO_OP)


@pytest.mark.parametrize("flag", sorted(USES))
def test_each_use_is_in_its_module(flag: str) -> None:
    module, pattern = USES[flag]
    assert module not in ("pyetcd/config.py", "pyetcd/flagspec.py"), "validation is no use"
    text = (ROOT / module).read_text()
    regex = pattern or rf"\.{field_name(flag)}\b"
    assert re.search(regex, text), f"--{flag}: {regex!r} not found in {module}"


def test_no_op_flags_have_reasons() -> None:
    assert all(len(why) > 20 for why in NO_OP.values())


def _other_value(spec: FlagSpec) -> str:
    """A value of ``spec`` other than etcd's default."""
    if spec.kind is FlagKind.BOOL:
        return "false" if parse_value(spec, spec.default) else "true"
    if spec.kind is FlagKind.DURATION:
        return "3s"
    if spec.kind in (FlagKind.INT, FlagKind.UINT):
        return "7"
    if spec.kind is FlagKind.URLS:
        return "http://127.0.0.1:1"
    if spec.kind is FlagKind.CHOICE:
        return next(c for c in spec.choices if c != spec.default)
    return "something-else"


@pytest.mark.parametrize("spec", [s for s in FLAGS if not s.supported], ids=lambda s: s.name)
def test_unsupported_flags_are_refused_unless_default(spec: FlagSpec) -> None:
    check_unsupported({spec.name: parse_value(spec, spec.default)}, {})
    value = parse_value(spec, _other_value(spec))
    # a flag etcd added after 3.5.0 names the release (docs/VERSION.md)
    added = re.escape(f" (a flag of etcd {spec.since})") if spec.since else ""
    with pytest.raises(ConfigError, match=f"^--{spec.name} is not supported by pyetcd{added}$"):
        check_unsupported({spec.name: value}, {})


def test_flags_of_later_releases_name_them() -> None:
    later = {s.name: s.since for s in FLAGS if s.since}
    assert later == {
        "listen-client-http-urls": "3.5.8",
        "max-concurrent-streams": "3.5.5",
        "tls-min-version": "3.5.8",
        "tls-max-version": "3.5.8",
        "experimental-distributed-tracing-sampling-rate": "3.5.11",
    }
