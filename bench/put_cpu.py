"""Server CPU per put: one client's sequential puts (256 B values) to one member.

Starts one member (``--kind pyetcd`` or ``etcd_3.4`` ..., or ``floor_memory`` /
``floor_fdatasync``: ``put_floor.py``'s bare gRPC server) through ``tests.framework``,
warms it up, then sends ``--puts`` sequential puts from one synchronous grpc client in
this process and prints the server's CPU (utime + stime of all its threads, from
``/proc/<pid>/stat``) and wall time per put, and the load average. With
``--pyspy FILE`` the measured puts of the first run are also recorded by ``py-spy
record --rate 1000 --gil --format raw`` (samples only while a thread holds the GIL, so
a thread waiting in fdatasync or epoll is not counted) on the server's pid; the
profiler's cost lands in that run's figures: read the others for CPU.

    python bench/put_cpu.py [--kind pyetcd] [--puts 3000] [--repeats 3] [--pyspy out.txt]

`PYTHONPATH=<tree>` picks the pyetcd copy to measure (for an A/B). The last line is JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

from pyetcd.pb import rpc_pb2, rpc_pb2_grpc  # noqa: E402
from tests.framework import free_port, running_member  # noqa: E402

VALUE = b"v" * 256


def cpu_seconds(pid: int, task: int | None = None, system_only: bool = False) -> float:
    """utime + stime (or stime alone) of the process (all threads), or of one thread."""
    path = f"/proc/{pid}/stat" if task is None else f"/proc/{pid}/task/{task}/stat"
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[12]) + (0 if system_only else int(fields[11]))
    return ticks / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[int, float]:
    out = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            out[int(task)] = cpu_seconds(pid, int(task))
    return out


@contextlib.contextmanager
def server(kind: str) -> Iterator[tuple[int, str]]:
    """(pid, endpoint) of a started member, or of ``put_floor.py``'s floor server."""
    if not kind.startswith("floor_"):
        with running_member(kind, parent=Path.cwd()) as m:
            assert m.proc is not None
            yield m.proc.pid, m.endpoint
        return
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="putcpu-", dir=Path.cwd()) as d:
        cmd = [sys.executable, str(REPO / "bench" / "put_floor.py"), "--serve", str(port), d]
        proc = subprocess.Popen([*cmd, kind.removeprefix("floor_")], stdout=subprocess.PIPE)
        try:
            assert proc.stdout is not None
            proc.stdout.readline()
            yield proc.pid, f"127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(10)


def one_run(kind: str, puts: int, pyspy: str | None) -> dict[str, float]:
    rng = random.Random(22)
    with server(kind) as (pid, endpoint), grpc.insecure_channel(endpoint) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        for _ in range(500):
            kv.Put(rpc_pb2.PutRequest(key=b"%08d" % rng.randrange(10**8), value=VALUE))
        spy = None
        if pyspy:
            spy = subprocess.Popen(
                ["py-spy", "record", "--pid", str(pid), "--rate", "1000", "--gil", "--format",
                 "raw", "--output", pyspy, "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(1.0)
        threads0 = thread_cpu(pid)
        sys0 = cpu_seconds(pid, system_only=True)
        cpu0, wall0 = cpu_seconds(pid), time.perf_counter()
        for _ in range(puts):
            kv.Put(rpc_pb2.PutRequest(key=b"%08d" % rng.randrange(10**8), value=VALUE))
        cpu, wall = cpu_seconds(pid) - cpu0, time.perf_counter() - wall0
        system = cpu_seconds(pid, system_only=True) - sys0
        threads = thread_cpu(pid)
        main = threads.get(pid, 0.0) - threads0.get(pid, 0.0)
        if spy is not None:
            spy.send_signal(2)
            spy.wait(30)
    return {
        "cpu_us": round(cpu / puts * 1e6, 1),
        "main_thread_cpu_us": round(main / puts * 1e6, 1),
        "system_cpu_us": round(system / puts * 1e6, 1),
        "wall_us": round(wall / puts * 1e6, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", default="pyetcd")
    ap.add_argument("--puts", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pyspy", default=None)
    args = ap.parse_args()
    runs = []
    for i in range(args.repeats):
        r = one_run(args.kind, args.puts, args.pyspy if i == 0 else None)
        r["load1"] = round(os.getloadavg()[0], 2)
        runs.append(r)
        print(f"run {i + 1}: {r}", file=sys.stderr, flush=True)
    out = {
        "kind": args.kind,
        "cpu_us_per_put": statistics.median(r["cpu_us"] for r in runs),
        "main_thread_cpu_us_per_put": statistics.median(r["main_thread_cpu_us"] for r in runs),
        "system_cpu_us_per_put": statistics.median(r["system_cpu_us"] for r in runs),
        "wall_us_per_put": statistics.median(r["wall_us"] for r in runs),
        "runs": runs,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
