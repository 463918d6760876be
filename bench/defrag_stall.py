"""The stall a client sees while `etcdctl defrag` runs: pyetcd and etcd 3.5.1, one run.

Each member is filled with the same stream of 1 KiB values (100-put txns) until its
backend is ``--mb`` MB (sqlite stores these rows less densely than bbolt, so pyetcd gets
there with fewer keys), then every other key is deleted and the history compacted so
the defrag has free pages to reclaim; then one client
puts a 256-byte value every 5 ms while stock etcdctl 3.5 defragments the member. The
puts whose lifetime overlaps the defrag are the ones reported: longest and p99, with
the defrag's own duration and the db size before and after.

Usage: python bench/defrag_stall.py [--mb 100] [--kinds pyetcd,etcd] [--seed 19]
Prints a markdown table; the last line is JSON {"pyetcd": {...}, "etcd": {...}}.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pyetcd.pb import rpc_pb2  # noqa: E402
from tests.framework import Etcdctl, Member, running_member  # noqa: E402

VALUE_BYTES = 1024
TXN_PUTS = 100
PUT_EVERY = 0.005


def fill(m: Member, mb: int, rng: random.Random) -> int:
    """Write 1 KiB values (the same stream for every kind) until the backend is ``mb``
    MB, then delete every other key and compact, so the defrag has pages to reclaim.
    Returns the number of keys written."""
    kv = m.kv()
    n = 0
    while True:
        status = m.status(timeout=5.0)
        if status is not None and status.dbSize >= mb * 1024 * 1024:
            break
        for _ in range(10):
            ops = [
                rpc_pb2.RequestOp(
                    request_put=rpc_pb2.PutRequest(
                        key=b"fill/%08d" % i, value=rng.randbytes(VALUE_BYTES)
                    )
                )
                for i in range(n, n + TXN_PUTS)
            ]
            kv.Txn(rpc_pb2.TxnRequest(success=ops), timeout=30)
            n += TXN_PUTS
    for start in range(0, n, 2 * TXN_PUTS):
        ops = [
            rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=b"fill/%08d" % i))
            for i in range(start, min(n, start + 2 * TXN_PUTS), 2)
        ]
        resp = kv.Txn(rpc_pb2.TxnRequest(success=ops), timeout=30)
    kv.Compact(rpc_pb2.CompactionRequest(revision=resp.header.revision, physical=True), timeout=60)
    return n


def measure(m: Member, ctl: Etcdctl) -> dict[str, Any]:
    kv = m.kv()
    puts: list[tuple[float, float]] = []  # (start, end) of each put
    stop = threading.Event()

    def putter() -> None:
        i = 0
        while not stop.is_set():
            t0 = time.monotonic()
            kv.Put(rpc_pb2.PutRequest(key=b"probe/%d" % (i % 100), value=b"v" * 256), timeout=30)
            t1 = time.monotonic()
            puts.append((t0, t1))
            i += 1
            time.sleep(max(0.0, PUT_EVERY - (t1 - t0)))

    before = m.status(timeout=5.0)
    th = threading.Thread(target=putter)
    th.start()
    time.sleep(1.0)  # the putter's steady state before the defrag
    d0 = time.monotonic()
    r = subprocess.run(
        ctl.argv(m.endpoint, "defrag", "--command-timeout=120s"),
        env=ctl.env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    d1 = time.monotonic()
    time.sleep(0.5)
    stop.set()
    th.join()
    after = m.status(timeout=5.0)
    if r.returncode != 0:
        raise RuntimeError(f"defrag failed: {r.stdout} {r.stderr}")
    during = sorted(t1 - t0 for t0, t1 in puts if t1 >= d0 and t0 <= d1)
    baseline = sorted(t1 - t0 for t0, t1 in puts if t1 < d0)
    p99 = during[min(len(during) - 1, int(len(during) * 0.99))] if during else 0.0
    return {
        "db_size_before": before.dbSize if before else None,
        "db_size_after": after.dbSize if after else None,
        "defrag_s": round(d1 - d0, 3),
        "puts_during": len(during),
        "longest_put_ms": round(1000 * during[-1], 1) if during else None,
        "p99_put_ms": round(1000 * p99, 1),
        "baseline_p99_ms": round(1000 * baseline[int(len(baseline) * 0.99)], 1)
        if baseline
        else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--kinds", default="pyetcd,etcd")
    ap.add_argument("--seed", type=int, default=19)
    args = ap.parse_args()
    print(f"seed {args.seed}", file=sys.stderr)
    ctl = Etcdctl.v35()
    results: dict[str, Any] = {}
    for kind in args.kinds.split(","):
        with running_member(kind, extra_args=["--quota-backend-bytes", str(8 << 30)]) as m:
            t = time.monotonic()
            keys = fill(m, args.mb, random.Random(args.seed))
            print(f"{kind}: filled {keys} keys in {time.monotonic() - t:.1f}s", file=sys.stderr)
            results[kind] = measure(m, ctl)
            print(f"{kind}: {results[kind]}", file=sys.stderr)
    cols = [
        "db_size_before",
        "db_size_after",
        "defrag_s",
        "puts_during",
        "longest_put_ms",
        "p99_put_ms",
        "baseline_p99_ms",
    ]
    print("| kind | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for kind, r in results.items():
        print(f"| {kind} | " + " | ".join(str(r[c]) for c in cols) + " |")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
