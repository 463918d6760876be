"""Client load for ``bench/vs_etcd.py``: the same Python gRPC client for both servers.

Each load runs in worker processes (``spawn``, so no grpc state crosses a fork), each
with its own asyncio loop (uvloop when installed) and its own channels. A worker
connects, warms up for ``LoadSpec.warmup`` seconds, waits on a barrier shared by all
workers of the load, then measures for ``LoadSpec.seconds``. Every worker reports its
own CPU time over the measured window, so the table can show whether the client, and
not the server, was the limit.

Keys are 8 bytes (``%08d``) and values 256 bytes unless a load says otherwise
(``LoadSpec.value_size``). Channels accept messages up to 64 MiB both ways, so a range
answering 10,000 keys or a 1 MiB put is limited by the server, not by grpc's 4 MiB
default.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import multiprocessing
import queue
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.synchronize import Barrier
from typing import Any

import grpc
import grpc.aio

from pyetcd.pb import rpc_pb2, rpc_pb2_grpc

__all__ = [
    "CHANNEL_OPTIONS",
    "VALUE",
    "WATCH_KEY",
    "LoadKind",
    "LoadResult",
    "LoadSpec",
    "key_of",
    "run_load",
    "watch_key",
]

VALUE = b"v" * 256
WATCH_KEY = b"watch/key"
# How long a worker may take to start, connect and warm up before the run is abandoned.
START_TIMEOUT = 60.0
RPC_TIMEOUT = 30.0
CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
)


class LoadKind(enum.IntEnum):
    """What a worker does."""

    PUT = 1  # sequential puts per client task, random 8-byte keys
    RANGE_LINEARIZABLE = 2  # single-key linearizable ranges over preloaded keys
    RANGE_SERIALIZABLE = 3
    BULK_PUT = 4  # puts of keys [first, first+count) split over the tasks, then stop
    WATCH = 5  # open watchers on WATCH_KEY, record (revision, receive time) of events
    WATCH_WRITER = 6  # one client: put WATCH_KEY every ``interval``, record ack times
    RANGE_MANY = 7  # linearizable ranges returning all of keys [0, key_count)


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """One worker process's share of a load."""

    kind: LoadKind
    endpoints: tuple[str, ...]
    clients: int = 1  # concurrent tasks in this worker
    seconds: float = 5.0  # measured window (BULK_PUT: ignored, runs until done)
    warmup: float = 1.0
    key_count: int = 1000  # RANGE: keys [0, key_count) exist; BULK_PUT: how many to put
    first_key: int = 0  # BULK_PUT: first key number
    channels: int = 2  # gRPC channels (HTTP/2 connections) per worker
    interval: float = 0.02  # WATCH_WRITER: pause between puts
    value_size: int = 256  # PUT, BULK_PUT
    # WATCH: watches per stream, each on its own key ``watch_key(first_key + ...)``
    # (0: one watch per stream on WATCH_KEY); WATCH_WRITER: put those keys in turn.
    watch_keys: int = 0
    seed: int = 1


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What one worker measured; times are ``time.monotonic()`` (system-wide on Linux)."""

    kind: LoadKind
    ops: int
    errors: int
    started: float  # start of the measured window
    wall_s: float
    cpu_s: float
    latencies: tuple[float, ...] = ()
    # WATCH: (revision, receive time); WATCH_WRITER: (revision, acknowledgement time).
    events: tuple[tuple[int, float], ...] = ()
    first_error: str = ""


def key_of(i: int) -> bytes:
    """The 8-byte key number ``i``."""
    return b"%08d" % i


def watch_key(i: int) -> bytes:
    """The key of distinct watcher number ``i``."""
    return b"watch/%08d" % i


@dataclass
class _Tally:
    ops: int = 0
    errors: int = 0
    first_error: str = ""
    latencies: list[float] = field(default_factory=list)
    events: list[tuple[int, float]] = field(default_factory=list)
    # Set by loads that measure a window of their own (after warm-up): (start, wall, cpu).
    window: tuple[float, float, float] | None = None

    def error(self, err: BaseException) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = f"{type(err).__name__}: {err}"[:300]


Op = Callable[[rpc_pb2_grpc.KVStub, random.Random], Awaitable[None]]


def _op_for(spec: LoadSpec) -> Op:
    value = VALUE if spec.value_size == len(VALUE) else b"v" * spec.value_size
    # Large values go to a small key space, so the store holds a bounded amount of them.
    key_space = 100_000_000 if spec.value_size <= 4096 else 64

    async def put(kv: rpc_pb2_grpc.KVStub, rng: random.Random) -> None:
        key = key_of(rng.randrange(key_space))
        await kv.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=RPC_TIMEOUT)

    serializable = spec.kind == LoadKind.RANGE_SERIALIZABLE

    async def get(kv: rpc_pb2_grpc.KVStub, rng: random.Random) -> None:
        req = rpc_pb2.RangeRequest(
            key=key_of(rng.randrange(spec.key_count)), serializable=serializable
        )
        resp = await kv.Range(req, timeout=RPC_TIMEOUT)
        if len(resp.kvs) != 1:
            raise RuntimeError(f"expected one key, got {len(resp.kvs)}: keys not preloaded?")

    async def get_many(kv: rpc_pb2_grpc.KVStub, rng: random.Random) -> None:
        req = rpc_pb2.RangeRequest(key=key_of(0), range_end=key_of(spec.key_count))
        resp = await kv.Range(req, timeout=RPC_TIMEOUT)
        if len(resp.kvs) != spec.key_count:
            raise RuntimeError(f"expected {spec.key_count} keys, got {len(resp.kvs)}")

    if spec.kind == LoadKind.PUT:
        return put
    return get_many if spec.kind == LoadKind.RANGE_MANY else get


async def _closed_loop(
    spec: LoadSpec, stubs: Sequence[rpc_pb2_grpc.KVStub], barrier: Barrier
) -> _Tally:
    """``spec.clients`` tasks, each issuing one request at a time: warm-up, barrier, measure."""
    op = _op_for(spec)
    tally = _Tally()
    measuring = False
    deadline = time.monotonic() + spec.warmup

    async def client(n: int) -> None:
        rng = random.Random(spec.seed * 100_003 + n)
        kv = stubs[n % len(stubs)]
        while time.monotonic() < deadline:
            start = time.monotonic()
            try:
                await op(kv, rng)
            except (grpc.RpcError, RuntimeError) as err:
                if measuring:
                    tally.error(err)
                continue
            if measuring:
                tally.ops += 1
                tally.latencies.append(time.monotonic() - start)

    await asyncio.gather(*(client(n) for n in range(spec.clients)))
    await asyncio.to_thread(barrier.wait, START_TIMEOUT)
    measuring = True
    wall0, cpu0 = time.monotonic(), time.process_time()
    deadline = wall0 + spec.seconds
    await asyncio.gather(*(client(n) for n in range(spec.clients)))
    tally.window = (wall0, time.monotonic() - wall0, time.process_time() - cpu0)
    return tally


async def _bulk_put(
    spec: LoadSpec, stubs: Sequence[rpc_pb2_grpc.KVStub], barrier: Barrier
) -> _Tally:
    """Put keys [first_key, first_key + key_count), one request at a time per task."""
    await asyncio.to_thread(barrier.wait, START_TIMEOUT)
    tally = _Tally()
    wall0, cpu0 = time.monotonic(), time.process_time()
    todo = iter(range(spec.first_key, spec.first_key + spec.key_count))
    value = VALUE if spec.value_size == len(VALUE) else b"v" * spec.value_size

    async def client(n: int) -> None:
        kv = stubs[n % len(stubs)]
        for i in todo:
            req = rpc_pb2.PutRequest(key=key_of(i), value=value)
            for _attempt in range(5):
                try:
                    await kv.Put(req, timeout=RPC_TIMEOUT)
                except grpc.RpcError as err:
                    tally.error(err)
                    continue
                tally.ops += 1
                break

    await asyncio.gather(*(client(n) for n in range(spec.clients)))
    tally.window = (wall0, time.monotonic() - wall0, time.process_time() - cpu0)
    return tally


async def _watchers(
    spec: LoadSpec, channels: Sequence[grpc.aio.Channel], barrier: Barrier
) -> _Tally:
    """Open ``spec.clients`` watch streams, each with one watch on WATCH_KEY or with
    ``spec.watch_keys`` watches on distinct keys; record every event's arrival."""
    tally = _Tally()
    calls = []
    per_stream = max(1, spec.watch_keys)
    for n in range(spec.clients):
        call = rpc_pb2_grpc.WatchStub(channels[n % len(channels)]).Watch()
        for j in range(per_stream):
            key = (
                watch_key(spec.first_key + n * per_stream + j) if spec.watch_keys else WATCH_KEY
            )
            create = rpc_pb2.WatchCreateRequest(key=key)
            await call.write(rpc_pb2.WatchRequest(create_request=create))
        for _ in range(per_stream):
            created = await asyncio.wait_for(call.read(), START_TIMEOUT)
            if not created.created:
                raise RuntimeError(f"watch not created: {created}")
        calls.append(call)

    async def receive(call: Any) -> None:
        while True:
            resp = await call.read()
            if resp is grpc.aio.EOF:
                return
            now = time.monotonic()
            for ev in resp.events:
                tally.events.append((int(ev.kv.mod_revision), now))
                tally.ops += 1

    tasks = [asyncio.create_task(receive(c)) for c in calls]
    await asyncio.to_thread(barrier.wait, START_TIMEOUT)
    # The writer runs for ``seconds``; the grace covers the last events in flight.
    await asyncio.sleep(spec.seconds + spec.warmup + 1.0)
    for c in calls:
        c.cancel()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return tally


