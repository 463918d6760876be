"""One client's 10k-key ranges against one member: latency and server CPU per range.

    python bench/range_probe.py [--kind pyetcd|etcd] [--keys 10000] [--ranges 60]
        [--clients 1] [--serializable] [--hold]

Loads ``--keys`` keys of 256 B into a fresh member, then ``--clients`` clients each
issue ranges over all of them back to back (linearizable unless ``--serializable``);
prints the median and p90 latency, ranges/s and the server's CPU per range
(utime + stime from /proc, the whole measured window). ``--hold`` keeps the member
up after the run (prints its pid) until Enter, to attach py-spy or strace.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc

from bench.vs_etcd import proc_cpu_s
from pyetcd.pb import rpc_pb2, rpc_pb2_grpc
from tests.framework import running_cluster

VALUE = b"v" * 256
OPTIONS = [("grpc.max_receive_message_length", -1)]


def key_of(i: int) -> bytes:
    return b"%08d" % i


async def load(endpoint: str, keys: int) -> None:
    async with grpc.aio.insecure_channel(endpoint) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        sem = asyncio.Semaphore(64)

        async def put(i: int) -> None:
            async with sem:
                await kv.Put(rpc_pb2.PutRequest(key=key_of(i), value=VALUE))

        await asyncio.gather(*(put(i) for i in range(keys)))


async def ranges(
    endpoint: str, pid: int, keys: int, count: int, clients: int, serializable: bool
) -> dict[str, float]:
    chans = [grpc.aio.insecure_channel(endpoint, options=OPTIONS) for _ in range(clients)]
    stubs = [rpc_pb2_grpc.KVStub(ch) for ch in chans]
    req = rpc_pb2.RangeRequest(key=key_of(0), range_end=key_of(keys), serializable=serializable)
    lat: list[float] = []

    async def client(kv: rpc_pb2_grpc.KVStub, n: int, record: bool) -> None:
        for _ in range(n):
            t0 = time.perf_counter()
            resp = await kv.Range(req)
            if record:
                lat.append(time.perf_counter() - t0)
            if len(resp.kvs) != keys:
                raise RuntimeError(f"expected {keys} keys, got {len(resp.kvs)}")

    await asyncio.gather(*(client(kv, 5, False) for kv in stubs))  # warm-up
    cpu0, t0 = proc_cpu_s(pid), time.perf_counter()
    await asyncio.gather(*(client(kv, count, True) for kv in stubs))
    wall, cpu = time.perf_counter() - t0, proc_cpu_s(pid) - cpu0
    for ch in chans:
        await ch.close()
    lat.sort()
    return {
        "median_ms": round(statistics.median(lat) * 1000, 2),
        "p90_ms": round(lat[int(len(lat) * 0.9)] * 1000, 2),
        "ranges_per_s": round(len(lat) / wall, 1),
        "server_cpu_ms_per_range": round(cpu / len(lat) * 1000, 2),
        "server_busy": round(cpu / wall, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", default="pyetcd")
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--ranges", type=int, default=60)
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--serializable", action="store_true")
    ap.add_argument("--repeat", type=int, default=1, help="measured runs on the same member")
    ap.add_argument("--hold", action="store_true")
    a = ap.parse_args()
    with running_cluster(a.kind, size=1) as c:
        m = c.members[0]
        assert m.proc is not None
        asyncio.run(load(m.endpoint, a.keys))
        for _ in range(a.repeat):
            out = asyncio.run(
                ranges(m.endpoint, m.proc.pid, a.keys, a.ranges, a.clients, a.serializable)
            )
            print(a.kind, f"clients={a.clients}", out, flush=True)
        if a.hold:
            print("pid", m.proc.pid, "- Enter to stop", flush=True)
            input()


if __name__ == "__main__":
    main()
