"""The Raft driver's persistence policy: where a Ready's WAL write and fdatasync run.

A real WALStorage in a temp dir, a one-voter RawNode, no peers. The file layer records
which thread synced; a slow variant makes every fdatasync take a few milliseconds.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from sole_voter import Applied, sole_voter_node

from pyetcd.logutil import new_logger
from pyetcd.server.etcdserver.fatal import Fatal
from pyetcd.server.etcdserver.raft_node import (
    INLINE_SAVE_MAX_BYTES,
    INLINE_SAVE_MAX_SECONDS,
    RaftNode,
)
from pyetcd.wal import Metadata, WALStorage
from pyetcd.wal.fs import FS


class RecordingFS(FS):
    """Records the thread of every fdatasync. ``sync_delay`` models a slow disk;
    without it the disk is modelled as instant (no real fdatasync), so the driver's
    policy is tested, not how busy the machine's disk is at the moment."""

    def __init__(self, sync_delay: float = 0.0) -> None:
        self.sync_delay = sync_delay
        self.sync_threads: list[str] = []

    def fdatasync(self, fd: int) -> None:
        self.sync_threads.append(threading.current_thread().name)
        if self.sync_delay:
            time.sleep(self.sync_delay)  # the slow disk being modelled, not a wait
            super().fdatasync(fd)


async def _run_node(
    tmp: Path, fs: RecordingFS, proposals: int, pad: int = 0, slow_from: float = 0.0
) -> tuple[RaftNode, Applied, list[str]]:
    """Elect the node, then propose one entry at a time (``pad`` more bytes each), each
    after the last applied. ``slow_from``: the sync delay the disk takes once the node is
    elected. Returns the node, what was applied and the threads of the syncs after
    election."""
    storage = WALStorage.open(str(tmp), metadata=Metadata(member_id=1, cluster_id=1), fs=fs)
    quiet = new_logger("zap", ["/dev/null"], "error")
    node, applied, led = sole_voter_node(storage, quiet, Fatal(quiet))
    inbox = node.inbox
    node.start()  # the bootstrap conf change is applied, then the ticks elect it
    try:
        await asyncio.wait_for(led.wait(), 10)
        fs.sync_threads.clear()  # from here on: the proposals' syncs
        if slow_from:
            fs.sync_delay = slow_from
        for i in range(proposals):
            inbox.propose(b"put-%d" % i + b"v" * pad)
            while len(applied.entries) <= i:
                applied.changed.clear()
                await asyncio.wait_for(applied.changed.wait(), 10)
        syncs = list(fs.sync_threads)
    finally:
        await node.stop()
        storage.close()
    return node, applied, syncs


async def test_one_proposal_at_a_time_is_synced_on_the_loops_thread(tmp_path: Path) -> None:
    fs = RecordingFS()
    _, applied, syncs = await _run_node(tmp_path, fs, 20)
    assert [e.data for e in applied.entries] == [b"put-%d" % i for i in range(20)]
    # Every proposal's Ready held one entry on a fast disk: all synced inline.
    assert len(syncs) >= 20
    assert set(syncs) == {threading.current_thread().name}


async def test_a_large_entry_is_synced_by_the_writer_thread(tmp_path: Path) -> None:
    fs = RecordingFS()
    _, applied, syncs = await _run_node(tmp_path, fs, 3, pad=INLINE_SAVE_MAX_BYTES)
    assert [e.data[:5] for e in applied.entries] == [b"put-0", b"put-1", b"put-2"]
    # A fast disk, one entry per Ready, but each over the size limit: the loop keeps
    # taking in requests while the writer thread writes and syncs it.
    assert len(syncs) >= 3
    assert set(syncs) == {"wal-writer"}


async def test_a_slow_disk_moves_the_sync_back_to_the_writer_thread(tmp_path: Path) -> None:
    # The disk turns slow once the node is elected: how many slow syncs the bootstrap
    # and the election took (and so where the average stood) no longer depends on the
    # machine's load (under load the first proposal's sync was already the writer's).
    fs = RecordingFS()
    node, applied, syncs = await _run_node(tmp_path, fs, 12, slow_from=2 * INLINE_SAVE_MAX_SECONDS)
    assert len(applied.entries) == 12
    assert node.sync_seconds_average >= INLINE_SAVE_MAX_SECONDS
    loop_thread = threading.current_thread().name
    # The first syncs ran inline; once the average crossed the limit, the writer took over.
    assert syncs[0] == loop_thread
    assert syncs[-1] == "wal-writer"
    # And the log holds every entry, in order, whichever thread wrote it.
    reopened = WALStorage.open(str(tmp_path))
    try:
        last = reopened.last_index()
        ents = reopened.entries(1, last + 1, 1 << 30)
        datas = [e.data for e in ents if e.data.startswith(b"put")]
    finally:
        reopened.close()
    assert datas == [b"put-%d" % i for i in range(12)]


class DurableFS(RecordingFS):
    """Keeps what was written and what an fdatasync made durable, per file."""

    def __init__(self, sync_delay: float = 0.0) -> None:
        super().__init__(sync_delay)
        self.guard = threading.Lock()
        self.pending: dict[int, bytearray] = {}
        self.durable = bytearray()

    def write(self, fd: int, data: bytes | memoryview) -> None:
        super().write(fd, data)
        with self.guard:
            self.pending.setdefault(fd, bytearray()).extend(bytes(data))

    def fdatasync(self, fd: int) -> None:
        super().fdatasync(fd)
        with self.guard:
            self.durable.extend(self.pending.pop(fd, b""))


@pytest.mark.parametrize("sync_delay", [0.0, 2 * INLINE_SAVE_MAX_SECONDS], ids=["inline", "writer"])
async def test_a_sole_voter_applies_only_what_its_wal_holds(
    tmp_path: Path, sync_delay: float
) -> None:
    """etcd 3.5.5's durability fix (#14370, #14424): a one-member cluster commits an
    entry the moment it is appended, and etcd 3.5.0-3.5.4 applied (and answered) it
    while its WAL write was still under way; a crash then lost an acknowledged write.
    Here every entry must be fdatasync'ed before the state machine sees it."""
    fs = DurableFS(sync_delay)
    seen_unsynced: list[bytes] = []

    class Checked(Applied):
        def apply_entries(self, entries, apply_conf):  # type: ignore[no-untyped-def]
            with fs.guard:
                durable = bytes(fs.durable)
            seen_unsynced.extend(e.data for e in entries if e.data and e.data not in durable)
            super().apply_entries(entries, apply_conf)

    storage = WALStorage.open(str(tmp_path), metadata=Metadata(member_id=1, cluster_id=1), fs=fs)
    quiet = new_logger("zap", ["/dev/null"], "error")
    node, _, led = sole_voter_node(storage, quiet, Fatal(quiet))
    checked = Checked()
    node.applier = checked  # type: ignore[assignment]
    node.start()
    try:
        await asyncio.wait_for(led.wait(), 10)
        for i in range(8):  # a few at once too: one Ready holding several entries
            node.inbox.propose(b"durable-%d" % i)
        while len(checked.entries) < 8:
            checked.changed.clear()
            await asyncio.wait_for(checked.changed.wait(), 10)
    finally:
        await node.stop()
        storage.close()
    assert [e.data for e in checked.entries] == [b"durable-%d" % i for i in range(8)]
    assert seen_unsynced == []
