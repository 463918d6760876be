"""MVCC store micro-benchmark; prints one JSON object as its last line.

    python bench/mvcc.py [--keys 100000]

put_per_s: puts through the apply path (consistent index set per entry,
batched backend commits), put_cpu_us: the process CPU per put of the same loop (less
moved by other work on the machine than put_per_s); range_point_per_s: single-key
Range requests at the current revision; range_1000_per_s: ranges returning 1,000 keys;
watch_events_per_s: events delivered with 1,000 synced watchers.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time

# appended: `PYTHONPATH=<tree>` picks the pyetcd copy to measure (for an A/B)
sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pyetcd.mvcc import KVStore, PutRequest, RangeRequest, WatchableStore
from pyetcd.server.etcdserver import txn as kvtxn


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=100_000)
    args = ap.parse_args()
    n = args.keys
    d = tempfile.mkdtemp(prefix="bench-mvcc-")
    try:
        kv = KVStore(os.path.join(d, "member", "snap", "db"))
        value = b"v" * 256
        reqs = [PutRequest(b"key-%08d" % i, value) for i in range(n)]
        t0, c0 = time.perf_counter(), time.process_time()
        for i, req in enumerate(reqs, 1):
            kv.set_consistent_index(i, 1)
            kvtxn.put(kv, req)
        kv.commit()
        put_s = n / (time.perf_counter() - t0)
        put_cpu_us = (time.process_time() - c0) / n * 1e6

        rnd = random.Random(1)
        point = [RangeRequest(b"key-%08d" % rnd.randrange(n)) for _ in range(200_000)]
        t0 = time.perf_counter()
        for r in point:
            kvtxn.range_(kv, r)
        point_s = len(point) / (time.perf_counter() - t0)

        wide = [
            RangeRequest(b"key-%08d" % (i * 1000), b"key-%08d" % (i * 1000 + 1000))
            for i in range(min(50, n // 1000))
        ]
        t0 = time.perf_counter()
        for r in wide:
            assert len(kvtxn.range_(kv, r).kvs) == 1000
        wide_s = len(wide) / (time.perf_counter() - t0)

        ws = WatchableStore(kv)
        stream = ws.new_stream(capacity=10**9)
        for i in range(1000):
            stream.watch(b"key-%08d" % i)
        t0 = time.perf_counter()
        m = 20_000
        for j in range(m):
            kvtxn.put(kv, reqs[j % 1000])
        events = sum(len(r.events) for r in stream.pop_all())
        watch_s = events / (time.perf_counter() - t0)
        assert events == m

        size = kv.db_size
        kv.close()
        print(
            json.dumps(
                {
                    "keys": n,
                    "put_per_s": round(put_s),
                    "put_cpu_us": round(put_cpu_us, 2),
                    "range_point_per_s": round(point_s),
                    "range_1000_per_s": round(wide_s, 1),
                    "watch_events_per_s": round(watch_s),
                    "db_size_bytes": size,
                }
            )
        )
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
