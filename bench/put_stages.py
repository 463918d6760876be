"""What one client's put costs inside pyetcd, by stage: no gRPC, no TCP.

Real EtcdServers (1 or 3) in this one process on the in-memory peer transport (the
one `tests/server/test_inprocess_cluster.py` uses), real WAL and backend in a temp
dir; one client's sequential `KVServer.put`s (8-byte keys, 256 B values) to the
leader. Prints the process CPU per put (all members: they share this process) and,
with `--profile`, cProfile's per-put time and calls per put of the functions that
make up the stages (main thread only: the WAL writer thread's work is not in it;
cProfile's own overhead roughly doubles the times, so read them as shares). With
`--timers`, no profiler: a handful of stage functions (apply, mvcc put, backend commit,
WAL encode, write and sync) are wrapped with `time.perf_counter_ns` and their
inclusive time per put is printed (each wrapper adds ~0.2 us).

    python bench/put_stages.py --size 3 --puts 1000 [--profile | --timers]

`--profile` also prints the Python calls per put made by the Raft core and its driver
(`pyetcd/raft/`, `RaftNode`, `RaftInbox`, WALStorage's reads, and the builtins they
call): a figure the machine's load does not move.

`PYTHONPATH=<tree>` picks the pyetcd copy to measure (for an A/B).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # after PYTHONPATH: an A/B tree's pyetcd comes first

from pyetcd.config import ServerConfig  # noqa: E402
from pyetcd.logutil import Level, Logger  # noqa: E402
from pyetcd.pb import rpc_pb2  # noqa: E402
from pyetcd.server.etcdserver.server import EtcdServer  # noqa: E402
from pyetcd.server.rafthttp.memory import MemoryNetwork  # noqa: E402
from tests.server.test_inprocess_cluster import build_server  # noqa: E402

VALUE = b"v" * 256


async def start(size: int, tmp: Path) -> list[EtcdServer]:
    names = [f"infra{i + 1}" for i in range(size)]
    peer = {n: f"http://192.0.2.{i + 1}:2380" for i, n in enumerate(names)}
    initial = ",".join(f"{n}={u}" for n, u in peer.items())
    net = MemoryNetwork()
    servers = []
    for i, name in enumerate(names):
        client = f"http://192.0.2.{i + 1}:2379"
        cfg = ServerConfig(
            name=name,
            data_dir=str(tmp / name),
            listen_peer_urls=(peer[name],),
            initial_advertise_peer_urls=(peer[name],),
            listen_client_urls=(client,),
            advertise_client_urls=(client,),
            initial_cluster=initial,
        )
        server = build_server(cfg, Logger([io.StringIO()], Level.INFO), net)
        await server.start()
        servers.append(server)
    await asyncio.gather(*(s.wait_leader() for s in servers))
    return servers


def _core_or_driver(path: str, func: str) -> bool:
    return (
        "/pyetcd/raft/" in path
        or path.endswith(("etcdserver/raft_node.py", "etcdserver/inbox.py"))
        or (
            path.endswith("wal/storage.py")
            and func in ("term", "first_index", "last_index", "entries")
        )
    )


def core_calls(stats: pstats.Stats) -> int:
    """Calls made in the Raft core and its driver: functions of ``pyetcd/raft/``,
    ``raft_node.py``, ``inbox.py`` and WALStorage's reads, plus the builtins they call."""
    n = 0
    for (path, _line, func), (_cc, calls, _own, _cum, callers) in stats.stats.items():  # type: ignore[attr-defined]
        if _core_or_driver(path, func):
            n += calls
        elif path == "~":
            for (cpath, _cl, cfunc), v in callers.items():
                if _core_or_driver(cpath, cfunc):
                    n += v[1] if isinstance(v, tuple) else v
    return n


