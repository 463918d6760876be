"""One client's sequential puts to a 3-member cluster: CPU per put by member.

Starts a fresh 3-member cluster (`tests.framework`, kind pyetcd or etcd), warms up,
then sends `--puts` sequential puts (8-byte keys, 256 B values) to the leader from a
synchronous gRPC stub in this process, `--rounds` times. Prints per round the wall
time per put and each member's server CPU per put (utime+stime from /proc), leader
first. With `--strace N`, the last round's first N puts run under
`strace -f -tt -T` on all three members (writes, reads, fdatasync, epoll) and the
trace files are kept in `--out` for reading the critical path. With `--pyspy`,
the last round runs under `py-spy record` on each member (flame graphs
`leader.svg`, `f1.svg`, `f2.svg`, or raw collapsed stacks with `--pyspy-format raw`,
in `--out`).

    python bench/put_path_3m.py [--kind pyetcd] [--puts 2000] [--rounds 3]

`PYTHONPATH=<tree>` picks the pyetcd copy to measure (an A/B).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

from bench.vs_etcd import proc_cpu_s  # noqa: E402
from pyetcd.pb import rpc_pb2  # noqa: E402
from tests.framework import Member, running_cluster, wait_until  # noqa: E402

VALUE = b"v" * 256


def pids(members: list[Member]) -> list[int]:
    out = []
    for m in members:
        assert m.proc is not None
        out.append(m.proc.pid)
    return out


def run_round(leader: Member, members: list[Member], puts: int, rng: random.Random) -> str:
    stub = leader.kv()
    ids = pids(members)
    cpu0 = [proc_cpu_s(p) for p in ids]
    t0 = time.perf_counter()
    for _ in range(puts):
        stub.Put(rpc_pb2.PutRequest(key=rng.randbytes(8), value=VALUE), timeout=10)
    wall = time.perf_counter() - t0
    cpu = [proc_cpu_s(p) - c for p, c in zip(ids, cpu0, strict=True)]
    per = " ".join(f"{c / puts * 1e3:.3f}" for c in cpu)
    return (
        f"wall {wall / puts * 1e3:.3f} ms/put ({puts / wall:.0f}/s)  "
        f"cpu ms/put leader,f1,f2: {per}  sum {sum(cpu) / puts * 1e3:.3f}  "
        f"load {os.getloadavg()[0]:.2f}"
    )


def start_pyspy(
    members: list[Member], out: Path, fmt: str, gil: bool
) -> list[subprocess.Popen[bytes]]:
    out.mkdir(parents=True, exist_ok=True)
    ext = "svg" if fmt == "flamegraph" else "txt"
    extra = ["--gil"] if gil else []
    spies = [
        subprocess.Popen(
            [
                "py-spy", "record", "--nonblocking", "-r", "200", "-f", fmt, "-p", str(pid),
                "-o", str(out / f"{name}.{ext}"), *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in zip(("leader", "f1", "f2"), pids(members), strict=True)
    ]
    time.sleep(1.0)  # py-spy attaches
    return spies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", default="pyetcd")
    ap.add_argument("--puts", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--strace", type=int, default=0)
    ap.add_argument("--pyspy", action="store_true")
    ap.add_argument("--pyspy-format", default="flamegraph")
    ap.add_argument("--pyspy-gil", action="store_true", help="sample only while the GIL is held")
    ap.add_argument("--out", default="/tmp/put_path_3m")
    args = ap.parse_args()
    rng = random.Random(1)
    with running_cluster(args.kind) as c:
        leader = c.wait_leader()
        wait_until("all members answer", lambda: all(m.status() for m in c.members), 10)
        members = [leader] + [m for m in c.members if m is not leader]
        stub = leader.kv()
        for _ in range(300):
            stub.Put(rpc_pb2.PutRequest(key=rng.randbytes(8), value=VALUE), timeout=10)
        rounds = []
        for r in range(args.rounds):
            spies = []
            if args.pyspy and r == args.rounds - 1:
                spies = start_pyspy(members, Path(args.out), args.pyspy_format, args.pyspy_gil)
            line = run_round(leader, members, args.puts, rng)
            for s in spies:
                s.send_signal(signal.SIGINT)
                s.wait()
            rounds.append(float(line.split()[1]))
            print(f"{args.kind} round {r + 1}: {line}", flush=True)
        print(f"{args.kind} median wall {statistics.median(rounds):.3f} ms/put")
        if args.strace:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            tracers = []
            for name, pid in zip(("leader", "f1", "f2"), pids(members), strict=True):
                tracers.append(
                    subprocess.Popen(
                        [
                            "strace", "-f", "-tt", "-T", "-p", str(pid), "-o",
                            str(out / f"{name}.txt"), "-e",
                            "trace=read,write,writev,sendmsg,recvfrom,sendto,fdatasync,"
                            "pwrite64,epoll_wait,epoll_pwait",
                        ],
                        stderr=subprocess.DEVNULL,
                    )
                )
            time.sleep(1.0)
            for _ in range(args.strace):
                stub.Put(rpc_pb2.PutRequest(key=rng.randbytes(8), value=VALUE), timeout=10)
            for t in tracers:
                t.terminate()
                t.wait()
            print(f"traces in {out}")


if __name__ == "__main__":
    main()