async def _watch_writer(
    spec: LoadSpec, stubs: Sequence[rpc_pb2_grpc.KVStub], barrier: Barrier
) -> _Tally:
    """Put WATCH_KEY every ``interval`` for ``seconds`` after a warm-up; record acks."""
    tally = _Tally()
    await asyncio.to_thread(barrier.wait, START_TIMEOUT)
    kv = stubs[0]
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < spec.warmup + spec.seconds:
        key = watch_key(n % spec.watch_keys) if spec.watch_keys else WATCH_KEY
        n += 1
        req = rpc_pb2.PutRequest(key=key, value=VALUE)
        try:
            resp = await kv.Put(req, timeout=RPC_TIMEOUT)
        except grpc.RpcError as err:
            tally.error(err)
            continue
        now = time.monotonic()
        if now - start >= spec.warmup:
            tally.events.append((int(resp.header.revision), now))
            tally.ops += 1
        await asyncio.sleep(spec.interval)
    return tally


async def _run(spec: LoadSpec, barrier: Barrier) -> LoadResult:
    channels = [
        grpc.aio.insecure_channel(spec.endpoints[i % len(spec.endpoints)], CHANNEL_OPTIONS)
        for i in range(max(1, spec.channels))
    ]
    stubs = [rpc_pb2_grpc.KVStub(ch) for ch in channels]
    try:
        for ch in channels:
            await asyncio.wait_for(ch.channel_ready(), START_TIMEOUT)
        wall0, cpu0 = time.monotonic(), time.process_time()
        if spec.kind == LoadKind.BULK_PUT:
            tally = await _bulk_put(spec, stubs, barrier)
        elif spec.kind == LoadKind.WATCH:
            tally = await _watchers(spec, channels, barrier)
        elif spec.kind == LoadKind.WATCH_WRITER:
            tally = await _watch_writer(spec, stubs, barrier)
        else:
            tally = await _closed_loop(spec, stubs, barrier)
        started, wall, cpu = tally.window or (
            wall0,
            time.monotonic() - wall0,
            time.process_time() - cpu0,
        )
    finally:
        for ch in channels:
            await ch.close()
    return LoadResult(
        kind=spec.kind,
        ops=tally.ops,
        errors=tally.errors,
        started=started,
        wall_s=wall,
        cpu_s=cpu,
        latencies=tuple(tally.latencies),
        events=tuple(tally.events),
        first_error=tally.first_error,
    )


