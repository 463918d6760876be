"""Put latency and throughput: pyetcd vs. real etcd 3.5.1, same run, same flags.

Each server starts in a fresh data dir (under --dir, default a temp dir in the current
directory, so the disk is the one under test) with identical flags except the listen
ports. Measured per server:

- one client, sequential puts: p50 / p99 / mean latency and puts/s;
- 64 clients (grpc.aio tasks over a few channels in this process), puts/s.

Keys are 16 bytes, values 256 bytes. Usage:
    python bench/put_latency.py [--puts N] [--seconds S] [--clients C] [--dir DIR]
Prints a markdown table; the last line is JSON:
    {"pyetcd": {"p50_ms": ..., "p99_ms": ..., "mean_ms": ..., "seq_puts_per_s": ...,
                "concurrent_puts_per_s": ...}, "etcd": {...}, "clients": 64}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc
import grpc.aio

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pyetcd.pb import rpc_pb2, rpc_pb2_grpc  # noqa: E402
from tests.framework import free_port, running_member  # noqa: E402

VALUE = b"v" * 256
CHANNELS = 4  # 64 clients share a few HTTP/2 connections, as a Go client pool would


def sequential(endpoint: str, puts: int) -> dict[str, float]:
    """One client, one put at a time."""
    with grpc.insecure_channel(endpoint) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        for i in range(20):  # warm up the connection and the server's code paths
            kv.Put(rpc_pb2.PutRequest(key=b"warm/%011d" % i, value=VALUE), timeout=10)
        lat: list[float] = []
        start = time.perf_counter()
        for i in range(puts):
            t0 = time.perf_counter()
            kv.Put(rpc_pb2.PutRequest(key=b"seq/%012d" % i, value=VALUE), timeout=10)
            lat.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
    lat.sort()
    return {
        "p50_ms": round(lat[len(lat) // 2] * 1000, 3),
        "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 3),
        "mean_ms": round(statistics.fmean(lat) * 1000, 3),
        "seq_puts_per_s": round(puts / elapsed, 1),
    }


async def concurrent(endpoint: str, clients: int, seconds: float) -> float:
    """``clients`` tasks each putting sequentially for ``seconds``; total puts/s."""
    channels = [grpc.aio.insecure_channel(endpoint) for _ in range(CHANNELS)]
    stubs = [rpc_pb2_grpc.KVStub(ch) for ch in channels]
    done = 0
    deadline = 0.0

    async def client(n: int) -> None:
        nonlocal done
        kv = stubs[n % CHANNELS]
        i = 0
        while time.perf_counter() < deadline:
            key = b"c%03d/%011d" % (n, i)
            await kv.Put(rpc_pb2.PutRequest(key=key, value=VALUE), timeout=30)
            i += 1
            done += 1

    try:
        deadline = time.perf_counter() + 0.5  # warm-up round, not counted
        await asyncio.gather(*(client(n) for n in range(clients)))
        done = 0
        start = time.perf_counter()
        deadline = start + seconds
        await asyncio.gather(*(client(n) for n in range(clients)))
        return done / (time.perf_counter() - start)
    finally:
        for ch in channels:
            await ch.close()


def measure(kind: str, workdir: Path, args: argparse.Namespace) -> dict[str, float]:
    adv_client = f"http://127.0.0.1:{free_port()}"
    adv_peer = f"http://127.0.0.1:{free_port()}"
    with running_member(
        kind,
        parent=workdir,
        advertise_client_url=adv_client,
        advertise_peer_url=adv_peer,
        stop_timeout=15,
    ) as srv:
        result = sequential(srv.endpoint, args.puts)
        result["concurrent_puts_per_s"] = round(
            asyncio.run(concurrent(srv.endpoint, args.clients, args.seconds)), 1
        )
    return result


def table(results: dict[str, dict[str, float]], clients: int) -> str:
    rows = [
        f"| server | p50 ms | p99 ms | mean ms | 1 client puts/s | {clients} clients puts/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind, r in results.items():
        rows.append(
            f"| {kind} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['mean_ms']:.2f} | "
            f"{r['seq_puts_per_s']:,.0f} | {r['concurrent_puts_per_s']:,.0f} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--puts", type=int, default=1000, help="sequential puts per server")
    parser.add_argument("--seconds", type=float, default=5.0, help="concurrent phase length")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--dir", default=None, help="where the data dirs go (disk under test)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="putbench-", dir=args.dir or os.getcwd()))
    try:
        results = {kind: measure(kind, workdir, args) for kind in ("pyetcd", "etcd")}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(table(results, args.clients))
    print(json.dumps({**results, "clients": args.clients}))


if __name__ == "__main__":
    main()
