"""Auto-compaction on a fake clock: etcd's periodic and revision cadences, leader only,
"already compacted" as success, a failure retried, etcd's log lines."""

from __future__ import annotations

import asyncio
import io
import json
from dataclasses import dataclass, field

import pytest

from pyetcd.logutil import Level, Logger
from pyetcd.mvcc import CompactedError
from pyetcd.pb import rpc_pb2
from pyetcd.server.auth.store import AuthInfo
from pyetcd.server.etcdserver.compactor import (
    REVISION_INTERVAL,
    Compactor,
    PeriodicSchedule,
    RevisionSchedule,
)


class FakeClock:
    """Time moves only when the test calls ``advance``; sleepers wake in order."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, fut))
        await fut

    async def advance(self, seconds: float, step: float = 0.5) -> None:
        """Move time forward in small steps, letting woken sleepers run at each."""
        end = self.now + seconds
        while self.now < end - 1e-9:
            self.now = min(end, self.now + step)
            for entry in [e for e in self._sleepers if e[0] <= self.now + 1e-9]:
                self._sleepers.remove(entry)
                entry[1].set_result(None)
            for _ in range(5):
                await asyncio.sleep(0)


@dataclass
class FakeKV:
    """The store (current revision) and the KV server (Compact) in one."""

    current_revision: int = 1
    compacted: list[tuple[float, int]] = field(default_factory=list)
    fail_next: Exception | None = None
    clock: FakeClock = field(default_factory=FakeClock)

    @property
    def kv(self) -> FakeKV:
        return self

    def root_auth(self) -> AuthInfo | None:
        return None

    async def compact(
        self, req: rpc_pb2.CompactionRequest, auth: AuthInfo | None = None
    ) -> rpc_pb2.CompactionResponse:
        if self.fail_next is not None:
            err, self.fail_next = self.fail_next, None
            raise err
        if self.compacted and req.revision <= self.compacted[-1][1]:
            self.compacted.append((self.clock.now, req.revision))
            raise CompactedError()
        self.compacted.append((self.clock.now, req.revision))
        return rpc_pb2.CompactionResponse()


@dataclass
class Lead:
    is_leader: bool = True


def run_until(comp: Compactor, clock: FakeClock, kv: FakeKV, until: float) -> None:
    """Run the compactor's loop on the fake clock for ``until`` seconds, writing one
    revision at the middle of every simulated second."""

    async def main() -> None:
        task = asyncio.ensure_future(comp.run())
        await asyncio.sleep(0)
        elapsed = 0.0
        while elapsed < until:
            step = min(1.0, until - elapsed)
            await clock.advance(step / 2)
            if step == 1.0:
                kv.current_revision += 1
            await clock.advance(step / 2)
            elapsed += step
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def new(mode: str, retention: float) -> tuple[Compactor, FakeClock, FakeKV, Lead, io.StringIO]:
    clock = FakeClock()
    kv = FakeKV(clock=clock)
    lead = Lead()
    out = io.StringIO()
    log = Logger([out], Level.INFO)
    comp = Compactor(mode, retention, kv, kv, lead, log, clock=clock, sleep=clock.sleep)
    return comp, clock, kv, lead, out


def log_records(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_periodic_schedule_short_retention() -> None:
    # 10 s: sample every 1 s, first compaction after 10 s at the revision of 10 s ago.
    s = PeriodicSchedule(10.0, now=0.0)
    assert s.retry_interval == 1.0 and s.compact_interval == 10.0
    due = []
    for t in range(1, 41):
        s.record(t)  # revision t at time t-1
        rev = s.due(float(t))
        if rev is not None:
            due.append((t, rev))
            s.succeeded(float(t))
    assert due == [(10, 1), (20, 10), (30, 20), (40, 30)]


def test_periodic_schedule_long_retention_compacts_hourly() -> None:
    # 5 h: sample every 6 min, first compaction after 5 h, then every hour, each at
    # the oldest sample of the window (51 samples: 5 h and one sample back).
    s = PeriodicSchedule(5 * 3600.0, now=0.0)
    assert s.retry_interval == 360.0 and s.compact_interval == 3600.0
    due = []
    for step in range(1, 81):
        t = step * 360.0
        s.record(step)  # revision = the step it was sampled at
        rev = s.due(t)
        if rev is not None:
            due.append((t / 3600, rev))
            s.succeeded(t)
    assert due == [(5.0, 1), (6.0, 10), (7.0, 20), (8.0, 30)]


def test_revision_schedule() -> None:
    s = RevisionSchedule(100)
    assert s.due(50) is None  # nothing older than the retention yet
    assert s.due(150) == 50
    s.succeeded(50)
    assert s.due(150) is None  # no new writes: not compacted twice
    assert s.due(151) == 51


def test_periodic_compactor_on_fake_clock() -> None:
    # 10 s retention (samples every 1 s: exact binary fractions on the fake clock)
    comp, clock, kv, _, out = new("periodic", 10.0)
    run_until(comp, clock, kv, 35.0)
    assert [t - 1000.0 for t, _ in kv.compacted] == [10.0, 20.0, 30.0], kv.compacted
    # the oldest sample of the window: the start, then the samples at 9 s and 19 s
    # (one write per second, at the half second)
    assert [rev for _, rev in kv.compacted] == [1, 10, 20]
    recs = log_records(out)
    starts = [r for r in recs if r["msg"] == "starting auto periodic compaction"]
    done = [r for r in recs if r["msg"] == "completed auto periodic compaction"]
    assert starts[0]["revision"] == 1 and starts[0]["compact-period"] == "10s"
    assert len(done) == 3 and "took" in done[0]


def test_revision_compactor_on_fake_clock() -> None:
    comp, clock, kv, _, out = new("revision", 100)
    kv.current_revision = 50
    run_until(comp, clock, kv, 3 * REVISION_INTERVAL + 1)
    # one revision per second is written: 350, 650, 950 at the three 5-minute marks
    assert [rev for _, rev in kv.compacted] == [250, 550, 850]
    assert [round(t - 1000.0) for t, _ in kv.compacted] == [300, 600, 900]
    recs = log_records(out)
    start = next(r for r in recs if r["msg"] == "starting auto revision compaction")
    assert start["revision"] == 250 and start["revision-compaction-retention"] == 100


def test_revision_compactor_skips_unchanged_and_retries_failure() -> None:
    comp, clock, kv, _, out = new("revision", 10)
    kv.current_revision = 5
    kv.fail_next = RuntimeError("etcdserver: request timed out")

    async def main() -> None:
        task = asyncio.ensure_future(comp.run())
        await asyncio.sleep(0)
        await clock.advance(REVISION_INTERVAL + 1, step=1.0)
        assert kv.compacted == []  # current 5 - retention 10 <= 0: nothing to do
        kv.current_revision = 40
        await clock.advance(REVISION_INTERVAL, step=1.0)  # fails (timed out)
        await clock.advance(REVISION_INTERVAL, step=1.0)  # retried: compacts 30
        await clock.advance(REVISION_INTERVAL, step=1.0)  # same revision: skipped
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    recs = log_records(out)
    failed = [r for r in recs if r["msg"] == "failed auto revision compaction"]
    assert len(failed) == 1 and failed[0]["retry-interval"] == "5m0s"
    # retried at the next mark; the third mark sees the same revision and skips it
    assert [rev for _, rev in kv.compacted] == [30]


def test_follower_does_not_compact() -> None:
    comp, clock, kv, lead, _ = new("periodic", 10.0)
    lead.is_leader = False
    run_until(comp, clock, kv, 35.0)
    assert kv.compacted == []


def test_already_compacted_counts_as_success() -> None:
    comp, clock, kv, _, out = new("periodic", 10.0)
    kv.compacted.append((0.0, 10**6))  # someone compacted far ahead
    run_until(comp, clock, kv, 35.0)
    recs = log_records(out)
    assert not [r for r in recs if r["msg"] == "failed auto periodic compaction"]
    assert comp.completed >= 2


def test_unknown_mode_refused() -> None:
    with pytest.raises(ValueError, match="unsupported compaction mode"):
        Compactor("hourly", 1.0, FakeKV(), FakeKV(), Lead(), Logger([io.StringIO()]))
