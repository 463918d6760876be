"""CPU of taking one unary call off the wire: ``GrpcConnection.data_received`` alone.

Each read carries what grpc's C core sends for one Put (captured from a grpc.aio
client): HEADERS (an HPACK block of indexed fields once the tables are warm), the
stream's WINDOW_UPDATE, DATA with END_STREAM and the connection's WINDOW_UPDATE. The
figure is the time ``data_received`` takes (frame parse, HPACK, stream and call
creation, the request handed to the call, its task created), one process, no sockets;
each call is answered by a trivial handler before the next read. ``--calls-per-put``
counts the Python function calls (cProfile) of one such read. Compare two trees::

    PYTHONPATH=/work/wt-int5 python bench/grpcwire_receive.py
    PYTHONPATH=$PWD python bench/grpcwire_receive.py
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import sys
import time
from pathlib import Path

import hpack
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grpcwire_micro import HEADERS, _Sink, new_server

from pyetcd.grpcwire.frames import PREFACE, Flag, FrameType, frame, settings
from pyetcd.pb import rpc_pb2


def reads(calls: int) -> list[bytes]:
    body = rpc_pb2.PutRequest(key=b"key00001", value=bytes(256)).SerializeToString()
    msg = b"\x00" + len(body).to_bytes(4, "big") + body
    enc = hpack.Encoder()
    return [
        frame(FrameType.HEADERS, Flag.END_HEADERS, sid, enc.encode(HEADERS))
        + frame(FrameType.WINDOW_UPDATE, 0, sid, (5).to_bytes(4, "big"))
        + frame(FrameType.DATA, Flag.END_STREAM, sid, msg)
        + frame(FrameType.WINDOW_UPDATE, 0, 0, (9).to_bytes(4, "big"))
        for sid in range(1, 2 * calls, 2)
    ]


async def run(calls: int, profile: bool) -> tuple[float, float]:
    """(median microseconds of one read, Python calls per read when profiled)."""
    g = new_server()
    conn = g.connection("bench", {})
    conn.connection_made(_Sink())  # type: ignore[arg-type]
    conn.data_received(PREFACE + settings(()))
    prof = cProfile.Profile() if profile else None
    took = []
    for i, data in enumerate(reads(calls)):
        warm = i >= 100
        if prof is not None and warm:
            prof.enable()
        t = time.perf_counter()
        conn.data_received(data)
        t = time.perf_counter() - t
        if prof is not None:
            prof.disable()
        if warm:
            took.append(t)
        while conn.calls:  # answered before the next read, as one sequential client's
            await asyncio.sleep(0)
    conn.connection_lost(None)
    per_read = 0.0
    if prof is not None:
        stats = pstats.Stats(prof)
        per_read = sum(v[1] for v in stats.stats.values()) / (calls - 100)  # type: ignore[attr-defined]
    return statistics.median(took) * 1e6, per_read


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    us = [uvloop.run(run(args.calls, False))[0] for _ in range(args.repeats)]
    _, per_read = uvloop.run(run(5000, True))
    print(f"data_received per unary call: {statistics.median(us):.2f} us (median of")
    print(f"  {args.repeats} runs' medians: {', '.join(f'{u:.2f}' for u in us)})")
    print(f"Python calls per read (cProfile): {per_read:.0f}")


if __name__ == "__main__":
    main()
