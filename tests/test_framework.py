"""The process harness itself (``tests/framework``): ports, environment, flags, and one
pyetcd member taken through every lifecycle step."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from pyetcd.pb import rpc_pb2
from tests.framework import (
    Cluster,
    HarnessError,
    Member,
    clean_env,
    free_ports,
    server_command,
    source_root,
    wait_until,
)


def test_free_ports_are_distinct() -> None:
    ports = free_ports(8)
    assert len(set(ports)) == 8 and all(p > 0 for p in ports)


def test_clean_env_drops_etcd_variables_and_leads_to_this_checkout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ETCD_NAME", "x")
    monkeypatch.setenv("ETCDCTL_API", "2")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    monkeypatch.delenv("PYETCD_CLUSTER_SRC", raising=False)
    env = clean_env()
    assert "ETCD_NAME" not in env and "ETCDCTL_API" not in env
    assert env["PYTHONPATH"].split(os.pathsep) == [str(source_root()), "/elsewhere"]
    assert (source_root() / "pyetcd" / "__init__.py").exists()
    monkeypatch.setenv("PYETCD_CLUSTER_SRC", "/ab")
    assert clean_env()["PYTHONPATH"].split(os.pathsep)[0] == "/ab"


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown member kind"):
        server_command("consul")


def test_flags_are_etcds_static_bootstrap(tmp_path: Path) -> None:
    m = Member(
        "pyetcd", "a", tmp_path, client_port=1, peer_port=2,
        advertise_peer_url="http://127.0.0.1:9", extra_args=["--bcrypt-cost", "4"],
    )  # fmt: skip
    assert m.flags() == [
        "--name", "a", "--data-dir", str(tmp_path / "a.etcd"),
        "--listen-client-urls", "http://127.0.0.1:1",
        "--advertise-client-urls", "http://127.0.0.1:1",
        "--listen-peer-urls", "http://127.0.0.1:2",
        "--initial-advertise-peer-urls", "http://127.0.0.1:9",
        "--initial-cluster", "a=http://127.0.0.1:9",
        "--bcrypt-cost", "4",
    ]  # fmt: skip
    c = Cluster("etcd", tmp_path, size=2, token="t")
    first = c.members[0]
    first.initial_cluster, first.initial_cluster_state = c.initial_cluster, "new"
    flags = first.flags()
    assert flags[flags.index("--initial-cluster") + 1] == (
        f"infra1={c.members[0].peer_url},infra2={c.members[1].peer_url}"
    )
    assert flags[14:18] == ["--initial-cluster-token", "t", "--initial-cluster-state", "new"]
    assert flags[18:] == ["--logger", "zap", "--log-outputs", "stderr"]


def test_member_lifecycle(tmp_path: Path) -> None:
    m = Member("pyetcd", "life", tmp_path)
    try:
        with pytest.raises(HarnessError, match="not started"):
            m.wait_ready()
        m.start()
        m.wait_ready()
        with pytest.raises(HarnessError, match="already running"):
            m.start()
        m.kv().Put(rpc_pb2.PutRequest(key=b"k", value=b"1"), timeout=10)

        m.pause()
        assert m.status(timeout=0.3) is None  # frozen: no answer
        m.resume()
        assert wait_until("an answer after SIGCONT", m.status, 10) is not None

        m.kill()
        assert m.proc is not None and m.proc.returncode == -signal.SIGKILL
        m.start()
        m.wait_ready()
        resp = m.kv().Range(rpc_pb2.RangeRequest(key=b"k"), timeout=10)
        assert [kv.value for kv in resp.kvs] == [b"1"]  # same data dir

        m.restart()
        m.wait_ready()
        m.pause()
        assert m.stop() == 0  # SIGCONT, then SIGTERM: a clean exit
        assert "=== start life:" in m.log_text() and m.data_dir.is_dir()
        m.wipe()
        assert not m.data_dir.exists()
    finally:
        m.close()
    assert not m.running
