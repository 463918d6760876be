"""Failing disks against real members (issue 17, findings 1 and 2).

Never silently empty: a member whose backend (``member/snap/db``) is lost, emptied,
garbled or older than its newest raft snapshot refuses to start with one fatal line
in etcd's words and leaves its data dir as it was. Never a zombie: disk full, a file
system gone read-only and running out of file descriptors end the member with one
fatal line naming the error and a non-zero exit; every write acknowledged before the
fault is there after a restart on a healthy disk.

Each test prints what it saw (exit code, fatal line) beside etcd 3.5.1's where etcd
runs the same case; run with ``-s`` to read them. The disk faults need root (tmpfs,
loop devices): they skip, saying why, where the machine cannot make them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from pyetcd.pb import rpc_pb2
from tests.framework import Member

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs Linux")

EXIT_TIMEOUT = 30.0
RECOVER_FAILED = "failed to recover v3 backend from snapshot"
NO_DB_SNAPSHOT = "failed to find database snapshot file (snap: snapshot file doesn't exist)"


# -- helpers ----------------------------------------------------------------------------------


def _put_all(
    m: Member, keys: range, value: bytes = b"v", prefix: bytes = b"k"
) -> dict[bytes, bytes]:
    kv = m.kv()
    acked: dict[bytes, bytes] = {}
    for i in keys:
        key = prefix + b"%06d" % i
        kv.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=10)
        acked[key] = value
    return acked


@dataclass
class Writer:
    """Puts until the member stops answering; ``acked`` holds what it acknowledged."""

    m: Member
    value: bytes
    acked: dict[bytes, bytes]
    error: str = ""

    def run(self, limit: int = 1_000_000) -> None:
        kv = self.m.kv()
        for i in range(limit):
            key = b"w%07d" % i
            try:
                kv.Put(rpc_pb2.PutRequest(key=key, value=self.value), timeout=10)
            except grpc.RpcError as err:
                self.error = f"{err.code().name}: {err.details()}"  # type: ignore[attr-defined]
                return
            self.acked[key] = self.value


def _wait_exit(m: Member, timeout: float = EXIT_TIMEOUT) -> int:
    assert m.proc is not None
    try:
        return m.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{m.kind} did not exit within {timeout}s (a zombie):\n{m.log_tail()}")


def _last_run_records(m: Member) -> list[dict[str, Any]]:
    """The JSON log records of the member's last run."""
    text = m.log_text().rsplit("\n=== start ", 1)[-1]
    records = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            rec = json.loads(line)
            if isinstance(rec, dict) and "level" in rec:
                records.append(rec)
    return records


def _fatal_lines(m: Member) -> list[dict[str, Any]]:
    # etcd logs a lost backend at "panic" (then exits 2), the rest at "fatal" (exit 1).
    return [r for r in _last_run_records(m) if r["level"] in ("fatal", "panic")]


def _report(case: str, m: Member, rc: int, line: dict[str, Any]) -> None:
    shown = {k: v for k, v in line.items() if k not in ("ts", "caller", "stacktrace")}
    print(f"\n[{case}] {m.kind}: exit code {rc}; {json.dumps(shown)}")


def _digests(data_dir: Path) -> dict[str, str]:
    """Content hashes of the WAL and the raft snapshot files (what must stay untouched)."""
    out = {}
    for sub in ("member/wal", "member/snap"):
        for p in sorted((data_dir / sub).iterdir()):
            if sub == "member/wal" or p.suffix == ".snap":
                out[f"{sub}/{p.name}"] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _read_all(m: Member, prefix: bytes) -> dict[bytes, bytes]:
    end = prefix[:-1] + bytes([prefix[-1] + 1])
    out: dict[bytes, bytes] = {}
    key = prefix
    while True:  # in pages: the values may be larger than one gRPC message
        req = rpc_pb2.RangeRequest(key=key, range_end=end, limit=64)
        resp = m.kv().Range(req, timeout=30)
        out.update((kv.key, kv.value) for kv in resp.kvs)
        if not resp.more:
            return out
        key = resp.kvs[-1].key + b"\0"


def _restart_elsewhere(kind: str, src: Path, parent: Path, *extra: str) -> Member:
    """Start a member on a copy of ``src`` (a data dir) under ``parent`` (a healthy disk)."""
    m = Member(kind, "n1", parent, extra_args=list(extra))
    shutil.copytree(src, m.data_dir)
    m.start()
    m.wait_ready()
    return m


