"""WAL throughput: raw append+fdatasync vs. the WAL with 1, 16 and 256 asyncio writers.

Usage: python bench/wal.py [--dir DIR] [--seconds S]
The last line printed is JSON: {"raw_fdatasync_per_s": ..., "writers": {"1": ..., ...}}.
DIR must be on the disk under test (default: a temp dir under the current directory).

With ``--python``: instead, the CPU of one ``WAL.save_inline`` on a file system that
skips fdatasync (``NO_SYNC_FS``: encode, CRC, frame, ``write``), for the two saves a put
makes: a Ready's entry with its hard state, and a commit-only hard state (best of 3
slices; `PYTHONPATH=<tree>` for an A/B).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time

from pyetcd.raft.types import Entry, HardState
from pyetcd.wal import WAL, Metadata
from pyetcd.wal.fs import NO_SYNC_FS

ENTRY_BYTES = 256


def raw_fdatasync_per_s(directory: str, seconds: float) -> float:
    """A plain append + fdatasync loop of 256-byte writes: the disk's limit."""
    path = os.path.join(directory, "raw")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    data = b"x" * ENTRY_BYTES
    n = 0
    start = time.perf_counter()
    try:
        while time.perf_counter() - start < seconds:
            os.write(fd, data)
            os.fdatasync(fd)
            n += 1
    finally:
        os.close(fd)
        os.unlink(path)
    return n / (time.perf_counter() - start)


async def _writers(wal: WAL, count: int, seconds: float) -> float:
    # The WAL's writer thread merges the saves queued while it syncs (group commit).
    await asyncio.wrap_future(wal.save(HardState(term=1, vote=1, commit=0)))
    data = b"x" * ENTRY_BYTES
    next_index = 1
    done = 0
    deadline = time.perf_counter() + seconds

    async def one() -> None:
        nonlocal next_index, done
        while time.perf_counter() < deadline:
            index = next_index
            next_index += 1  # indexes are taken in call order, which is write order
            await asyncio.wrap_future(
                wal.save(HardState(), [Entry(term=1, index=index, data=data)])
            )
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return done / (time.perf_counter() - start)


def writers_per_s(directory: str, count: int, seconds: float) -> float:
    wal_dir = os.path.join(directory, f"wal-{count}")
    wal = WAL.create(wal_dir, Metadata(member_id=1, cluster_id=1))
    try:
        return asyncio.run(_writers(wal, count, seconds))
    finally:
        wal.close()
        shutil.rmtree(wal_dir)


def python_cost(directory: str, saves: int = 60000) -> dict[str, float]:
    """us of CPU per WAL.save_inline without the fdatasync, by kind of save."""
    wal = WAL.create(os.path.join(directory, "wal-py"), Metadata(1, 2), fs=NO_SYNC_FS)
    data = b"x" * (ENTRY_BYTES + 34)  # a put's InternalRaftRequest for a 256 B value
    best: dict[str, float] = {}
    index = 1
    try:
        for kind in ("entry_and_state", "state_only") * 3:
            batch = []
            for _ in range(saves // 6):
                hs = HardState(term=2, vote=1, commit=index)
                ents = [Entry(term=2, index=index, data=data)] if kind == "entry_and_state" else []
                batch.append((hs, ents))
                index += 1
            save = wal.save_inline
            t0 = time.process_time()
            for hs, ents in batch:
                save(hs, ents)
            took = (time.process_time() - t0) / len(batch) * 1e6
            best[kind] = round(min(best.get(kind, took), took), 2)
    finally:
        wal.close()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", default=None)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--python", action="store_true", help="CPU per save, no fdatasync")
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="walbench-", dir=args.dir or os.getcwd())
    try:
        if args.python:
            print(json.dumps({"save_inline_us_without_sync": python_cost(directory)}))
            return
        raw = raw_fdatasync_per_s(directory, args.seconds)
        print(f"raw append+fdatasync: {raw:,.0f}/s")
        writers: dict[str, float] = {}
        for count in (1, 16, 256):
            writers[str(count)] = round(writers_per_s(directory, count, args.seconds))
            print(f"{count} writers: {writers[str(count)]:,} entries/s")
        print(f"1 writer / raw = {writers['1'] / raw:.2f}")
        print(json.dumps({"raw_fdatasync_per_s": round(raw), "writers": writers}))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
