"""Figures of the scale suite (``bench/vs_etcd_scale.py``): the final JSON line (ratios
and curves), the markdown table and one chart per curve."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.vs_etcd_report import _fmt

__all__ = ["SCALE_RATIOS", "ScaleRatio", "curves", "final_line", "render_scale_table",
           "scale_ratios", "write_scale_charts"]

Metrics = dict[str, Any]
Results = Mapping[str, Mapping[str, Metrics]]
LARGEST = "keys_largest"  # stands for keys_<largest key point> in SCALE_RATIOS


@dataclass(frozen=True, slots=True)
class ScaleRatio:
    """One ratio of the final line: the figure, which way is better, against which kind
    of server, and the issue's goal."""

    name: str
    workload: str
    metric: str
    higher_is_better: bool
    against: str
    goal: float


SCALE_RATIOS = (
    ScaleRatio("put_1client_vs_durable_etcd34", "put_1client_durable", "ops_per_s", True,
               "etcd_3.4", 0.8),
    ScaleRatio("put_1client_3members", "put_1client_3members", "ops_per_s", True, "etcd", 0.8),
    ScaleRatio("rss_1m_keys", LARGEST, "rss_mib", False, "etcd", 0.8),
    ScaleRatio("restart_1m_keys", LARGEST, "restart_s", False, "etcd", 1.0),
    ScaleRatio("watch_10k_watchers_p99", "watch_10k_watchers", "p99_ms", False, "etcd", 1.0),
    ScaleRatio("rss_10k_watchers", "watch_10k_watchers", "rss_mib", False, "etcd", 0.8),
    ScaleRatio("put_1000_clients", "put_1000_clients", "ops_per_s", True, "etcd", 0.7),
    ScaleRatio("put_1mib_values", "put_1mib_values", "ops_per_s", True, "etcd", 0.7),
    ScaleRatio("range_10k_keys_response", "range_10k_keys", "ops_per_s", True, "etcd", 0.5),
)  # fmt: skip


def _workload(r: ScaleRatio, key_points: Sequence[int]) -> str:
    return f"keys_{max(key_points)}" if r.workload == LARGEST else r.workload


def _figure(results: Results, workload: str, kind: str, metric: str) -> float | None:
    """A figure of the medians; None when missing or not a finite number (NaN: a window
    too short for two CPU samples)."""
    v = results.get(workload, {}).get(kind, {}).get(metric)
    if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
        return None
    return float(v)


def scale_ratios(results: Results, key_points: Sequence[int]) -> dict[str, float | None]:
    """``r > 1``: pyetcd better (pyetcd/other for throughput, other/pyetcd for latency,
    memory and time); None where a figure is missing or zero."""
    out: dict[str, float | None] = {}
    for r in SCALE_RATIOS:
        w = _workload(r, key_points)
        py = _figure(results, w, "pyetcd", r.metric)
        other = _figure(results, w, r.against, r.metric)
        if py is None or other is None:
            out[r.name] = None
            continue
        num, den = (py, other) if r.higher_is_better else (other, py)
        out[r.name] = round(num / den, 3) if den > 0 else None
    return out


# (label, workload, metric) of the CPU curves; the load point is added per key count.
PUT_CPU = (
    ("1 client, 1 member", "put_1client_durable", "server_cpu_s_per_1k_ops"),
    ("1 client, 3 members", "put_1client_3members", "server_cpu_s_per_1k_ops"),
    ("1000 clients", "put_1000_clients", "server_cpu_s_per_1k_ops"),
    ("8 clients, 1 MiB values", "put_1mib_values", "server_cpu_s_per_1k_ops"),
)
RANGE_CPU = (
    ("8 clients, 10k keys per range", "range_10k_keys", "server_cpu_s_per_1k_ops"),
    ("64 clients, 1 key per range", "range_1key_64clients", "server_cpu_s_per_1k_ops"),
)
KEY_CURVES = ("rss_mib", "rss_after_restart_mib", "restart_s", "load_s", "load_puts_per_s",
              "disk_mib")  # fmt: skip


