"""Hostile HTTP/2 clients, a well-behaved bystander and the figures the HTTP/2 flood tests
read (tests/adversarial/test_http2_floods.py): raw frames over plain sockets, so the
attacks send what no HTTP/2 library would.

``Attack.run`` keeps one attacking connection busy for a number of seconds, dialling
again whenever the server closes it, and records what the server answered (its GOAWAYs'
codes and debug data). ``Bystander`` puts keys in a loop on its own gRPC channel and
records each put's latency and every key acknowledged.
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import grpc
import hpack

from pyetcd.grpcwire.frames import PREFACE, ErrorCode, Flag, FrameType, settings
from pyetcd.pb import rpc_pb2, rpc_pb2_grpc
from tests.framework import CHANNEL_OPTIONS, Member

#: Seconds each attack lasts (a few by default; longer runs set the variable).
SECONDS = float(os.environ.get("PYETCD_ADVERSARIAL_SECONDS", "2"))


def rss_mib(m: Member) -> float:
    """The member's resident set (VmRSS) in MiB."""
    assert m.proc is not None
    with open(f"/proc/{m.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def request_headers(path: str, authority: str) -> bytes:
    """A self-contained header block (fresh HPACK encoder) for a gRPC request."""
    return hpack.Encoder().encode(
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
    )


def grpc_message(payload: bytes) -> bytes:
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


@dataclass
class Answers:
    """What the server sent one attacking connection, as the reader thread parsed it."""

    goaways: list[tuple[int, bytes]] = field(default_factory=list)
    settings: dict[int, int] = field(default_factory=dict)
    window_updates: dict[int, int] = field(default_factory=dict)  # stream id -> sum
    settings_seen: threading.Event = field(default_factory=threading.Event)
    closed: threading.Event = field(default_factory=threading.Event)


def read_frames(sock: socket.socket, answers: Answers) -> None:
    """Parse what the server sends until it closes (run in a thread)."""
    buf = bytearray()
    try:
        while chunk := sock.recv(1 << 16):
            buf += chunk
            while len(buf) >= 9:
                n = int.from_bytes(buf[:3], "big")
                if len(buf) < 9 + n:
                    break
                ftype, flags = buf[3], buf[4]
                sid = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
                payload = bytes(buf[9 : 9 + n])
                del buf[: 9 + n]
                if ftype == FrameType.GOAWAY:
                    code = int.from_bytes(payload[4:8], "big")
                    answers.goaways.append((code, payload[8:]))
                elif ftype == FrameType.SETTINGS and not flags & Flag.ACK:
                    for i in range(0, len(payload), 6):
                        key = int.from_bytes(payload[i : i + 2], "big")
                        answers.settings[key] = int.from_bytes(payload[i + 2 : i + 6], "big")
                    answers.settings_seen.set()
                elif ftype == FrameType.WINDOW_UPDATE:
                    inc = int.from_bytes(payload, "big") & 0x7FFFFFFF
                    answers.window_updates[sid] = answers.window_updates.get(sid, 0) + inc
    except OSError:
        pass
    finally:
        answers.closed.set()


@dataclass
class Outcome:
    """An attack's figures."""

    seconds: float
    connections: int
    bytes_sent: int
    goaways: list[tuple[int, bytes]]

    def calm(self) -> list[bytes]:
        """The debug data of every GOAWAY(ENHANCE_YOUR_CALM) received."""
        return [d for code, d in self.goaways if code == ErrorCode.ENHANCE_YOUR_CALM]

    def summary(self) -> str:
        kinds = sorted({f"{ErrorCode(c).name}:{d[:40]!r}" for c, d in self.goaways})
        return (
            f"{self.connections} conns, {self.bytes_sent / 2**20:.1f} MiB sent, "
            f"GOAWAY {', '.join(kinds) or 'none'}"
        )


class Attack:
    """Send ``chunks(connection_number)`` on fresh connections for ``seconds``."""

    def __init__(
        self, host: str, port: int, chunks: Callable[[int], Iterator[bytes]], read: bool = True
    ) -> None:
        self.addr = (host, port)
        self.chunks = chunks
        self.read = read  # False: a client that never reads what the server sends

    def run(self, seconds: float = SECONDS) -> Outcome:
        start = time.monotonic()
        deadline = start + seconds
        conns = sent = 0
        goaways: list[tuple[int, bytes]] = []
        socks = []
        while time.monotonic() < deadline:
            conns += 1
            sock = socket.create_connection(self.addr, timeout=5)
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            answers = Answers()
            if self.read:
                threading.Thread(target=read_frames, args=(sock, answers), daemon=True).start()
            try:
                sock.sendall(PREFACE + settings(()))
                for chunk in self.chunks(conns):
                    if time.monotonic() >= deadline or answers.closed.is_set():
                        break
                    sock.sendall(chunk)
                    sent += len(chunk)
            except OSError:  # closed by the server, or the deadline passed mid-write
                pass
            if self.read:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
                answers.closed.wait(2)
                sock.close()
                goaways += answers.goaways
            else:
                socks.append(sock)  # held open, unread, to the end
        for s in socks:
            s.close()
        return Outcome(time.monotonic() - start, conns, sent, goaways)


class Bystander:
    """Puts ``bystander/<tag>/<i>`` in a loop on its own channel, one at a time."""

    def __init__(self, m: Member, tag: str) -> None:
        self.channel = grpc.insecure_channel(m.endpoint, options=CHANNEL_OPTIONS)
        self.kv = rpc_pb2_grpc.KVStub(self.channel)
        self.tag = tag
        self.latencies: list[float] = []
        self.acked: list[bytes] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Bystander:
        self.kv.Put(rpc_pb2.PutRequest(key=b"warm", value=b"up"), timeout=10)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def _loop(self) -> None:
        i = 0
        while not self._stop.is_set():
            key = f"bystander/{self.tag}/{i:06d}".encode()
            t = time.perf_counter()
            try:
                self.kv.Put(rpc_pb2.PutRequest(key=key, value=b"v"), timeout=5)
            except grpc.RpcError as err:
                self.failures.append(f"{err.code()}: {err.details()}")
            else:
                self.latencies.append(time.perf_counter() - t)
                self.acked.append(key)
            i += 1
            time.sleep(0.005)

    def p99_ms(self) -> float:
        if len(self.latencies) < 2:
            return float("nan")
        return statistics.quantiles(self.latencies, n=100)[98] * 1000

    def max_ms(self) -> float:
        return max(self.latencies, default=float("nan")) * 1000

    def lost(self) -> list[bytes]:
        """Acknowledged keys that a linearizable range does not return."""
        prefix = f"bystander/{self.tag}/".encode()
        end = prefix[:-1] + bytes([prefix[-1] + 1])
        resp = self.kv.Range(rpc_pb2.RangeRequest(key=prefix, range_end=end, keys_only=True))
        have = {kv.key for kv in resp.kvs}
        return [k for k in self.acked if k not in have]

    def close(self) -> None:
        self.channel.close()
