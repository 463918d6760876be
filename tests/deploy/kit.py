"""The deploy kit as the tests read it: its files, and the env a container would get.

The tests never restate the kit's configuration: members come from
``deploy/members.env``, the image's baked-in variables from the Containerfile's
``ENV``, a service's variables from ``compose.yaml``. A change to the kit is thus
a change to what the tests run.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

__all__ = [
    "CONTAINERFILE",
    "DEPLOY",
    "MEMBERS_ENV",
    "REPO",
    "START_SCRIPT",
    "Member",
    "compose",
    "container_env",
    "ensure_tool",
    "image_env",
    "members",
    "read_env_file",
    "scripts",
]

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
START_SCRIPT = DEPLOY / "pyetcd-start.sh"
MEMBERS_ENV = DEPLOY / "members.env"
CONTAINERFILE = DEPLOY / "container" / "Containerfile"
COMPOSE = DEPLOY / "container" / "compose.yaml"


@dataclass(frozen=True, slots=True)
class Member:
    """One entry of ETCD_INITIAL_CLUSTER."""

    name: str
    peer_url: str

    @property
    def ip(self) -> str:
        return urlsplit(self.peer_url).hostname or ""


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as docker's ``--env-file`` and compose's ``env_file`` read them."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not KEY=VALUE: {line!r}"
        env[key] = value
    return env


def members() -> list[Member]:
    """The cluster declared in deploy/members.env, in order."""
    cluster = read_env_file(MEMBERS_ENV)["ETCD_INITIAL_CLUSTER"]
    out = []
    for entry in cluster.split(","):
        name, _, url = entry.partition("=")
        out.append(Member(name, url))
    return out


def image_env() -> dict[str, str]:
    """The variables the Containerfile's ``ENV`` instructions bake into the image."""
    text = CONTAINERFILE.read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        words = line.strip().split(None, 1)
        if len(words) == 2 and words[0].upper() == "ENV":
            for word in shlex.split(words[1]):
                key, _, value = word.partition("=")
                env[key] = value
    return env


def compose() -> dict[str, Any]:
    """compose.yaml, parsed (anchors and ``<<`` merges resolved)."""
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


def container_env(service: str) -> dict[str, str]:
    """What the compose service's container sees: image ENV, then env_file, then environment."""
    svc = compose()["services"][service]
    env = image_env()
    files = svc.get("env_file", [])
    for name in [files] if isinstance(files, str) else files:
        env.update(read_env_file(COMPOSE.parent / name))
    env.update({str(k): str(v) for k, v in svc.get("environment", {}).items()})
    return env


def scripts() -> list[Path]:
    """Every shell script of the kit (by shebang)."""
    out = []
    for path in sorted(DEPLOY.rglob("*")):
        if path.is_file() and path.read_bytes()[:64].startswith(b"#!/usr/bin/env bash"):
            out.append(path)
    return out


def _apt_install(package: str) -> str:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        # A fresh machine may have no package lists yet.
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, timeout=600)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    return proc.stderr.strip()[-300:]


def ensure_tool(command: str, package: str) -> tuple[str | None, str]:
    """The path of ``command``, installing Debian's ``package`` when root and apt allow.

    Returns (path, "") or (None, why it is not available).
    """
    found = shutil.which(command)
    if found:
        return found, ""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None, f"{command} is not installed (apt-get install {package}; needs root)"
    error = _apt_install(package)
    found = shutil.which(command)
    if found:
        return found, ""
    return None, f"{command} is not installed and `apt-get install {package}` failed: {error}"
