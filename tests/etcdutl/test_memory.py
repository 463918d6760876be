"""Snapshot save and restore of 100k keys stream: the server's peak RSS while it exports
and sends the snapshot, and pyetcdutl's peak while it restores it, stay a few MB above
what they hold anyway. The figures are printed (``-s`` shows them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grpc

from pyetcd.pb import rpc_pb2, rpc_pb2_grpc

from .procs import etcdctl, new_member, started

KEYS = 100_000
BATCH = 128
# Allowed growth, in MiB, over the process's own footprint.
SERVER_SLACK_MB = 24
TOOL_SLACK_MB = 24


def _status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _fill(endpoint: str) -> None:
    with grpc.insecure_channel(endpoint) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        for start in range(0, KEYS, BATCH):
            ops = [
                rpc_pb2.RequestOp(
                    request_put=rpc_pb2.PutRequest(key=b"/mem/%08d" % i, value=b"v" * 100)
                )
                for i in range(start, min(KEYS, start + BATCH))
            ]
            kv.Txn(rpc_pb2.TxnRequest(success=ops), timeout=30)


_PEAK = (
    "import resource, sys\n"
    "from pyetcd.etcdutl.command import main\n"
    "code = main(sys.argv[1:])\n"
    "sys.stderr.write('PEAK_KB %d\\n' % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    "sys.exit(code)\n"
)


def _tool_peak_kb(*args: str) -> int:
    p = subprocess.run(
        [sys.executable, "-c", _PEAK, *args], capture_output=True, text=True, timeout=600
    )
    assert p.returncode == 0, p.stderr
    return int(p.stderr.rsplit("PEAK_KB ", 1)[1].split()[0])


def test_snapshot_of_100k_keys_streams(tmp_path: Path) -> None:
    m = new_member("pyetcd", tmp_path)
    with started(m):
        _fill(m.endpoint)
        assert m.proc is not None
        pid = m.proc.pid
        before = _status_kb(pid, "VmRSS")
        # Reset the peak to now, so VmHWM tells the snapshot's own high-water mark.
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        snap = tmp_path / "snap.db"
        r = etcdctl(m.endpoint, "snapshot", "save", str(snap))
        assert r.returncode == 0, r.stderr
        peak = _status_kb(pid, "VmHWM")
        after = _status_kb(pid, "VmRSS")
    size_mb = os.path.getsize(snap) / 2**20
    restore_peak = _tool_peak_kb(
        "snapshot", "restore", str(snap), "--data-dir", str(tmp_path / "restored")
    )
    baseline = _tool_peak_kb("version")
    print(
        f"\n100k keys, snapshot {size_mb:.1f} MiB: server RSS {before / 1024:.1f} MiB before, "
        f"peak {peak / 1024:.1f} MiB during save, {after / 1024:.1f} MiB after; "
        f"pyetcdutl restore peak {restore_peak / 1024:.1f} MiB "
        f"(the tool doing nothing: {baseline / 1024:.1f} MiB)"
    )
    assert peak - before < SERVER_SLACK_MB * 1024
    assert restore_peak - baseline < TOOL_SLACK_MB * 1024
    status = _tool_peak_kb("snapshot", "status", str(snap))
    assert status - baseline < TOOL_SLACK_MB * 1024
