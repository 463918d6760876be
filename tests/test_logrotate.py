"""Log rotation as lumberjack does it (etcd 3.5's --enable-log-rotation): settings read
as Go's JSON decoder reads them, rotation before a write that would not fit, rotated
files named with the time, old ones removed by count and age, compressed on request.
The flag errors are compared with etcd 3.5.1 in tests/test_cli.py; a member writing
through it is in tests/e2e/test_log_rotation.py."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from pyetcd.logrotate import LogRotation, LogRotationError, RotatingFile, parse_log_rotation

MB = 1024 * 1024
# 2026-12-07T17:00:00Z
T0 = 1796662800.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def test_etcd_default_json_and_go_decoding() -> None:
    default = (
        '{"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false}'
    )
    assert parse_log_rotation(default) == LogRotation(maxsize=100)
    # keys without regard to case, unknown keys and nulls ignored, as encoding/json
    assert parse_log_rotation('{"MaxBackups": 3, "other": 1, "maxage": null}') == LogRotation(
        maxbackups=3
    )
    assert parse_log_rotation("null") == LogRotation()
    assert LogRotation().max_bytes == 100 * MB


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('{"compress": 1}', "invalid log rotation config: json: cannot unmarshal number into "
         "Go struct field logRotationConfig.compress of type bool"),
        ('{"maxage": 1.5}', "invalid log rotation config: json: cannot unmarshal number 1.5 "
         "into Go struct field logRotationConfig.maxage of type int"),
        ('"x"', "invalid log rotation config: json: cannot unmarshal string into Go value of "
         "type embed.logRotationConfig"),
        ('{"maxsize": 1 2}', "improperly formatted log rotation config: invalid character '2' "
         "after object key:value pair"),
    ],
)
def test_bad_settings(text: str, error: str) -> None:
    with pytest.raises(LogRotationError) as info:
        parse_log_rotation(text)
    assert str(info.value) == error


def _files(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def test_rotates_before_a_write_that_would_not_fit(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "etcd.log"
    f = RotatingFile(str(path), LogRotation(maxsize=1), clock=clock)
    line = "x" * (400 * 1024 - 1) + "\n"
    f.write(line)
    f.write(line)
    assert _files(tmp_path) == ["etcd.log"]
    clock.now += 1.25
    f.write(line)  # 1.2 MB would not fit
    f.close()
    assert _files(tmp_path) == ["etcd-2026-12-07T17-00-01.250.log", "etcd.log"]
    assert (tmp_path / "etcd-2026-12-07T17-00-01.250.log").stat().st_size == 800 * 1024
    assert path.read_text() == line


def test_existing_file_is_appended_then_rotated(tmp_path: Path) -> None:
    path = tmp_path / "etcd.log"
    path.write_text("old\n")
    f = RotatingFile(str(path), LogRotation(maxsize=1), clock=Clock())
    f.write("new\n")
    f.flush()
    assert path.read_text() == "old\nnew\n"
    f.write("y" * MB)
    f.close()
    assert len(_files(tmp_path)) == 2


def test_keeps_max_backups_newest_and_compresses(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "etcd.log"
    f = RotatingFile(str(path), LogRotation(maxsize=1, maxbackups=2, compress=True), clock=clock)
    chunk = "z" * (MB - 10) + "\n"
    for i in range(5):
        clock.now = T0 + i
        f.write(chunk)
        f.wait_mill()
    f.close()
    names = _files(tmp_path)
    # five writes of one chunk: four rotations, the two newest kept and gzipped
    assert names == ["etcd-2026-12-07T17-00-03.000.log.gz", "etcd-2026-12-07T17-00-04.000.log.gz",
                     "etcd.log"]
    with gzip.open(tmp_path / names[0], "rt") as g:
        assert g.read() == chunk


def test_max_age_removes_old_backups(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "etcd.log"
    f = RotatingFile(str(path), LogRotation(maxsize=1, maxage=1), clock=clock)
    chunk = "a" * (MB - 10) + "\n"
    f.write(chunk)
    f.write(chunk)  # rotated at T0
    f.wait_mill()
    clock.now = T0 + 2 * 86400
    f.write(chunk)  # rotated two days later: the first backup is now too old
    f.close()
    names = _files(tmp_path)
    assert len(names) == 2 and "etcd.log" in names
    assert re.fullmatch(r"etcd-2026-12-09T17-00-00\.000\.log", names[0])
