"""/metrics: etcd's metric names, values from the running member, one registry each."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
from prometheus_client.parser import text_string_to_metric_families

from pyetcd.pb import rpc_pb2, rpc_pb2_grpc

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
    assert m['etcd_server_version{server_version="3.5.1"}'] == 1
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
