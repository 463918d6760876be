"""etcdctl side by side: a pyetcd and a real etcd 3.5.1 started with the same
advertised URLs (``Pair``), so both derive the same member and cluster IDs and the same
sequence of commands gives byte-identical etcdctl output except for what legitimately
differs (lease IDs, raft index, db size). The processes are ``tests.framework``'s.
"""

from __future__ import annotations

import queue
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from tests.framework import CtlResult, Etcdctl, Member


@dataclass(frozen=True)
class Pair:
    """A pyetcd and a real etcd started with identical advertised URLs."""

    pyetcd: Member
    etcd: Member


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
