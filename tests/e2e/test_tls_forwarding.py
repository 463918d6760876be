"""Lease calls made on a follower by a caller whose only identity is its TLS client
certificate (``--client-cert-auth``, auth enabled, no token).

The follower checks the caller itself and forwards over the peer port (peer TLS here
too), so the leader never needs to know who the caller was. Before, the follower
re-sent the call to the leader's client URL, where the caller's certificate could not
follow and the leader saw the follower's own certificate instead.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from pyetcd.pb import auth_pb2, rpc_pb2, rpc_pb2_grpc
from tests.framework import Member

from .tls_certs import CertAuthority

NAMES = ("t1", "t2", "t3")
TTL = 60


class Caller:
    """gRPC stubs for one certificate holder, per member."""

    def __init__(self, ca: CertAuthority, cert: tuple[Path, Path], ports: dict[str, int]) -> None:
        creds = grpc.ssl_channel_credentials(
            root_certificates=ca.ca_file.read_bytes(),
            private_key=cert[1].read_bytes(),
            certificate_chain=cert[0].read_bytes(),
        )
        self.channels = {n: grpc.secure_channel(f"127.0.0.1:{p}", creds) for n, p in ports.items()}

    def lease(self, name: str) -> rpc_pb2_grpc.LeaseStub:
        return rpc_pb2_grpc.LeaseStub(self.channels[name])

    def kv(self, name: str) -> rpc_pb2_grpc.KVStub:
        return rpc_pb2_grpc.KVStub(self.channels[name])

    def auth(self, name: str) -> rpc_pb2_grpc.AuthStub:
        return rpc_pb2_grpc.AuthStub(self.channels[name])

    def status(self, name: str) -> rpc_pb2.StatusResponse | None:
        try:
            st: rpc_pb2.StatusResponse = rpc_pb2_grpc.MaintenanceStub(self.channels[name]).Status(
                rpc_pb2.StatusRequest(), timeout=1
            )
        except grpc.RpcError:
            return None
        return st

    def close(self) -> None:
        for ch in self.channels.values():
            ch.close()


@pytest.fixture(scope="module")
def tls_cluster() -> Iterator[tuple[CertAuthority, dict[str, int]]]:
    """Three members, client and peer URLs over TLS, client certificates required."""
    workdir = Path(tempfile.mkdtemp(prefix="e2e-tls-fw-"))
    ca = CertAuthority(workdir)
    tls = ["--trusted-ca-file", str(ca.ca_file), "--client-cert-auth"]
    peer_tls = ["--peer-trusted-ca-file", str(ca.ca_file), "--peer-client-cert-auth"]
    members = []
    for n in NAMES:
        cert, key = ca.issue(f"member-{n}", n)
        members.append(
            Member(
                "pyetcd", n, workdir, client_scheme="https", peer_scheme="https",
                extra_args=[
                    "--cert-file", str(cert), "--key-file", str(key), *tls,
                    "--peer-cert-file", str(cert), "--peer-key-file", str(key), *peer_tls,
                    "--bcrypt-cost", "4",
                ],
            )
        )  # fmt: skip
    initial = ",".join(f"{m.name}={m.peer_url}" for m in members)
    clients = {m.name: m.client_port for m in members}
    try:
        with contextlib.ExitStack() as stack:
            for m in members:
                m.initial_cluster = initial
                stack.enter_context(m)
            yield ca, clients
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _leader_and_follower(root: Caller, timeout: float = 30.0) -> tuple[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = {n: root.status(n) for n in NAMES}
        leaders = {s.leader for s in statuses.values() if s is not None}
        if None not in statuses.values() and len(leaders) == 1 and 0 not in leaders:
            (lead,) = leaders
            by_id = {s.header.member_id: n for n, s in statuses.items() if s is not None}
            leader = by_id[lead]
            return leader, next(n for n in NAMES if n != leader)
        time.sleep(0.1)
    raise AssertionError("the TLS cluster did not elect a leader")


def _setup_auth(root: Caller, via: str) -> None:
    auth = root.auth(via)
    no_password = auth_pb2.UserAddOptions(no_password=True)
    auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="root", options=no_password), timeout=5)
    auth.RoleAdd(rpc_pb2.AuthRoleAddRequest(name="root"), timeout=5)
    auth.UserGrantRole(rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"), timeout=5)
    auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="alice", options=no_password), timeout=5)
    auth.RoleAdd(rpc_pb2.AuthRoleAddRequest(name="reader"), timeout=5)
    perm = auth_pb2.Permission(permType=auth_pb2.Permission.READ, key=b"a")
    auth.RoleGrantPermission(rpc_pb2.AuthRoleGrantPermissionRequest(name="reader", perm=perm))
    auth.UserGrantRole(rpc_pb2.AuthUserGrantRoleRequest(user="alice", role="reader"), timeout=5)
    auth.AuthEnable(rpc_pb2.AuthEnableRequest(), timeout=5)


def _lease_with_key(root: Caller, via: str, key: bytes) -> int:
    lease_id = int(root.lease(via).LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=TTL), timeout=5).ID)
    root.kv(via).Put(rpc_pb2.PutRequest(key=key, value=b"v", lease=lease_id), timeout=5)
    return lease_id


def test_cert_user_lease_calls_through_a_follower(
    tls_cluster: tuple[CertAuthority, dict[str, int]],
) -> None:
    ca, ports = tls_cluster
    root = Caller(ca, ca.issue("root", "root"), ports)
    alice = Caller(ca, ca.issue("alice", "alice"), ports)
    try:
        leader, follower = _leader_and_follower(root)
        readable = _lease_with_key(root, follower, b"a")
        secret = _lease_with_key(root, follower, b"secret")
        _setup_auth(root, follower)

        ttl = alice.lease(follower).LeaseTimeToLive(
            rpc_pb2.LeaseTimeToLiveRequest(ID=readable, keys=True), timeout=10
        )
        assert 0 < ttl.TTL <= TTL and list(ttl.keys) == [b"a"]
        renewed = alice.lease(follower).LeaseKeepAlive(
            iter([rpc_pb2.LeaseKeepAliveRequest(ID=readable)]), timeout=10
        )
        assert [(r.ID, r.TTL) for r in renewed] == [(readable, TTL)]

        for member in (follower, leader):
            # READ on the keys is asked only when they are (etcd 3.5.9, as 3.5.13)
            with pytest.raises(grpc.RpcError) as denied:
                alice.lease(member).LeaseTimeToLive(
                    rpc_pb2.LeaseTimeToLiveRequest(ID=secret, keys=True), timeout=10
                )
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED, member
            assert denied.value.details() == "etcdserver: permission denied"
            bare = alice.lease(member).LeaseTimeToLive(
                rpc_pb2.LeaseTimeToLiveRequest(ID=secret), timeout=10
            )
            assert 0 < bare.TTL <= TTL and list(bare.keys) == [], member

        # root reads every key, so root may ask about the same lease through the follower
        as_root = root.lease(follower).LeaseTimeToLive(
            rpc_pb2.LeaseTimeToLiveRequest(ID=secret, keys=True), timeout=10
        )
        assert 0 < as_root.TTL <= TTL and list(as_root.keys) == [b"secret"]
    finally:
        root.close()
        alice.close()
