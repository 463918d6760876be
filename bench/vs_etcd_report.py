"""Figures and reporting for ``bench/vs_etcd.py``: percentiles, ``etcdctl check perf``
output, machine info, the ratio line, the markdown table and the chart."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import statistics
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "RATIOS",
    "CheckPerf",
    "Ratio",
    "machine_info",
    "median_metrics",
    "parse_check_perf",
    "percentile",
    "ratios",
    "render_table",
    "write_chart",
]

Metrics = dict[str, Any]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``values`` by nearest rank; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


@dataclass(frozen=True, slots=True)
class CheckPerf:
    """What ``etcdctl check perf`` printed."""

    writes_per_s: float
    slowest_s: float
    stddev_s: float
    passed: bool
    errors: tuple[str, ...] = ()


_THROUGHPUT = re.compile(r"Throughput (?:is|too low:) (\d+) writes/s")
_SLOWEST = re.compile(r"Slowest request took (?:too long: )?([0-9.]+)s")
_STDDEV = re.compile(r"Stddev (?:is|too high:) ([0-9.]+)s")


def parse_check_perf(text: str) -> CheckPerf:
    """Parse ``etcdctl check perf`` output (3.5): the three figure lines, the error lines
    and the closing PASS/FAIL line. Raises ValueError when a figure is missing."""
    found = {}
    for name, rx in (("w", _THROUGHPUT), ("s", _SLOWEST), ("d", _STDDEV)):
        m = rx.search(text)
        if m is None:
            raise ValueError(f"no {rx.pattern!r} in etcdctl output:\n{text[-2000:]}")
        found[name] = float(m.group(1))
    # The progress bar redraws with \r; the verdict is the last whole line.
    lines = [ln.strip() for ln in text.replace("\r", "\n").splitlines() if ln.strip()]
    errors = tuple(ln for ln in lines if ln.startswith("FAIL: ERROR") or "too many errors" in ln)
    return CheckPerf(
        writes_per_s=found["w"],
        slowest_s=found["s"],
        stddev_s=found["d"],
        passed=bool(lines) and lines[-1] == "PASS",
        errors=errors,
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_mib() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def _run_text(cmd: Sequence[str], cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, cwd=cwd)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def machine_info(repo: Path, etcd: Path | None) -> Metrics:
    """The machine, the versions and the git commit the figures were measured with."""
    import grpc

    import pyetcd

    etcd_version = _run_text([str(etcd), "--version"]).splitlines()[:1] if etcd else []
    commit = _run_text(["git", "rev-parse", "HEAD"], cwd=repo)
    dirty = bool(_run_text(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo))
    try:
        uvloop_version: str | None = importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        uvloop_version = None
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "mem_total_mib": _mem_total_mib(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "etcd": etcd_version[0] if etcd_version else None,
        "pyetcd": getattr(pyetcd, "__version__", "unknown"),
        "grpcio": grpc.__version__,
        "uvloop": uvloop_version,
        "git_commit": commit,
        "git_dirty": dirty,
    }


def median_metrics(runs: Sequence[Mapping[str, Any]]) -> Metrics:
    """Per key, the median of the numeric values over ``runs`` (other values: the last);
    ``runs`` keeps every repeat for the record."""
    out: Metrics = {}
    for key in runs[-1]:
        values = [r[key] for r in runs if key in r]
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        out[key] = statistics.median(numbers) if len(numbers) == len(values) else values[-1]
    return out


@dataclass(frozen=True, slots=True)
class Ratio:
    """One entry of the final JSON line: which workload figure, and which way is better."""

    name: str
    workload: str
    metric: str
    higher_is_better: bool


RATIOS = (
    Ratio("put_1client_ops", "put_1client", "ops_per_s", True),
    Ratio("put_1member_check_perf_l", "check_perf_l", "writes_per_s", True),
    Ratio("put_3member_check_perf_m", "check_perf_m", "writes_per_s", True),
    Ratio("range_linearizable_ops", "range_linearizable", "ops_per_s", True),
    Ratio("range_serializable_ops", "range_serializable", "ops_per_s", True),
    Ratio("rss_100k_keys", "rss_100k_keys", "rss_mib", False),
    Ratio("watch_p99_latency", "watch", "p99_ms", False),
    Ratio("restart_100k_keys", "restart_100k_keys", "restart_s", False),
)


def ratios(results: Mapping[str, Mapping[str, Metrics]]) -> dict[str, float | None]:
    """``r > 1`` means pyetcd is better: pyetcd/etcd for throughput, etcd/pyetcd for
    latency, memory and time. None where a workload was not run or a figure is zero."""
    out: dict[str, float | None] = {}
    for r in RATIOS:
        py = results.get(r.workload, {}).get("pyetcd", {}).get(r.metric)
        et = results.get(r.workload, {}).get("etcd", {}).get(r.metric)
        if not isinstance(py, int | float) or not isinstance(et, int | float):
            out[r.name] = None
            continue
        num, den = (py, et) if r.higher_is_better else (et, py)
        out[r.name] = round(num / den, 3) if den > 0 else None
    return out


# (workload, metric, label) rows of the table, in the order of the issue.
TABLE_ROWS = (
    ("put_1client", "ops_per_s", "put_1client ops/s"),
    ("put_1client", "p50_ms", "put_1client p50 ms"),
    ("put_1client", "p99_ms", "put_1client p99 ms"),
    ("check_perf_l", "writes_per_s", "check perf l (1 member) writes/s"),
    ("check_perf_l", "slowest_s", "check perf l slowest s"),
    ("check_perf_l", "stddev_s", "check perf l stddev s"),
    ("check_perf_l", "verdict", "check perf l"),
    ("check_perf_m", "writes_per_s", "check perf m (3 members) writes/s"),
    ("check_perf_m", "slowest_s", "check perf m slowest s"),
    ("check_perf_m", "stddev_s", "check perf m stddev s"),
    ("check_perf_m", "verdict", "check perf m"),
    ("range_linearizable", "ops_per_s", "range linearizable ops/s (64 clients)"),
    ("range_linearizable", "p99_ms", "range linearizable p99 ms"),
    ("range_serializable", "ops_per_s", "range serializable ops/s (64 clients)"),
    ("range_serializable", "p99_ms", "range serializable p99 ms"),
    ("watch", "p99_ms", "watch p99 ms (put ack -> event, 100 watchers)"),
    ("rss_100k_keys", "rss_mib", "RSS MiB, 100k keys"),
    ("restart_100k_keys", "restart_s", "restart s, 100k keys"),
)
RATIO_OF = {(r.workload, r.metric): r.name for r in RATIOS}


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "-" if v is None else str(v)
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"
    return str(v)


def render_table(results: Mapping[str, Mapping[str, Metrics]]) -> str:
    """Markdown: figure | etcd | pyetcd | ratio, then a table of CPU use (where time goes)."""
    got = ratios(results)
    rows = ["| figure | etcd 3.5.1 | pyetcd | ratio (>1: pyetcd better) |", "|---|---:|---:|---:|"]
    for workload, metric, label in TABLE_ROWS:
        by_kind = results.get(workload)
        if not by_kind:
            continue
        et, py = by_kind.get("etcd", {}).get(metric), by_kind.get("pyetcd", {}).get(metric)
        name = RATIO_OF.get((workload, metric))
        ratio = _fmt(got.get(name)) if name else ""
        rows.append(f"| {label} | {_fmt(et)} | {_fmt(py)} | {ratio} |")
    rows += [
        "",
        "| workload | server CPU etcd | server CPU pyetcd | client CPU etcd run "
        "| client CPU pyetcd run |",
        "|---|---:|---:|---:|---:|",
    ]
    for workload, by_kind in results.items():
        # The RSS figure's CPU is that of loading the keys; the restart has none.
        prefix = "load_" if workload == "rss_100k_keys" else ""
        cells = [
            _fmt(by_kind.get(kind, {}).get(prefix + key))
            for key in ("server_cpu_cores", "client_cpu_cores")
            for kind in ("etcd", "pyetcd")
        ]
        rows.append(f"| {workload} | {' | '.join(cells)} |")
    rows.append("(CPU in cores used over the measured window, this machine has 2.)")
    return "\n".join(rows)


def write_chart(results: Mapping[str, Mapping[str, Metrics]], path: Path, title: str) -> bool:
    """A PNG with one pair of bars (etcd, pyetcd) per ratio figure; False without
    matplotlib (an optional dependency: the ``bench`` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    shown = [r for r in RATIOS if r.workload in results]
    if not shown:
        return False
    cols = 4
    rows = (len(shown) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax, r in zip(axes.flat, shown, strict=False):
        values = [results[r.workload].get(k, {}).get(r.metric) for k in ("etcd", "pyetcd")]
        heights = [float(v) if isinstance(v, int | float) else 0.0 for v in values]
        bars = ax.bar(["etcd 3.5.1", "pyetcd"], heights, color=["#419eda", "#f2b01e"])
        ax.bar_label(bars, labels=[_fmt(v) for v in values], fontsize=8)
        better = "higher" if r.higher_is_better else "lower"
        ax.set_title(f"{r.workload}\n{r.metric} ({better} is better)", fontsize=9)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True
