"""In-process pyetcd members for the API tests: ``pyetcd.embed.serve`` on free
127.0.0.1 ports in a temp dir, on the test's own event loop."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pyetcd.config import ServerConfig
from pyetcd.embed import serve
from pyetcd.logutil import Level, Logger
from tests.framework import free_port

READY = "ready to serve client requests"
# etcd's "raft.node: <id> elected leader <id> at term <n>"
ELECTED = " elected leader "


class _ReadyLogger(Logger):
    """Sets ``ready`` when the server logs that it serves clients."""

    def __init__(self) -> None:
        self.out = io.StringIO()
        super().__init__([self.out], Level.INFO)
        self.ready = asyncio.Event()
        self.elected = asyncio.Event()
        self.failed = asyncio.Event()

    def log(
        self,
        level: Level,
        msg: str,
        fields: Mapping[str, Any] | None = None,
        *,
        depth: int = 2,
        **kw: Any,
    ) -> None:
        super().log(level, msg, fields, depth=depth + 1, **kw)
        if msg == READY:
            self.ready.set()
        if msg.startswith("raft.node: ") and ELECTED in msg:
            self.elected.set()
        if level >= Level.FATAL:
            self.failed.set()


@dataclass
class LiveMember:
    """A running member: where it listens and how to stop it."""

    host: str
    port: int
    data_dir: Path
    logger: _ReadyLogger

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"


async def start_member(
    tmp: Path, scheme: str = "http", **settings: Any
) -> tuple[LiveMember, asyncio.Event, asyncio.Task[int]]:
    """A member on free ports (client URL ``scheme``), ``settings`` added to its ServerConfig."""
    client, peer = free_port(), free_port()
    cfg = ServerConfig(
        name="default",
        data_dir=str(tmp / "default.etcd"),
        listen_client_urls=(f"{scheme}://127.0.0.1:{client}",),
        advertise_client_urls=(f"{scheme}://127.0.0.1:{client}",),
        listen_peer_urls=(f"http://127.0.0.1:{peer}",),
        initial_advertise_peer_urls=(f"http://127.0.0.1:{peer}",),
        initial_cluster=f"default=http://127.0.0.1:{peer}",
        heartbeat_interval=20,
        election_timeout=200,
        **settings,
    )
    logger = _ReadyLogger()
    stop = asyncio.Event()
    task = asyncio.ensure_future(serve(cfg, logger, stop))

    async def serving() -> None:
        await logger.ready.wait()
        await logger.elected.wait()

    ready = asyncio.ensure_future(serving())
    failed = asyncio.ensure_future(logger.failed.wait())
    await asyncio.wait({ready, failed, task}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
    started = ready.done() and not ready.cancelled()
    ready.cancel()
    failed.cancel()
    if not started:
        stop.set()
        raise RuntimeError("pyetcd did not start:\n" + logger.out.getvalue()[-3000:])
    return LiveMember("127.0.0.1", client, tmp, logger), stop, task


@pytest.fixture
async def member(tmp_path: Path) -> AsyncIterator[LiveMember]:
    m, stop, task = await start_member(tmp_path)
    try:
        yield m
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 20) == 0


@dataclass(frozen=True)
class HTTPReply:
    status: int
    headers: dict[str, str]
    body: bytes


async def read_reply(reader: asyncio.StreamReader) -> HTTPReply:
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while True:
        line = (await reader.readline()).decode()
        if line in ("\r\n", ""):
            break
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return HTTPReply(status, headers, body)


async def http(
    m: LiveMember, method: str, path: str, body: bytes = b"", close: bool = True
) -> HTTPReply:
    """One HTTP/1.1 request on a fresh connection."""
    reader, writer = await asyncio.open_connection(m.host, m.port)
    try:
        head = f"{method} {path} HTTP/1.1\r\nHost: {m.target}\r\nContent-Length: {len(body)}\r\n"
        if close:
            head += "Connection: close\r\n"
        writer.write(head.encode() + b"\r\n" + body)
        await writer.drain()
        return await read_reply(reader)
    finally:
        writer.close()
