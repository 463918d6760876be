"""What a member costs when nothing happens: the dashboard's once-a-second sample, and
the whole process's CPU while idle.

``sample``: starts one member in this process (as ``tests/api`` does), sends ``--puts``
puts and some failing calls through gRPC so every charted series has a value, then
times ``Dashboard.sampler.sample()`` with ``timeit`` (best of 5 rounds of 200, and the
median), next to one full ``/metrics`` exposition for scale.

``idle``: starts one member as a process through ``tests.framework`` (dashboard on, as
by default), waits ``--settle`` seconds, then reads the process's utime + stime (all
threads, ``/proc/<pid>/stat``) over ``--seconds`` and prints it as a share of one core.

    python bench/idle_member.py sample [--puts 300] [--metrics extensive]
    python bench/idle_member.py idle [--seconds 60] [--repeats 1]

``PYTHONPATH=<tree>`` picks the pyetcd copy to measure (for an A/B). The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

from put_cpu import cpu_seconds  # noqa: E402

from tests.framework import running_member  # noqa: E402


async def _sample(puts: int, metrics: str) -> dict[str, Any]:
    import grpc

    import pyetcd.api.dashboard.app as app
    from pyetcd.pb import rpc_pb2, rpc_pb2_grpc
    from tests.api.conftest import start_member

    started: list[Any] = []
    start = app.Dashboard.start

    def keep(self: Any) -> None:  # the member's Dashboard, to time its sampler
        started.append(self)
        start(self)

    app.Dashboard.start = keep  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory(prefix="idle-", dir=Path.cwd()) as d:
        m, stop, task = await start_member(Path(d), metrics=metrics)
        try:
            async with grpc.aio.insecure_channel(m.target) as ch:
                kv = rpc_pb2_grpc.KVStub(ch)
                for i in range(puts):
                    await kv.Put(rpc_pb2.PutRequest(key=b"k%d" % i, value=b"v" * 256))
                for _ in range(5):
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        await kv.Range(rpc_pb2.RangeRequest(key=b"k", revision=10**9))
            dash = started[0]
            sampler = dash.sampler
            exposition = _exposition(dash)
            rounds = timeit.repeat(sampler.sample, number=200, repeat=5)
            if os.environ.get("IDLE_PROFILE"):
                import cProfile

                cProfile.runctx("for _ in range(500): f()", {"f": sampler.sample}, {},
                                sort="cumulative")  # fmt: skip
            per = [r / 200 * 1e6 for r in rounds]
            full = timeit.repeat(exposition, number=5, repeat=3)
            return {
                "sample_us_best": round(min(per), 1),
                "sample_us_median": round(statistics.median(per), 1),
                "metrics_exposition_ms_best": round(min(full) / 5 * 1e3, 2),
                "series": sorted(sampler.samples[-1].values),
                "load1": round(os.getloadavg()[0], 2),
            }
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)


def _exposition(dash: Any) -> Any:
    import gc

    from pyetcd.api.etcdhttp.metrics import ServerMetrics

    for obj in gc.get_objects():  # the member's ServerMetrics (built by embed.serve)
        if isinstance(obj, ServerMetrics) and obj.server is dash.server:
            return obj.exposition
    raise RuntimeError("no ServerMetrics for the member")


def _idle(seconds: float, settle: float) -> dict[str, Any]:
    with running_member("pyetcd", parent=Path.cwd()) as m:
        assert m.proc is not None
        pid = m.proc.pid
        time.sleep(settle)
        cpu0, wall0 = cpu_seconds(pid), time.monotonic()
        time.sleep(seconds)
        cpu, wall = cpu_seconds(pid) - cpu0, time.monotonic() - wall0
    return {
        "cpu_s": round(cpu, 3),
        "wall_s": round(wall, 1),
        "cpu_percent": round(100 * cpu / wall, 3),
        "load1": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("sample", "idle"))
    ap.add_argument("--puts", type=int, default=300)
    ap.add_argument("--metrics", default="basic", choices=("basic", "extensive"))
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--settle", type=float, default=5.0)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    if args.what == "sample":
        print(json.dumps(asyncio.run(_sample(args.puts, args.metrics))))
        return
    runs = []
    for i in range(args.repeats):
        r = _idle(args.seconds, args.settle)
        print(f"run {i + 1}: {r}", file=sys.stderr, flush=True)
        runs.append(r)
    print(json.dumps({"cpu_percent_median": statistics.median(r["cpu_percent"] for r in runs),
                      "runs": runs}))  # fmt: skip


if __name__ == "__main__":
    main()