def _check_acked(m: Member, acked: dict[bytes, bytes], prefix: bytes) -> None:
    got = _read_all(m, prefix)
    lost = [k for k, v in acked.items() if got.get(k) != v]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged writes lost, e.g. {lost[:3]}"


# -- finding 2: a lost backend ----------------------------------------------------------------


@dataclass
class Filled:
    """A stopped member's data dir with raft snapshots, its keys, and an older backend."""

    data_dir: Path
    acked: dict[bytes, bytes]
    older_db: Path
    snapshot_index: int


def _fill(kind: str, parent: Path, total: int) -> Filled:
    m = Member(kind, "n1", parent, extra_args=["--snapshot-count=500"])
    try:
        m.start()
        m.wait_ready()
        acked = _put_all(m, range(600))
        assert m.stop() in (0, -15)  # etcd ends on SIGTERM by the signal
        older = parent / "older.db"
        shutil.copy(m.data_dir / "member/snap/db", older)
        m.start()
        m.wait_ready()
        acked |= _put_all(m, range(600, total))
        assert m.stop() in (0, -15)  # etcd ends on SIGTERM by the signal
    finally:
        m.close()
    snaps = sorted((m.data_dir / "member/snap").glob("*.snap"))
    assert snaps, "no raft snapshot was taken"
    index = int(snaps[-1].name.split("-")[1].split(".")[0], 16)
    assert index > 500
    return Filled(m.data_dir, acked, older, index)


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Filled:
    return _fill("pyetcd", tmp_path_factory.mktemp("filled"), 2700)


def _lose_backend(db: Path, how: str, older: Path) -> None:
    if how == "deleted":
        db.unlink()
    elif how == "truncated":
        db.write_bytes(b"")
    elif how == "garbage":
        db.write_bytes(os.urandom(64 * 1024))
    elif how == "tables":
        import sqlite3

        conn = sqlite3.connect(db)
        conn.execute("DROP TABLE key")
        conn.commit()
        conn.close()
    elif how == "older":
        shutil.copy(older, db)
    else:  # pragma: no cover
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["deleted", "truncated", "garbage", "tables", "older"])
def test_a_lost_backend_refuses_to_start(filled: Filled, tmp_path: Path, how: str) -> None:
    m = Member("pyetcd", "n1", tmp_path, extra_args=["--snapshot-count=500"])
    shutil.copytree(filled.data_dir, m.data_dir)
    db = m.data_dir / "member/snap/db"
    _lose_backend(db, how, filled.older_db)
    before = _digests(m.data_dir)
    db_before = db.read_bytes() if db.exists() else None
    try:
        m.start()
        rc = _wait_exit(m)
    finally:
        m.close()
    lines = _fatal_lines(m)
    assert rc != 0
    assert len(lines) == 1, m.log_tail()
    (line,) = lines
    _report(f"backend {how}", m, rc, line)
    if how in ("garbage", "tables"):
        assert line["msg"] == "failed to open database"
        assert line["path"] == str(db)
        assert ("not a database" if how == "garbage" else "missing tables key") in line["error"]
    else:
        assert line["msg"] == RECOVER_FAILED
        assert line["error"] == NO_DB_SNAPSHOT
        assert line["snapshot-index"] == filled.snapshot_index
    assert "Traceback" not in m.log_text()
    # The data dir is as it was: nothing recreated, nothing replayed into it.
    assert _digests(m.data_dir) == before
    assert (db.read_bytes() if db.exists() else None) == db_before


def test_the_untouched_data_dir_starts_with_every_key(filled: Filled, tmp_path: Path) -> None:
    m = _restart_elsewhere("pyetcd", filled.data_dir, tmp_path)
    try:
        _check_acked(m, filled.acked, b"k")
    finally:
        m.close()


def test_the_database_that_came_with_the_snapshot_is_installed(
    filled: Filled, tmp_path: Path
) -> None:
    # etcd's openSnapshotBackend: a crash between receiving a snapshot's database and
    # installing it leaves %016x.snap.db beside a backend that is behind.
    src = tmp_path / "src"
    shutil.copytree(filled.data_dir, src)
    (src / "member/snap/db").rename(src / f"member/snap/{filled.snapshot_index:016x}.snap.db")
    m = _restart_elsewhere("pyetcd", src, tmp_path / "run")
    try:
        _check_acked(m, filled.acked, b"k")
    finally:
        m.close()


