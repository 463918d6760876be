"""The processes tests/etcdutl starts: members (pyetcd or real etcd 3.5.1) on a data dir a
restore prepared, and the two tools. Everything else comes from tests/e2e/harness.py; this
is the one file to port when the harness moves to tests/framework/."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from e2e.harness import (
    START_TIMEOUT,
    Member,
    clean_env,
    etcd_binary,
    free_port,
    pyetcd_command,
)

from pyetcd.pb import rpc_pb2, rpc_pb2_grpc

_NOT_READY = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


@dataclass
class NamedMember(Member):
    """A member of a cluster given by ``--initial-cluster``, on the data dir ``data_dir/data``."""

    name: str = "default"
    initial_cluster: str = ""
    token: str = "etcd-cluster"

    def argv(self) -> list[str]:
        base = pyetcd_command() if self.kind == "pyetcd" else [str(etcd_binary("etcd"))]
        return [
            *base,
            "--name",
            self.name,
            "--data-dir",
            str(self.data_dir / "data"),
            "--listen-client-urls",
            self.client_url,
            "--advertise-client-urls",
            self.advertise_client_url,
            "--listen-peer-urls",
            f"http://127.0.0.1:{self.peer_port}",
            "--initial-advertise-peer-urls",
            self.advertise_peer_url,
            "--initial-cluster",
            self.initial_cluster or f"{self.name}={self.advertise_peer_url}",
            "--initial-cluster-token",
            self.token,
            *self.extra_args,
        ]

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until a Range is answered; with auth enabled (a restored snapshot may
        have it) an auth error is an answer too."""
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.endpoint) as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.kind} exited at start:\n{self.log_tail()}")
                try:
                    kv.Range(rpc_pb2.RangeRequest(key=b"health"), timeout=1.0)
                    return
                except grpc.RpcError as err:
                    if err.code() not in _NOT_READY:  # type: ignore[attr-defined]
                        return
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"{self.kind} not ready in {timeout}s:\n{self.log_tail()}"
                        ) from None
                    time.sleep(0.05)

    def start_nowait(self) -> None:
        """Start the process; ``wait_ready`` waits for it."""
        self.log_path = self.data_dir / f"{self.kind}.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv(),
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=clean_env(),
                start_new_session=True,
            )


def new_member(kind: str, workdir: Path, name: str = "default") -> NamedMember:
    """A member not started yet, with fresh ports, living in ``workdir / name``."""
    d = workdir / name
    d.mkdir(parents=True, exist_ok=True)
    client, peer = free_port(), free_port()
    return NamedMember(
        kind=kind,
        data_dir=d,
        client_port=client,
        peer_port=peer,
        advertise_client_url=f"http://127.0.0.1:{client}",
        advertise_peer_url=f"http://127.0.0.1:{peer}",
        name=name,
    )


def cluster_flag(members: Sequence[NamedMember]) -> str:
    return ",".join(f"{m.name}={m.advertise_peer_url}" for m in members)


@contextlib.contextmanager
def started(*members: NamedMember) -> Iterator[None]:
    """Start all members (a cluster's members must all start before any is ready)."""
    try:
        for m in members:
            m.start_nowait()
        for m in members:
            m.wait_ready()
        yield
    finally:
        for m in members:
            m.stop()


def etcdutl(*args: str) -> subprocess.CompletedProcess[str]:
    """Real etcdutl 3.5.1."""
    return _run([str(etcd_binary("etcdutl")), *args])


def pyetcdutl(*args: str) -> subprocess.CompletedProcess[str]:
    """Our pyetcdutl, run as its console script runs it."""
    return _run([sys.executable, "-m", "pyetcd.etcdutl.command", *args])


def etcdctl(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_env()
    env["ETCDCTL_API"] = "3"
    return _run([str(etcd_binary("etcdctl")), "--endpoints", endpoint, *args], env)


def _run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=300,
        env=env or clean_env(),
        stdin=subprocess.DEVNULL,
    )
