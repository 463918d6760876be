"""How soon a follower shows a put the leader has acknowledged (pyetcd or real etcd).

Starts a 3-member cluster through ``tests.framework``, opens a watch on one follower,
then sends ``--puts`` isolated puts to the leader (``--gap`` seconds apart, so each
finds an idle cluster). After each acknowledgement it reads the key serializably from
the follower at once and waits for the follower's watch event. Prints how many of the
reads already saw the put and the watch event's delay after the acknowledgement.
etcd's followers learn a commit at once (the leader's commit-only MsgApp), so both
figures are what a client of etcd is used to; a leader that held those messages back
would show up here.

    python bench/follower_freshness.py [--kind pyetcd|etcd] [--puts 40] [--gap 0.05]

The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import queue
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

from pyetcd.pb import rpc_pb2, rpc_pb2_grpc  # noqa: E402
from tests.framework import running_cluster  # noqa: E402

KEY = b"freshness"


def measure(kind: str, puts: int, gap: float) -> dict[str, object]:
    with running_cluster(kind, 3) as c:
        leader = c.wait_leader()
        follower = next(m for m in c.members if m is not leader)
        leader_kv = rpc_pb2_grpc.KVStub(grpc.insecure_channel(leader.endpoint))
        channel = grpc.insecure_channel(follower.endpoint)
        follower_kv = rpc_pb2_grpc.KVStub(channel)
        heard: dict[int, float] = {}
        stop: queue.Queue[None] = queue.Queue()
        created = threading.Event()

        def requests() -> Iterator[rpc_pb2.WatchRequest]:
            yield rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=KEY))
            stop.get()

        def receive() -> None:
            with_stream = rpc_pb2_grpc.WatchStub(channel).Watch(requests())
            try:
                for resp in with_stream:
                    created.set()
                    for ev in resp.events:
                        heard[ev.kv.mod_revision] = time.perf_counter()
            except grpc.RpcError:
                pass  # the cluster is going away

        threading.Thread(target=receive, daemon=True).start()
        created.wait(10)
        delays_ms: list[float] = []
        fresh = 0
        for i in range(puts):
            rev = leader_kv.Put(rpc_pb2.PutRequest(key=KEY, value=b"%d" % i)).header.revision
            acked = time.perf_counter()
            got = follower_kv.Range(rpc_pb2.RangeRequest(key=KEY, serializable=True))
            fresh += bool(got.kvs) and got.kvs[0].mod_revision >= rev
            while rev not in heard and time.perf_counter() - acked < 1.0:
                time.sleep(0.0001)
            delays_ms.append((heard.get(rev, acked + 1.0) - acked) * 1000)
            time.sleep(gap)
        stop.put(None)
        delays_ms.sort()
        return {
            "kind": kind,
            "puts": puts,
            "serializable_read_saw_put": fresh,
            "watch_delay_ms_p50": round(statistics.median(delays_ms), 3),
            "watch_delay_ms_p90": round(delays_ms[int(0.9 * len(delays_ms))], 3),
            "watch_delay_ms_max": round(delays_ms[-1], 3),
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", default="pyetcd")
    ap.add_argument("--puts", type=int, default=40)
    ap.add_argument("--gap", type=float, default=0.05)
    args = ap.parse_args()
    print(json.dumps(measure(args.kind, args.puts, args.gap)))


if __name__ == "__main__":
    main()