def test_etcd_refuses_a_deleted_backend_too(tmp_path: Path) -> None:
    filled = _fill("etcd", tmp_path / "fill", 700)
    m = Member("etcd", "n1", tmp_path / "run", extra_args=["--snapshot-count=500"])
    shutil.copytree(filled.data_dir, m.data_dir)
    (m.data_dir / "member/snap/db").unlink()
    try:
        m.start()
        rc = _wait_exit(m)
    finally:
        m.close()
    lines = _fatal_lines(m)
    assert rc != 0 and lines, m.log_tail()
    _report("backend deleted", m, rc, lines[0])
    assert lines[0]["msg"] == RECOVER_FAILED
    assert lines[0]["error"] == NO_DB_SNAPSHOT


# -- finding 1: disk full, read-only, no file descriptors -------------------------------------


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs or a loop device needs root")


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def _umount(path: Path) -> None:
    if _run("umount", str(path)).returncode != 0:
        _run("umount", "-l", str(path))


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    _need_root()
    path.mkdir(parents=True, exist_ok=True)
    r = _run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        _umount(path)


@pytest.mark.parametrize("where", ["data-dir", "wal-dir"])
def test_disk_full_ends_the_member_and_loses_nothing(tmp_path: Path, where: str) -> None:
    small = tmp_path / "small"
    healthy = tmp_path / "healthy"
    wal_flags: list[str] = []
    with _tmpfs(small, "100m"):
        # The WAL preallocates 64 MB segments: on 100 MB, either the backend fills the
        # rest (data dir on the tmpfs) or the next segment finds no room (WAL alone).
        if where == "data-dir":
            m = Member("pyetcd", "n1", small)
        else:
            m = Member("pyetcd", "n1", tmp_path / "big", extra_args=[f"--wal-dir={small / 'wal'}"])
        try:
            m.start()
            m.wait_ready()
            writer = Writer(m, os.urandom(32 * 1024), {})
            writer.run(limit=5000)
            rc = _wait_exit(m)
        finally:
            m.close()
        lines = _fatal_lines(m)
        assert rc != 0, writer.error
        assert len(lines) == 1, m.log_tail()
        _report(f"disk full ({where})", m, rc, lines[0])
        assert "no space left on device" in lines[0]["error"]
        if where == "wal-dir":
            assert lines[0]["msg"] == "failed to save Raft hard state and entries"
        assert writer.acked, "nothing was written before the disk filled"
        # Space again: the same files on a disk with room.
        saved = shutil.copytree(m.data_dir, tmp_path / "saved")
        if where == "wal-dir":
            shutil.copytree(small / "wal", tmp_path / "wal")
            wal_flags = [f"--wal-dir={tmp_path / 'wal'}"]
    restarted = _restart_elsewhere("pyetcd", saved, healthy, *wal_flags)
    try:
        _check_acked(restarted, writer.acked, b"w")
        print(f"  {len(writer.acked)} acknowledged writes, all present after the restart")
    finally:
        restarted.close()


