"""Memory and restart at a large key count: pyetcd beside real etcd 3.5.1.

For each kind, one member on a fresh data dir: put ``--keys`` keys (8-byte keys,
256-byte values, many concurrent clients in worker processes), then report the load's
time, VmRSS after the load, the data dir's size, and the restart (SIGTERM, then process
start -> /health healthy) with VmRSS after it. Both kinds use etcd's default flags
(--snapshot-count 100000 included).

Usage: python bench/million_keys.py [--keys 1000000] [--kinds etcd,pyetcd]
The last line printed is one JSON object of the figures per kind and the ratios
(> 1: pyetcd better; rss = etcd / pyetcd, restart = etcd / pyetcd).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.vs_etcd import Settings, _preload, health_ok, vm_rss_mib  # noqa: E402
from tests.framework import running_cluster, wait_until  # noqa: E402


def dir_size_mib(path: Path) -> float:
    """Bytes of every file under ``path`` (as allocated on disk), in MiB."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            total += os.lstat(os.path.join(root, f)).st_blocks * 512
    return total / (1 << 20)


def run(kind: str, keys: int, clients: int, procs: int) -> dict[str, Any]:
    """One member of ``kind``: load, RSS, data dir, restart."""
    s = Settings(keys=keys, client_procs=procs)
    with running_cluster(kind, size=1) as c:
        m = c.members[0]
        assert m.proc is not None
        rss_empty = vm_rss_mib(m.proc.pid)
        t0 = time.monotonic()
        load = _preload(c, s, keys, clients=clients)
        load_s = time.monotonic() - t0
        time.sleep(1.0)  # let background commits and GC settle, for both alike
        rss = vm_rss_mib(m.proc.pid)
        m.stop(timeout=60)
        m.close_channel()
        data = dir_size_mib(m.data_dir)
        t0 = time.monotonic()
        c.restart(m)
        wait_until(f"{m.name} healthy after restart", lambda: health_ok(m), 600, step=0.01)
        restart_s = time.monotonic() - t0
        assert m.proc is not None
        rss_restart = vm_rss_mib(m.proc.pid)
    return {
        "keys": keys,
        "load_s": round(load_s, 1),
        "load_puts_per_s": load["ops_per_s"],
        "load_server_cpu_cores": load["server_cpu_cores"],
        "rss_empty_mib": round(rss_empty, 1),
        "rss_mib": round(rss, 1),
        "data_dir_mib": round(data, 1),
        "restart_s": round(restart_s, 3),
        "rss_after_restart_mib": round(rss_restart, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--kinds", default="etcd,pyetcd")
    ap.add_argument("--clients", type=int, default=64, help="concurrent puts per process")
    ap.add_argument("--procs", type=int, default=2, help="client worker processes")
    args = ap.parse_args()
    out: dict[str, Any] = {}
    for kind in args.kinds.split(","):
        out[kind] = run(kind, args.keys, args.clients, args.procs)
        print(kind, json.dumps(out[kind]), flush=True)
    if "etcd" in out and "pyetcd" in out:
        e, p = out["etcd"], out["pyetcd"]
        out["ratios"] = {
            "rss": round(e["rss_mib"] / p["rss_mib"], 3),
            "restart": round(e["restart_s"] / p["restart_s"], 3),
            "load": round(e["load_s"] / p["load_s"], 3),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
