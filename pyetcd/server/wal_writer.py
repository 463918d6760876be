"""The asyncio side of the WAL's group commit.

Saves made during one event-loop turn are merged into one ``save`` of the WAL (or of a
WALStorage), and one thread-safe callback per batch wakes all their waiters: the event
loop never blocks on fsync and pays one cross-thread wake-up per batch, not per save.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Protocol

from pyetcd.raft.types import EMPTY_HARD_STATE, Entry, HardState

__all__ = ["AsyncWALWriter", "Saver"]


class Saver(Protocol):
    """What can be saved to: ``pyetcd.wal.WAL`` and ``pyetcd.wal.WALStorage``."""

    def save(self, hard_state: HardState, entries: Sequence[Entry] = ()) -> Future[None]: ...


class AsyncWALWriter:
    """``await writer.save(hs, entries)`` returns once they are durable.

    Saves are written in call order. Merging keeps that order: the entries of a turn are
    concatenated and the turn's last non-empty hard state is written after them, so a
    replay reaches the same state. Cancelling a waiter does not cancel its write.
    """

    def __init__(self, wal: Saver) -> None:
        self._wal = wal
        self._entries: list[Entry] = []
        self._hard_state = EMPTY_HARD_STATE
        self._waiters: list[asyncio.Future[None]] = []

    async def save(self, hard_state: HardState, entries: Sequence[Entry] = ()) -> None:
        loop = asyncio.get_running_loop()
        if not self._waiters:
            loop.call_soon(self._flush, loop)
        self._entries.extend(entries)
        if not hard_state.is_empty():
            self._hard_state = hard_state
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        await waiter

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        waiters, entries, hs = self._waiters, self._entries, self._hard_state
        self._waiters, self._entries, self._hard_state = [], [], EMPTY_HARD_STATE
        done = self._wal.save(hs, entries)
        done.add_done_callback(lambda f: loop.call_soon_threadsafe(_wake, f, waiters))


def _wake(done: Future[None], waiters: list[asyncio.Future[None]]) -> None:
    exc = done.exception()
    for w in waiters:
        if w.done():
            continue
        if exc is None:
            w.set_result(None)
        else:
            w.set_exception(exc)
