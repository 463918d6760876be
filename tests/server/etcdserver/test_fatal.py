"""The fatal path in process (issue 17): a failing layer, faked, ends the member with
one fatal line naming the error, and nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import errno
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sole_voter import sole_voter_node

from pyetcd.config import ServerConfig
from pyetcd.logutil import Level, Logger
from pyetcd.pb import raft_internal_pb2, rpc_pb2
from pyetcd.server.etcdserver.fatal import Fatal, FatalError, error_text
from pyetcd.server.etcdserver.server import EtcdServer
from pyetcd.wal import Metadata, WALStorage
from pyetcd.wal.fs import FS
from tests.framework import free_port


def _logger() -> tuple[Logger, io.StringIO]:
    out = io.StringIO()
    return Logger([out], Level.INFO), out


def _fatal_lines(out: io.StringIO) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    return [r for r in records if r["level"] == "fatal"]


# -- Fatal itself --------------------------------------------------------------------------


async def test_the_first_failure_writes_the_one_fatal_line() -> None:
    log, out = _logger()
    fatal = Fatal(log)

    async def save() -> None:
        raise FatalError(
            "failed to save Raft hard state and entries",
            OSError(errno.ENOSPC, "No space left on device"),
        )

    async def later() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("a second failure")

    fatal.spawn(save(), "raft-node", "failed to run the Raft loop")
    fatal.spawn(later(), "other", "member task failed unexpectedly")
    err = await asyncio.wait_for(fatal.wait(), 5)
    await asyncio.sleep(0.01)  # let the second task fail too: it must add no line
    assert isinstance(err, OSError)
    lines = _fatal_lines(out)
    assert len(lines) == 1, lines
    assert lines[0]["msg"] == "failed to save Raft hard state and entries"
    assert lines[0]["error"] == "no space left on device"
    assert lines[0]["task"] == "raft-node"


async def test_an_unexpected_exception_fails_with_the_tasks_message() -> None:
    log, out = _logger()
    fatal = Fatal(log)

    async def watch_sync() -> None:
        raise KeyError("bug")

    fatal.spawn(watch_sync(), "watch-sync", "member task failed unexpectedly")
    await asyncio.wait_for(fatal.wait(), 5)
    (line,) = _fatal_lines(out)
    assert line["msg"] == "member task failed unexpectedly"
    assert line["task"] == "watch-sync"
    assert "bug" in line["error"]


async def test_a_cancelled_task_is_not_a_failure() -> None:
    log, out = _logger()
    fatal = Fatal(log)
    task = fatal.spawn(asyncio.sleep(10), "ticker", "failed to tick Raft")
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not fatal.failed
    assert _fatal_lines(out) == []


async def test_a_log_on_the_failed_disk_does_not_keep_the_member_alive() -> None:
    class ReadOnlyStream(io.StringIO):
        def write(self, s: str) -> int:
            raise OSError(errno.EROFS, "Read-only file system")

    fatal = Fatal(Logger([ReadOnlyStream()], Level.INFO))
    fatal.fail("failed to commit tx", OSError(errno.EROFS, "Read-only file system"))
    assert fatal.failed
    await asyncio.wait_for(fatal.wait(), 1)


def test_error_text_reads_like_etcds() -> None:
    assert error_text(OSError(errno.EROFS, "Read-only file system")) == "read-only file system"
    assert (
        error_text(OSError(errno.EMFILE, "Too many open files", "/d/member/wal/1.tmp"))
        == "/d/member/wal/1.tmp: too many open files"
    )


# -- the Raft driver over a failing WAL ---------------------------------------------------


class FullDiskFS(FS):
    """A disk that fills up once ``full`` is set: every fdatasync fails with ENOSPC."""

    def __init__(self) -> None:
        self.full = False

    def fdatasync(self, fd: int) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")


class NoDescriptorsFS(FS):
    """A process out of file descriptors once ``exhausted`` is set: opening fails."""

    def __init__(self) -> None:
        self.exhausted = False

    def fdatasync(self, fd: int) -> None:
        pass  # the disk is not what is being modelled

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        if self.exhausted:
            raise OSError(errno.EMFILE, "Too many open files", path)
        return super().open(path, flags, mode)


async def test_emfile_at_a_wal_cut_ends_the_member(tmp_path: Path) -> None:
    fs = NoDescriptorsFS()
    storage = WALStorage.open(
        str(tmp_path), metadata=Metadata(member_id=1, cluster_id=1), fs=fs, segment_size=8192
    )
    log, out = _logger()
    fatal = Fatal(log)
    node, applied, led = sole_voter_node(storage, log, fatal)
    node.start()
    try:
        await asyncio.wait_for(led.wait(), 10)
        fs.exhausted = True
        for i in range(200):  # ~100 bytes each: the segment fills and must be cut
            if fatal.failed:
                break
            node.inbox.propose(b"%03d" % i + b"x" * 100)
            await asyncio.sleep(0)
        await asyncio.wait_for(fatal.wait(), 10)
    finally:
        await node.stop()
        storage.close()
    (line,) = _fatal_lines(out)
    assert line["msg"] == "failed to save Raft hard state and entries"
    assert line["error"].endswith(".wal.tmp: too many open files")
    # What was applied was durable: everything before the cut is in the log.
    reopened = WALStorage.open(str(tmp_path))
    try:
        durable = {e.data for e in reopened.entries(1, reopened.last_index() + 1, 1 << 30)}
    finally:
        reopened.close()
    assert {e.data for e in applied.entries} <= durable


async def test_a_failed_wal_save_ends_the_raft_loop_before_apply(tmp_path: Path) -> None:
    fs = FullDiskFS()
    storage = WALStorage.open(str(tmp_path), metadata=Metadata(member_id=1, cluster_id=1), fs=fs)
    log, out = _logger()
    fatal = Fatal(log)
    node, applied, led = sole_voter_node(storage, log, fatal)
    inbox = node.inbox
    node.start()
    try:
        await asyncio.wait_for(led.wait(), 10)
        inbox.propose(b"acknowledged")
        while not applied.entries:
            applied.changed.clear()
            await asyncio.wait_for(applied.changed.wait(), 10)
        fs.full = True
        inbox.propose(b"never-durable")
        err = await asyncio.wait_for(fatal.wait(), 10)
        assert isinstance(err, OSError) and err.errno == errno.ENOSPC
        # The loop stopped at the save: the entry was neither applied nor answered.
        assert [e.data for e in applied.entries] == [b"acknowledged"]
        assert node._task is not None and node._task.done()
    finally:
        await node.stop()
        storage.close()
    (line,) = _fatal_lines(out)
    assert line["msg"] == "failed to save Raft hard state and entries"
    assert line["error"] == "no space left on device"


# -- a whole member over a failing backend -------------------------------------------------


class FullDiskConnection:
    """sqlite3 under a disk that filled up: every COMMIT fails as sqlite reports it."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "COMMIT":
            raise sqlite3.OperationalError("database or disk is full")
        return self.conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def _config(tmp: Path) -> ServerConfig:
    peer = free_port()
    return ServerConfig(
        name="default",
        data_dir=str(tmp / "default.etcd"),
        listen_peer_urls=(f"http://127.0.0.1:{peer}",),
        initial_advertise_peer_urls=(f"http://127.0.0.1:{peer}",),
        initial_cluster=f"default=http://127.0.0.1:{peer}",
        heartbeat_interval=20,
        election_timeout=200,
    )


