"""The asyncio adapter: per-save completion, one WAL save per event-loop turn."""

from __future__ import annotations

import asyncio
from pathlib import Path

from walhelpers import META, entry

from pyetcd.raft.types import HardState
from pyetcd.server.wal_writer import AsyncWALWriter
from pyetcd.wal import WAL


async def test_concurrent_writers_are_batched_and_all_acknowledged(tmp_path: Path) -> None:
    d = str(tmp_path / "wal")
    wal = WAL.create(d, META, segment_size=64 * 1024)
    writer = AsyncWALWriter(wal)
    await writer.save(HardState(1, 1, 0))
    nxt = 1
    acked: list[int] = []

    async def one() -> None:
        nonlocal nxt
        for _ in range(20):
            i = nxt
            nxt += 1
            await writer.save(HardState(), [entry(i, size=64)])
            acked.append(i)

    await asyncio.gather(*(one() for _ in range(50)))
    assert sorted(acked) == list(range(1, 1001))
    assert wal.sync_count <= 60  # about one fsync per turn of 50 writers, not 1000
    wal.close()
    w, r = WAL.open(d, segment_size=64 * 1024)
    w.close()
    assert r.entries == [entry(i, size=64) for i in range(1, 1001)]
    assert r.hard_state == HardState(1, 1, 0)


async def test_a_failed_write_fails_every_waiter_of_the_batch(tmp_path: Path) -> None:
    wal = WAL.create(str(tmp_path / "wal"), META, segment_size=64 * 1024)
    wal.close()
    writer = AsyncWALWriter(wal)
    results = await asyncio.gather(
        *(writer.save(HardState(1, 1, 0), [entry(i)]) for i in (1, 2)), return_exceptions=True
    )
    assert all(isinstance(r, Exception) and "closed" in str(r) for r in results)
