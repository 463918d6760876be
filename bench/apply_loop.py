"""What applying one committed put costs a member, in a loop: no Raft, no WAL, no wire.

Starts one in-process member (``put_stages.start``: real EtcdServer, WAL and sqlite
backend in a temp dir), then hands its ``Applier.apply_entries`` one committed entry at
a time: InternalRaftRequest puts of random 8-byte keys (mostly new) with 256 B values,
at indexes past the member's own. Two paths, as a put meets them on a cluster:

- ``leader``: the member proposed the entry, so a waiter with the request converted at
  propose time is registered (the served member's path);
- ``follower``: no waiter, the request is decoded and converted at apply.

Prints process CPU per entry (best of ``--reps`` slices) and, with ``--calls``, the
Python function calls per entry counted by cProfile (load-independent).

    python bench/apply_loop.py [--entries 30000] [--reps 5] [--calls]

`PYTHONPATH=<tree>` picks the pyetcd copy to measure (for an A/B). The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # after PYTHONPATH: an A/B tree's pyetcd comes first

from bench.put_stages import start  # noqa: E402
from pyetcd.pb import raft_internal_pb2, rpc_pb2  # noqa: E402
from pyetcd.raft import ConfChange, ConfState, Entry, EntryType  # noqa: E402
from pyetcd.server.etcdserver import pbconv  # noqa: E402

VALUE = b"v" * 256
FIRST_ID = 10**9


def _no_conf(cc: ConfChange) -> ConfState:
    raise AssertionError("no conf change is applied here")


async def measure(entries: int, reps: int, calls: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="apply-loop-") as tmp:
        (server,) = await start(1, Path(tmp))
        try:
            applier, waits = server.applier, server.waits
            index = server.stores.kv.consistent_index + 1000
            rng = random.Random(1)
            for path in ("leader", "follower"):
                best = float("inf")
                n_calls = 0
                per = entries // reps
                for rep in range(reps):
                    batch = []
                    for _i in range(per):
                        put = rpc_pb2.PutRequest(key=b"%08d" % rng.randrange(10**8), value=VALUE)
                        req = raft_internal_pb2.InternalRaftRequest()
                        req.header.ID = req_id = FIRST_ID + index
                        req.put.CopyFrom(put)
                        e = Entry(2, index, EntryType.NORMAL, req.SerializeToString())
                        index += 1
                        if path == "leader":
                            waits.register(req_id, request=pbconv.put_from_pb(put))
                        batch.append((e,))
                    prof = cProfile.Profile() if calls and rep == 0 else None
                    if prof is not None:
                        prof.enable()
                    t0 = time.process_time()
                    for ents in batch:
                        applier.apply_entries(ents, _no_conf)
                    took = time.process_time() - t0
                    if prof is not None:
                        prof.disable()
                        st = pstats.Stats(prof)
                        n_calls = st.total_calls  # type: ignore[attr-defined]
                        continue  # the profiled slice's time is not a figure
                    best = min(best, took / per * 1e6)
                out[f"{path}_us_per_entry"] = round(best, 2)
                if calls:
                    out[f"{path}_calls_per_entry"] = round(n_calls / per, 1)
                print(f"{path}: {best:.1f} us/entry (best of {reps} x {per})", flush=True)
        finally:
            await server.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=30000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--calls", action="store_true", help="also count calls per entry")
    args = ap.parse_args()
    try:
        import uvloop

        res = uvloop.run(measure(args.entries, args.reps, args.calls))
    except ImportError:
        res = asyncio.run(measure(args.entries, args.reps, args.calls))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
