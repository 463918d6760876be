"""/metrics: etcd's metric names, values from the running member, one registry each."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
from prometheus_client.parser import text_string_to_metric_families

from pyetcd.pb import rpc_pb2, rpc_pb2_grpc
from tests.framework import free_port

from .conftest import LiveMember, http, start_member


async def scrape(m: LiveMember) -> dict[str, float]:
    r = await http(m, "GET", "/metrics")
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(r.body.decode()):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


async def test_basic_metrics(member: LiveMember) -> None:
    async with grpc.aio.insecure_channel(member.target) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        for i in range(5):
            await kv.Put(rpc_pb2.PutRequest(key=b"m%d" % i, value=b"v"))
        status = await rpc_pb2_grpc.MaintenanceStub(ch).Status(rpc_pb2.StatusRequest())
    m = await scrape(member)
    assert m["etcd_server_has_leader"] == 1
    assert m["etcd_server_is_leader"] == 1
    assert m["etcd_server_leader_changes_seen_total"] == 1  # none -> itself, as etcd counts
    assert m["etcd_server_proposals_pending"] == 0
    assert m["etcd_server_proposals_failed_total"] == 0
    # Five puts, each a committed and applied entry.
    assert m["etcd_server_proposals_applied_total"] >= 5
    assert m["etcd_server_proposals_committed_total"] >= m["etcd_server_proposals_applied_total"]
    assert m["etcd_disk_wal_fsync_duration_seconds_count"] >= 5
    assert m['etcd_disk_wal_fsync_duration_seconds_bucket{le="+Inf"}'] >= 5
    assert m["etcd_mvcc_db_total_size_in_bytes"] > 0
    assert m["etcd_mvcc_db_total_size_in_use_in_bytes"] > 0
    assert m["process_resident_memory_bytes"] > 0
    assert m[f'etcd_server_id{{server_id="{status.header.member_id:x}"}}'] == 1
    assert m['etcd_server_version{server_version="3.5.13"}'] == 1
    assert not [name for name in m if name.endswith("_created")]  # etcd has none


async def test_health_checks_are_counted(member: LiveMember) -> None:
    before = await scrape(member)
    for _ in range(3):
        await http(member, "GET", "/health")
    after = await scrape(member)
    ok = "etcd_server_health_success_total"
    assert after[ok] - before[ok] == 3
    assert after["etcd_server_health_failures_total"] == 0


async def test_each_member_has_its_own_registry(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, stop_a, task_a = await start_member(tmp_path / "a")
    b, stop_b, task_b = await start_member(tmp_path / "b")
    try:
        ma, mb = await scrape(a), await scrape(b)
        ids_a = [k for k in ma if k.startswith("etcd_server_id{")]
        ids_b = [k for k in mb if k.startswith("etcd_server_id{")]
        assert len(ids_a) == len(ids_b) == 1 and ids_a != ids_b
    finally:
        stop_a.set()
        stop_b.set()
        assert await asyncio.wait_for(asyncio.gather(task_a, task_b), 20) == [0, 0]


def _key(name: str, **labels: str) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}" if inner else name


async def test_grpc_calls_are_counted_per_method_and_code(member: LiveMember) -> None:
    kv = {"grpc_type": "unary", "grpc_service": "etcdserverpb.KV"}
    before = await scrape(member)
    async with grpc.aio.insecure_channel(member.target) as ch:
        stub = rpc_pb2_grpc.KVStub(ch)
        await stub.Put(rpc_pb2.PutRequest(key=b"a", value=b"x" * 100))
        try:
            await stub.Range(rpc_pb2.RangeRequest(key=b""))  # etcd: key is not provided
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        else:
            raise AssertionError("an empty key must fail")
    m = await scrape(member)

    def delta(name: str, **labels: str) -> float:
        k = _key(name, **labels)
        return m[k] - before.get(k, 0)

    assert delta("grpc_server_started_total", grpc_method="Put", **kv) == 1
    assert delta("grpc_server_handled_total", grpc_method="Put", grpc_code="OK", **kv) == 1
    assert delta("grpc_server_msg_received_total", grpc_method="Put", **kv) == 1
    assert delta("grpc_server_msg_sent_total", grpc_method="Put", **kv) == 1
    assert delta("grpc_server_started_total", grpc_method="Range", **kv) == 1
    failed = {"grpc_method": "Range", "grpc_code": "InvalidArgument", **kv}
    assert delta("grpc_server_handled_total", **failed) == 1
    assert delta("grpc_server_handled_total", grpc_method="Range", grpc_code="OK", **kv) == 0
    # A failed unary call sends no message (go-grpc-prometheus counts none).
    assert delta("grpc_server_msg_sent_total", grpc_method="Range", **kv) == 0
    # Every method and code is there from the start, as etcd pre-initializes them.
    idle = {"grpc_method": "MemberAdd", "grpc_service": "etcdserverpb.Cluster"}
    assert (
        m[_key("grpc_server_handled_total", grpc_type="unary", grpc_code="DataLoss", **idle)] == 0
    )
    # Request payloads in, response payloads out (the Put alone carries > 100 bytes).
    assert delta("etcd_network_client_grpc_received_bytes_total") > 100
    assert delta("etcd_network_client_grpc_sent_bytes_total") > 0
    # --metrics=basic: no handling-time histogram, as etcd.
    assert not [k for k in m if k.startswith("grpc_server_handling_seconds")]


async def test_store_and_lease_counters(member: LiveMember) -> None:
    before = await scrape(member)
    async with grpc.aio.insecure_channel(member.target) as ch:
        kv, lease = rpc_pb2_grpc.KVStub(ch), rpc_pb2_grpc.LeaseStub(ch)
        await kv.Put(rpc_pb2.PutRequest(key=b"k1", value=b"v1"))
        await kv.Range(rpc_pb2.RangeRequest(key=b"k1"))
        await kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"k1"))
        g = await lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=30))
        await lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=g.ID))
    m = await scrape(member)
    for name, want in (
        ("etcd_mvcc_put_total", 1),
        ("etcd_mvcc_range_total", 1),
        ("etcd_mvcc_delete_total", 1),
        ("etcd_debugging_mvcc_total_put_size_in_bytes", 4),
        ("etcd_debugging_lease_granted_total", 1),
        ("etcd_debugging_lease_revoked_total", 1),
        ("etcd_debugging_lease_ttl_total_count", 1),
        ("etcd_debugging_lease_ttl_total_sum", 30),
    ):
        assert m[name] - before.get(name, 0) == want, name
    # The backend commits these writes in a batch within its 100 ms interval: each
    # commit is observed once.
    commits = "etcd_disk_backend_commit_duration_seconds_count"
    for _ in range(50):
        if m[commits] > before.get(commits, 0):
            break
        await asyncio.sleep(0.1)
        m = await scrape(member)
    assert m[commits] > before.get(commits, 0)


async def test_extensive_metrics_time_each_call(tmp_path: Path) -> None:
    m, stop, task = await start_member(tmp_path, metrics="extensive")
    try:
        async with grpc.aio.insecure_channel(m.target) as ch:
            await rpc_pb2_grpc.KVStub(ch).Put(rpc_pb2.PutRequest(key=b"a", value=b"b"))
        got = await scrape(m)
        labels = {"grpc_type": "unary", "grpc_service": "etcdserverpb.KV", "grpc_method": "Put"}
        assert got[_key("grpc_server_handling_seconds_count", **labels)] == 1
        assert got[_key("grpc_server_handling_seconds_bucket", le="10.0", **labels)] == 1
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 20) == 0


async def test_listen_metrics_urls_serve_metrics_and_health_only(tmp_path: Path) -> None:
    port = free_port()
    m, stop, task = await start_member(tmp_path, listen_metrics_urls=(f"http://127.0.0.1:{port}",))
    extra = LiveMember("127.0.0.1", port, m.data_dir, m.logger)
    try:
        r = await http(extra, "GET", "/metrics")
        assert r.status == 200 and b"etcd_server_has_leader 1.0" in r.body
        assert (await http(extra, "GET", "/health")).status == 200
        assert (await http(extra, "GET", "/version")).status == 404
        assert (await http(extra, "POST", "/v3/kv/range", b"{}")).status == 404
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 20) == 0


async def test_applies_client_requests_wal_bytes_and_snapshot_saves(tmp_path: Path) -> None:
    # A raft snapshot every 5 entries: the puts below make the member save some.
    m, stop, task = await start_member(tmp_path, snapshot_count=5)
    try:
        before = await scrape(m)
        async with grpc.aio.insecure_channel(m.target) as ch:
            kv, lease = rpc_pb2_grpc.KVStub(ch), rpc_pb2_grpc.LeaseStub(ch)
            for i in range(10):
                await kv.Put(rpc_pb2.PutRequest(key=b"a%d" % i, value=b"v"))
            # etcd's clientv3 names its API version in the call's metadata.
            await kv.Range(
                rpc_pb2.RangeRequest(key=b"a"), metadata=(("client-api-version", "3.5"),)
            )
            try:  # an unknown lease fails when applied
                await lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=12345))
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.NOT_FOUND
            else:
                raise AssertionError("revoking an unknown lease must fail")
        got = await scrape(m)

        def delta(name: str, **labels: str) -> float:
            k = _key(name, **labels)
            return got.get(k, 0) - before.get(k, 0)

        applied = "etcd_server_apply_duration_seconds_count"
        assert delta(applied, version="v3", op="Put", success="true") == 10
        assert delta(applied, version="v3", op="LeaseRevoke", success="false") == 1
        assert (
            got[_key(applied, version="v3", op="Put", success="true")]
            == got[
                _key(
                    "etcd_server_apply_duration_seconds_bucket",
                    le="52.4288",
                    version="v3",
                    op="Put",
                    success="true",
                )
            ]
        )
        requests = "etcd_server_client_requests_total"
        assert delta(requests, type="unary", client_api_version="3.5") == 1
        # the 10 puts and the revoke (and this test's own scrapes are HTTP, not gRPC)
        assert delta(requests, type="unary", client_api_version="unknown") == 11
        # each put is one WAL record of more than its 20-odd bytes of request
        assert delta("etcd_disk_wal_write_bytes_total") > 10 * 20
        for name in (
            "etcd_debugging_snap_save_marshalling_duration_seconds_count",
            "etcd_snap_fsync_duration_seconds_count",
            "etcd_debugging_snap_save_total_duration_seconds_count",
        ):
            assert delta(name) >= 1, name
        assert delta("etcd_server_slow_read_indexes_total") == 0
        assert delta("etcd_server_read_indexes_failed_total") == 0
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 20) == 0