def _count(n: int) -> str:
    """10000 -> 10k, 1000000 -> 1M (chart labels)."""
    for div, unit in ((1_000_000, "M"), (1000, "k")):
        if n >= div and n % div == 0:
            return f"{n // div}{unit}"
    return str(n)


def _kinds(results: Results) -> list[str]:
    seen: list[str] = []
    for by_kind in results.values():
        seen += [k for k in by_kind if k not in seen]
    return sorted(seen, key=lambda k: (k == "pyetcd", k))


def curves(results: Results, key_points: Sequence[int]) -> dict[str, Any]:
    """Per kind: figures at each key count, and server CPU-seconds per 1,000 puts and
    per 1,000 ranges at each measured point."""
    kinds = _kinds(results)
    points = sorted(key_points)
    out: dict[str, Any] = {"keys": points}
    for metric in KEY_CURVES:
        out[metric] = {
            kind: {str(n): _figure(results, f"keys_{n}", kind, metric) for n in points}
            for kind in kinds
            if any(kind in results.get(f"keys_{n}", {}) for n in points)
        }
    for curve, table in (("server_cpu_s_per_1k_puts", PUT_CPU),
                         ("server_cpu_s_per_1k_ranges", RANGE_CPU)):  # fmt: skip
        per: dict[str, dict[str, float | None]] = {}
        for kind in kinds:
            row = {
                label: _figure(results, w, kind, metric)
                for label, w, metric in table
                if kind in results.get(w, {})
            }
            if curve.endswith("puts") and points and kind in results.get(f"keys_{points[-1]}", {}):
                low = points[-2] if len(points) > 1 else 0
                row[f"loading keys {_count(low)}..{_count(points[-1])}"] = _figure(
                    results, f"keys_{points[-1]}", kind, "load_server_cpu_s_per_1k_puts"
                )
            if row:
                per[kind] = row
        out[curve] = per
    return out


def final_line(results: Results, key_points: Sequence[int]) -> dict[str, Any]:
    """``{"pyetcd_vs_etcd": {...}, "curves": {...}}``: the issue's last line."""
    return {"pyetcd_vs_etcd": scale_ratios(results, key_points),
            "curves": curves(results, key_points)}  # fmt: skip


def render_scale_table(results: Results, final: Mapping[str, Any]) -> str:
    """Markdown: the ratio figures with their goals, then the curves."""
    got = final["pyetcd_vs_etcd"]
    cv = final["curves"]
    rows = ["| figure | against | theirs | pyetcd | ratio (>1: pyetcd better) | goal |",
            "|---|---|---:|---:|---:|---:|"]  # fmt: skip
    for r in SCALE_RATIOS:
        w = _workload(r, cv["keys"])
        other = _figure(results, w, r.against, r.metric)
        py = _figure(results, w, "pyetcd", r.metric)
        rows.append(f"| {r.name} ({w} {r.metric}) | {r.against} | {_fmt(other)} | {_fmt(py)} "
                    f"| {_fmt(got.get(r.name))} | >= {r.goal} |")  # fmt: skip
    rows += ["", "| key curve | kind | " + " | ".join(str(n) for n in cv["keys"]) + " |",
             "|---|---|" + "---:|" * len(cv["keys"])]  # fmt: skip
    for metric in KEY_CURVES:
        for kind, by_n in cv[metric].items():
            rows.append(f"| {metric} | {kind} | "
                        + " | ".join(_fmt(by_n.get(str(n))) for n in cv["keys"]) + " |")
    for curve in ("server_cpu_s_per_1k_puts", "server_cpu_s_per_1k_ranges"):
        rows += ["", f"| {curve} | " + " | ".join(cv[curve]) + " |",
                 "|---|" + "---:|" * len(cv[curve])]  # fmt: skip
        labels = list(dict.fromkeys(lb for row in cv[curve].values() for lb in row))
        for label in labels:
            rows.append(f"| {label} | "
                        + " | ".join(_fmt(row.get(label)) for row in cv[curve].values()) + " |")
    return "\n".join(rows)


