"""A/B of pyetcd's watch path: two or more pyetcd source trees and etcd 3.5.1, interleaved.

    git archive <base> pyetcd | tar -x -C /tmp/base
    python bench/watch_ab.py --rounds 4 base=/tmp/base new=
    python bench/watch_ab.py --rounds 4 --default base=/tmp/base new=

Each ``name=DIR`` is a variant whose members run the ``pyetcd`` package in ``DIR``
(``PYETCD_CLUSTER_SRC``; empty: this checkout); etcd runs once per round as the noise
reference. Rounds alternate the order (forward, then reversed), so a busy spell of the
shared machine falls on every variant alike. The workload is the scale suite's
``watch_10k_watchers`` (100 streams x 100 watches on distinct keys), or with
``--default`` the default suite's ``watch`` (100 watchers of one key). One line per run,
then the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from bench import vs_etcd
from bench.vs_etcd_scale import ScaleSettings, run_watch

FIELDS = ("p50_ms", "p99_ms", "max_ms", "rss_mib", "rss_idle_mib", "server_cpu_cores")


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variants", nargs="+", help="name=DIR (DIR empty: this checkout)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--default", action="store_true", help="the default suite's watch")
    args = ap.parse_args(argv)
    runner: Callable[[str], dict[str, Any]]
    if args.default:
        ds = vs_etcd.Settings(seconds=args.seconds, warmup=1.0)
        runner = lambda kind: vs_etcd.run_watch(kind, ds)["watch"]  # noqa: E731
    else:
        ss = ScaleSettings(seconds=args.seconds, warmup=1.0, quick=True)
        runner = lambda kind: run_watch(kind, ss)["watch_10k_watchers"]  # noqa: E731
    variants: list[tuple[str, str | None]] = [
        (name, src) for name, _, src in (v.partition("=") for v in args.variants)
    ]
    vs_etcd.compile_bytecode()
    rows: dict[str, list[dict[str, Any]]] = {}
    for r in range(args.rounds):
        order = [*variants, ("etcd", None)]
        for name, src in order if r % 2 == 0 else reversed(order):
            if src:
                os.environ["PYETCD_CLUSTER_SRC"] = src
            else:
                os.environ.pop("PYETCD_CLUSTER_SRC", None)
            load = os.getloadavg()[0]
            m = runner("etcd" if src is None else "pyetcd")
            row = {k: m.get(k) for k in (*FIELDS, "puts", "delivered")}
            row["loadavg_1m"] = round(load, 2)
            rows.setdefault(name, []).append(row)
            print(name, row, flush=True)
    for name, got in rows.items():
        med = {k: statistics.median(x[k] for x in got) for k in FIELDS if got[0].get(k) is not None}
        print("median", name, med)


if __name__ == "__main__":
    main()
