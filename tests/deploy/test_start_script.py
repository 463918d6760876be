"""deploy/pyetcd-start.sh, with a stand-in ``pyetcd`` that records what it was given.

These pin the script's contract (empty = unset, flag beats variable, URLs derived
from the member's entry, data dir prepared) in milliseconds; test_netns_cluster.py
runs the same script in front of the real pyetcd.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .kit import START_SCRIPT, container_env

NOBODY = 65534

FAKE = f"""#!{sys.executable}
import json, os, sys
with open(os.environ["FAKE_PYETCD_OUT"], "w") as fh:
    json.dump({{"argv": sys.argv[1:], "env": dict(os.environ), "uid": os.getuid()}}, fh)
"""


class Run:
    """One run of the script: its exit status, stderr and what pyetcd received."""

    def __init__(self, proc: subprocess.CompletedProcess[str], out: Path) -> None:
        self.returncode = proc.returncode
        self.stderr = proc.stderr
        got: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
        self.exec_called = bool(got)
        self.argv: list[str] = got.get("argv", [])
        self.env: dict[str, str] = got.get("env", {})


@pytest.fixture
def start(tmp_path: Path) -> Any:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "pyetcd"
    fake.write_text(FAKE)
    fake.chmod(0o755)
    out = tmp_path / "received.json"

    def run(env: dict[str, str], *args: str, prefix: tuple[str, ...] = ()) -> Run:
        out.unlink(missing_ok=True)
        full = {"PATH": f"{bindir}:/usr/bin:/bin", "FAKE_PYETCD_OUT": str(out), **env}
        proc = subprocess.run(
            [*prefix, str(START_SCRIPT), *args],
            env=full,
            capture_output=True,
            text=True,
            timeout=30,
        )
        return Run(proc, out)

    return run


def infra2_env(tmp_path: Path) -> dict[str, str]:
    """Member infra2's container env, its data dir moved to a path with spaces."""
    env = container_env("infra2")
    env["ETCD_DATA_DIR"] = str(tmp_path / "mnt data" / "infra2 ")
    return env


def test_container_env_gives_derived_urls_and_data_dir(start: Any, tmp_path: Path) -> None:
    env = infra2_env(tmp_path)
    run = start(env)
    assert run.returncode == 0, run.stderr
    assert run.argv == []
    got = run.env
    assert got["ETCD_NAME"] == "infra2"
    assert got["ETCD_INITIAL_ADVERTISE_PEER_URLS"] == "http://172.16.13.2:12380"
    assert got["ETCD_LISTEN_PEER_URLS"] == "http://172.16.13.2:12380"
    assert got["ETCD_ADVERTISE_CLIENT_URLS"] == "http://172.16.13.2:2379"
    # Baked into the image, so kept.
    assert got["ETCD_LISTEN_CLIENT_URLS"] == "http://0.0.0.0:2379"
    assert got["ETCD_INITIAL_CLUSTER_STATE"] == "new"
    data = Path(env["ETCD_DATA_DIR"])
    assert got["ETCD_DATA_DIR"] == str(data) and str(data).endswith(" ")
    assert data.is_dir() and stat.S_IMODE(data.stat().st_mode) == 0o700
    assert not (tmp_path / "mnt data" / "infra2").exists()


def test_empty_variable_is_unset(start: Any, tmp_path: Path) -> None:
    env = infra2_env(tmp_path) | {"ETCD_LISTEN_CLIENT_URLS": "", "ETCD_LOG_LEVEL": ""}
    run = start(env)
    assert run.returncode == 0, run.stderr
    assert "ETCD_LOG_LEVEL" not in run.env
    # Unset, so derived: the member's own address and loopback.
    assert run.env["ETCD_LISTEN_CLIENT_URLS"] == "http://172.16.13.2:2379,http://127.0.0.1:2379"
    assert "ETCD_LOG_LEVEL is empty: treating it as unset" in run.stderr


def test_flag_argument_beats_baked_variable(start: Any, tmp_path: Path) -> None:
    args = ["--logger=zap", "-log-outputs", "stderr", "--listen-peer-urls", "http://0.0.0.0:12380"]
    env = infra2_env(tmp_path) | {"ETCD_LOG_LEVEL": "info"}
    run = start(env, *args, "--", "--log-level")
    assert run.returncode == 0, run.stderr
    assert run.argv == [*args, "--", "--log-level"]
    for var in ("ETCD_LOGGER", "ETCD_LOG_OUTPUTS", "ETCD_LISTEN_PEER_URLS"):
        assert var not in run.env, var
    # Not derived either: the flag is there. The other URLs still are.
    assert run.env["ETCD_INITIAL_ADVERTISE_PEER_URLS"] == "http://172.16.13.2:12380"
    # After "--" nothing is a flag.
    assert run.env["ETCD_LOG_LEVEL"] == "info"
    assert "--logger is given: ignoring ETCD_LOGGER" in run.stderr


def test_name_flag_disables_derivation(start: Any, tmp_path: Path) -> None:
    run = start(infra2_env(tmp_path), "--name", "infra3")
    assert run.returncode == 0, run.stderr
    assert "ETCD_NAME" not in run.env
    assert "ETCD_INITIAL_ADVERTISE_PEER_URLS" not in run.env


def test_explicit_urls_are_kept(start: Any, tmp_path: Path) -> None:
    env = infra2_env(tmp_path) | {"ETCD_ADVERTISE_CLIENT_URLS": "http://infra2.example:2379"}
    run = start(env)
    assert run.env["ETCD_ADVERTISE_CLIENT_URLS"] == "http://infra2.example:2379"


def test_unknown_name_derives_nothing(start: Any, tmp_path: Path) -> None:
    run = start(infra2_env(tmp_path) | {"ETCD_NAME": "infra9"})
    assert run.returncode == 0, run.stderr
    assert "ETCD_LISTEN_PEER_URLS" not in run.env
    assert "ETCD_NAME=infra9 is not in ETCD_INITIAL_CLUSTER" in run.stderr


def test_existing_member_is_reported(start: Any, tmp_path: Path) -> None:
    env = infra2_env(tmp_path)
    (Path(env["ETCD_DATA_DIR"]) / "member" / "wal").mkdir(parents=True)
    run = start(env)
    assert run.returncode == 0, run.stderr
    assert "has a member: restarting it (--initial-cluster-state new is ignored)" in run.stderr


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root")
def test_unwritable_data_dir_stops_with_one_line(start: Any, tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    (tmp_path / "bin" / "pyetcd").chmod(0o755)
    env = infra2_env(tmp_path)
    (tmp_path / "mnt data").mkdir(mode=0o755)  # root's, as an un-chowned bind mount
    as_nobody = ("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--")
    run = start(env, prefix=as_nobody)
    assert run.returncode == 1
    assert not run.exec_called
    assert run.stderr.splitlines()[-1] == (
        f"pyetcd-start: error: cannot create data dir '{env['ETCD_DATA_DIR']}' as uid {NOBODY}"
    )