def _put(key: bytes, value: bytes) -> raft_internal_pb2.InternalRaftRequest:
    return raft_internal_pb2.InternalRaftRequest(put=rpc_pb2.PutRequest(key=key, value=value))


async def test_a_failed_backend_commit_ends_the_member_and_loses_nothing(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    log, out = _logger()
    server = EtcdServer(cfg, log)
    await server.start()
    try:
        await asyncio.wait_for(server.wait_leader(), 10)
        await server.propose(_put(b"before", b"1"))
        backend = server.stores.kv.backend
        backend._conn = FullDiskConnection(backend._conn)  # type: ignore[assignment]
        # Applied and answered: its durability is the WAL's, the backend commits later.
        await server.propose(_put(b"acknowledged", b"2"))
        err = await asyncio.wait_for(server.fatal.wait(), 10)
        assert isinstance(err, sqlite3.OperationalError)
    finally:
        await server.abort()
        server.storage.close()
        backend._conn.conn.close()  # type: ignore[attr-defined]
    (line,) = _fatal_lines(out)
    assert line["msg"] == "failed to commit tx"
    assert line["error"] == "database or disk is full"

    # The restart replays the WAL from the backend's last commit: both writes are there.
    restarted = EtcdServer(cfg, _logger()[0])
    await restarted.start()
    try:
        committed = restarted.storage.initial_state()[0].commit
        await asyncio.wait_for(restarted.applied.wait(committed), 10)
        kv = restarted.stores.kv
        for key, value in ((b"before", b"1"), (b"acknowledged", b"2")):
            got = kv.get(key)
            assert got is not None and got.value == value
    finally:
        await restarted.stop()
