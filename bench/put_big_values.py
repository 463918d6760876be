"""Server CPU per put of large values: one member, concurrent grpc.aio clients.

Usage: python bench/put_big_values.py [--kind pyetcd|etcd] [--puts 200] [--clients 8]
                                      [--value-size 1048576] [--keys 64]

Prints puts/s and the server's CPU per put (utime + stime from /proc/<pid>/stat, user and
system apart) and its minor page faults per put, over the measured puts (after 16 warm-up
puts). ``PYETCD_CLUSTER_SRC=<dir>`` runs another tree's pyetcd, for an A/B in one sitting.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from pyetcd.pb import rpc_pb2, rpc_pb2_grpc  # noqa: E402
from tests.framework import running_member  # noqa: E402


def _stat(pid: int) -> tuple[int, int, int]:
    """(minor faults, utime, stime) of a process, in faults and clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[7]), int(fields[11]), int(fields[12])


async def _load(endpoint: str, pid: int, args: argparse.Namespace) -> str:
    value = os.urandom(args.value_size)
    opts = [("grpc.max_send_message_length", 2 * args.value_size + 4096)]
    async with grpc.aio.insecure_channel(endpoint.replace("http://", ""), options=opts) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        for i in range(16):
            await kv.Put(rpc_pb2.PutRequest(key=b"k%d" % (i % args.keys), value=value))
        done = 0
        before, t0 = _stat(pid), time.perf_counter()

        async def client(j: int) -> None:
            nonlocal done
            for i in range(args.puts // args.clients):
                key = b"k%d" % ((j * args.clients + i) % args.keys)
                await kv.Put(rpc_pb2.PutRequest(key=key, value=value))
                done += 1

        await asyncio.gather(*(client(j) for j in range(args.clients)))
        after, elapsed = _stat(pid), time.perf_counter() - t0
    hz = os.sysconf("SC_CLK_TCK")
    user = (after[1] - before[1]) / hz / done * 1000
    system = (after[2] - before[2]) / hz / done * 1000
    return (
        f"{args.kind}: {done / elapsed:.1f} puts/s, server CPU per put {user + system:.2f} ms "
        f"(user {user:.2f}, sys {system:.2f}), minor faults per put "
        f"{(after[0] - before[0]) / done:.0f}, load average {os.getloadavg()[0]:.1f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--kind", choices=["pyetcd", "etcd"], default="pyetcd")
    ap.add_argument("--puts", type=int, default=200)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--value-size", type=int, default=1 << 20)
    ap.add_argument("--keys", type=int, default=64)
    args = ap.parse_args()
    with running_member(args.kind) as m:
        assert m.proc is not None
        print(asyncio.run(_load(m.endpoint, m.proc.pid, args)))


if __name__ == "__main__":
    main()
