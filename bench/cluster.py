"""3-member cluster figures for pyetcd and real etcd 3.5.1, same flags, same run.

- failover: kill -9 of the leader -> first write accepted by a surviving member, with
  default timeouts (heartbeat 100 ms, election 1000 ms); median of ``--runs`` runs.
  A new put is sent to a survivor every ``PROBE_MS`` ms after the kill, so the
  figure has that resolution.
- throughput: ``--clients`` concurrent clients doing sequential puts (8-byte keys,
  256-byte values) spread over all three members for ``--seconds`` seconds.

Usage: python bench/cluster.py [--runs 3] [--seconds 5] [--clients 64] [--kinds pyetcd,etcd]
Prints a markdown table; the last line is JSON
{"pyetcd": {"failover_s": [...], "failover_median_s": ..., "puts_per_s": ..., ...}, ...}.
The client runs on the same machine (and cores) as the members.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import grpc

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pyetcd.pb import rpc_pb2, rpc_pb2_grpc  # noqa: E402
from tests.cluster.client import put  # noqa: E402
from tests.framework import Cluster, Member, running_cluster, wait_until  # noqa: E402

PROBE_MS = 10
VALUE = b"x" * 256


async def _first_accepted_write(targets: list[Member], t0: float, timeout: float) -> float:
    """Send a put to a survivor every PROBE_MS ms; return when the first one succeeds."""
    channels = [grpc.aio.insecure_channel(m.endpoint) for m in targets]
    stubs = [rpc_pb2_grpc.KVStub(ch) for ch in channels]
    done: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def probe(i: int) -> None:
        req = rpc_pb2.PutRequest(key=f"failover/{i}".encode(), value=b"v")
        try:
            await stubs[i % len(stubs)].Put(req, timeout=timeout)
        except grpc.aio.AioRpcError:
            return
        if not done.done():
            done.set_result(time.monotonic() - t0)

    tasks = []
    try:
        i = 0
        while not done.done() and time.monotonic() - t0 < timeout:
            tasks.append(asyncio.create_task(probe(i)))
            i += 1
            await asyncio.wait([done], timeout=PROBE_MS / 1000)
        if not done.done():
            raise TimeoutError(f"no write accepted within {timeout}s of the kill")
        return done.result()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for ch in channels:
            await ch.close()


def failover_once(kind: str) -> float:
    with running_cluster(kind) as c:
        leader = c.wait_leader()
        survivors = [m for m in c.members if m is not leader]
        for m in survivors:
            put(m, "warmup", "1")  # connections up and a committed entry in this term
        t0 = time.monotonic()
        leader.kill()
        return asyncio.run(_first_accepted_write(survivors, t0, timeout=30))


async def _load(c: Cluster, clients: int, seconds: float) -> tuple[int, list[float]]:
    # One channel per member per 8 clients: grpc multiplexes the rest.
    nchan = max(len(c.members), clients // 8)
    channels = [
        grpc.aio.insecure_channel(c.members[i % len(c.members)].endpoint) for i in range(nchan)
    ]
    stubs = [rpc_pb2_grpc.KVStub(ch) for ch in channels]
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    rng = random.Random(1)

    async def client(n: int) -> None:
        stub = stubs[n % len(stubs)]
        while time.monotonic() < deadline:
            key = rng.randrange(100_000).to_bytes(8, "big")
            start = time.monotonic()
            await stub.Put(rpc_pb2.PutRequest(key=key, value=VALUE), timeout=10)
            latencies.append(time.monotonic() - start)

    try:
        start = time.monotonic()
        await asyncio.gather(*(client(n) for n in range(clients)))
        elapsed = time.monotonic() - start
    finally:
        for ch in channels:
            await ch.close()
    return int(len(latencies) / elapsed), latencies


def throughput(kind: str, clients: int, seconds: float) -> dict[str, float]:
    with running_cluster(kind) as c:
        c.wait_leader()
        wait_until("all members answer", lambda: all(m.status() for m in c.members), 10)
        rate, lat = asyncio.run(_load(c, clients, seconds))
    lat.sort()
    return {
        "puts_per_s": rate,
        "p50_ms": round(lat[len(lat) // 2] * 1000, 2),
        "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--kinds", default="pyetcd,etcd")
    args = ap.parse_args()

    results: dict[str, dict[str, Any]] = {}
    for kind in args.kinds.split(","):
        runs = [round(failover_once(kind), 3) for _ in range(args.runs)]
        results[kind] = {
            "failover_s": runs,
            "failover_median_s": statistics.median(runs),
            "clients": args.clients,
            **throughput(kind, args.clients, args.seconds),
        }

    print(f"| server | failover median (runs) | puts/s, {args.clients} clients | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for kind, r in results.items():
        each = ", ".join(f"{x:.3f}" for x in r["failover_s"])
        print(
            f"| {kind} | {r['failover_median_s']:.3f} s ({each}) | {r['puts_per_s']} "
            f"| {r['p50_ms']} | {r['p99_ms']} |"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
