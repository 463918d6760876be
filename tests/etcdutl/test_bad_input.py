"""Bad input to ``pyetcdutl``: etcdutl 3.5.1's error text and exit code, and nothing
written (a refused restore leaves no data dir behind, an existing one untouched)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyetcd.bbolt import BoltReader, BoltWriter, append_sha256
from pyetcd.etcdutl.command import main
from pyetcd.server.storage import save_snapshot

from .test_snapshot import make_store


@pytest.fixture
def snapshot(tmp_path: Path) -> Path:
    src = tmp_path / "src.db"
    make_store(src, [(b"k%d" % i, b"v" * 300) for i in range(200)])
    out = tmp_path / "snap.db"
    save_snapshot(str(src), str(out))
    return out


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    # The last stderr line is the error; log lines (JSON) come before it.
    return code, out, (err.splitlines() or [""])[-1]


def restore(
    capsys: pytest.CaptureFixture[str], snap: Path, data_dir: Path, *extra: str
) -> tuple[int, str]:
    code, _, err = run(
        capsys, "snapshot", "restore", str(snap), "--data-dir", str(data_dir), *extra
    )
    return code, err


def test_truncated_snapshot(
    snapshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = snapshot.read_bytes()
    cut = tmp_path / "cut.db"
    cut.write_bytes(data[: len(data) // 2 + 100])
    assert restore(capsys, cut, tmp_path / "d") == (
        1,
        "Error: snapshot missing hash but --skip-hash-check=false",
    )
    code, err = restore(capsys, cut, tmp_path / "d", "--skip-hash-check")
    assert code == 1 and err.startswith("Error: truncated database"), err
    assert not (tmp_path / "d").exists()
    code, _, err = run(capsys, "snapshot", "status", str(cut))
    assert code == 1 and err.startswith("Error: truncated database"), err


def test_wrong_hash(snapshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = bytearray(snapshot.read_bytes())
    data[-1] ^= 0xFF
    bad = tmp_path / "bad.db"
    bad.write_bytes(bytes(data))
    code, err = restore(capsys, bad, tmp_path / "d")
    want = " ".join(str(b) for b in data[-32:])
    assert code == 1
    assert err.startswith("Error: expected sha256 [" + want + "], got [")
    assert not (tmp_path / "d").exists()


def test_corrupted_page_fails_the_hash(
    snapshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = bytearray(snapshot.read_bytes())
    data[3 * 4096 + 100] ^= 0x55
    bad = tmp_path / "bad.db"
    bad.write_bytes(bytes(data))
    code, err = restore(capsys, bad, tmp_path / "d")
    assert code == 1 and err.startswith("Error: expected sha256 ["), err
    assert not (tmp_path / "d").exists()


def test_existing_data_dir_is_refused_and_left_alone(
    snapshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "d"
    (d / "member").mkdir(parents=True)
    (d / "member" / "precious").write_bytes(b"keep")
    assert restore(capsys, snapshot, d) == (
        1,
        f'Error: data-dir "{d}" not empty or could not be read',
    )
    assert os.listdir(d / "member") == ["precious"]
    assert (d / "member" / "precious").read_bytes() == b"keep"


def test_newer_storage_version(
    snapshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    newer = tmp_path / "newer.db"
    with BoltReader(snapshot) as r, newer.open("w+b") as f:
        with BoltWriter(f) as w:
            for b in r.buckets():
                w.bucket(b)
                rows = dict(r.items(b))
                if b == b"meta":
                    rows[b"storageVersion"] = b"3.6.0"
                for k in sorted(rows):
                    w.put(b, k, rows[k])
        append_sha256(f)
    code, err = restore(capsys, newer, tmp_path / "d")
    assert code == 1 and "storage version 3.6.0" in err, err
    assert not (tmp_path / "d").exists()


def test_missing_snapshot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.db"
    assert restore(capsys, missing, tmp_path / "d") == (
        1,
        f"Error: open {missing}: no such file or directory",
    )
    assert run(capsys, "snapshot", "status", str(missing))[::2] == (
        1,
        f"Error: stat {missing}: no such file or directory",
    )
    assert not (tmp_path / "d").exists()


def test_not_a_bbolt_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "sqlite.db"
    make_store(src, [(b"a", b"b")])
    code, err = restore(capsys, src, tmp_path / "d", "--skip-hash-check")
    assert code == 1 and err.startswith("Error: invalid database"), err
    assert not (tmp_path / "d").exists()


def test_usage_errors(snapshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "snapshot", "status")[::2] == (
        128,
        "Error: snapshot status requires exactly one argument",
    )
    assert run(capsys, "snapshot", "status", str(snapshot), "-w", "yaml")[::2] == (
        4,
        "Error: unsupported output format",
    )
    assert run(capsys, "snapshot", "restore", str(snapshot))[::2] == (
        1,
        'Error: required flag(s) "data-dir" not set',
    )
    code, err = restore(capsys, snapshot, tmp_path / "d", "--bump-revision", "10")
    assert (code, err) == (1, "Error: --mark-compacted required if --bump-revision > 0")
    code, err = restore(capsys, snapshot, tmp_path / "d", "--name", "x")
    assert (code, err) == (
        1,
        'Error: couldn\'t find local name "x" in the initial cluster configuration',
    )
    assert not (tmp_path / "d").exists()


def test_restore_with_wal_dir(
    snapshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = restore(capsys, snapshot, tmp_path / "d", "--wal-dir", str(tmp_path / "w"))
    assert code == 0
    assert any(n.endswith(".wal") for n in os.listdir(tmp_path / "w"))
    assert not (tmp_path / "d" / "member" / "wal").exists()
    assert os.path.isfile(tmp_path / "d" / "member" / "snap" / "db")


def test_version_and_defrag_and_hashkv(
    snapshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "version")[:2] == (0, "etcdutl version: 3.5.13\nAPI version: 3.5\n")
    assert restore(capsys, snapshot, tmp_path / "d")[0] == 0
    before = run(capsys, "hashkv", str(tmp_path / "d"), "-w", "json")
    assert before[0] == 0
    assert run(capsys, "defrag", "--data-dir", str(tmp_path / "d"))[:2] == (0, "")
    assert run(capsys, "hashkv", str(tmp_path / "d"), "-w", "json")[1] == before[1]
    assert run(capsys, "defrag", "--data-dir", str(tmp_path / "none"))[::2] == (
        1,
        f"Error: cannot open database at {tmp_path / 'none' / 'member' / 'snap' / 'db'}",
    )
