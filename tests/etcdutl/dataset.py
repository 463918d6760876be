"""The varied data set the migration tests carry across, and what "identical" compares.

``fill`` writes, over gRPC, binary keys and values, overwrites, single and range deletes,
a multi-put Txn (sub revisions), a compaction in the middle of the history, two leases
with keys, a value near the request limit, users and roles with permissions, and then
enables auth. ``dump`` reads back everything the issue calls identical: every key with
its value, version, create and mod revision and lease; the history after the compaction;
HashKV at the current revision; users, roles and permissions; leases with their keys.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import grpc

from pyetcd.pb import auth_pb2, rpc_pb2, rpc_pb2_grpc

ROOT = ("root", "rootpw")
# etcd's --max-request-bytes is 1.5 MiB; a Put of this value stays just under it.
NEAR_LIMIT = 1_500_000


@dataclass(frozen=True)
class Dump:
    revision: int
    compact_revision: int
    hash_kv: int
    kvs: tuple[tuple[bytes, bytes, int, int, int, int], ...]
    # (key, value or None for a deletion) of every change after the compaction
    history: tuple[tuple[int, bytes, bytes | None], ...]
    users: tuple[tuple[str, tuple[str, ...]], ...]
    roles: tuple[tuple[str, tuple[tuple[int, bytes, bytes], ...]], ...]
    leases: tuple[tuple[int, int, tuple[bytes, ...]], ...]
    auth_enabled: bool


def _token(ch: grpc.Channel) -> list[tuple[str, str]]:
    auth = rpc_pb2_grpc.AuthStub(ch)
    resp = auth.Authenticate(
        rpc_pb2.AuthenticateRequest(name=ROOT[0], password=ROOT[1]), timeout=10
    )
    return [("token", resp.token)]


def fill(endpoint: str, seed: int = 18) -> None:
    rnd = random.Random(seed)
    with grpc.insecure_channel(endpoint, options=[("grpc.max_send_message_length", 4 << 20)]) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        lease = rpc_pb2_grpc.LeaseStub(ch)
        auth = rpc_pb2_grpc.AuthStub(ch)
        keys = [bytes([0, 255, i]) + rnd.randbytes(rnd.randrange(1, 40)) for i in range(40)]
        keys += [f"/app/{i:03d}".encode() for i in range(40)]
        for k in keys:
            kv.Put(
                rpc_pb2.PutRequest(key=k, value=rnd.randbytes(rnd.randrange(0, 300))), timeout=10
            )
        for k in keys[::3]:
            kv.Put(rpc_pb2.PutRequest(key=k, value=b"second\x00" + k), timeout=10)
        kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=keys[1]), timeout=10)
        compact_at = kv.Range(rpc_pb2.RangeRequest(key=b"x"), timeout=10).header.revision
        kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"/app/01", range_end=b"/app/02"), timeout=10)
        kv.Txn(
            rpc_pb2.TxnRequest(
                success=[
                    rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"txn/%d" % i, value=b"v"))
                    for i in range(5)
                ]
            ),
            timeout=10,
        )
        kv.Compact(rpc_pb2.CompactionRequest(revision=compact_at, physical=True), timeout=10)
        for ttl, n in ((3000, 3), (6000, 2)):
            lid = lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=ttl), timeout=10).ID
            for i in range(n):
                kv.Put(
                    rpc_pb2.PutRequest(key=b"leased/%d/%d" % (ttl, i), value=b"l", lease=lid),
                    timeout=10,
                )
        kv.Put(rpc_pb2.PutRequest(key=b"big", value=rnd.randbytes(NEAR_LIMIT)), timeout=30)
        kv.Put(rpc_pb2.PutRequest(key=keys[5], value=b"after the compaction"), timeout=10)
        kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=keys[6]), timeout=10)
        auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="root", password=ROOT[1]), timeout=10)
        auth.UserGrantRole(rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"), timeout=10)
        auth.RoleAdd(rpc_pb2.AuthRoleAddRequest(name="reader"), timeout=10)
        auth.RoleGrantPermission(
            rpc_pb2.AuthRoleGrantPermissionRequest(
                name="reader",
                perm=auth_pb2.Permission(
                    permType=auth_pb2.Permission.READ, key=b"/app/", range_end=b"/app0"
                ),
            ),
            timeout=10,
        )
        auth.RoleGrantPermission(
            rpc_pb2.AuthRoleGrantPermissionRequest(
                name="reader",
                perm=auth_pb2.Permission(permType=auth_pb2.Permission.READWRITE, key=b"txn/0"),
            ),
            timeout=10,
        )
        auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="alice", password="pw"), timeout=10)
        auth.UserGrantRole(
            rpc_pb2.AuthUserGrantRoleRequest(user="alice", role="reader"), timeout=10
        )
        auth.AuthEnable(rpc_pb2.AuthEnableRequest(), timeout=10)


def dump(endpoint: str) -> Dump:
    with grpc.insecure_channel(
        endpoint, options=[("grpc.max_receive_message_length", 16 << 20)]
    ) as ch:
        md = _token(ch)
        kv = rpc_pb2_grpc.KVStub(ch)
        rng = kv.Range(
            rpc_pb2.RangeRequest(key=b"\x00", range_end=b"\x00"), timeout=10, metadata=md
        )
        hkv = rpc_pb2_grpc.MaintenanceStub(ch).HashKV(
            rpc_pb2.HashKVRequest(revision=rng.header.revision), timeout=10, metadata=md
        )
        history = _history(ch, md, hkv.compact_revision, rng.header.revision)
        auth = rpc_pb2_grpc.AuthStub(ch)
        users = []
        for name in auth.UserList(rpc_pb2.AuthUserListRequest(), timeout=10, metadata=md).users:
            u = auth.UserGet(rpc_pb2.AuthUserGetRequest(name=name), timeout=10, metadata=md)
            users.append((name, tuple(u.roles)))
        roles = []
        for name in auth.RoleList(rpc_pb2.AuthRoleListRequest(), timeout=10, metadata=md).roles:
            r = auth.RoleGet(rpc_pb2.AuthRoleGetRequest(role=name), timeout=10, metadata=md)
            roles.append((name, tuple((p.permType, p.key, p.range_end) for p in r.perm)))
        lease = rpc_pb2_grpc.LeaseStub(ch)
        leases = []
        for ls in lease.LeaseLeases(rpc_pb2.LeaseLeasesRequest(), timeout=10, metadata=md).leases:
            ttl = lease.LeaseTimeToLive(
                rpc_pb2.LeaseTimeToLiveRequest(ID=ls.ID, keys=True), timeout=10, metadata=md
            )
            leases.append((ls.ID, ttl.grantedTTL, tuple(sorted(ttl.keys))))
        status = auth.AuthStatus(rpc_pb2.AuthStatusRequest(), timeout=10, metadata=md)
    return Dump(
        revision=rng.header.revision,
        compact_revision=hkv.compact_revision,
        hash_kv=hkv.hash,
        kvs=tuple(
            (x.key, x.value, x.version, x.create_revision, x.mod_revision, x.lease) for x in rng.kvs
        ),
        history=history,
        users=tuple(sorted(users)),
        roles=tuple(sorted(roles)),
        leases=tuple(sorted(leases)),
        auth_enabled=status.enabled,
    )


def _history(
    ch: grpc.Channel, md: list[tuple[str, str]], compact: int, rev: int
) -> tuple[tuple[int, bytes, bytes | None], ...]:
    watch = rpc_pb2_grpc.WatchStub(ch)
    req = rpc_pb2.WatchRequest(
        create_request=rpc_pb2.WatchCreateRequest(
            key=b"\x00", range_end=b"\x00", start_revision=compact + 1
        )
    )
    out: list[tuple[int, bytes, bytes | None]] = []
    done = threading.Event()

    def requests() -> Iterator[rpc_pb2.WatchRequest]:
        yield req
        # Keep the send side open: a half-closed watch stream may end before its events.
        done.wait(10)

    stream = watch.Watch(requests(), timeout=10, metadata=[*md, ("hasleader", "true")])
    for resp in stream:
        for ev in resp.events:
            out.append((ev.kv.mod_revision, ev.kv.key, None if ev.type == 1 else ev.kv.value))
        if out and out[-1][0] >= rev:
            break
    done.set()
    stream.cancel()
    return tuple(out)