COLORS = {"etcd": "#419eda", "etcd_3.4": "#7fbf7f", "pyetcd": "#f2b01e"}


def write_scale_charts(
    results: Results, final: Mapping[str, Any], out: Path, stamp: str, title: str
) -> list[Path]:
    """``<stamp>.png`` (the ratio figures, one pair of bars each) and one
    ``<stamp>-<curve>.png`` per curve; [] without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written: list[Path] = []
    cv = final["curves"]

    def save(fig: Any, name: str) -> None:
        fig.suptitle(title, fontsize=8)
        fig.tight_layout()
        path = out / (f"{stamp}.png" if not name else f"{stamp}-{name}.png")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)

    fig, axes = plt.subplots(3, 3, figsize=(12, 9.6), squeeze=False)
    for ax, r in zip(axes.flat, SCALE_RATIOS, strict=False):
        w = _workload(r, cv["keys"])
        kinds = (r.against, "pyetcd")
        values = [_figure(results, w, k, r.metric) for k in kinds]
        bars = ax.bar(list(kinds), [v or 0.0 for v in values],
                      color=[COLORS.get(k, "#999") for k in kinds])  # fmt: skip
        ax.bar_label(bars, labels=[_fmt(v) for v in values], fontsize=8)
        better = "higher" if r.higher_is_better else "lower"
        ratio = final["pyetcd_vs_etcd"].get(r.name)
        ax.set_title(f"{r.name}\n{r.metric} ({better} better), ratio {_fmt(ratio)} "
                     f"(goal {r.goal})", fontsize=8)  # fmt: skip
        ax.tick_params(labelsize=8)
    save(fig, "")

    for metric, ylabel in (("rss_mib", "VmRSS after loading, MiB"),
                           ("restart_s", "SIGTERM, start -> /health OK, s"),
                           ("load_puts_per_s", "loading rate, puts/s"),
                           ("disk_mib", "data dir size, MiB")):  # fmt: skip
        if not cv[metric]:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        for kind, by_n in cv[metric].items():
            xs = [n for n in cv["keys"] if by_n.get(str(n)) is not None]
            ax.plot(xs, [by_n[str(n)] for n in xs], marker="o", label=kind,
                    color=COLORS.get(kind, "#999"))  # fmt: skip
            for x in xs:
                ax.annotate(_fmt(by_n[str(x)]), (x, by_n[str(x)]), fontsize=7,
                            textcoords="offset points", xytext=(0, 5), ha="center")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("keys of 256 B")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
        save(fig, metric)

    for curve in ("server_cpu_s_per_1k_puts", "server_cpu_s_per_1k_ranges"):
        per = cv[curve]
        if not per:
            continue
        labels = list(dict.fromkeys(lb for row in per.values() for lb in row))
        fig, ax = plt.subplots(figsize=(9, 4))
        width = 0.8 / max(1, len(per))
        for i, (kind, row) in enumerate(per.items()):
            xs = [j + i * width for j in range(len(labels))]
            vals = [row.get(lb) for lb in labels]
            bars = ax.bar(xs, [v if v else float("nan") for v in vals], width, label=kind,
                          color=COLORS.get(kind, "#999"))  # fmt: skip
            ax.bar_label(bars, labels=[_fmt(v) for v in vals], fontsize=7)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(labels))], labels, fontsize=7)
        ax.set_yscale("log")  # the points differ by orders of magnitude
        ax.set_ylabel("server CPU-seconds per 1,000 operations (log)")
        ax.legend(fontsize=8)
        save(fig, curve)
    return written
