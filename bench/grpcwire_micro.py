"""Per-call cost of the client port's gRPC wire (pyetcd.grpcwire), no Raft, no store.

Two figures, each for a trivial Put handler:

- ``inproc``: requests fed straight into a ``GrpcConnection`` over an in-memory
  transport (no sockets, no grpc client): the wire's own CPU per unary call, one call
  at a time and 64 per read.
- ``loopback``: a real ``grpc.aio`` client in another process over 127.0.0.1, one
  client calling sequentially and 64 concurrent calls: the server process's CPU per
  call (``process_time``) and the calls per second.

Runs against whichever pyetcd ``PYTHONPATH`` finds (it uses only what the wire offered
before and after its sans-I/O rewrite), so two trees can be compared in one sitting::

    PYTHONPATH=/tmp/wire-base python bench/grpcwire_micro.py --json base.json
    PYTHONPATH=$PWD python bench/grpcwire_micro.py --json new.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

import hpack
import uvloop

from pyetcd.grpcwire.frames import PREFACE, Flag, FrameType, frame, settings
from pyetcd.grpcwire.server import GrpcServer
from pyetcd.logutil import Logger
from pyetcd.pb import rpc_pb2, rpc_pb2_grpc

PUT = "/etcdserverpb.KV/Put"


class KV(rpc_pb2_grpc.KVServicer):  # type: ignore[misc]
    async def Put(self, request: Any, context: Any) -> Any:
        return rpc_pb2.PutResponse(header=rpc_pb2.ResponseHeader(revision=2))


#: The request headers grpc-python sends with a Put.
HEADERS = [
    (":method", "POST"),
    (":scheme", "http"),
    (":path", PUT),
    (":authority", "127.0.0.1:2379"),
    ("content-type", "application/grpc"),
    ("te", "trailers"),
    ("grpc-accept-encoding", "identity,deflate,gzip"),
    ("user-agent", "grpc-python/1.85 grpc-c/46.0.0 (linux; chttp2)"),
]


def new_server() -> GrpcServer:
    g = GrpcServer(Logger([]), max_receive=2 << 20)
    rpc_pb2_grpc.add_KVServicer_to_server(KV(), g)
    return g


# -- inproc ---------------------------------------------------------------------------------------


class _Sink:
    """An in-memory transport: counts the bytes written."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def writelines(self, pieces: list[bytes | memoryview]) -> None:
        for piece in pieces:
            self.written += len(piece)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def close(self) -> None: ...

    abort = close

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


def _requests(first_sid: int, n: int, encoder: hpack.Encoder) -> bytes:
    body = rpc_pb2.PutRequest(key=b"key00001", value=bytes(256)).SerializeToString()
    msg = b"\x00" + len(body).to_bytes(4, "big") + body
    out = []
    for sid in range(first_sid, first_sid + 2 * n, 2):
        block = encoder.encode(HEADERS)
        out.append(frame(FrameType.HEADERS, Flag.END_HEADERS, sid, block))
        out.append(frame(FrameType.DATA, Flag.END_STREAM, sid, msg))
    return b"".join(out)


async def inproc(calls: int, batch: int) -> float:
    """Microseconds of wall time (one process, CPU bound) per unary call."""
    g = new_server()
    conn = g.connection("bench", {})
    sink = _Sink()
    conn.connection_made(sink)  # type: ignore[arg-type]
    encoder = hpack.Encoder()
    conn.data_received(PREFACE + settings(()))
    chunks = [_requests(1 + 2 * i, batch, encoder) for i in range(0, calls, batch)]
    for _ in range(5):
        await asyncio.sleep(0)
    start = time.perf_counter()
    for chunk in chunks:
        conn.data_received(chunk)
        while conn.calls:  # every call of the batch answered
            await asyncio.sleep(0)
        # Give the connection window back as a client would (every 64 KiB or so).
        conn.data_received(frame(FrameType.WINDOW_UPDATE, 0, 0, (64 * batch).to_bytes(4, "big")))
    await asyncio.sleep(0)
    elapsed = time.perf_counter() - start
    conn.connection_lost(None)
    return elapsed / calls * 1e6


# -- loopback -------------------------------------------------------------------------------------


def _client(port: int, calls: int, concurrency: int, pipe: Connection) -> None:
    import grpc

    async def main() -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = rpc_pb2_grpc.KVStub(ch)
            req = rpc_pb2.PutRequest(key=b"key00001", value=bytes(256))

            async def worker(n: int) -> None:
                for _ in range(n):
                    await stub.Put(req)

            await worker(200)  # warm-up
            pipe.send("start")
            start = time.perf_counter()
            await asyncio.gather(*(worker(calls // concurrency) for _ in range(concurrency)))
            pipe.send(time.perf_counter() - start)

    uvloop.run(main())


async def loopback(calls: int, concurrency: int) -> tuple[float, float]:
    """(server CPU microseconds per call, calls per second)."""
    g = new_server()
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(lambda: g.connection("bench", {}), "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    ctx = mp.get_context("spawn")
    ours, theirs = ctx.Pipe()
    child = ctx.Process(target=_client, args=(port, calls, concurrency, theirs))
    child.start()
    assert await loop.run_in_executor(None, ours.recv) == "start"
    cpu = time.process_time()
    elapsed = await loop.run_in_executor(None, ours.recv)
    cpu = time.process_time() - cpu
    await loop.run_in_executor(None, child.join)
    srv.close()
    await g.stop(0)
    done = (calls // concurrency) * concurrency
    return cpu / done * 1e6, done / elapsed


async def run_all(calls: int) -> dict[str, float]:
    out: dict[str, float] = {}
    out["inproc_1_us"] = await inproc(calls, 1)
    out["inproc_64_us"] = await inproc(calls, 64)
    cpu, rate = await loopback(calls // 2, 1)
    out["loopback_1_server_cpu_us"], out["loopback_1_calls_per_s"] = cpu, rate
    cpu, rate = await loopback(calls, 64)
    out["loopback_64_server_cpu_us"], out["loopback_64_calls_per_s"] = cpu, rate
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--json", help="write the figures (each repeat and the median) here")
    args = ap.parse_args()
    runs = [uvloop.run(run_all(args.calls)) for _ in range(args.repeats)]
    median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    for k, v in median.items():
        print(f"{k:28} {v:10.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": runs, "median": median, "python": sys.version}, f, indent=1)


if __name__ == "__main__":
    main()
