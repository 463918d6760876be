"""Consensus isolation under a heavy-read load (issue 17): a bystander's puts on the leader.

A 3-member cluster (``tests.framework``) is loaded with ``--keys`` keys of ~100 bytes.
Then ``--readers`` processes loop full-prefix ranges of all of them on the leader
(alternately serializable and linearizable), while one bystander client in this process
puts one key after another on the leader. Reported per server kind: the bystander's
put p50/p99/max and failures, the leader's id and term before and after, ranges/s,
and the same bystander's figures with no readers (the baseline).

    python bench/isolation.py                       # pyetcd and etcd 3.5.1, 4 readers
    python bench/isolation.py --kinds pyetcd --seconds 10 --readers 2
    python bench/isolation.py --profile /tmp/spy    # py-spy the pyetcd leader under load

The goal (issue 17): the term does not change and put p99 stays under 100 ms.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import grpc

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pyetcd.pb import rpc_pb2, rpc_pb2_grpc  # noqa: E402
from tests.framework import Cluster, Member, running_cluster  # noqa: E402

PREFIX = b"/iso/"
PREFIX_END = b"/iso0"  # "/" + 1
VALUE = b"x" * 90  # ~100 bytes with the key
TXN_OPS = 100  # etcd's --max-txn-ops is 128
RPC_TIMEOUT = 30.0
# A full-prefix answer is ~13 MB: above grpc's 4 MB default on the client side.
READER_OPTIONS = [("grpc.max_receive_message_length", -1)]


def key_of(i: int) -> bytes:
    return PREFIX + b"%08d" % i


@dataclass(frozen=True, slots=True)
class Figures:
    """What one run measured on one server kind."""

    kind: str
    keys: int
    readers: int
    seconds: float
    baseline_put_p50_ms: float
    baseline_put_p99_ms: float
    put_count: int
    put_failures: int
    put_p50_ms: float
    put_p99_ms: float
    put_max_ms: float
    ranges: int
    ranges_per_s: float
    range_p50_ms: float
    leader_before: int
    leader_after: int
    term_before: int
    term_after: int
    loadavg_1m: float


def percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def preload(m: Member, keys: int) -> None:
    kv = m.kv()
    for first in range(0, keys, TXN_OPS):
        ops = [
            rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key_of(i), value=VALUE))
            for i in range(first, min(keys, first + TXN_OPS))
        ]
        kv.Txn(rpc_pb2.TxnRequest(success=ops), timeout=RPC_TIMEOUT)


def reader(endpoint: str, index: int, start: Event, stop: Event, out: Any) -> None:
    """One reader process: full-prefix ranges until ``stop``, alternating serializable
    and linearizable; puts (count, [latencies]) on ``out``."""
    ch = grpc.insecure_channel(endpoint, options=READER_OPTIONS)
    kv = rpc_pb2_grpc.KVStub(ch)
    start.wait()
    n, lat, errors = 0, [], 0
    while not stop.is_set():
        req = rpc_pb2.RangeRequest(key=PREFIX, range_end=PREFIX_END, serializable=bool(n % 2))
        t0 = time.perf_counter()
        try:
            kv.Range(req, timeout=RPC_TIMEOUT)
        except grpc.RpcError:
            errors += 1
        else:
            lat.append(time.perf_counter() - t0)
        n += 1
    out.put((index, len(lat), errors, lat))
    ch.close()


def bystander(m: Member, seconds: float) -> tuple[list[float], int]:
    """Sequential puts on ``m`` for ``seconds``; (latencies of the successes, failures)."""
    kv = m.kv()
    lat: list[float] = []
    failures = 0
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        t0 = time.perf_counter()
        try:
            kv.Put(rpc_pb2.PutRequest(key=b"bystander/%d" % (i % 100), value=b"v"), timeout=5)
        except grpc.RpcError:
            failures += 1
        else:
            lat.append(time.perf_counter() - t0)
        i += 1
    return lat, failures


def term_of(m: Member) -> tuple[int, int]:
    st = m.status(timeout=5.0)
    if st is None:
        return 0, 0
    return int(st.leader), int(st.raftTerm)


def run_kind(kind: str, args: argparse.Namespace) -> Figures:
    with running_cluster(kind, 3, keep_dir=args.keep_dir) as c:
        leader = c.wait_leader()
        try:
            return measure(kind, c, leader, args)
        finally:
            if args.keep_dir:
                print(f"{kind}: data dirs and logs kept in {c.root}", flush=True)


def measure(kind: str, c: Cluster, leader: Member, args: argparse.Namespace) -> Figures:
    t0 = time.monotonic()
    preload(leader, args.keys)
    print(f"{kind}: {args.keys} keys loaded in {time.monotonic() - t0:.1f} s", flush=True)
    base, _ = bystander(leader, 2.0)
    ctx = multiprocessing.get_context("spawn")
    start, stop = ctx.Event(), ctx.Event()
    out = ctx.Queue()
    procs = [
        ctx.Process(target=reader, args=(leader.endpoint, i, start, stop, out))
        for i in range(args.readers)
    ]
    for p in procs:
        p.start()
    leader_before, term_before = term_of(leader)
    start.set()
    time.sleep(args.warmup)
    spy = start_profile(kind, leader, args)
    lat, failures = bystander(leader, args.seconds)
    stop.set()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    if spy is not None:
        spy.wait(timeout=60)
    leader_after, term_after = term_of(leader)
    window = args.seconds + args.warmup
    n_ranges = sum(r[1] for r in results)
    range_lat = [x for r in results for x in r[3]]
    return Figures(
        kind=kind,
        keys=args.keys,
        readers=args.readers,
        seconds=args.seconds,
        baseline_put_p50_ms=percentile(base, 0.5) * 1e3,
        baseline_put_p99_ms=percentile(base, 0.99) * 1e3,
        put_count=len(lat),
        put_failures=failures,
        put_p50_ms=percentile(lat, 0.5) * 1e3,
        put_p99_ms=percentile(lat, 0.99) * 1e3,
        put_max_ms=max(lat, default=float("nan")) * 1e3,
        ranges=n_ranges,
        ranges_per_s=n_ranges / window,
        range_p50_ms=percentile(range_lat, 0.5) * 1e3,
        leader_before=leader_before,
        leader_after=leader_after,
        term_before=term_before,
        term_after=term_after,
        loadavg_1m=os.getloadavg()[0],
    )


def start_profile(
    kind: str, leader: Member, args: argparse.Namespace
) -> subprocess.Popen[bytes] | None:
    if not args.profile or kind != "pyetcd" or leader.proc is None:
        return None
    spy = shutil.which("py-spy")
    if spy is None:
        print("py-spy not installed: no profile", flush=True)
        return None
    path = Path(args.profile)
    path.mkdir(parents=True, exist_ok=True)
    cmd = [
        spy, "record", "--pid", str(leader.proc.pid), "--duration", str(int(args.seconds)),
        "--rate", "200", "--format", "raw", "--output", str(path / "leader.txt"), "--nonblocking",
    ]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kinds", default="pyetcd,etcd")
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--readers", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--profile", default="", help="py-spy raw profile of pyetcd's leader here")
    ap.add_argument("--json", default="", help="also write the figures here")
    ap.add_argument("--keep-dir", action="store_true", help="keep the members' dirs and logs")
    args = ap.parse_args()
    rows = []
    for kind in args.kinds.split(","):
        f = run_kind(kind, args)
        rows.append(f)
        print(json.dumps(asdict(f)), flush=True)
    print()
    print("| kind | put p50 ms | put p99 ms | put max ms | put fails | ranges/s | range p50 ms "
          "| term before -> after | leader same | idle put p99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---|---:|")
    for f in rows:
        print(
            f"| {f.kind} | {f.put_p50_ms:.1f} | {f.put_p99_ms:.1f} | {f.put_max_ms:.1f} "
            f"| {f.put_failures} | {f.ranges_per_s:.2f} | {f.range_p50_ms:.0f} "
            f"| {f.term_before} -> {f.term_after} | {f.leader_before == f.leader_after} "
            f"| {f.baseline_put_p99_ms:.1f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(f) for f in rows], indent=1))


if __name__ == "__main__":
    main()