@contextlib.contextmanager
def _ext4_loop(image: Path, mnt: Path) -> Iterator[str]:
    """An ext4 file system on a loop device mounted at ``mnt``; yields the device name."""
    _need_root()
    for tool in ("losetup", "mkfs.ext4"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    _run("truncate", "-s", "300M", str(image))
    if _run("mkfs.ext4", "-q", str(image)).returncode != 0:
        pytest.skip("mkfs.ext4 failed")
    r = _run("losetup", "-f", "--show", str(image))
    if r.returncode != 0:
        pytest.skip(f"no loop device: {r.stderr.strip()}")
    dev = r.stdout.strip()
    try:
        mnt.mkdir(parents=True, exist_ok=True)
        r = _run("mount", "-o", "errors=remount-ro", dev, str(mnt))
        if r.returncode != 0:
            pytest.skip(f"cannot mount {dev}: {r.stderr.strip()}")
        try:
            yield os.path.basename(dev)
        finally:
            _umount(mnt)
    finally:
        _run("losetup", "-d", dev)
        image.unlink(missing_ok=True)


def _go_read_only(dev: str, mnt: Path) -> str:
    trigger = Path(f"/sys/fs/ext4/{dev}/trigger_fs_error")
    if trigger.exists():
        trigger.write_text("1")  # ext4 aborts its journal and remounts read-only
        return "ext4 journal abort"
    r = _run("mount", "-o", "remount,ro", str(mnt))
    if r.returncode != 0:
        pytest.skip(f"cannot make the file system read-only: {r.stderr.strip()}")
    return "remount,ro"


@pytest.mark.parametrize("log", ["healthy-disk", "same-disk"])
def test_a_read_only_file_system_ends_the_member(tmp_path: Path, log: str) -> None:
    mnt = tmp_path / "mnt"
    with _ext4_loop(tmp_path / "fs.img", mnt) as dev:
        if log == "healthy-disk":
            # The data dir on the loop device, the log beside it on a healthy disk.
            m = Member("pyetcd", "n1", tmp_path)
            (mnt / "n1.etcd").mkdir()
            m.data_dir.symlink_to(mnt / "n1.etcd")
        else:
            # The log on the failed disk too: no line can be written, the exit tells.
            m = Member("pyetcd", "n1", mnt)
        try:
            m.start()
            m.wait_ready()
            writer = Writer(m, b"x" * 512, {})
            thread = threading.Thread(target=writer.run, daemon=True)
            thread.start()
            # Writes are flowing; then the file system goes read-only under them.
            while len(writer.acked) < 200 and thread.is_alive():
                thread.join(0.05)
            how = _go_read_only(dev, mnt)
            rc = _wait_exit(m)
            thread.join(EXIT_TIMEOUT)
        finally:
            m.close()
        assert rc != 0
        if log == "healthy-disk":
            lines = _fatal_lines(m)
            assert len(lines) == 1, m.log_tail()
            _report(f"read-only file system ({how})", m, rc, lines[0])
            # ext4's journal abort fails writes with EROFS, or an fsync with EIO.
            errors = ("read-only file system", "input/output error", "readonly", "I/O error")
            assert any(text in lines[0]["error"] for text in errors), lines[0]
        else:
            print(f"\n[read-only file system ({how}), log on it] pyetcd: exit code {rc}")
        saved = shutil.copytree(m.data_dir, tmp_path / "saved")
    restarted = _restart_elsewhere("pyetcd", saved, tmp_path / "healthy")
    try:
        _check_acked(restarted, writer.acked, b"w")
        print(f"  {len(writer.acked)} acknowledged writes, all present after the restart")
    finally:
        restarted.close()


class LimitedMember(Member):
    """A member started under ``prlimit --nofile=soft:hard``."""

    def __init__(self, *args: Any, nofile: tuple[int, int], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.nofile = nofile

    def argv(self) -> list[str]:
        soft, hard = self.nofile
        return ["prlimit", f"--nofile={soft}:{hard}", "--", *super().argv()]


def _open_idle(m: Member, n: int) -> list[socket.socket]:
    conns = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", m.client_port), timeout=5)
        conns.append(s)
    return conns


def _nofile_limits(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open-file limit in /proc/<pid>/limits")


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="prlimit is not installed")
def test_no_file_descriptors_left_ends_the_member(tmp_path: Path) -> None:
    m = LimitedMember(
        "pyetcd", "n1", tmp_path, extra_args=["--snapshot-count=100"], nofile=(64, 64)
    )
    conns: list[socket.socket] = []
    try:
        m.start()
        m.wait_ready()
        acked = _put_all(m, range(10), prefix=b"w")
        # Idle clients take every descriptor left; the next raft snapshot needs a file.
        conns = _open_idle(m, 100)
        writer = Writer(m, b"v", acked)
        writer.run(limit=300)
        rc = _wait_exit(m)
    finally:
        for s in conns:
            s.close()
        m.close()
    lines = _fatal_lines(m)
    assert rc != 0
    assert len(lines) == 1, m.log_tail()
    _report("no file descriptors (soft = hard = 64)", m, rc, lines[0])
    assert "too many open files" in lines[0]["error"]
    restarted = _restart_elsewhere("pyetcd", m.data_dir, tmp_path / "healthy")
    try:
        _check_acked(restarted, writer.acked, b"w")
        print(f"  {len(writer.acked)} acknowledged writes, all present after the restart")
    finally:
        restarted.close()


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="prlimit is not installed")
def test_the_soft_file_limit_is_raised_to_the_hard_one(tmp_path: Path) -> None:
    m = LimitedMember(
        "pyetcd", "n1", tmp_path, extra_args=["--snapshot-count=100"], nofile=(64, 4096)
    )
    conns: list[socket.socket] = []
    try:
        m.start()
        m.wait_ready()
        assert m.proc is not None
        assert _nofile_limits(m.proc.pid) == (4096, 4096)
        conns = _open_idle(m, 200)
        acked = _put_all(m, range(250), prefix=b"w")  # past two raft snapshots
        m.check_alive()
        _check_acked(m, acked, b"w")
        assert _fatal_lines(m) == []
        print("\n[idle clients over a soft limit of 64] pyetcd: raised to 4096, still serving")
    finally:
        for s in conns:
            s.close()
        m.close()
