"""Crash and restart: every acknowledged put survives kill -9 and a graceful stop."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc
import pytest

from pyetcd.pb import rpc_pb2, rpc_pb2_grpc
from tests.framework import Member, running_member

WINDOW = 16  # puts in flight at once, so the WAL's group commit is exercised


@pytest.fixture
def member() -> Iterator[Member]:
    with running_member("pyetcd") as m:
        yield m


class Writer:
    """Keeps WINDOW puts in flight and records the acknowledged ones."""

    def __init__(self, m: Member, round_no: int) -> None:
        self.channel = grpc.insecure_channel(m.endpoint)
        self.kv = rpc_pb2_grpc.KVStub(self.channel)
        self.round = round_no
        self.acked: dict[bytes, tuple[bytes, int]] = {}
        self.lock = threading.Lock()
        self.enough = threading.Event()
        self.stopped = threading.Event()
        self.slots = threading.Semaphore(WINDOW)
        self.sent: list[grpc.Future] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self.stopped.is_set():
            self.slots.acquire()
            if self.stopped.is_set():
                break
            key = b"crash/%d/%06d" % (self.round, i)
            value = b"value-%d-%d" % (self.round, i)
            fut = self.kv.Put.future(rpc_pb2.PutRequest(key=key, value=value), timeout=10)
            fut.add_done_callback(lambda f, k=key, v=value: self._done(f, k, v))
            self.sent.append(fut)
            i += 1

    def _done(self, fut: grpc.Future, key: bytes, value: bytes) -> None:
        self.slots.release()
        try:
            rev = fut.result().header.revision
        except grpc.RpcError:
            return  # not acknowledged: may or may not have been applied
        with self.lock:
            self.acked[key] = (value, rev)
            if len(self.acked) >= 200:
                self.enough.set()

    def stop(self) -> None:
        self.stopped.set()
        self.slots.release()
        self.thread.join(10)
        self.channel.close()

    def drain(self) -> None:
        """Stops sending and waits for every put sent to be answered, so none is
        still in flight (and may yet be applied) when the caller reads the revision."""
        self.stopped.set()
        self.slots.release()
        self.thread.join(10)
        for fut in self.sent:
            fut.exception(timeout=15)
        self.channel.close()


def check_all_present(m: Member, acked: dict[bytes, tuple[bytes, int]]) -> int:
    """Every acked key has its value at its revision; returns the current revision."""
    with grpc.insecure_channel(m.endpoint) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        r = kv.Range(rpc_pb2.RangeRequest(key=b"crash/", range_end=b"crash0"), timeout=10)
    found = {x.key: (x.value, x.mod_revision) for x in r.kvs}
    missing = {k: v for k, v in acked.items() if found.get(k) != v}
    assert not missing, (
        f"{len(missing)} acknowledged puts lost or changed, e.g. {list(missing)[:3]}"
    )
    # Revisions are dense: nothing acknowledged sits above the recovered revision.
    assert max((rev for _, rev in acked.values()), default=0) <= r.header.revision
    return int(r.header.revision)


def test_kill9_during_puts_loses_no_acknowledged_put(member: Member) -> None:
    acked: dict[bytes, tuple[bytes, int]] = {}
    for round_no in range(3):
        writer = Writer(member, round_no)
        writer.thread.start()
        assert writer.enough.wait(30), "server acknowledged too few puts"
        member.kill()  # while the writer still has WINDOW puts in flight
        writer.stop()
        with writer.lock:
            acked.update(writer.acked)
        member.start()
        member.wait_ready()
        check_all_present(member, acked)


def test_sigterm_graceful_stop_and_restart(member: Member) -> None:
    writer = Writer(member, 0)
    writer.thread.start()
    assert writer.enough.wait(30)
    writer.drain()  # unlike a kill, a graceful stop follows the last answered put
    with writer.lock:
        acked = dict(writer.acked)
    before = check_all_present(member, acked)
    assert member.stop() == 0, member.log_tail()
    member.start()
    member.wait_ready()
    assert check_all_present(member, acked) == before
    # And it keeps serving writes at the next revision.
    with grpc.insecure_channel(member.endpoint) as ch:
        r = rpc_pb2_grpc.KVStub(ch).Put(rpc_pb2.PutRequest(key=b"after", value=b"x"), timeout=10)
    assert r.header.revision == before + 1


def test_restart_keeps_compaction_leases_and_revision(member: Member) -> None:
    with grpc.insecure_channel(member.endpoint) as ch:
        kv, lease = rpc_pb2_grpc.KVStub(ch), rpc_pb2_grpc.LeaseStub(ch)
        first = kv.Put(rpc_pb2.PutRequest(key=b"r/k", value=b"1"), timeout=10).header.revision
        kv.Put(rpc_pb2.PutRequest(key=b"r/k", value=b"2"), timeout=10)
        kv.Compact(rpc_pb2.CompactionRequest(revision=first + 1), timeout=10)
        g = lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=600), timeout=10)
        kv.Put(rpc_pb2.PutRequest(key=b"r/leased", value=b"x", lease=g.ID), timeout=10)
        rev = kv.Range(rpc_pb2.RangeRequest(key=b"r/k"), timeout=10).header.revision
    member.kill()
    member.start()
    member.wait_ready()
    with grpc.insecure_channel(member.endpoint) as ch:
        kv, lease = rpc_pb2_grpc.KVStub(ch), rpc_pb2_grpc.LeaseStub(ch)
        r = kv.Range(rpc_pb2.RangeRequest(key=b"r/", range_end=b"r0"), timeout=10)
        assert r.header.revision == rev
        assert [(x.key, x.value, x.lease) for x in r.kvs] == [
            (b"r/k", b"2", 0),
            (b"r/leased", b"x", g.ID),
        ]
        with pytest.raises(grpc.RpcError) as err:
            kv.Range(rpc_pb2.RangeRequest(key=b"r/k", revision=first), timeout=10)
        assert err.value.details() == "etcdserver: mvcc: required revision has been compacted"
        ttl = lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=g.ID, keys=True))
        assert ttl.grantedTTL == 600 and 0 < ttl.TTL <= 600 and list(ttl.keys) == [b"r/leased"]
