"""Shared helpers for the WAL tests, and the power-cut file layer."""

from __future__ import annotations

import errno
import os
import shutil
import stat

from pyetcd.raft.types import Entry, HardState
from pyetcd.wal import FS, WAL, Metadata

SMALL_SEGMENT = 64 * 1024
META = Metadata(member_id=0x8E9E05C52164694D, cluster_id=0xCDF818194E3A8C32)


def entry(index: int, term: int = 1, size: int = 16) -> Entry:
    return Entry(term=term, index=index, data=bytes((index + i) % 251 for i in range(size)))


def write_log(wal: WAL, first: int, last: int, term: int = 1, size: int = 16) -> HardState:
    """Save entries first..last one save each (hard state commit trailing by one)."""
    hs = HardState()
    futs = []
    for i in range(first, last + 1):
        hs = HardState(term=term, vote=1, commit=i - 1)
        futs.append(wal.save(hs, [entry(i, term, size)]))
    for f in futs:
        f.result()
    return hs


def dir_bytes(path: str) -> dict[str, bytes]:
    """Every file under ``path`` with its bytes (to prove nothing was changed)."""
    out = {}
    for base, _dirs, files in os.walk(path):
        for name in files:
            p = os.path.join(base, name)
            with open(p, "rb") as f:
                out[os.path.relpath(p, path)] = f.read()
    return out


class PowerCutFS(FS):
    """A file layer that remembers only what was fsynced, so ``cut()`` can rebuild the
    tree under ``root`` as a power failure would leave it.

    Durable file contents are keyed by inode (captured at fsync/fdatasync); durable
    directory entries by the directory's inode (captured at fsync of the directory).
    After ``kill()`` every mutating call fails, as on a dead machine.
    """

    def __init__(self, root: str, *, drop_fdatasync: bool = False,
                 drop_dir_fsync: bool = False) -> None:
        self.root = os.path.abspath(root)
        self.drop_fdatasync = drop_fdatasync  # a deliberately broken layer, to test the test
        self.drop_dir_fsync = drop_dir_fsync
        self.dead = False
        self.files: dict[int, bytes] = {}
        self.dirs: dict[int, dict[str, tuple[str, int]]] = {}
        self._mark_all_durable()

    def _alive(self) -> None:
        if self.dead:
            raise OSError(errno.EIO, "power is off")

    def _capture_file(self, fd: int) -> None:
        with open(f"/proc/self/fd/{fd}", "rb") as f:
            self.files[os.fstat(fd).st_ino] = f.read()

    def _capture_dir(self, path: str) -> None:
        entries = {}
        for name in os.listdir(path):
            st = os.lstat(os.path.join(path, name))
            entries[name] = ("d" if stat.S_ISDIR(st.st_mode) else "f", st.st_ino)
        self.dirs[os.stat(path).st_ino] = entries

    def _mark_all_durable(self) -> None:
        self.files.clear()
        self.dirs.clear()
        for base, _dirs, names in os.walk(self.root):
            self._capture_dir(base)
            for name in names:
                p = os.path.join(base, name)
                with open(p, "rb") as f:
                    self.files[os.stat(p).st_ino] = f.read()

    # -- the calls that matter -------------------------------------------------

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            self._alive()
        return super().open(path, flags, mode)

    def write(self, fd: int, data: bytes | memoryview) -> None:
        self._alive()
        super().write(fd, data)

    def fdatasync(self, fd: int) -> None:
        self._alive()
        if not self.drop_fdatasync:
            super().fdatasync(fd)
            self._capture_file(fd)

    def fsync(self, fd: int) -> None:
        self._alive()
        super().fsync(fd)
        self._capture_file(fd)

    def fsync_dir(self, path: str) -> None:
        self._alive()
        if not self.drop_dir_fsync:
            super().fsync_dir(path)
            self._capture_dir(path)

    def ftruncate(self, fd: int, size: int) -> None:
        self._alive()
        super().ftruncate(fd, size)

    def preallocate(self, fd: int, size: int) -> None:
        self._alive()
        super().preallocate(fd, size)

    def rename(self, src: str, dst: str) -> None:
        self._alive()
        super().rename(src, dst)

    def unlink(self, path: str) -> None:
        self._alive()
        super().unlink(path)

    def mkdir(self, path: str) -> None:
        self._alive()
        super().mkdir(path)

    def rmtree(self, path: str) -> None:
        self._alive()
        super().rmtree(path)

    # -- the power failure -------------------------------------------------------

    def kill(self) -> None:
        """The power goes off: every later mutation fails."""
        self.dead = True

    def cut(self) -> None:
        """Rebuild ``root`` from what was durable, then power on again."""
        self.dead = True
        root_ino = os.stat(self.root).st_ino
        tree = self._durable_tree(root_ino)
        for name in os.listdir(self.root):
            p = os.path.join(self.root, name)
            if os.path.isdir(p):
                shutil.rmtree(p)
            else:
                os.unlink(p)
        self._materialize(self.root, tree)
        self.dead = False
        self._mark_all_durable()

    def _durable_tree(self, dir_ino: int) -> dict[str, object]:
        tree: dict[str, object] = {}
        for name, (kind, ino) in self.dirs.get(dir_ino, {}).items():
            tree[name] = self._durable_tree(ino) if kind == "d" else self.files.get(ino, b"")
        return tree

    def _materialize(self, path: str, tree: dict[str, object]) -> None:
        for name, node in tree.items():
            p = os.path.join(path, name)
            if isinstance(node, dict):
                os.mkdir(p)
                self._materialize(p, node)
            else:
                assert isinstance(node, bytes)
                with open(p, "wb") as f:
                    f.write(node)
