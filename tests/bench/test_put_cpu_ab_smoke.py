"""Smoke test of ``bench/put_cpu_ab.py``: this checkout against itself, a few puts from
each client kind. Checks the plumbing (two members, the alternating blocks, the CPU
clocks, the last JSON line, no data dir left behind), not the figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("client", ["sync", "aio"])
def test_put_cpu_ab_end_to_end(tmp_path: Path, client: str) -> None:
    cmd = [sys.executable, str(REPO / "bench" / "put_cpu_ab.py"), "--base", str(REPO)]
    cmd += ["--puts", "100", "--rounds", "1", "--block", "25"]
    cmd += ["--aio"] if client == "aio" else []
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    final = json.loads(out.stdout.strip().splitlines()[-1])
    assert final["base_cpu_us"] > 0 and final["this_cpu_us"] > 0  # ns clocks: never 0
    assert final["ratio"] == final["runs"][0]["ratio"] > 0
    assert len(final["runs"]) == 1
    assert list(tmp_path.iterdir()) == []
