"""The file system calls the WAL and the snapshotter make, behind one small class.

Rule: every durable-state change goes through an ``FS`` method, so that a test can
swap in a file layer that forgets whatever was not fsynced (a "power cut") and so
prove where the fsyncs must be. Paths are plain ``str``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil

__all__ = ["FS", "NO_SYNC_FS", "OS_FS", "NoSyncFS"]


class FS:
    """Thin wrappers over ``os``; subclassed by tests to model lost writes."""

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        return os.open(path, flags, mode)

    def close(self, fd: int) -> None:
        os.close(fd)

    def write(self, fd: int, data: bytes | memoryview) -> None:
        """Write all of ``data`` at the descriptor's position."""
        n = os.write(fd, data)
        if n == len(data):
            return
        view = memoryview(data)[n:]
        while view:
            n = os.write(fd, view)
            view = view[n:]

    def fdatasync(self, fd: int) -> None:
        os.fdatasync(fd)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def fsync_dir(self, path: str) -> None:
        """Make the entries of directory ``path`` (creations, renames, removals) durable."""
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def ftruncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def preallocate(self, fd: int, size: int) -> None:
        """Reserve ``size`` bytes (zeros) so appends do not change the file's size."""
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:  # file systems without fallocate: extend the size instead
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)

    def seek(self, fd: int, offset: int) -> None:
        os.lseek(fd, offset, os.SEEK_SET)

    def rename(self, src: str, dst: str) -> None:
        os.rename(src, dst)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def mkdir(self, path: str) -> None:
        os.mkdir(path, 0o700)

    def rmtree(self, path: str) -> None:
        shutil.rmtree(path)

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def read_file(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def lock(self, fd: int) -> bool:
        """Take an exclusive ``flock`` on ``fd``; False if someone else holds it."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    # -- composite operations, each durable when it returns --------------------

    def mkdir_all(self, path: str) -> None:
        """Create ``path`` and missing parents, fsyncing each parent that gained an entry."""
        path = os.path.abspath(path)
        if os.path.isdir(path):
            return
        parent = os.path.dirname(path)
        self.mkdir_all(parent)
        self.mkdir(path)
        self.fsync_dir(parent)

    def write_atomic(self, path: str, data: bytes) -> None:
        """Replace ``path`` by ``data`` all or nothing: temp file, fsync, rename, dir fsync."""
        tmp = path + ".tmp"
        fd = self.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            self.write(fd, data)
            self.fsync(fd)
        finally:
            self.close(fd)
        self.rename(tmp, path)
        self.fsync_dir(os.path.dirname(path))

    def copy_durable(self, src: str, dst: str) -> None:
        """Copy ``src`` to ``dst`` and make the copy durable (used for ``.broken`` files)."""
        data = self.read_file(src)
        fd = self.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            self.write(fd, data)
            self.fsync(fd)
        finally:
            self.close(fd)
        self.fsync_dir(os.path.dirname(dst))


#: The real file system.
OS_FS = FS()


class NoSyncFS(FS):
    """``--unsafe-no-fsync``: writes reach the page cache only; a power cut can lose them."""

    def fdatasync(self, fd: int) -> None:
        pass

    def fsync(self, fd: int) -> None:
        pass

    def fsync_dir(self, path: str) -> None:
        pass


NO_SYNC_FS = NoSyncFS()
