"""Client-side helpers for cluster tests: puts, reads, a background writer that
records what was acknowledged, and convergence checks across members."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence

import grpc

from pyetcd.pb import rpc_pb2
from tests.framework import HarnessError, Member, wait_until

__all__ = [
    "Writer",
    "get_prefix",
    "hash_kv",
    "increasing",
    "missing_acked",
    "put",
    "put_many",
    "revision_of",
    "wait_converged",
    "wrong_revisions",
]

RPC_TIMEOUT = 2.0


def put(m: Member, key: str, value: str, timeout: float = RPC_TIMEOUT) -> rpc_pb2.PutResponse:
    resp: rpc_pb2.PutResponse = m.kv().Put(
        rpc_pb2.PutRequest(key=key.encode(), value=value.encode()), timeout=timeout
    )
    return resp


def get_prefix(
    m: Member, prefix: str, serializable: bool = False, timeout: float = 5.0
) -> dict[str, str]:
    """Every key under ``prefix`` on member ``m`` (linearizable unless told otherwise)."""
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    resp = m.kv().Range(
        rpc_pb2.RangeRequest(
            key=prefix.encode(), range_end=end.encode(), serializable=serializable
        ),
        timeout=timeout,
    )
    return {kv.key.decode(): kv.value.decode() for kv in resp.kvs}


class Writer:
    """Sequential puts ``<prefix>NNNNNN`` in a background thread, round-robin over
    ``targets``; records every acknowledged put and when it was acknowledged.

    A put that fails or times out is not retried under the same key: it may or may
    not have been applied, so it is neither expected nor forbidden afterwards.
    """

    def __init__(self, targets: Sequence[Member], prefix: str = "w/") -> None:
        self.targets = list(targets)
        self.prefix = prefix
        self.acked: dict[str, str] = {}
        # key -> header.revision of its PutResponse, in acknowledgement order.
        self.revisions: dict[str, int] = {}
        self.ack_times: list[float] = []
        self.errors: list[str] = []
        self.attempts = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def set_targets(self, targets: Sequence[Member]) -> None:
        with self._lock:
            self.targets = list(targets)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            with self._lock:
                target = self.targets[i % len(self.targets)]
            key, value = f"{self.prefix}{i:06d}", f"v{i}"
            self.attempts += 1
            try:
                resp = put(target, key, value, timeout=1.0)
            except grpc.RpcError as err:
                self.errors.append(f"{target.name}: {err.code()} {err.details()}")
                # A refused put (no leader, unreachable) comes back at once; don't spin.
                self._stop.wait(0.02)
            else:
                with self._cond:
                    self.acked[key] = value
                    self.revisions[key] = int(resp.header.revision)
                    self.ack_times.append(time.monotonic())
                    self._cond.notify_all()
            i += 1

    def wait_acks_after(self, t0: float, count: int, timeout: float) -> float:
        """Wait until ``count`` puts were acknowledged after monotonic time ``t0``;
        return the time of the first of them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                after = [t for t in self.ack_times if t > t0]
                if len(after) >= count:
                    return after[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise HarnessError(
                        f"only {len(after)}/{count} puts acknowledged in {timeout}s; "
                        f"last errors: {self.errors[-3:]}"
                    )
                self._cond.wait(left)


def revision_of(m: Member, serializable: bool = True) -> int | None:
    """The member's current store revision (a count-only Range), or None on error."""
    try:
        resp = m.kv().Range(
            rpc_pb2.RangeRequest(key=b"\0", count_only=True, serializable=serializable),
            timeout=1.0,
        )
    except grpc.RpcError:
        return None
    return int(resp.header.revision)


def hash_kv(m: Member, revision: int) -> int:
    resp = m.maintenance().HashKV(rpc_pb2.HashKVRequest(revision=revision), timeout=5.0)
    return int(resp.hash)


def wait_converged(members: Sequence[Member], timeout: float = 20.0) -> int:
    """Wait until every member has applied the same store revision and their HashKV
    at it agree; return that revision."""

    def same_revision() -> int | None:
        revs = {revision_of(m) for m in members}
        if len(revs) != 1 or None in revs:
            return None
        rev = revs.pop()
        return rev

    rev = wait_until("members at one revision", same_revision, timeout)
    hashes = {m.name: hash_kv(m, rev) for m in members}
    if len(set(hashes.values())) != 1:
        raise HarnessError(f"HashKV differs at revision {rev}: {hashes}")
    return rev


def wrong_revisions(m: Member, prefix: str, revisions: dict[str, int]) -> list[str]:
    """Keys whose mod_revision on member ``m`` is not the revision their put was
    acknowledged with (each key is written once); first few only."""
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    resp = m.kv().Range(
        rpc_pb2.RangeRequest(key=prefix.encode(), range_end=end.encode(), serializable=True),
        timeout=5.0,
    )
    have = {kv.key.decode(): int(kv.mod_revision) for kv in resp.kvs}
    bad = [
        f"{k}: acked {r}, stored {have.get(k)}" for k, r in revisions.items() if have.get(k) != r
    ]
    return bad[:10]


def increasing(values: Sequence[int]) -> bool:
    """Strictly increasing: a sequential client's acknowledged writes are ordered."""
    return all(a < b for a, b in itertools.pairwise(values))


def missing_acked(m: Member, prefix: str, acked: dict[str, str], serializable: bool) -> list[str]:
    """Acknowledged keys absent from (or different on) member ``m``; first few only."""
    have = get_prefix(m, prefix, serializable=serializable)
    bad = [k for k, v in acked.items() if have.get(k) != v]
    return bad[:10] + ([f"... {len(bad)} in all"] if len(bad) > 10 else [])


def put_many(
    m: Member, items: Sequence[tuple[str, str]], window: int = 64, timeout: float = 10.0
) -> None:
    """Put every (key, value) through member ``m`` with up to ``window`` in flight;
    raise on the first failure."""
    kv = m.kv()
    inflight: list[grpc.Future] = []
    for key, value in items:
        if len(inflight) >= window:
            inflight.pop(0).result()
        req = rpc_pb2.PutRequest(key=key.encode(), value=value.encode())
        inflight.append(kv.Put.future(req, timeout=timeout))
    for f in inflight:
        f.result()