def report(prof: cProfile.Profile, puts: int, rows: int) -> None:
    stats = pstats.Stats(prof)
    print(f"-- Raft core + driver: {core_calls(stats) / puts:.1f} Python calls per put")
    found = []
    for (path, line, func), (_cc, calls, own, cum, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        short = path.split("/pyetcd/")[-1].split("site-packages/")[-1]
        found.append((cum, own, calls, f"{func} ({short}:{line})"))
    print("-- cumulative: us per put, calls per put")
    for cum, _own, calls, name in sorted(found, reverse=True)[:rows]:
        print(f"{cum / puts * 1e6:8.1f}  {calls / puts:5.1f}  {name}")
    print("-- own: us per put, calls per put")
    for _cum, own, calls, name in sorted(found, key=lambda r: -r[1])[: rows // 2]:
        print(f"{own / puts * 1e6:8.1f}  {calls / puts:5.1f}  {name}")


# (module, class, method, label) of the stages --timers wraps
TIMED = (
    ("pyetcd.server.etcdserver.apply", "Applier", "apply_entries", "apply (Applier.apply_entries)"),
    ("pyetcd.server.etcdserver.txn", None, "put", "- txn.put"),
    ("pyetcd.mvcc.kvstore", "KVStore", "put", "  - KVStore.put (one-put write transaction)"),
    ("pyetcd.mvcc.kvstore", "KVStore", "write_put", "  - KVStore.write_put"),
    ("pyetcd.mvcc.kvstore", "KVStore", "end_write", "  - KVStore.end_write"),
    ("pyetcd.mvcc.backend", "Backend", "commit", "    - Backend.commit"),
    ("pyetcd.server.etcdserver.wait", "RequestWait", "trigger", "- RequestWait.trigger"),
    ("pyetcd.wal.wal", "WAL", "_encode", "WAL encode (WAL._encode)"),
    ("pyetcd.wal.wal", "WAL", "_write", "WAL write (WAL._write)"),
    ("pyetcd.wal.wal", "WAL", "_sync", "WAL fdatasync (WAL._sync)"),
)


def install_timers() -> dict[str, list[int]]:
    import importlib

    totals: dict[str, list[int]] = {}
    for mod_name, cls_name, meth, label in TIMED:
        mod = importlib.import_module(mod_name)
        owner = getattr(mod, cls_name) if cls_name else mod
        fn = getattr(owner, meth, None)
        if fn is None:
            continue
        acc = totals.setdefault(label, [0, 0])

        def wrapped(*a: object, __fn=fn, __acc=acc, **kw: object) -> object:  # type: ignore[no-untyped-def]
            t0 = time.perf_counter_ns()
            try:
                return __fn(*a, **kw)
            finally:
                __acc[0] += time.perf_counter_ns() - t0
                __acc[1] += 1

        setattr(owner, meth, wrapped)
    return totals


async def run(size: int, puts: int, profile: bool, rows: int, timers: bool = False) -> None:
    totals = install_timers() if timers else None
    with tempfile.TemporaryDirectory(prefix="put-stages-") as tmp:
        servers = await start(size, Path(tmp))
        try:
            lead = next(s for s in servers if s.member_id == servers[0].leader)
            for i in range(200):  # warm-up
                await lead.kv.put(rpc_pb2.PutRequest(key=b"w%07d" % i, value=VALUE))
            prof = cProfile.Profile() if profile else None
            for acc in (totals or {}).values():
                acc[0] = acc[1] = 0
            cpu0, wall0 = time.process_time(), time.perf_counter()
            if prof is not None:
                prof.enable()
            for i in range(puts):
                await lead.kv.put(rpc_pb2.PutRequest(key=b"k%07d" % i, value=VALUE))
            if prof is not None:
                prof.disable()
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            note = " (profiled)" if prof is not None else ""
            print(
                f"members {size}: {puts} puts, process CPU {cpu / puts * 1e6:.0f} us/put, "
                f"wall {wall / puts * 1e6:.0f} us/put{note}"
            )
            if prof is not None:
                report(prof, puts, rows)
            for label, (ns, calls) in (totals or {}).items():
                print(f"{ns / puts / 1000:8.1f} us/put {calls / puts:5.2f} calls/put  {label}")
        finally:
            for s in servers:
                await s.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1, choices=(1, 3, 5))
    ap.add_argument("--puts", type=int, default=1000)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--rows", type=int, default=60)
    ap.add_argument("--timers", action="store_true", help="time the stages without a profiler")
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.run(run(args.size, args.puts, args.profile, args.rows, args.timers))
    except ImportError:
        asyncio.run(run(args.size, args.puts, args.profile, args.rows, args.timers))


if __name__ == "__main__":
    main()
