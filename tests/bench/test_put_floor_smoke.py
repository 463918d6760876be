"""Smoke test of ``bench/put_floor.py``: both floor servers and pyetcd, tiny windows.

Checks the plumbing (the floor servers start, answer Put, stop; the table and the last
JSON line come out), not the figures, which need seconds-long windows to mean anything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KINDS = ("floor_memory", "floor_fdatasync", "pyetcd")


def test_put_floor_end_to_end(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        str(REPO / "bench" / "put_floor.py"),
        "--kinds",
        ",".join(KINDS),
        "--seconds",
        "0.3",
        "--warmup",
        "0.1",
        "--repeats",
        "1",
    ]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("| server | puts/s")
    final = json.loads(lines[-1])
    assert set(final["put_1client_ops"]) == set(KINDS)
    assert all(ops > 0 for ops in final["put_1client_ops"].values())
    assert "vs_etcd" not in final  # no etcd among the kinds: no ratios
    assert list(tmp_path.iterdir()) == []  # the servers' temp dirs are gone
