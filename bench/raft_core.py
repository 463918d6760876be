"""Throughput of the pure Raft core: a cluster in memory (3 members by default), no I/O.

Proposals go to the leader in batches; every Ready is persisted into MemoryStorage,
its messages delivered, its committed entries counted. The figure is entries
committed and applied on ALL members per second of wall time.

Usage: python bench/raft_core.py [--batch 512] [--seconds 5] [--payload 64] [--members 3] [--calls]
The last line printed is one JSON object. ``--calls`` adds the Python function calls per
entry committed on all members (cProfile over 1,000 rounds, a figure the machine's load
does not move) and the CPU per entry of the unprofiled run (process time).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from collections import deque

from pyetcd.raft import Config, MemoryStorage, Message, RawNode, Snapshot, SnapshotMetadata
from pyetcd.raft.types import ConfState


class Cluster:
    def __init__(self, size: int) -> None:
        ids = list(range(1, size + 1))
        self.nodes: dict[int, RawNode] = {}
        self.storage: dict[int, MemoryStorage] = {}
        self.applied = dict.fromkeys(ids, 0)
        self.queue: deque[Message] = deque()
        for i in ids:
            s = MemoryStorage()
            s.apply_snapshot(
                Snapshot(metadata=SnapshotMetadata(ConfState(voters=tuple(ids)), index=1, term=1))
            )
            self.storage[i] = s
            self.nodes[i] = RawNode(Config(id=i, storage=s, rng=random.Random(i)))

    def process(self, i: int) -> None:
        node, s = self.nodes[i], self.storage[i]
        while node.has_ready():
            rd = node.ready()
            if rd.snapshot is not None:
                s.apply_snapshot(rd.snapshot)
            if rd.entries:
                s.append(rd.entries)
            if rd.hard_state is not None:
                s.set_hard_state(rd.hard_state)
            self.queue.extend(rd.messages)
            self.applied[i] += len(rd.committed_entries)
            node.advance()

    def stabilize(self) -> None:
        for i in self.nodes:
            self.process(i)
        while self.queue:
            m = self.queue.popleft()
            self.nodes[m.to].step(m)
            self.process(m.to)

    def tick(self) -> None:
        for n in self.nodes.values():
            n.tick()
        self.stabilize()


def run(batch: int, seconds: float, payload: int, members: int = 3) -> dict[str, object]:
    c = Cluster(members)
    c.nodes[1].campaign()
    c.stabilize()
    assert c.nodes[1].is_leader()
    data = [b"x" * payload] * batch
    start_applied = min(c.applied.values())
    proposed = 0
    t0 = time.perf_counter()
    c0 = time.process_time()
    deadline = t0 + seconds
    rounds = 0
    while time.perf_counter() < deadline:
        c.nodes[1].propose_many(data)
        proposed += batch
        c.stabilize()
        rounds += 1
        if rounds % 16 == 0:
            c.tick()  # heartbeats carry the final commit index to followers
    c.tick()
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    committed_all = min(c.applied.values()) - start_applied
    return {
        "committed_entries_per_s": round(committed_all / elapsed),
        "cpu_us_per_entry": round(cpu / max(committed_all, 1) * 1e6, 2),
        "batch_size": batch,
        "payload_bytes": payload,
        "members": members,
        "entries_proposed": proposed,
        "entries_committed_on_all": committed_all,
        "seconds": round(elapsed, 3),
        "python": platform.python_version(),
    }


def calls_per_entry(batch: int, payload: int, members: int = 3, rounds: int = 1000) -> float:
    import cProfile
    import pstats

    c = Cluster(members)
    c.nodes[1].campaign()
    c.stabilize()
    data = [b"x" * payload] * batch
    start = min(c.applied.values())
    prof = cProfile.Profile()
    prof.enable()
    for r in range(1, rounds + 1):
        c.nodes[1].propose_many(data)
        c.stabilize()
        if r % 16 == 0:
            c.tick()
    c.tick()
    prof.disable()
    calls = pstats.Stats(prof).total_calls  # type: ignore[attr-defined]
    return round(calls / (min(c.applied.values()) - start), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--payload", type=int, default=64)
    ap.add_argument("--members", type=int, default=3, choices=(1, 3, 5))
    ap.add_argument("--calls", action="store_true", help="count function calls per entry")
    args = ap.parse_args()
    out = run(args.batch, args.seconds, args.payload, args.members)
    if args.calls:
        out["calls_per_entry"] = calls_per_entry(args.batch, args.payload, args.members)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
