"""How fast can any durable Python server answer one client's sequential puts here?

``put_1client`` (``vs_etcd.py``) compares pyetcd with real etcd 3.5.1. This script
measures, with the same one-client load and in the same run, two more servers that
bound what pyetcd could reach on this machine:

- ``floor_memory``: pyetcd's own gRPC-over-HTTP/2 server (``pyetcd.grpcwire.server``)
  answering Put from memory: no Raft, no WAL, no MVCC. The client, the kernel and the
  wire cost of one call.
- ``floor_fdatasync``: the same, but each Put is written to a preallocated file on the
  same disk and fdatasynced before the answer, as a durable server must at least do.
- ``etcd_3.4`` (when Debian's ``etcd-server`` is installed: ``/usr/bin/etcd`` 3.4.x): an
  etcd whose one member waits for its WAL fdatasync before answering. etcd 3.5.1, the
  harness's reference, answers a one-member put while its fdatasync is still running
  (etcd-io/etcd#14370, fixed by #14394 in later 3.4 and 3.5 releases).

Usage: python bench/put_floor.py [--seconds S] [--repeats N] [--kinds a,b,...]
Servers take turns (the order rotates each repeat); figures are medians. The last line
printed is one JSON object: {"put_1client_ops": {kind: ops/s}, "p50_ms": {kind: ms},
"vs_etcd": {kind: ops/s divided by etcd's}}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.vs_etcd_load import LoadKind, LoadSpec, run_load  # noqa: E402
from tests.framework import clean_env, etcd34_binary, free_port, running_cluster  # noqa: E402

KINDS = ("etcd", "pyetcd", "floor_memory", "floor_fdatasync", "etcd_3.4")
FLOOR_FILE_BYTES = 64 * 1000 * 1000  # preallocated like a WAL segment


# -- the floor server (run as a child: ``put_floor.py --serve PORT DIR memory|fdatasync``) --


def serve(port: int, directory: str, mode: str) -> None:
    import uvloop

    from pyetcd.grpcwire import GrpcServer
    from pyetcd.logutil import new_logger
    from pyetcd.pb import rpc_pb2, rpc_pb2_grpc

    fd = os.open(os.path.join(directory, "floor.log"), os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    os.posix_fallocate(fd, 0, FLOOR_FILE_BYTES)
    os.fsync(fd)
    durable = mode == "fdatasync"

    class KV(rpc_pb2_grpc.KVServicer):  # type: ignore[misc]
        revision = 1

        async def Put(self, req: Any, ctx: Any) -> Any:
            KV.revision += 1
            if durable:
                os.write(fd, req.SerializeToString())
                os.fdatasync(fd)
            header = rpc_pb2.ResponseHeader(
                cluster_id=1, member_id=1, revision=KV.revision, raft_term=2
            )
            return rpc_pb2.PutResponse(header=header)

    async def main() -> None:
        server = GrpcServer(new_logger("zap", ["stderr"], "error"), 2 * 1024 * 1024)
        rpc_pb2_grpc.add_KVServicer_to_server(KV(), server)
        loop = asyncio.get_running_loop()
        await loop.create_server(lambda: server.connection("client", {}), "127.0.0.1", port)
        print("ready", flush=True)
        await asyncio.Event().wait()

    uvloop.run(main())


@contextlib.contextmanager
def floor_server(mode: str) -> Iterator[str]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="putfloor-", dir=os.getcwd()) as d:
        cmd = [sys.executable, __file__, "--serve", str(port), d, mode]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=clean_env())
        try:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"floor server ({mode}) did not start")
            yield f"127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(10)


@contextlib.contextmanager
def endpoint_of(kind: str) -> Iterator[str]:
    if kind.startswith("floor_"):
        with floor_server(kind.removeprefix("floor_")) as ep:
            yield ep
    else:
        with running_cluster(kind, size=1) as c:
            yield c.members[0].endpoint


# -- the load -------------------------------------------------------------------------------


def one_run(kind: str, seconds: float, warmup: float) -> dict[str, float]:
    with endpoint_of(kind) as ep:
        spec = LoadSpec(LoadKind.PUT, (ep,), clients=1, seconds=seconds, warmup=warmup, channels=1)
        (r,) = run_load([spec], timeout=seconds + warmup + 120)
    if r.errors:
        raise RuntimeError(f"{kind}: {r.errors} errors, first: {r.first_error}")
    lat = sorted(r.latencies)
    return {
        "ops_per_s": round(r.ops / r.wall_s, 1),
        "p50_ms": round(lat[len(lat) // 2] * 1000, 3),
        "client_cpu_us_per_op": round(r.cpu_s / r.ops * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--serve", nargs=3, metavar=("PORT", "DIR", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1], args.serve[2])
        return
    kinds = [k for k in args.kinds.split(",") if k]
    if "etcd_3.4" in kinds and etcd34_binary() is None:
        print("no /usr/bin/etcd (Debian's etcd-server): etcd_3.4 left out", file=sys.stderr)
        kinds.remove("etcd_3.4")
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    for rep in range(args.repeats):
        order = kinds[rep % len(kinds) :] + kinds[: rep % len(kinds)]
        for kind in order:
            runs[kind].append(one_run(kind, args.seconds, args.warmup))
            print(f"repeat {rep + 1} {kind}: {runs[kind][-1]}", file=sys.stderr, flush=True)
    med = {k: {f: statistics.median(r[f] for r in rs) for f in rs[0]} for k, rs in runs.items()}
    print("| server | puts/s (1 client) | p50 ms | client CPU us/put |")
    print("|---|---:|---:|---:|")
    for k, m in med.items():
        cpu = m["client_cpu_us_per_op"]
        print(f"| {k} | {m['ops_per_s']:,.0f} | {m['p50_ms']:.3f} | {cpu:.0f} |")
    out: dict[str, Any] = {
        "put_1client_ops": {k: m["ops_per_s"] for k, m in med.items()},
        "p50_ms": {k: m["p50_ms"] for k, m in med.items()},
        "runs": runs,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if "etcd" in med:
        base = med["etcd"]["ops_per_s"]
        out["vs_etcd"] = {k: round(m["ops_per_s"] / base, 3) for k, m in med.items()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
