"""Smoke test of ``bench/put_cpu.py``: one pyetcd member and the memory floor server,
a few puts each. Checks the plumbing (start, puts, CPU read from /proc, the last JSON
line, no data dir left behind), not the figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kind", ["pyetcd", "floor_memory"])
def test_put_cpu_end_to_end(tmp_path: Path, kind: str) -> None:
    cmd = [sys.executable, str(REPO / "bench" / "put_cpu.py"), "--kind", kind]
    cmd += ["--puts", "100", "--repeats", "1"]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    final = json.loads(out.stdout.strip().splitlines()[-1])
    assert final["kind"] == kind
    assert final["wall_us_per_put"] > 0
    # CPU comes in clock ticks (10 ms): 100 puts may read as 0, never as less.
    assert final["cpu_us_per_put"] >= 0 and final["main_thread_cpu_us_per_put"] >= 0
    assert len(final["runs"]) == 1
    assert list(tmp_path.iterdir()) == []  # the server's temp dir is gone
