"""The gateway's streaming routes (issue 20): watch, lease keep-alive, election observe,
snapshot as chunked ``{"result": ...}`` lines; ``/v3beta``; backpressure."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import h11
import pytest

from tests.framework import Member

from .conftest import LiveMember, http


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Stream:
    """One streaming gateway call read line by line (h11 for the framing)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h11.Connection(h11.CLIENT)
        self.status = 0
        self.headers: dict[str, str] = {}
        self.buf = b""
        self.ended = False

    @classmethod
    async def open(cls, m: LiveMember, path: str, body: bytes, token: str = "") -> Stream:
        s = await cls.send(m, path, body, token)
        await s.start()
        return s

    @classmethod
    async def send(cls, m: LiveMember, path: str, body: bytes, token: str = "") -> Stream:
        """Send the request; the answer is not read yet."""
        reader, writer = await asyncio.open_connection(m.host, m.port)
        s = cls(reader, writer)
        headers = [("Host", m.target), ("Content-Length", str(len(body)))]
        if token:
            headers.append(("Authorization", token))
        out = s.conn.send(h11.Request(method="POST", target=path, headers=headers))
        out += s.conn.send(h11.Data(data=body)) + s.conn.send(h11.EndOfMessage())
        writer.write(out)
        await writer.drain()
        return s

    async def start(self, timeout: float = 10) -> None:
        """Read the answer's head."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self._next()
                if isinstance(event, h11.Response):
                    self.status = event.status_code
                    self.headers = {k.decode(): v.decode() for k, v in event.headers}
                    return

    async def _next(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.reader.read(65536))
                continue
            return event

    async def line(self, timeout: float = 10) -> Any:
        """The next JSON line, or None at the end of the answer."""
        async with asyncio.timeout(timeout):
            while b"\n" not in self.buf:
                if self.ended:
                    return None
                event = await self._next()
                if isinstance(event, h11.Data):
                    self.buf += event.data
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    self.ended = True
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line)

    async def rest(self) -> bytes:
        while not self.ended:
            event = await self._next()
            if isinstance(event, h11.Data):
                self.buf += event.data
            else:
                self.ended = True
        return self.buf

    def close(self) -> None:
        self.writer.close()


def post_body(*docs: dict[str, Any]) -> bytes:
    return b" ".join(json.dumps(d).encode() for d in docs)


async def put(m: LiveMember, key: bytes, value: bytes, prefix: str = "/v3") -> Any:
    r = await http(m, "POST", prefix + "/kv/put", post_body({"key": b64(key), "value": b64(value)}))
    assert r.status == 200, r.body
    return json.loads(r.body)


async def test_watch_stream(member: LiveMember) -> None:
    await put(member, b"a", b"1")
    body = post_body(
        {"create_request": {"key": b64(b"a"), "start_revision": "1", "prev_kv": True}},
        {"create_request": {"key": b64(b"b"), "progress_notify": True}},
        {"progress_request": {}},
    )
    s = await Stream.open(member, "/v3/watch", body)
    try:
        assert (s.status, s.headers["transfer-encoding"]) == (200, "chunked")
        assert s.headers["grpc-metadata-content-type"] == "application/grpc"
        created = await s.line()
        assert created["result"]["created"] is True and "watch_id" not in created["result"]
        lines = [await s.line() for _ in range(3)]
        by_kind = {("events" in x["result"], x["result"].get("watch_id")): x for x in lines}
        history = by_kind[(True, None)]["result"]["events"]
        assert history == [
            {
                "kv": {
                    "key": b64(b"a"),
                    "create_revision": "2",
                    "mod_revision": "2",
                    "version": "1",
                    "value": b64(b"1"),
                }
            }
        ]
        assert by_kind[(False, "1")]["result"]["created"] is True
        assert by_kind[(False, "-1")]["result"]["header"]["revision"] == "2"  # progress
        # the request body is over; the watches go on
        await put(member, b"a", b"2")
        event = (await s.line())["result"]["events"][0]
        assert event["kv"]["value"] == b64(b"2") and event["prev_kv"]["value"] == b64(b"1")
    finally:
        s.close()


async def test_watch_decode_errors(member: LiveMember) -> None:
    s = await Stream.open(member, "/v3/watch", b'{"create_request":{"key":"YQ"}}')
    msg = "illegal base64 data at input byte 0"
    assert s.status == 500  # a bidi route's first request: gRPC Unknown, as etcd
    assert json.loads(await s.rest()) == {"error": msg, "code": 2, "message": msg}
    s.close()
    # a later request that does not decode ends the requests, not the stream
    body = b'{"create_request":{"key":"YQ=="}} {"create_request":{"key":"YQ"}}'
    s = await Stream.open(member, "/v3beta/watch", body)
    try:
        assert (await s.line())["result"]["created"] is True
        await put(member, b"a", b"x")
        assert (await s.line())["result"]["events"][0]["kv"]["value"] == b64(b"x")
    finally:
        s.close()


async def test_keepalive_observe_snapshot(member: LiveMember) -> None:
    r = await http(member, "POST", "/v3beta/lease/grant", post_body({"TTL": "30"}))
    lease = json.loads(r.body)["ID"]
    s = await Stream.open(member, "/v3/lease/keepalive", post_body({"ID": lease}, {"ID": "5"}))
    first, second, end = await s.line(), await s.line(), await s.line()
    s.close()
    assert (first["result"]["ID"], first["result"]["TTL"]) == (lease, "30")
    assert second["result"] == {"header": second["result"]["header"], "ID": "5"}
    assert end is None  # a keep-alive stream ends with its requests
    s = await Stream.open(member, "/v3/lease/keepalive", b'{"ID":"x"}')
    assert s.status == 500
    s.close()

    s = await Stream.send(member, "/v3/election/observe", post_body({"name": b64(b"el")}))
    try:
        # no leader yet: the answer has not started
        with pytest.raises(TimeoutError):
            await s.start(timeout=0.3)
        r = await http(
            member,
            "POST",
            "/v3/election/campaign",
            post_body({"name": b64(b"el"), "lease": lease, "value": b64(b"v1")}),
        )
        assert r.status == 200
        await s.start()
        assert s.status == 200
        leader = (await s.line())["result"]["kv"]
        assert (leader["value"], leader["lease"]) == (b64(b"v1"), lease)
    finally:
        s.close()
    s = await Stream.open(member, "/v3/election/observe", b'{"name":"ZWw"}')
    assert s.status == 400  # a server stream's request: InvalidArgument
    s.close()

    s = await Stream.open(member, "/v3/maintenance/snapshot", b"")
    blobs = []
    while (line := await s.line()) is not None:
        blobs.append(base64.b64decode(line["result"]["blob"]))
    s.close()
    data, digest = b"".join(blobs[:-1]), blobs[-1]
    assert hashlib.sha256(data).digest() == digest and len(data) % 512 == 0


async def test_client_leaving_ends_the_watch(member: LiveMember) -> None:
    # a watch whose client left is gone: a new stream gets watch id 0 again and
    # the member still answers
    for _ in range(3):
        s = await Stream.open(member, "/v3/watch", post_body({"create_request": {"key": "YQ=="}}))
        assert (await s.line())["result"]["created"] is True
        s.close()
    s = await Stream.send(member, "/v3/election/observe", post_body({"name": b64(b"none")}))
    s.close()
    await put(member, b"a", b"after")


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc for RSS")
async def test_slow_watch_reader_does_not_grow_memory(tmp_path: Path) -> None:
    """A watch client that stops reading: its events wait in bounded buffers (the store
    turns the watcher into a victim and catches it up later), so the member grows by
    far less than the events written; every event still arrives, in order, once it reads.
    The same writes without the watch are the baseline."""
    n, size = 1024, 48 * 1024
    value = os.urandom(size)
    m = Member("pyetcd", "default", tmp_path, extra_args=["--unsafe-no-fsync"])
    m.start()
    try:
        m.wait_ready()
        assert m.proc is not None
        live = LiveMember("127.0.0.1", m.client_port, tmp_path, None)  # type: ignore[arg-type]

        async def write(key: bytes) -> int:
            before = _rss_kib(m.proc.pid)  # type: ignore[union-attr]
            for i in range(n):
                await put(live, key, value[:-8] + i.to_bytes(8, "big"))
            return _rss_kib(m.proc.pid) - before  # type: ignore[union-attr]

        baseline = await write(b"other")
        reader, writer = await asyncio.open_connection(live.host, live.port)
        body = post_body({"create_request": {"key": b64(b"big")}})
        head = f"POST /v3/watch HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
        writer.write(head.encode() + body)
        first = await reader.readuntil(b"created")
        stalled = await write(b"big")
        extra = stalled - baseline
        print(
            f"RSS growth for {n} x {size // 1024} KiB puts: {baseline} KiB without a watch, "
            f"{stalled} KiB with a stalled watch reader (+{extra} KiB)"
        )
        assert extra < n * size * 2 // 3 // 1024, f"+{extra} KiB"
        # now read: every revision once, in order
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method="POST", target="/", headers=[("Host", "x")]))
        conn.receive_data(first)
        seen: list[int] = []
        buf = b""
        async with asyncio.timeout(60):
            while len(seen) < n:
                data = await reader.read(1 << 20)
                assert data
                conn.receive_data(data)
                while (event := conn.next_event()) is not h11.NEED_DATA:
                    if isinstance(event, h11.Data):
                        buf += event.data
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    for ev in json.loads(line).get("result", {}).get("events", []):
                        tail = base64.b64decode(ev["kv"]["value"])[-8:]
                        seen.append(int.from_bytes(tail, "big"))
        assert seen == list(range(n))
        writer.close()
    finally:
        m.stop()
        m.close_channel()


async def test_request_progress_as_etcd_3_5_13(member: LiveMember) -> None:
    """RequestProgress (etcd 3.5.13+): answered (watch_id -1, current revision) only once
    every watcher of the stream is synced, so it never runs ahead of an event still to
    come; with no watcher, not at all. (etcd 3.5.1 answered at once, whatever the state.)"""
    for i in range(3):
        await put(member, b"h", b"%d" % i)
    body = post_body(
        {"create_request": {"key": b64(b"h"), "start_revision": "1"}},  # unsynced: history
        {"progress_request": {}},
        {"progress_request": {}},  # while one is deferred, another is ignored
    )
    s = await Stream.open(member, "/v3/watch", body)
    try:
        lines = [await s.line() for _ in range(3)]
        assert lines[0]["result"]["created"] is True
        history = lines[1]["result"]["events"]
        assert [e["kv"]["mod_revision"] for e in history] == ["2", "3", "4"]
        progress = lines[2]["result"]
        assert (progress["watch_id"], progress["header"]["revision"]) == ("-1", "4")
        assert "events" not in progress
        with pytest.raises(TimeoutError):
            await s.line(timeout=0.5)
    finally:
        s.close()
    s = await Stream.send(member, "/v3/watch", post_body({"progress_request": {}}))
    try:
        with pytest.raises(TimeoutError):
            await s.start(timeout=0.5)
    finally:
        s.close()
