"""Child process for the kill -9 test: append entries and print each index once durable."""

from __future__ import annotations

import sys

from pyetcd.raft.types import Entry, HardState
from pyetcd.wal import WAL, Metadata, wal_exists


def main() -> None:
    wal_dir, segment_size = sys.argv[1], int(sys.argv[2])
    if wal_exists(wal_dir):
        wal, result = WAL.open(wal_dir, segment_size=segment_size)
        last = result.entries[-1].index if result.entries else 0
    else:
        wal = WAL.create(wal_dir, Metadata(1, 1), segment_size=segment_size)
        last = 0
    print(f"start {last}", flush=True)
    while True:
        futs = []
        for _ in range(8):  # several saves in flight: group commit under a crash
            last += 1
            data = bytes(last % 256 for _ in range(64))
            futs.append((last, wal.save(HardState(1, 1, last - 1), [Entry(1, last, data=data)])))
        for index, fut in futs:
            fut.result()
            print(index, flush=True)


if __name__ == "__main__":
    main()
