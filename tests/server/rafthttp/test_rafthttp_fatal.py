"""A peer sender that dies unexpectedly ends the member (issue 17): otherwise the
peer would stay unreachable for good inside a live process."""

from __future__ import annotations

import asyncio
import io

import pytest

from pyetcd.logutil import Level, Logger
from pyetcd.server.rafthttp import peer as peer_module
from pyetcd.server.rafthttp.transport import PeerTransport
from tests.framework import free_port


async def test_a_dead_peer_sender_is_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken_run(self: peer_module.Peer) -> None:
        raise RuntimeError("a bug in the sender")

    monkeypatch.setattr(peer_module.Peer, "run", broken_run)
    failed: asyncio.Future[tuple[str, BaseException]] = asyncio.get_running_loop().create_future()
    tr = PeerTransport(
        1,
        1,
        (f"http://127.0.0.1:{free_port()}",),
        {2: ("http://127.0.0.1:1",)},
        lambda m: None,
        lambda node: None,
        lambda node, ok: None,
        Logger([io.StringIO()], Level.INFO),
        on_fatal=lambda msg, err: failed.set_result((msg, err)),
    )
    await tr.start()
    try:
        msg, err = await asyncio.wait_for(failed, 5)
    finally:
        await tr.close()
    assert msg == "peer sender stopped"
    assert str(err) == "a bug in the sender"
