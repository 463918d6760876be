"""Hosts as Linux network namespaces, for proving the deploy kit without VMs.

A :class:`Lab` creates one namespace holding a bridge and one namespace per host,
each joined to the bridge by a veth pair whose bridge end stays in the bridge's
namespace. Nothing is added to the root namespace. Namespace names carry the
test process's pid, so parallel runs do not meet, and a run that died without
cleaning up is recognised (its pid is gone) and cleaned by the next one.

:meth:`Lab.close` kills every process it started and every process still inside
one of its namespaces, then deletes the namespaces; it never raises.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PREFIX", "Host", "Lab", "LabError", "netns_unavailable_reason", "remove_stale"]

PREFIX = "pyetcd-deploy"
_OURS = re.compile(rf"^{PREFIX}-(\d+)-")


class LabError(AssertionError):
    """An ``ip`` command that sets up the lab failed."""


def _ip(*args: str) -> str:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise LabError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def netns_unavailable_reason() -> str | None:
    """Why this process cannot create network namespaces, or None when it can."""
    if os.geteuid() != 0:
        return "creating network namespaces needs root (CI runs as root)"
    name = f"{PREFIX}-{os.getpid()}-probe"
    try:
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=30)
    except FileNotFoundError:
        return "the ip command (iproute2) is not installed"
    except subprocess.CalledProcessError as exc:
        return f"`ip netns add` is not permitted here: {exc.stderr.decode().strip()}"
    try:
        # `ip netns exec` also needs to mount /sys for the namespace.
        inside = subprocess.run(
            ["ip", "netns", "exec", name, "true"], capture_output=True, text=True, timeout=30
        )
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
    if inside.returncode != 0:
        return f"`ip netns exec` is not permitted here: {inside.stderr.strip()}"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_inside(ns: str) -> None:
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=30)
    for word in out.stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(word), signal.SIGKILL)


def _delete(ns: str) -> None:
    _kill_inside(ns)
    subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def remove_stale() -> None:
    """Delete namespaces (killing what runs inside) and temp dirs named ``PREFIX-<pid>-*``
    left behind by earlier runs whose process has died (e.g. a kill -9 of pytest)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
    for line in out.stdout.splitlines():
        name = line.split(" ", 1)[0]
        match = _OURS.match(name)
        if match and not _pid_alive(int(match.group(1))):
            _delete(name)
    for path in Path(tempfile.gettempdir()).glob(f"{PREFIX}-*"):
        match = _OURS.match(path.name)
        if match and path.is_dir() and not _pid_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True, slots=True)
class Host:
    """One namespace on the lab's segment."""

    name: str
    ns: str
    ip: str


@dataclass
class Lab:
    """A bridge namespace and host namespaces on one L2 segment (``prefix_len`` bits)."""

    prefix_len: int = 16
    tag: str = field(default_factory=lambda: f"{PREFIX}-{os.getpid()}")
    hosts: dict[str, Host] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _namespaces: list[str] = field(default_factory=list)

    def _add_ns(self, suffix: str) -> str:
        ns = f"{self.tag}-{suffix}"
        _ip("netns", "add", ns)
        self._namespaces.append(ns)
        _ip("-n", ns, "link", "set", "lo", "up")
        return ns

    @property
    def bridge_ns(self) -> str:
        return f"{self.tag}-br"

    def open(self) -> None:
        """Create the bridge's namespace and the bridge in it."""
        self._add_ns("br")
        _ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.bridge_ns, "link", "set", "br0", "up")

    def add_host(self, name: str, ip: str) -> Host:
        """A namespace with ``eth0`` = ``ip``/prefix_len, cabled to the bridge."""
        ns = self._add_ns(name)
        port = f"p{len(self.hosts)}"
        # Created inside the bridge's namespace, the peer moved straight into the host's.
        _ip("-n", self.bridge_ns, "link", "add", port, "type", "veth", "peer", "name", "eth0",
            "netns", ns)  # fmt: skip
        _ip("-n", self.bridge_ns, "link", "set", port, "master", "br0", "up")
        _ip("-n", ns, "addr", "add", f"{ip}/{self.prefix_len}", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        host = Host(name, ns, ip)
        self.hosts[name] = host
        return host

    def run(
        self, host: str, argv: Sequence[str], timeout: float = 20.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in ``host``'s namespace and wait for it."""
        return subprocess.run(
            ["ip", "netns", "exec", self.hosts[host].ns, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
        )

    def spawn(
        self, host: str, argv: Sequence[str], env: Mapping[str, str], log: Path
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in ``host``'s namespace with exactly ``env``; output to ``log``.

        ``ip netns exec`` execs the command, so the returned process is the command.
        """
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.hosts[host].ns, *argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env),
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        """Kill everything started here or running inside, delete the namespaces."""
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        for ns in reversed(self._namespaces):
            _delete(ns)
        self._namespaces.clear()
