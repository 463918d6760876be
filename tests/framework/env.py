"""Ports, the environment a member gets, and polling: the small parts every suite shares."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pyetcd

__all__ = ["HarnessError", "clean_env", "free_port", "free_ports", "source_root", "wait_until"]

T = TypeVar("T")


class HarnessError(AssertionError):
    """A process did not start, died, or did not reach the state a test waited for."""


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports on 127.0.0.1 that nobody listens on right now.

    All ``n`` sockets are bound before any is closed, so the ports differ.
    """
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


def free_port() -> int:
    """A port on 127.0.0.1 that nobody listens on right now."""
    return free_ports(1)[0]


def source_root() -> Path:
    """The directory holding the ``pyetcd`` package this process imported: the checkout
    under test (the editable install may point at another checkout)."""
    return Path(pyetcd.__file__).resolve().parents[1]


def clean_env() -> dict[str, str]:
    """This process's environment for a child: without ETCD_*/ETCDCTL_* variables (they
    would change a member's or etcdctl's behaviour), with ``PYTHONPATH`` leading to the
    checkout under test so a pyetcd member runs the code the test imported.

    ``PYETCD_CLUSTER_SRC`` (a directory holding a ``pyetcd`` package) goes before it, so
    members run that copy instead: an A/B of two commits in one benchmark sitting.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "ETCDCTL_"))}
    paths = [str(source_root()), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    src = os.environ.get("PYETCD_CLUSTER_SRC")
    if src:
        paths.insert(0, src)
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def wait_until(
    what: str,
    probe: Callable[[], T | None],
    timeout: float,
    step: float = 0.05,
    detail: Callable[[], str] | None = None,
) -> T:
    """Call ``probe`` until it returns something other than None/False and return that.

    For state outside this process (another process's, seen through a socket or a
    file), where there is no event to await. Raises HarnessError after ``timeout``
    seconds, with ``detail()`` (e.g. member logs) in the message.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{detail()}" if detail is not None else ""
            raise HarnessError(f"timed out after {timeout:.1f}s waiting for {what}{extra}")
        time.sleep(step)
