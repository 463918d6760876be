"""etcd 3.5's server flags as data, and Go-compatible parsing of their values.

Each :class:`FlagSpec` says how etcd spells a flag, what type of value it takes, its
default as etcd prints it, and whether pyetcd implements it. Values parse with the
rules of Go's ``flag``/``strconv``/``time`` packages and etcd's URL checks, so the
same input is accepted or refused with the same words as by etcd.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from pyetcd.goflag import (
    FlagValueError,
    check_url,
    parse_bool,
    parse_duration,
    parse_int,
    parse_urls,
    split_host_port,
)

__all__ = [
    "FLAGS",
    "FLAGS_BY_NAME",
    "IGNORED_FLAGS",
    "MAX_UINT32",
    "FlagKind",
    "FlagSpec",
    "FlagValueError",
    "Value",
    "check_url",
    "parse_bool",
    "parse_duration",
    "parse_urls",
    "parse_value",
    "split_host_port",
]

Value = str | int | float | bool | tuple[str, ...]


class FlagKind(IntEnum):
    """The Go type behind a flag, which decides how its text parses."""

    STRING = 0
    BOOL = 1
    INT = 2  # int64
    UINT = 3  # uint64
    DURATION = 4  # Go time.Duration, kept as float seconds
    URLS = 5  # comma-separated URLs, sorted and de-duplicated
    STRINGS = 6  # comma-separated strings, sorted and de-duplicated
    CHOICE = 7  # one string out of ``choices``
    UINT32 = 8  # uint32


@dataclass(frozen=True, slots=True)
class FlagSpec:
    """One etcd server flag."""

    name: str  # without dashes, e.g. "initial-cluster-token"
    kind: FlagKind
    default: str  # etcd's default, as text that parse_value accepts ("" for empty)
    group: str  # the --help section
    help: str
    supported: bool = True  # False: only etcd's default value is accepted
    choices: tuple[str, ...] = ()
    hidden: bool = False  # etcd has it but does not list it in --help
    since: str = ""  # the etcd release that added it, when later than 3.5.0

    @property
    def env_name(self) -> str:
        """The ``ETCD_*`` environment variable for this flag."""
        return "ETCD_" + self.name.upper().replace("-", "_")


#: Go's math.MaxUint32: --max-concurrent-streams' default (no limit).
MAX_UINT32 = 2**32 - 1

_S, _B, _I, _U, _D = FlagKind.STRING, FlagKind.BOOL, FlagKind.INT, FlagKind.UINT, FlagKind.DURATION
_URLS, _STRS, _CH, _U32 = FlagKind.URLS, FlagKind.STRINGS, FlagKind.CHOICE, FlagKind.UINT32


def _f(
    name: str,
    kind: FlagKind,
    default: str,
    group: str,
    help: str,
    *,
    supported: bool = True,
    choices: tuple[str, ...] = (),
    hidden: bool = False,
    since: str = "",
) -> FlagSpec:
    return FlagSpec(name, kind, default, group, help, supported, choices, hidden, since)


_M, _C, _SEC, _A = "Member", "Clustering", "Security", "Auth"
_P, _L, _X, _UN = "Profiling and Monitoring", "Logging", "Experimental feature", "Unsafe feature"
_T, _PX = "Experimental distributed tracing", "v2 Proxy (to be deprecated in v3.6)"

FLAGS: tuple[FlagSpec, ...] = (
    _f("name", _S, "default", _M, "Human-readable name of this member."),
    _f("data-dir", _S, "", _M, "Data directory (default: '${name}.etcd')."),
    _f("wal-dir", _S, "", _M, "Separate directory for the WAL."),
    _f("snapshot-count", _U, "100000", _M, "Applied entries between two snapshots."),
    _f("heartbeat-interval", _U, "100", _M, "Heartbeat interval in milliseconds."),
    _f("election-timeout", _U, "1000", _M, "Election timeout in milliseconds."),
    _f(
        "initial-election-tick-advance",
        _B,
        "true",
        _M,
        "Fast-forward election ticks at boot for a quicker first election.",
    ),
    _f("listen-peer-urls", _URLS, "http://localhost:2380", _M, "URLs to listen on for peers."),
    _f("listen-client-urls", _URLS, "http://localhost:2379", _M, "URLs to listen on for clients."),
    _f("listen-client-http-urls", _URLS, "", _M, "HTTP-only URLs.", supported=False, since="3.5.8"),
    _f("max-snapshots", _U, "5", _M, "Snapshot files to keep (0 keeps all)."),
    _f("max-wals", _U, "5", _M, "WAL files to keep (0 keeps all)."),
    _f(
        "quota-backend-bytes",
        _I,
        "0",
        _M,
        "Backend size that raises the NOSPACE alarm (0 means 2 GiB).",
    ),
    _f(
        "backend-bbolt-freelist-type",
        _S,
        "map",
        _M,
        "bbolt freelist type (bbolt only).",
        supported=False,
    ),
    _f("backend-batch-interval", _D, "", _M, "Longest time before a backend commit."),
    _f("backend-batch-limit", _I, "0", _M, "Most operations before a backend commit."),
    _f("max-txn-ops", _U, "128", _M, "Most operations in one transaction."),
    _f("max-request-bytes", _U, "1572864", _M, "Largest client request in bytes."),
    _f("max-concurrent-streams", _U32, str(MAX_UINT32), _M, "Streams per client.", since="3.5.5"),
    _f("grpc-keepalive-min-time", _D, "5s", _M, "Shortest client ping interval allowed."),
    _f("grpc-keepalive-interval", _D, "2h", _M, "Server-to-client ping interval (0 disables)."),
    _f("grpc-keepalive-timeout", _D, "20s", _M, "Wait for a ping answer (0 disables)."),
    _f("socket-reuse-port", _B, "false", _M, "Set SO_REUSEPORT on listeners."),
    _f("socket-reuse-address", _B, "false", _M, "Set SO_REUSEADDR on listeners."),
    _f(
        "initial-advertise-peer-urls",
        _URLS,
        "http://localhost:2380",
        _C,
        "This member's peer URLs, as told to the rest of the cluster.",
    ),
    _f(
        "initial-cluster",
        _S,
        "default=http://localhost:2380",
        _C,
        "Initial cluster for bootstrapping: name=peerURL,...",
    ),
    _f(
        "initial-cluster-state", _CH, "new", _C, "'new' or 'existing'.", choices=("new", "existing")
    ),
    _f(
        "initial-cluster-token",
        _S,
        "etcd-cluster",
        _C,
        "Token that makes the IDs of this cluster unique.",
    ),
    _f(
        "advertise-client-urls",
        _URLS,
        "http://localhost:2379",
        _C,
        "This member's client URLs, as told to clients.",
    ),
    _f("discovery", _S, "", _C, "Discovery URL for bootstrapping.", supported=False),
    _f(
        "discovery-fallback",
        _CH,
        "proxy",
        _C,
        "'exit' or 'proxy' when discovery fails.",
        supported=False,
        choices=("exit", "proxy"),
    ),
    _f("discovery-proxy", _S, "", _C, "HTTP proxy for discovery.", supported=False),
    _f("discovery-srv", _S, "", _C, "DNS SRV domain used to bootstrap the cluster."),
    _f("discovery-srv-name", _S, "", _C, "Suffix to the DNS SRV service names."),
    _f(
        "strict-reconfig-check", _B, "true", _C, "Refuse membership changes that would lose quorum."
    ),
    _f("pre-vote", _B, "true", _C, "Run Raft's pre-vote phase before elections."),
    _f(
        "auto-compaction-retention",
        _S,
        "0",
        _C,
        "History to keep when auto-compacting (0 disables).",
    ),
    _f("auto-compaction-mode", _S, "periodic", _C, "'periodic' or 'revision'."),
    _f("enable-v2", _B, "false", _C, "Serve the v2 API.", supported=False),
    _f("v2-deprecation", _S, "not-yet", _C, "v2store deprecation phase.", supported=False),
    _f("enable-grpc-gateway", _B, "true", _C, "Serve the JSON gateway (/v3/...).", hidden=True),
    _f("cert-file", _S, "", _SEC, "Client TLS certificate file."),
    _f("key-file", _S, "", _SEC, "Client TLS key file."),
    _f("client-cert-auth", _B, "false", _SEC, "Require client certificates."),
    _f("client-crl-file", _S, "", _SEC, "Client certificate revocation list (PEM or DER)."),
    _f(
        "client-cert-allowed-hostname",
        _S,
        "",
        _SEC,
        "Allowed TLS hostname for client cert authentication.",
    ),
    _f("trusted-ca-file", _S, "", _SEC, "CA file for client certificates."),
    _f("auto-tls", _B, "false", _SEC, "Client TLS with generated certificates."),
    _f("peer-cert-file", _S, "", _SEC, "Peer TLS certificate file."),
    _f("peer-key-file", _S, "", _SEC, "Peer TLS key file."),
    _f("peer-client-cert-auth", _B, "false", _SEC, "Require peer certificates."),
    _f("peer-trusted-ca-file", _S, "", _SEC, "CA file for peer certificates."),
    _f("peer-cert-allowed-cn", _S, "", _SEC, "Required CN for peer certificates."),
    _f("peer-cert-allowed-hostname", _S, "", _SEC, "Allowed TLS hostname for peer certificates."),
    _f("peer-auto-tls", _B, "false", _SEC, "Peer TLS with generated certificates."),
    _f(
        "self-signed-cert-validity",
        _U,
        "1",
        _SEC,
        "Years generated certificates last.",
        supported=False,
    ),
    _f("peer-crl-file", _S, "", _SEC, "Peer certificate revocation list (PEM or DER)."),
    _f("cipher-suites", _STRS, "", _SEC, "TLS 1.2 cipher suites, Go's names (empty: defaults)."),
    _f("tls-min-version", _S, "TLS1.2", _SEC, "Lowest TLS: TLS1.2 or TLS1.3.", since="3.5.8"),
    _f("tls-max-version", _S, "", _SEC, "Highest TLS (empty: any).", since="3.5.8"),
    _f("cors", _STRS, "*", _SEC, "Origins allowed by CORS (* allows all).", supported=False),
    _f(
        "host-whitelist",
        _STRS,
        "*",
        _SEC,
        "Host names accepted over plain HTTP (* all).",
        supported=False,
    ),
    _f("auth-token", _S, "simple", _A, "Auth token type: 'simple' or 'jwt,...'."),
    _f("bcrypt-cost", _U, "10", _A, "bcrypt cost for passwords (4..31)."),
    _f("auth-token-ttl", _U, "300", _A, "Lifetime of a simple token in seconds."),
    _f("enable-pprof", _B, "false", _P, "Serve Go profiling data.", supported=False),
    # pyetcd's own (etcd has no such flag): the live dashboard on the client URLs.
    _f("enable-dashboard", _B, "true", _P, "Serve the live dashboard at /dashboard (ours)."),
    _f("metrics", _S, "basic", _P, "'basic' or 'extensive' (adds gRPC handling histograms)."),
    _f("listen-metrics-urls", _URLS, "", _P, "Extra URLs for /metrics and /health."),
    _f("logger", _S, "zap", _L, "Only 'zap' (JSON lines)."),
    _f("log-outputs", _STRS, "default", _L, "'default', 'stderr', 'stdout' or file paths."),
    _f("log-level", _S, "info", _L, "debug, info, warn, error, panic or fatal."),
    _f("enable-log-rotation", _B, "false", _L, "Rotate the one file of --log-outputs."),
    _f(
        "log-rotation-config-json",
        _S,
        '{"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false}',
        _L,
        "Configures log rotation if enabled with a JSON logger config. MaxSize(MB), "
        "MaxAge(days,0=no limit), MaxBackups(0=no limit), LocalTime(use computers local "
        "time), Compress(gzip)",
    ),
    _f(
        "experimental-enable-distributed-tracing",
        _B,
        "false",
        _T,
        "OpenTelemetry tracing.",
        supported=False,
    ),
    _f(
        "experimental-distributed-tracing-address",
        _S,
        "localhost:4317",
        _T,
        "Tracing collector address.",
        supported=False,
    ),
    _f(
        "experimental-distributed-tracing-service-name",
        _S,
        "etcd",
        _T,
        "Tracing service name.",
        supported=False,
    ),
    _f(
        "experimental-distributed-tracing-instance-id",
        _S,
        "",
        _T,
        "Tracing instance ID.",
        supported=False,
    ),
    _f(
        "experimental-distributed-tracing-sampling-rate",
        _I,
        "0",
        _T,
        "Spans sampled per million.",
        supported=False,
        since="3.5.11",
    ),
    _f(
        "proxy",
        _CH,
        "off",
        _PX,
        "v2 proxy mode.",
        supported=False,
        choices=("off", "readonly", "on"),
    ),
    _f("proxy-failure-wait", _U, "5000", _PX, "v2 proxy setting.", supported=False),
    _f("proxy-refresh-interval", _U, "30000", _PX, "v2 proxy setting.", supported=False),
    _f("proxy-dial-timeout", _U, "1000", _PX, "v2 proxy setting.", supported=False),
    _f("proxy-write-timeout", _U, "5000", _PX, "v2 proxy setting.", supported=False),
    _f("proxy-read-timeout", _U, "0", _PX, "v2 proxy setting.", supported=False),
    _f(
        "experimental-initial-corrupt-check",
        _B,
        "false",
        _X,
        "Compare the KV hash with the peers' before serving.",
    ),
    _f(
        "experimental-corrupt-check-time",
        _D,
        "0s",
        _X,
        "Period of the leader's corruption check (0 disables).",
    ),
    _f(
        "experimental-compact-hash-check-enabled",
        _B,
        "false",
        _X,
        "The leader compares the followers' hashes taken at compactions (etcd 3.5.5+).",
    ),
    _f("experimental-compact-hash-check-time", _D, "1m0s", _X, "Period of that check."),
    _f("experimental-enable-v2v3", _S, "", _X, "v2 over the v3 backend.", supported=False),
    _f(
        "experimental-enable-lease-checkpoint",
        _B,
        "false",
        _X,
        "Enable leader to send regular checkpoints to other members to prevent reset of "
        "remaining TTL on leader change.",
    ),
    _f(
        "experimental-enable-lease-checkpoint-persist",
        _B,
        "false",
        _X,
        "Persist the checkpointed remaining TTL (requires --experimental-enable-lease-checkpoint).",
    ),
    _f(
        "experimental-compaction-batch-limit",
        _I,
        "1000",
        _X,
        "Most revisions deleted per compaction batch.",
    ),
    _f(
        "experimental-peer-skip-client-san-verification",
        _B,
        "false",
        _X,
        "Skip peer cert SAN checks.",
        supported=False,
    ),
    _f(
        "experimental-watch-progress-notify-interval",
        _D,
        "10m",
        _X,
        "Period of watch progress notifications.",
    ),
    _f(
        "experimental-warning-apply-duration",
        _D,
        "100ms",
        _X,
        "Log a warning for applies slower than this.",
    ),
    _f(
        "experimental-txn-mode-write-with-shared-buffer",
        _B,
        "true",
        _X,
        "Shared buffer for write txn reads (bbolt only).",
        supported=False,
    ),
    _f(
        "experimental-bootstrap-defrag-threshold-megabytes",
        _U,
        "0",
        _X,
        "Defragment at boot above this many free MB.",
        supported=False,
    ),
    _f(
        "experimental-memory-mlock",
        _B,
        "false",
        _X,
        "mlock the backend.",
        supported=False,
        hidden=True,
    ),
    _f(
        "experimental-downgrade-check-time",
        _D,
        "5s",
        _X,
        "Downgrade check period.",
        supported=False,
        hidden=True,
    ),
    _f(
        "force-new-cluster",
        _B,
        "false",
        _UN,
        "Force a new one-member cluster from the data.",
        supported=False,
    ),
    _f("unsafe-no-fsync", _B, "false", _UN, "Skip fsync: data can be lost."),
    _f(
        "config-file",
        _S,
        "",
        "",
        "YAML config file; other flags and ETCD_* are then ignored.",
        hidden=True,
    ),
    _f("version", _B, "false", "", "Print the version and exit.", hidden=True),
)

FLAGS_BY_NAME: dict[str, FlagSpec] = {spec.name: spec for spec in FLAGS}

# Flags of etcd 2 that etcd 3.5 still accepts (as booleans) and ignores with a warning.
IGNORED_FLAGS = frozenset(
    {
        "cluster-active-size",
        "cluster-remove-delay",
        "cluster-sync-interval",
        "config",
        "force",
        "max-result-buffer",
        "max-retry-attempts",
        "peer-heartbeat-interval",
        "peer-election-timeout",
        "retry-interval",
        "snapshot",
        "v",
        "vv",
    }
)


def parse_value(spec: FlagSpec, text: str) -> Value:
    """Parse ``text`` as a value of ``spec``.

    Raises:
        FlagValueError: with Go's reason ("parse error", "invalid value", a URL error).
    """
    kind = spec.kind
    if kind is FlagKind.STRING:
        return text
    if kind is FlagKind.BOOL:
        return parse_bool(text)
    if kind in (FlagKind.INT, FlagKind.UINT):
        return parse_int(text, unsigned=kind is FlagKind.UINT)
    if kind is FlagKind.UINT32:
        value = parse_int(text, unsigned=True)
        if value > MAX_UINT32:
            raise FlagValueError("value out of range")
        return value
    if kind is FlagKind.DURATION:
        return 0.0 if text == "" else parse_duration(text)
    if kind is FlagKind.URLS:
        return parse_urls(text)
    if kind is FlagKind.STRINGS:
        return tuple(sorted({part for part in text.split(",") if part})) if text else ()
    if text not in spec.choices:
        raise FlagValueError("invalid value")
    return text
