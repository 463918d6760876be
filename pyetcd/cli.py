"""``pyetcd``: the command line, read exactly as etcd 3.5 reads its own.

Order of work, as in etcd's ``etcdmain``:

1. Parse the arguments with Go ``flag`` rules (``-f``/``--f``, ``--f=v``, ``--f v``,
   booleans only as ``--f`` or ``--f=v``; parsing stops at the first non-flag). A bad
   flag prints one line and the usage to stderr and exits 2; ``-h/--help`` prints the
   flags to stdout and exits 0; ``--version`` prints versions and exits 0.
2. With ``--config-file`` (or ``ETCD_CONFIG_FILE``) the YAML file is the whole
   configuration: other flags and ``ETCD_*`` variables are ignored.
3. Otherwise every flag not on the command line may come from ``ETCD_<FLAG>``
   (non-empty values only); an ``ETCD_*`` variable for a flag that *is* on the
   command line is fatal; other unknown ``ETCD_*`` variables only warn.
4. Validate (etcd's messages, exit 1), set up logging, derive defaults (data dir
   ``<name>.etcd``, ``--initial-cluster`` from ``--name``), check the static
   bootstrap when the member has no WAL yet, then start the server.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from pyetcd import __version__
from pyetcd.config import (
    CONFIG_FIELDS,
    DEFAULT_INITIAL_CLUSTER,
    DEFAULT_NAME,
    ERR_UNSET_ADVERTISE_CLIENT_URLS,
    ConfigError,
    ServerConfig,
    check_unsupported,
    config_from_file,
    discovery_clears_initial_cluster,
    field_name,
    log_rotation,
    validate,
)
from pyetcd.flagspec import (
    FLAGS,
    FLAGS_BY_NAME,
    IGNORED_FLAGS,
    FlagKind,
    FlagValueError,
    Value,
    parse_bool,
    parse_value,
)
from pyetcd.ids import BootstrapError, bootstrap_cluster
from pyetcd.logutil import Level, Logger, LogLevelError, LogSetupError, bootstrap_logger, new_logger
from pyetcd.srv import SRVError, srv_initial_cluster
from pyetcd.version import SERVER_VERSION

__all__ = [
    "EnvConflictError",
    "LoadedConfig",
    "Notice",
    "UsageError",
    "load_config",
    "main",
    "resolve_defaults",
]

_LOADED_MSG = (
    "loaded server configuration, other configuration command line flags and "
    "environment variables will be ignored if provided"
)
ENV_CONFLICT_MSG = (
    "conflicting environment variable is shadowed by corresponding command-line flag "
    "(either unset environment variable or disable flag))"
)

USAGE = """Usage:

  pyetcd [flags]
    Start a pyetcd member (etcd's flags, names and defaults).

  pyetcd --version
    Show the version of pyetcd and of the etcd API it serves.

  pyetcd -h | --help
    Show this help.

  pyetcd --config-file
    Path to a YAML configuration file with etcd's keys. When it is given, the other
    command line flags and ETCD_* environment variables are ignored.
"""


class UsageError(Exception):
    """The arguments do not parse (Go's flag package: message, usage, exit status 2)."""


class EnvConflictError(Exception):
    """An ``ETCD_*`` variable shadows a flag given on the command line (fatal)."""

    def __init__(self, variable: str) -> None:
        super().__init__(variable)
        self.variable = variable


class HelpRequested(Exception):
    """``-h``/``--help`` was given."""


@dataclass(frozen=True, slots=True)
class Notice:
    """A log record produced while reading the configuration, logged by :func:`main`."""

    level: Level
    msg: str
    fields: tuple[tuple[str, Any], ...] = ()


@dataclass(slots=True)
class _CommandLine:
    values: dict[str, Value] = field(default_factory=dict)
    positional: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """What :func:`load_config` read: the validated config and the notices to log."""

    config: ServerConfig
    notices: tuple[Notice, ...]
    print_version: bool = False


# ---------------------------------------------------------------- command line


def _is_bool(name: str) -> bool:
    return name in IGNORED_FLAGS or FLAGS_BY_NAME[name].kind is FlagKind.BOOL


def _parse_one(args: list[str], cmd: _CommandLine) -> bool:
    """Consume one flag from ``args``; False when flag parsing is over (Go's parseOne)."""
    arg = args[0]
    if len(arg) < 2 or arg[0] != "-":
        return False
    dashes = 2 if arg.startswith("--") else 1
    if dashes == 2 and len(arg) == 2:
        del args[0]
        return False
    name = arg[dashes:]
    if not name or name[0] in "-=":
        raise UsageError(f"bad flag syntax: {arg}")
    del args[0]
    name, has_value, value = name.partition("=")
    if name not in FLAGS_BY_NAME and name not in IGNORED_FLAGS:
        if name in ("help", "h"):
            raise HelpRequested
        raise UsageError(f"flag provided but not defined: -{name}")
    if _is_bool(name):
        text = value if has_value else "true"
        try:
            parsed: Value = parse_bool(text)
        except FlagValueError as exc:
            raise UsageError(f'invalid boolean value "{text}" for -{name}: {exc}') from None
    else:
        if not has_value:
            if not args:
                raise UsageError(f"flag needs an argument: -{name}")
            value = args.pop(0)
        try:
            parsed = parse_value(FLAGS_BY_NAME[name], value)
        except FlagValueError as exc:
            raise UsageError(f'invalid value "{value}" for flag -{name}: {exc}') from None
    if name in IGNORED_FLAGS:
        cmd.ignored.append(name)
    else:
        cmd.values[name] = parsed
    return True


def _read_command_line(argv: Sequence[str]) -> _CommandLine:
    cmd = _CommandLine()
    args = list(argv)
    while args and _parse_one(args, cmd):
        pass
    cmd.positional = args
    return cmd


# ---------------------------------------------------------------- environment


def _read_environment(
    cmd: _CommandLine, environ: Mapping[str, str], notices: list[Notice]
) -> tuple[dict[str, Value], dict[str, str]]:
    """Apply ``ETCD_*`` variables for flags not given; etcd's SetFlagsFromEnv + verifyEnv."""
    values = dict(cmd.values)
    origin = {name: f"--{name}" for name in cmd.values}
    shadowed = {FLAGS_BY_NAME[name].env_name for name in cmd.values}
    used: set[str] = set()
    error: ConfigError | None = None
    for spec in FLAGS:
        key = spec.env_name
        text = environ.get(key, "")
        if spec.name in cmd.values or text == "":
            continue
        used.add(key)
        try:
            values[spec.name] = parse_value(spec, text)
        except FlagValueError as exc:
            error = ConfigError(f'invalid value "{text}" for {key}: {exc}')
            continue
        origin[spec.name] = key
        notices.append(
            Notice(
                Level.INFO,
                "recognized and used environment variable",
                (("variable-name", key), ("variable-value", text)),
            )
        )
    for key, text in environ.items():
        if key in used:
            continue
        if key in shadowed:
            raise EnvConflictError(key)
        if key.startswith("ETCD_"):
            notices.append(
                Notice(
                    Level.WARN,
                    "unrecognized environment variable",
                    (("environment-variable", f"{key}={text}"),),
                )
            )
    if error is not None:
        raise error
    return values, origin


def _config_from_values(values: Mapping[str, Value], origin: Mapping[str, str]) -> ServerConfig:
    check_unsupported(values, origin)
    changes: dict[str, Any] = {
        field_name(name): value
        for name, value in values.items()
        if field_name(name) in CONFIG_FIELDS
    }
    # etcd drops the default advertise URL when only the listen URL was given, so that
    # validation can insist on an explicit one.
    if "listen-client-urls" in values and "advertise-client-urls" not in values:
        changes["advertise_client_urls"] = ()
    cfg = ServerConfig(flags_explicitly_set=frozenset(values)).replace(**changes)
    return discovery_clears_initial_cluster(cfg)


def load_config(
    argv: Sequence[str], environ: Mapping[str, str], notices: list[Notice] | None = None
) -> LoadedConfig:
    """Read the command line, the environment or the config file into a valid ServerConfig.

    ``notices`` (if given) receives the log records produced on the way, also when an
    exception is raised: etcd logs them before the error.

    Raises:
        HelpRequested: ``-h``/``--help``.
        UsageError: a flag that does not parse (exit status 2).
        EnvConflictError: an ``ETCD_*`` variable shadows a command-line flag.
        ConfigError: etcd's "failed to verify flags" errors.
        LogLevelError: an unknown ``--log-level``.
    """
    cmd = _read_command_line(argv)
    if cmd.positional:
        raise ConfigError(f"'{cmd.positional[0]}' is not a valid flag")
    if cmd.values.get("version") is True:
        return LoadedConfig(ServerConfig(), (), print_version=True)
    if notices is None:
        notices = []
    notices += [
        Notice(Level.WARN, "flag is no longer supported - ignoring", (("flag", name),))
        for name in cmd.ignored
    ]
    config_file = str(cmd.values.get("config-file", "") or environ.get("ETCD_CONFIG_FILE", ""))
    if config_file:
        cfg, unknown = config_from_file(config_file)
        notices += [
            Notice(
                Level.WARN,
                "unrecognized configuration file key",
                (("key", key), ("path", config_file)),
            )
            for key in unknown
        ]
        notices.append(Notice(Level.INFO, _LOADED_MSG, (("path", config_file),)))
        return LoadedConfig(cfg, tuple(notices))
    env = dict(environ)
    if env.get("ETCD_VERSION", ""):
        notices.append(
            Notice(
                Level.WARN,
                "cannot set special environment variable",
                (("key", "ETCD_VERSION"), ("value", env.pop("ETCD_VERSION"))),
            )
        )
    values, origin = _read_environment(cmd, env, notices)
    cfg = _config_from_values(values, origin)
    validate(cfg)
    return LoadedConfig(cfg, tuple(notices))


def resolve_defaults(cfg: ServerConfig, logger: Logger | None = None) -> ServerConfig:
    """Fill in what etcd derives after validation: initial cluster from name, data dir."""
    if cfg.name != DEFAULT_NAME and cfg.initial_cluster == DEFAULT_INITIAL_CLUSTER:
        members = ",".join(f"{cfg.name}={url}" for url in cfg.initial_advertise_peer_urls)
        cfg = cfg.replace(initial_cluster=members)
    if cfg.data_dir == "":
        cfg = cfg.replace(data_dir=f"{cfg.name}.etcd")
        if logger is not None:
            logger.warn("'data-dir' was empty; using default", data_dir=cfg.data_dir)
    if (
        logger is not None
        and cfg.experimental_enable_lease_checkpoint
        and not cfg.experimental_enable_lease_checkpoint_persist
    ):
        logger.warn(
            "Detected that checkpointing is enabled without persistence. Consider enabling "
            "experimental-enable-lease-checkpoint-persist"
        )
    return cfg


# ---------------------------------------------------------------- output


def _machine() -> str:
    arch = platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(arch, arch)
    return f"{sys.platform}/{arch}"


def version_text() -> str:
    """What ``--version`` prints: etcd's four lines (tools read the first), then ours.

    "Git SHA" names the pyetcd release and "Go Version" the Python that runs it: the
    fields keep etcd's names so that what parses etcd's output parses this.
    """
    return (
        f"etcd Version: {SERVER_VERSION}\n"
        f"Git SHA: pyetcd-{__version__}\n"
        f"Go Version: python{platform.python_version()}\n"
        f"Go OS/Arch: {_machine()}\n"
        f"pyetcd Version: {__version__}\n"
    )


def help_text() -> str:
    """What ``--help`` prints: the usage, then each flag with its default, by group."""
    lines = [USAGE]
    groups: dict[str, list[str]] = {}
    unsupported: list[str] = []
    for spec in FLAGS:
        if spec.hidden:
            continue
        entry = f"  --{spec.name} '{spec.default}'\n    {spec.help}"
        if spec.supported:
            groups.setdefault(spec.group, []).append(entry)
        else:
            unsupported.append(entry)
    for group, entries in groups.items():
        lines.append(f"{group}:\n" + "\n".join(entries) + "\n")
    lines.append(
        "Accepted only with etcd's default value (not supported by pyetcd):\n"
        + "\n".join(unsupported)
        + "\n"
    )
    return "\n".join(lines)


def _log_notices(logger: Logger, notices: Sequence[Notice]) -> None:
    for notice in notices:
        logger.log(notice.level, notice.msg, dict(notice.fields))


def _start_server(cfg: ServerConfig, err: TextIO) -> int:
    # Imported here: --help and --version need not load grpc and the server.
    embed = importlib.import_module("pyetcd.embed")
    result = embed.run(cfg)
    return result if isinstance(result, int) else 0


def _member_initialized(cfg: ServerConfig) -> bool:
    return os.path.isdir(cfg.wal_path)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run ``pyetcd`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if environ is None else environ
    running = [sys.argv[0] if argv is None else "pyetcd", *args]
    return _run(args, env, running, sys.stdout, sys.stderr)


def _run(
    args: list[str], env: Mapping[str, str], running: list[str], out: TextIO, err: TextIO
) -> int:
    boot = bootstrap_logger(err)
    notices: list[Notice] = []
    try:
        loaded = load_config(args, env, notices)
    except HelpRequested:
        out.write(help_text())
        return 0
    except UsageError as exc:
        err.write(f"{exc}\n{USAGE}\n")
        return 2
    except EnvConflictError as exc:
        _log_notices(boot, notices)
        boot.fatal(ENV_CONFLICT_MSG, environment_variable=exc.variable)
        return 1
    except LogLevelError as exc:
        err.write(f"panic: {exc}\n")
        return 2
    except (ConfigError, LogSetupError) as exc:
        _log_notices(boot, notices)
        boot.info("Running: ", args=running)
        boot.warn("failed to verify flags", error=str(exc))
        if str(exc) == ERR_UNSET_ADVERTISE_CLIENT_URLS:
            boot.warn("advertise client URLs are not set", error=str(exc))
        return 1
    if loaded.print_version:
        out.write(version_text())
        return 0
    cfg = loaded.config
    _log_notices(boot, [n for n in loaded.notices if n.msg != _LOADED_MSG])
    try:
        logger = new_logger(cfg.logger, cfg.log_outputs, cfg.log_level, stdout=out, stderr=err,
                            rotation=log_rotation(cfg))
    except LogSetupError as exc:
        boot.warn("failed to verify flags", error=str(exc))
        return 1
    _log_notices(logger, [n for n in loaded.notices if n.msg == _LOADED_MSG])
    logger.info("Running: ", args=running)
    cfg = resolve_defaults(cfg, logger)
    if not _member_initialized(cfg):
        try:
            if cfg.discovery_srv:
                cfg = cfg.replace(initial_cluster=srv_initial_cluster(cfg, logger))
            bootstrap_cluster(cfg)
        except (BootstrapError, SRVError) as exc:
            logger.warn("failed to start etcd", error=str(exc))
            logger.fatal("discovery failed", error=str(exc))
            return 1
    logger.close()
    return _start_server(cfg, err)