def _worker_main(spec: LoadSpec, barrier: Barrier, out: multiprocessing.Queue[Any]) -> None:
    """Entry point of a worker process: run the load, put a LoadResult (or the error)."""
    try:
        import uvloop

        runner: Callable[[Coroutine[Any, Any, LoadResult]], LoadResult] = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        result: LoadResult | str = runner(_run(spec, barrier))
    except BaseException as err:  # the parent must hear about every failure
        barrier.abort()
        result = f"worker {spec.kind.name} failed: {type(err).__name__}: {err}"
    out.put(result)


def run_load(specs: Sequence[LoadSpec], timeout: float) -> list[LoadResult]:
    """Run one worker process per spec (all sharing a start barrier); their results.

    Raises RuntimeError when a worker fails or does not report within ``timeout``.
    """
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(specs))
    out: multiprocessing.Queue[Any] = ctx.Queue()
    procs = [
        ctx.Process(target=_worker_main, args=(replace(s, seed=s.seed + i), barrier, out))
        for i, s in enumerate(specs)
    ]
    for p in procs:
        p.start()
    results: list[LoadResult] = []
    try:
        deadline = time.monotonic() + timeout
        while len(results) < len(procs):
            try:
                got = out.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"load workers did not finish within {timeout:.0f}s") from None
            if isinstance(got, str):
                raise RuntimeError(got)
            results.append(got)
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
        with contextlib.suppress(Exception):
            out.close()
    return results
