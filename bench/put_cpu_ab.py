"""Server CPU per put of two pyetcd trees measured side by side, in the same seconds.

`put_cpu.py` run for one tree, then the other, compares runs minutes apart, and on this
shared machine the CPU time of the same code moves by a third as the other sessions'
load comes and goes (two cores: their work shares caches and cores with ours). Here one
member runs the tree in ``--base`` (as ``PYETCD_CLUSTER_SRC``), the other this checkout
(or ``PYTHONPATH``'s), both started through ``tests.framework``; one client alternates
blocks of ``--block`` sequential puts (256 B values) between them, so both see the same
load, and each member's CPU (all its threads, from the kernel's per-process CPU clock,
to the nanosecond: ``/proc``'s ticks are 10 ms) is read around its own blocks only.
Each round prints both figures and their ratio; the last line (JSON) holds the medians.

    python bench/put_cpu_ab.py --base /work/main [--puts 3000] [--rounds 5] [--block 50] [--aio]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

from bench.put_cpu import VALUE  # noqa: E402
from pyetcd.pb import rpc_pb2, rpc_pb2_grpc  # noqa: E402
from tests.framework import running_member  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """CPU time of process ``pid``, all threads (Linux's CPUCLOCK_SCHED clock of a pid)."""
    return time.clock_gettime_ns((~pid << 3) | 2) / 1e9


@contextlib.contextmanager
def member_of(tree: str | None, parent: Path):  # type: ignore[no-untyped-def]
    """A started pyetcd member running ``tree``'s pyetcd (None: this checkout's)."""
    old = os.environ.pop("PYETCD_CLUSTER_SRC", None)
    if tree is not None:
        os.environ["PYETCD_CLUSTER_SRC"] = tree
    try:
        cm = running_member("pyetcd", parent=parent)
        m = cm.__enter__()
    finally:
        os.environ.pop("PYETCD_CLUSTER_SRC", None)
        if old is not None:
            os.environ["PYETCD_CLUSTER_SRC"] = old
    try:
        yield m
    finally:
        cm.__exit__(None, None, None)


def one_round(base: str, puts: int, block: int, seed: int, aio: bool) -> dict[str, float]:
    parent = Path.cwd()
    with member_of(base, parent) as a, member_of(None, parent) as b:
        assert a.proc is not None and b.proc is not None
        members = {"base": (a.endpoint, a.proc.pid), "this": (b.endpoint, b.proc.pid)}
        run = _aio_blocks if aio else _blocks
        cpu, wall = run(members, puts, block, random.Random(seed))
    n = puts // block * block
    return {
        "base_cpu_us": round(cpu["base"] / n * 1e6, 1),
        "this_cpu_us": round(cpu["this"] / n * 1e6, 1),
        "base_wall_us": round(wall["base"] / n * 1e6, 1),
        "this_wall_us": round(wall["this"] / n * 1e6, 1),
        "load1": round(os.getloadavg()[0], 2),
    }


Members = dict[str, tuple[str, int]]  # name -> (endpoint, pid)
Figures = tuple[dict[str, float], dict[str, float]]  # CPU and wall seconds, by name


def _order(i: int) -> list[str]:
    return ["base", "this"] if i % 2 == 0 else ["this", "base"]


def _blocks(members: Members, puts: int, block: int, rng: random.Random) -> Figures:
    """The puts from grpcio's synchronous client."""
    cpu = {"base": 0.0, "this": 0.0}
    wall = {"base": 0.0, "this": 0.0}
    with contextlib.ExitStack() as stack:
        stubs = {
            name: rpc_pb2_grpc.KVStub(stack.enter_context(grpc.insecure_channel(endpoint)))
            for name, (endpoint, _) in members.items()
        }
        for stub in stubs.values():  # warm-up
            for _ in range(500):
                stub.Put(rpc_pb2.PutRequest(key=b"%08d" % rng.randrange(10**8), value=VALUE))
        for i in range(puts // block):
            for name in _order(i):
                stub, pid = stubs[name], members[name][1]
                c0, w0 = cpu_seconds(pid), time.perf_counter()
                for _ in range(block):
                    stub.Put(rpc_pb2.PutRequest(key=b"%08d" % rng.randrange(10**8), value=VALUE))
                wall[name] += time.perf_counter() - w0
                cpu[name] += cpu_seconds(pid) - c0
    return cpu, wall


def _aio_blocks(members: Members, puts: int, block: int, rng: random.Random) -> Figures:
    """The puts from grpc.aio with a deadline, as ``vs_etcd_load.py``'s clients send them."""

    async def run() -> Figures:
        cpu = {"base": 0.0, "this": 0.0}
        wall = {"base": 0.0, "this": 0.0}
        channels = {name: grpc.aio.insecure_channel(ep) for name, (ep, _) in members.items()}
        stubs = {name: rpc_pb2_grpc.KVStub(ch) for name, ch in channels.items()}

        async def put(stub: rpc_pb2_grpc.KVStub) -> None:
            key = b"%08d" % rng.randrange(10**8)
            await stub.Put(rpc_pb2.PutRequest(key=key, value=VALUE), timeout=10.0)

        try:
            for stub in stubs.values():  # warm-up
                for _ in range(500):
                    await put(stub)
            for i in range(puts // block):
                for name in _order(i):
                    stub, pid = stubs[name], members[name][1]
                    c0, w0 = cpu_seconds(pid), time.perf_counter()
                    for _ in range(block):
                        await put(stub)
                    wall[name] += time.perf_counter() - w0
                    cpu[name] += cpu_seconds(pid) - c0
        finally:
            for ch in channels.values():
                await ch.close()
        return cpu, wall

    return asyncio.run(run())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="a tree holding the base's pyetcd package")
    ap.add_argument("--puts", type=int, default=3000, help="puts to each member per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--block", type=int, default=50)
    ap.add_argument("--aio", action="store_true", help="send with grpc.aio (vs_etcd's client)")
    args = ap.parse_args()
    runs = []
    for i in range(args.rounds):
        r = one_round(args.base, args.puts, args.block, 22 + i, args.aio)
        r["ratio"] = round(r["this_cpu_us"] / r["base_cpu_us"], 3)
        runs.append(r)
        print(f"round {i + 1}: {r}", file=sys.stderr, flush=True)
    keys = ("base_cpu_us", "this_cpu_us", "base_wall_us", "this_wall_us", "ratio")
    out = {k: statistics.median(r[k] for r in runs) for k in keys}
    print(json.dumps({**out, "runs": runs}))


if __name__ == "__main__":
    main()
