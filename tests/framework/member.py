"""One member process: pyetcd, etcd 3.5.1 or etcd 3.4, started with etcd's flags.

A ``Member`` is a description (kind, name, directory, ports, bootstrap flags) plus,
while it runs, its process. Its data dir is ``<dir>/<name>.etcd`` and its log (stdout
and stderr, appended across restarts) ``<dir>/<name>.log``; the process runs in
``dir`` (not the checkout: ``python -c`` puts the cwd first on sys.path) in its own
session, with ``clean_env()``. Members of one cluster share a directory.

Lifecycle: ``start()`` spawns and returns; ``wait_ready()`` waits for a leader and a
linearizable read; ``stop()`` is SIGTERM (SIGKILL if it does not exit in time);
``kill()`` is SIGKILL, as a crash; ``pause()``/``resume()`` are SIGSTOP/SIGCONT;
``restart()`` stops and starts again on the same data dir; ``close()`` is the teardown
(SIGKILL whatever runs, close the channel).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

import grpc

from pyetcd.pb import rpc_pb2, rpc_pb2_grpc

from .binaries import server_command
from .env import HarnessError, clean_env, free_port

__all__ = ["CHANNEL_OPTIONS", "START_TIMEOUT", "STOP_TIMEOUT", "Member", "running_member"]

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
# Short reconnect backoff: members come and go within a test, and grpc's default
# backoff (1 s growing to 120 s) would make the client, not the server, the slow part.
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 300),
]


#: What a member with auth enabled answers an anonymous Range ("user name is empty").
_AUTH_REFUSALS = frozenset(
    {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED,
     grpc.StatusCode.UNAUTHENTICATED}
)


class Member:
    """One member: its identity, ports, flags, files and (when running) its process.

    The advertised URLs default to the listened ones and the initial cluster to this
    member alone; ``initial_cluster_token``/``initial_cluster_state`` are passed only
    when set. ``extra_args`` follow the bootstrap flags. Ports, URLs and
    ``initial_cluster*`` may be changed between runs (a member moved to a new peer URL,
    a member that joins with state "existing").
    """

    def __init__(
        self,
        kind: str,
        name: str,
        dir: Path,
        *,
        client_port: int | None = None,
        peer_port: int | None = None,
        client_scheme: str = "http",
        peer_scheme: str = "http",
        advertise_client_url: str | None = None,
        advertise_peer_url: str | None = None,
        initial_cluster: str | None = None,
        initial_cluster_token: str | None = None,
        initial_cluster_state: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.kind = kind
        self.name = name
        self.dir = dir
        self.client_port = free_port() if client_port is None else client_port
        self.peer_port = free_port() if peer_port is None else peer_port
        self.client_scheme = client_scheme
        self.peer_scheme = peer_scheme
        self._advertise_client_url = advertise_client_url
        self._advertise_peer_url = advertise_peer_url
        self.initial_cluster = initial_cluster
        self.initial_cluster_token = initial_cluster_token
        self.initial_cluster_state = initial_cluster_state
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        # Set while SIGSTOPped, so stop() can SIGCONT first.
        self.paused = False
        self._channel: grpc.Channel | None = None

    def __repr__(self) -> str:
        return f"Member({self.kind} {self.name} client={self.client_port} peer={self.peer_port})"

    # -- where it lives -------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.dir / f"{self.name}.etcd"

    @property
    def log_path(self) -> Path:
        return self.dir / f"{self.name}.log"

    @property
    def endpoint(self) -> str:
        """host:port of the client URL, as gRPC and etcdctl take it."""
        return f"127.0.0.1:{self.client_port}"

    @property
    def client_url(self) -> str:
        return f"{self.client_scheme}://{self.endpoint}"

    @property
    def peer_url(self) -> str:
        return f"{self.peer_scheme}://127.0.0.1:{self.peer_port}"

    @property
    def advertise_client_url(self) -> str:
        return self._advertise_client_url or self.client_url

    @property
    def advertise_peer_url(self) -> str:
        return self._advertise_peer_url or self.peer_url

    def flags(self) -> list[str]:
        """The command line after the server command: etcd's static bootstrap flags."""
        out = [
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.advertise_client_url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.advertise_peer_url,
            "--initial-cluster", self.initial_cluster or f"{self.name}={self.advertise_peer_url}",
        ]  # fmt: skip
        if self.initial_cluster_token is not None:
            out += ["--initial-cluster-token", self.initial_cluster_token]
        if self.initial_cluster_state is not None:
            out += ["--initial-cluster-state", self.initial_cluster_state]
        return [*out, *self.extra_args]

    def argv(self) -> list[str]:
        return [*server_command(self.kind), *self.flags()]

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Spawn the process (without waiting for it); output appends to ``log_path``."""
        if self.running:
            raise HarnessError(f"{self.name} is already running")
        argv = self.argv()
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== start {self.name}: {' '.join(argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                argv,
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=clean_env(),
                start_new_session=True,
            )
        self.paused = False

    def check_alive(self) -> None:
        """HarnessError, with the log's tail, if the process has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise HarnessError(
                f"{self.kind} {self.name} exited with {self.proc.returncode}; "
                f"log tail:\n{self.log_tail()}"
            )

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Until the member knows a leader and answers a linearizable Range (for a
        single member: it elected itself and applies). With auth enabled (a restored
        snapshot may have it) the Range's auth refusal is an answer too. Insecure client
        URLs only."""
        if self.proc is None:
            raise HarnessError(f"{self.name} was not started")
        deadline = time.monotonic() + timeout
        kv = self.kv()
        while True:
            self.check_alive()
            st = self.status(timeout=1.0)
            if st is not None and st.leader:
                try:
                    kv.Range(rpc_pb2.RangeRequest(key=b"health"), timeout=2.0)
                    return
                except grpc.RpcError as err:
                    if err.code() in _AUTH_REFUSALS:  # type: ignore[attr-defined]
                        return
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"{self.kind} {self.name} not ready in {timeout}s:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit within ``timeout``. Returns the
        exit code after SIGTERM, None when it had to be killed (or never ran). The gRPC
        channel stays: it reconnects once the member is started again."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            return self.proc.returncode
        if self.paused:
            self.resume()
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)
            return None

    def kill(self) -> None:
        """SIGKILL, as a crash would (nothing gets flushed), and reap it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(STOP_TIMEOUT)
        self.paused = False

    def _signal(self, sig: signal.Signals) -> None:
        if not self.running:
            raise HarnessError(f"{self.name} is not running")
        assert self.proc is not None
        self.proc.send_signal(sig)

    def pause(self) -> None:
        """SIGSTOP: the process is frozen, its sockets stay open."""
        self._signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT after ``pause``."""
        self._signal(signal.SIGCONT)
        self.paused = False

    def restart(self) -> None:
        """Stop (if running) and start again on the same data dir, without waiting."""
        self.stop()
        self.start()

    def wipe(self) -> None:
        """Remove the data dir (the member must not be running): the next start is a
        fresh member."""
        if self.running:
            raise HarnessError(f"{self.name} is running: stop it before wiping its data")
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def close(self) -> None:
        """Teardown: close the channel, SIGKILL the process if it runs (paused or not)."""
        self.close_channel()
        if self.proc is not None and self.proc.poll() is None:
            if self.paused:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(STOP_TIMEOUT)
        self.paused = False

    def __enter__(self) -> Member:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        self.close_channel()

    # -- logs -----------------------------------------------------------------------------

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # -- gRPC -----------------------------------------------------------------------------

    def grpc_channel(self) -> grpc.Channel:
        """An insecure channel to the client URL, kept until ``close_channel``/``stop``."""
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.endpoint, options=CHANNEL_OPTIONS)
        return self._channel

    def close_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

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


@contextlib.contextmanager
def running_member(
    kind: str,
    *,
    name: str = "default",
    parent: Path | None = None,
    advertise_client_url: str | None = None,
    advertise_peer_url: str | None = None,
    extra_args: Sequence[str] = (),
    stop_timeout: float = STOP_TIMEOUT,
) -> Iterator[Member]:
    """A single-member cluster in a fresh temp dir (under ``parent``, default the system
    temp dir), ready to serve; stopped (SIGTERM) and its dir removed afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix=f"pyetcd-{kind}-", dir=parent))
    m = Member(
        kind,
        name,
        tmp,
        advertise_client_url=advertise_client_url,
        advertise_peer_url=advertise_peer_url,
        extra_args=extra_args,
    )
    try:
        m.start()
        m.wait_ready()
        yield m
    finally:
        m.stop(stop_timeout)
        m.close_channel()
        shutil.rmtree(tmp, ignore_errors=True)
