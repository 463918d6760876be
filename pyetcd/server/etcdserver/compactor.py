"""Auto-compaction (etcd's ``v3compactor``): the leader compacts old history through Raft.

Two modes, chosen by ``--auto-compaction-mode`` with ``--auto-compaction-retention``:

- ``periodic``: keep ``retention`` seconds of history. The revision is sampled every
  tenth of the retention (of an hour, for retentions over an hour); the first
  compaction comes one retention after start, at the revision of one retention ago,
  then one every retention (every hour, for retentions over an hour).
- ``revision``: every 5 minutes, compact at the current revision minus ``retention``,
  unless that is not positive or was compacted last time.

The decisions are clock-free schedules (``PeriodicSchedule``, ``RevisionSchedule``);
``Compactor`` is the asyncio driver around them, with its clock and sleep handed in
so a test can run it on a fake clock. Only the leader compacts (etcd pauses the
compactor on followers); the compaction is an ordinary Compact request proposed
through Raft, so every member applies it at the same point of the log. "required
revision has been compacted" counts as success, as in etcd.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from pyetcd.logutil import Logger, go_duration
from pyetcd.mvcc import CompactedError, KVStore
from pyetcd.pb import rpc_pb2
from pyetcd.server.auth.store import AuthInfo

__all__ = [
    "REVISION_INTERVAL",
    "Compactor",
    "PeriodicSchedule",
    "RevisionSchedule",
]

#: How often the revision-mode compactor looks (etcd's revInterval).
REVISION_INTERVAL = 300.0
_HOUR = 3600.0
_RETRY_DIVISOR = 10


class PeriodicSchedule:
    """When etcd's periodic compactor compacts, and at which revision."""

    def __init__(self, period: float, now: float) -> None:
        """``period``: the retention in seconds (> 0); ``now``: the start time."""
        self.period = period
        capped = min(period, _HOUR)
        #: How often the revision is sampled (and a failed compaction retried).
        self.retry_interval = capped / _RETRY_DIVISOR
        #: How often it compacts once the first retention has passed.
        self.compact_interval = capped
        # revs[0] is the revision of one retention ago once the window is full.
        self._retentions = int(period / self.retry_interval) + 1
        self._revs: list[int] = []
        self._last_success = now
        self._base = period

    def record(self, revision: int) -> None:
        """Sample the current revision (once every ``retry_interval``)."""
        self._revs.append(revision)
        if len(self._revs) > self._retentions:
            del self._revs[0]

    def due(self, now: float) -> int | None:
        """The revision to compact at now, or None if it is not yet time."""
        if now - self._last_success < self._base or not self._revs:
            return None
        # The first compaction waits a whole retention; later ones the interval.
        self._base = self.compact_interval
        return self._revs[0]

    def succeeded(self, now: float) -> None:
        self._last_success = now


class RevisionSchedule:
    """Which revision etcd's revision compactor compacts at, every 5 minutes."""

    def __init__(self, retention: int) -> None:
        self.retention = retention
        self._prev = 0

    def due(self, current_revision: int) -> int | None:
        rev = current_revision - self.retention
        if rev <= 0 or rev == self._prev:
            return None
        return rev

    def succeeded(self, revision: int) -> None:
        self._prev = revision


class Compactable(Protocol):
    async def compact(
        self, req: rpc_pb2.CompactionRequest, auth: AuthInfo | None = None
    ) -> rpc_pb2.CompactionResponse: ...


class StoreSource(Protocol):
    @property
    def kv(self) -> KVStore: ...

    def root_auth(self) -> AuthInfo | None: ...


class LeaderSource(Protocol):
    @property
    def is_leader(self) -> bool: ...


class Compactor:
    """The auto-compaction loop of one member (see the module docstring)."""

    def __init__(
        self,
        mode: str,
        retention: float,
        stores: StoreSource,
        kv: Compactable,
        leadership: LeaderSource,
        logger: Logger,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``mode``: "periodic" or "revision"; ``retention``: seconds or revisions (> 0)."""
        if mode not in ("periodic", "revision"):
            raise ValueError(f"unsupported compaction mode {mode}")
        self.mode = mode
        self.retention = retention
        self.stores = stores
        self.kv = kv
        self.leadership = leadership
        self.log = logger
        self._clock = clock
        self._sleep = sleep
        #: Compactions this loop completed (for tests and status).
        self.completed = 0

    async def run(self) -> None:
        """Compact for as long as the member lives (cancel to stop)."""
        if self.mode == "periodic":
            await self._run_periodic()
        else:
            await self._run_revision()

    def _current_revision(self) -> int:
        return self.stores.kv.current_revision

    async def _run_periodic(self) -> None:
        sched = PeriodicSchedule(self.retention, self._clock())
        period = go_duration(self.retention)
        while True:
            sched.record(self._current_revision())
            await self._sleep(sched.retry_interval)
            if not self.leadership.is_leader:
                continue
            rev = sched.due(self._clock())
            if rev is None:
                continue
            self.log.info(
                "starting auto periodic compaction", {"revision": rev, "compact-period": period}
            )
            start = self._clock()
            err = await self._compact(rev)
            if err is None:
                sched.succeeded(self._clock())
                self.log.info(
                    "completed auto periodic compaction",
                    {
                        "revision": rev,
                        "compact-period": period,
                        "took": go_duration(self._clock() - start),
                    },
                )
            else:
                self.log.warn(
                    "failed auto periodic compaction",
                    {
                        "revision": rev,
                        "compact-period": period,
                        "retry-interval": go_duration(sched.retry_interval),
                        "error": str(err),
                    },
                )

    async def _run_revision(self) -> None:
        retention = int(self.retention)
        sched = RevisionSchedule(retention)
        while True:
            await self._sleep(REVISION_INTERVAL)
            if not self.leadership.is_leader:
                continue
            rev = sched.due(self._current_revision())
            if rev is None:
                continue
            fields = {"revision": rev, "revision-compaction-retention": retention}
            self.log.info("starting auto revision compaction", fields)
            start = self._clock()
            err = await self._compact(rev)
            if err is None:
                sched.succeeded(rev)
                took = go_duration(self._clock() - start)
                self.log.info("completed auto revision compaction", {**fields, "took": took})
            else:
                self.log.warn(
                    "failed auto revision compaction",
                    {
                        **fields,
                        "retry-interval": go_duration(REVISION_INTERVAL),
                        "error": str(err),
                    },
                )

    async def _compact(self, rev: int) -> Exception | None:
        """Propose the compaction; None on success (an older compaction counts)."""
        try:
            await self.kv.compact(rpc_pb2.CompactionRequest(revision=rev), self.stores.root_auth())
        except CompactedError:
            pass
        except Exception as err:  # any failure is logged and retried next round
            return err
        self.completed += 1
        return None
