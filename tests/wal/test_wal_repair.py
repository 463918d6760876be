"""Torn tails are repaired; every other damage fails loudly and changes nothing."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest
from walhelpers import META, dir_bytes, entry, write_log

from pyetcd.raft.types import Entry, HardState
from pyetcd.wal import WAL, CorruptWALError, WALSnapshot
from pyetcd.wal.record import RecordType, decode_entry, decode_state
from pyetcd.wal.segment import Record, list_segment_names, scan_segment

SEG = 64 * 1024


def _build(d: str, n: int, segment_size: int = SEG) -> None:
    w = WAL.create(d, META, segment_size=segment_size)
    write_log(w, 1, n, size=24)
    w.close()


def _last_segment(d: str) -> str:
    return os.path.join(d, str(list_segment_names(os.listdir(d))[-1]))


def _frames(path: str) -> tuple[list[Record], int]:
    with open(path, "rb") as f:
        buf = f.read()
    scan = scan_segment(path, buf, None, last=True)
    assert not scan.torn
    return scan.records, scan.end


def _expected(records: list[Record], ends: list[int], cut: int) -> tuple[list[Entry], HardState]:
    ents: list[Entry] = []
    hs = HardState()
    for rec, end in zip(records, ends, strict=True):
        if end > cut:
            break
        if rec.type == RecordType.ENTRY:
            ents.append(decode_entry(rec.data))
        elif rec.type == RecordType.STATE:
            hs = decode_state(rec.data)
    return ents, hs


@pytest.mark.parametrize("mode", ["truncate", "zero"])
def test_torn_tail_at_every_byte_offset_of_the_last_records(tmp_path: Path, mode: str) -> None:
    pristine = str(tmp_path / "pristine")
    _build(pristine, 12)
    seg = os.path.basename(_last_segment(pristine))
    records, end = _frames(os.path.join(pristine, seg))
    with open(os.path.join(pristine, seg), "rb") as f:
        original = f.read()
    ends = [r.offset for r in records[1:]] + [end]
    first_cut = records[-6].offset  # the last three saves: entry + state records each
    work = str(tmp_path / "work")
    for cut in range(first_cut, end + 1):
        shutil.copytree(pristine, work)
        path = os.path.join(work, seg)
        if mode == "truncate":
            os.truncate(path, cut)
        else:
            with open(path, "r+b") as f:
                f.seek(cut)
                f.write(b"\0" * (SEG - cut))
        if mode == "zero":  # zeroing bytes that were zero already (padding) harms nothing
            cut = next((e for e in ends if e >= cut and not original[cut:e].strip(b"\0")), cut)
        want_entries, want_hs = _expected(records, ends, cut)
        w, r = WAL.open(work, segment_size=SEG)
        assert r.entries == want_entries, cut
        assert r.hard_state == want_hs, cut
        at_boundary = cut in ends or cut == records[0].offset
        assert os.path.exists(path + ".broken") == (not at_boundary), cut
        # later appends continue the chain and verify on the next open
        nxt = want_entries[-1].index + 1
        w.save(HardState(1, 1, nxt - 1), [entry(nxt)]).result()
        w.close()
        w, r = WAL.open(work, segment_size=SEG)
        w.close()
        assert r.entries == [*want_entries, entry(nxt)], cut
        shutil.rmtree(work)


def test_repair_keeps_the_broken_copy_byte_identical(tmp_path: Path) -> None:
    d = str(tmp_path / "wal")
    _build(d, 5)
    path = _last_segment(d)
    _records, end = _frames(path)
    os.truncate(path, end - 3)
    with open(path, "rb") as f:
        torn = f.read()
    WAL.open(d, segment_size=SEG)[0].close()
    with open(path + ".broken", "rb") as f:
        assert f.read() == torn


def _flip_positions(d: str) -> list[tuple[str, int]]:
    """Every byte before the last record of the last segment (every 3rd in older ones)."""
    names = [str(s) for s in list_segment_names(os.listdir(d))]
    out: list[tuple[str, int]] = []
    for i, name in enumerate(names):
        path = os.path.join(d, name)
        records, end = _frames(path) if i == len(names) - 1 else (None, os.path.getsize(path))
        stop = records[-1].offset if records is not None else end
        step = 1 if i == len(names) - 1 else 3
        out += [(path, p) for p in range(0, stop, step)]
    return out


def test_single_bit_flips_before_the_tail_fail_loudly_and_touch_nothing(tmp_path: Path) -> None:
    d = str(tmp_path / "wal")
    _build(d, 40, segment_size=1024)  # several short segments
    assert len(os.listdir(d)) >= 3
    before = dir_bytes(d)
    rng = random.Random(1234)
    positions = _flip_positions(d)
    assert len(positions) > 1500
    for path, pos in positions:
        bit = 1 << rng.randrange(8)
        with open(path, "r+b") as f:
            f.seek(pos)
            b = f.read(1)[0]
            f.seek(pos)
            f.write(bytes([b ^ bit]))
        flipped = dir_bytes(d)
        with pytest.raises(CorruptWALError) as info:
            WAL.open(d, segment_size=1024)
        assert info.value.path == path, (path, pos)
        assert info.value.offset % 8 == 0 and info.value.offset <= pos + 16, (path, pos)
        assert dir_bytes(d) == flipped, (path, pos)  # nothing changed on disk
        with open(path, "r+b") as f:
            f.seek(pos)
            f.write(bytes([b]))
    assert dir_bytes(d) == before
    w, r = WAL.open(d, segment_size=1024)
    w.close()
    assert [e.index for e in r.entries] == list(range(1, 41))


def test_error_names_file_and_offset(tmp_path: Path) -> None:
    d = str(tmp_path / "wal")
    _build(d, 10)
    path = _last_segment(d)
    records, _ = _frames(path)
    victim = records[4]
    with open(path, "r+b") as f:
        f.seek(victim.offset + 14)
        b = f.read(1)[0]
        f.seek(victim.offset + 14)
        f.write(bytes([b ^ 0x10]))
    with pytest.raises(CorruptWALError, match=rf"{path} at offset {victim.offset}: crc mismatch"):
        WAL.open(d, segment_size=SEG)


def test_huge_length_in_a_middle_segment_is_corruption_without_allocation(tmp_path: Path) -> None:
    d = str(tmp_path / "wal")
    _build(d, 40, segment_size=1024)
    first = os.path.join(d, str(list_segment_names(os.listdir(d))[0]))
    with open(first, "rb") as f:
        buf = f.read()
    scan = scan_segment(first, buf, None, last=False)
    victim = scan.records[2]
    from pyetcd.wal.record import length_word

    with open(first, "r+b") as f:  # a consistent length word (check bits right), 4 GiB long
        f.seek(victim.offset)
        f.write(length_word(2**32 - 1).to_bytes(8, "little"))
    with pytest.raises(CorruptWALError, match="runs past the end of the file"):
        WAL.open(d, segment_size=1024)


def test_index_gap_is_corruption(tmp_path: Path) -> None:
    d = str(tmp_path / "wal")
    w = WAL.create(d, META, segment_size=SEG)
    write_log(w, 1, 5)
    w.save(HardState(1, 1, 5), [entry(7)]).result()  # the writer trusts its caller
    w.close()
    with pytest.raises(CorruptWALError, match="gap"):
        WAL.open(d, segment_size=SEG)


def test_missing_middle_segment_is_corruption(tmp_path: Path) -> None:
    d = str(tmp_path / "wal")
    _build(d, 40, segment_size=1024)
    names = [str(s) for s in list_segment_names(os.listdir(d))]
    os.unlink(os.path.join(d, names[1]))
    with pytest.raises(CorruptWALError, match="sequence gap"):
        WAL.open(d, segment_size=1024)
    with pytest.raises(CorruptWALError):
        WAL.open(d, WALSnapshot(0, 0), segment_size=1024)
