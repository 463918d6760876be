"""Where pyetcd's time goes during a ``bench/vs_etcd.py`` workload: py-spy on each
pyetcd member process, summarised by function (self time) and by file (inclusive).

Enabled with ``--profile DIR``. py-spy samples with ``--nonblocking`` (it does not stop
the process), yet it takes CPU of its own on a small machine, so profiled runs are
for finding hot paths, not for the figures.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["profiled", "summarise_raw"]

TOP = 20
# PYETCD_PROFILE_NATIVE=1: C/Cython frames too (grpc core, uvloop); py-spy then pauses the
# process for each sample, which slows it down more.
NATIVE = ["--native"] if os.environ.get("PYETCD_PROFILE_NATIVE") == "1" else ["--nonblocking"]
# "func (path/to/file.py:123)" as py-spy writes a frame in its raw format.
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]+)(?::\d+)?\)$")


def _short(path: str) -> str:
    """A file path from the package on: .../site-packages/grpc/aio/x.py -> grpc/aio/x.py."""
    for marker in ("site-packages/", "/lib/python3", "/work/main/"):
        if marker in path:
            tail = path.split(marker, 1)[1]
            return tail.split("/", 1)[1] if marker == "/lib/python3" and "/" in tail else tail
    return path


def _frame_key(frame: str) -> tuple[str, str]:
    m = _FRAME.match(frame.strip())
    if m is None:
        return frame.strip(), ""
    return m.group("func"), _short(m.group("file"))


def summarise_raw(text: str) -> dict[str, Any]:
    """From py-spy's raw (collapsed stack) output: samples, the top functions by self
    time and the top files by inclusive time, as percentages of all samples."""
    self_time: Counter[str] = Counter()
    by_file: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_frame_key(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        func, file = frames[-1]
        self_time[f"{func} ({file})"] += count
        for f in {file for _, file in frames if file}:
            by_file[f] += count

    def pct(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in counter.most_common(TOP)]

    return {
        "samples": total,
        "top_self_pct": pct(self_time),
        "top_files_inclusive_pct": pct(by_file),
    }


@contextlib.contextmanager
def profiled(
    out_dir: Path | None, label: str, kind: str, pids: Sequence[int]
) -> Iterator[dict[str, Any]]:
    """py-spy on ``pids`` while the block runs (pyetcd only, and only with ``out_dir``);
    the yielded dict gets ``profile`` (per pid: summary and raw file) afterwards."""
    found: dict[str, Any] = {}
    spy = shutil.which("py-spy")
    if out_dir is None or kind != "pyetcd" or spy is None:
        yield found
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    procs: list[tuple[int, Path, subprocess.Popen[bytes]]] = []
    for pid in pids:
        raw = out_dir / f"{label}-{pid}.txt"
        cmd = [spy, "record", "--format", "raw", "--rate", "100", *NATIVE,
               "--pid", str(pid), "-o", str(raw)]  # fmt: skip
        procs.append(
            (pid, raw, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        )
    try:
        yield found
    finally:
        profile: dict[str, Any] = {}
        for pid, raw, p in procs:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            text = raw.read_text() if raw.exists() else ""
            profile[str(pid)] = {"raw": str(raw), **summarise_raw(text)}
        found["profile"] = profile
