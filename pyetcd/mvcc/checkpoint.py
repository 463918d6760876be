"""The sqlite WAL copied into the database file off the committing thread.

sqlite's own auto-checkpoint runs inside the COMMIT that crosses its threshold, on the
thread that commits: for a member that is the event loop, which then stalls while a
few MiB are copied into the file and it is fsynced (with 1 MiB values, every fourth
put). The backend raises that threshold to a safety net (:data:`SAFETY_NET_PAGES`) and
kicks a :class:`Checkpointer` after each commit instead: a thread that runs PASSIVE
checkpoints (they never block the writer) on a connection of its own, while sqlite has
released the GIL.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator

__all__ = ["SAFETY_NET_PAGES", "Checkpointer"]

#: The writer's own auto-checkpoint (pages of WAL): reached only if this thread lags.
SAFETY_NET_PAGES = 8192


class Checkpointer:
    """One thread checkpointing the database at ``path`` each time it is kicked."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._kicked = threading.Event()
        # Held while a checkpoint runs and while paused: no connection of ours is
        # open while the owner swaps or closes the file.
        self._lock = threading.Lock()
        self._ran = threading.Condition(self._lock)
        self._paused = False
        self._stopped = False
        self._conn: sqlite3.Connection | None = None
        #: Checkpoints run (tests and curiosity).
        self.checkpoints = 0
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def kick(self) -> None:
        """A commit happened: checkpoint soon (kicks while one runs merge)."""
        self._kicked.set()

    def _run(self) -> None:
        while True:
            self._kicked.wait()
            self._kicked.clear()
            with self._lock:
                if self._stopped:
                    return
                if not self._paused:
                    self._checkpoint()

    def _checkpoint(self) -> None:
        try:
            if self._conn is None:
                self._conn = sqlite3.connect(
                    self._path, isolation_level=None, check_same_thread=False
                )
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.checkpoints += 1
            self._ran.notify_all()
        except sqlite3.Error:
            # Nothing is lost: the writer's own checkpoint (the safety net) still runs,
            # and its failures are the backend's to report.
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    def wait(self, checkpoints: int, timeout: float) -> bool:
        """Wait until ``checkpoints`` have run in all; False if ``timeout`` passed first."""
        with self._ran:
            return self._ran.wait_for(lambda: self.checkpoints >= checkpoints, timeout)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No checkpoint, and no connection of ours open, inside this block."""
        with self._lock:
            self._drop()
            self._paused = True
        try:
            yield
        finally:
            self._paused = False

    def close(self) -> None:
        """Stop the thread (after the checkpoint it may be running) and close."""
        with self._lock:
            self._stopped = True
            self._drop()
        self._kicked.set()
        self._thread.join()
