"""Encode/decode round trips of frames and payloads."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from pyetcd.raft.types import Entry, EntryType, HardState
from pyetcd.wal.record import (
    Metadata,
    RecordType,
    WALSnapshot,
    decode_entry,
    decode_metadata,
    decode_snapshot,
    decode_state,
    encode_entry,
    encode_frame,
    encode_metadata,
    encode_snapshot,
    encode_state,
    length_word,
    split_length_word,
)
from pyetcd.wal.segment import scan_segment

u64 = st.integers(min_value=0, max_value=2**64 - 1)
entries = st.builds(
    Entry, term=u64, index=u64, type=st.sampled_from(list(EntryType)), data=st.binary(max_size=600)
)
states = st.builds(HardState, term=u64, vote=u64, commit=u64)
records = st.one_of(
    entries.map(lambda e: (RecordType.ENTRY, encode_entry(e))),
    states.map(lambda s: (RecordType.STATE, encode_state(s))),
    st.builds(Metadata, u64, u64).map(lambda m: (RecordType.METADATA, encode_metadata(m))),
    st.builds(WALSnapshot, u64, u64).map(lambda s: (RecordType.SNAPSHOT, encode_snapshot(s))),
)
wal_settings = settings(derandomize=True, deadline=None)


@wal_settings
@given(entries)
def test_entry_round_trip(e: Entry) -> None:
    assert decode_entry(encode_entry(e)) == e


@wal_settings
@given(states, st.builds(Metadata, u64, u64), st.builds(WALSnapshot, u64, u64))
def test_state_metadata_snapshot_round_trip(hs: HardState, md: Metadata, s: WALSnapshot) -> None:
    assert decode_state(encode_state(hs)) == hs
    assert decode_metadata(encode_metadata(md)) == md
    assert decode_snapshot(encode_snapshot(s)) == s


@wal_settings
@given(st.integers(min_value=5, max_value=2**32 - 1))
def test_length_word_round_trip_and_every_bit_flip_detected(n: int) -> None:
    word = length_word(n)
    assert split_length_word(word) == (n, -n % 8)
    for bit in range(64):
        assert split_length_word(word ^ (1 << bit)) is None, bit


@wal_settings
@given(st.lists(records, max_size=12), st.integers(min_value=0, max_value=2**32 - 1))
def test_frames_chain_and_scan_back(recs: list[tuple[RecordType, bytes]], seed: int) -> None:
    buf, crc = encode_frame(RecordType.CRC, b"", seed)
    for rtype, data in recs:
        frame, crc = encode_frame(rtype, data, crc)
        assert len(frame) % 8 == 0
        buf += frame
    scan = scan_segment("seg", buf + b"\0" * 64, None, last=False)
    assert not scan.torn and scan.end == len(buf) and scan.crc == crc
    assert [(r.type, bytes(r.data)) for r in scan.records] == [(RecordType.CRC, b""), *recs]


def test_frame_layout_matches_the_documented_format() -> None:
    frame, crc = encode_frame(RecordType.STATE, encode_state(HardState(1, 2, 3)), 0)
    word, stored_crc, rtype = struct.unpack_from("<QIB", frame)
    n = word & 0xFFFFFFFF
    assert n == 5 + len(encode_state(HardState(1, 2, 3)))
    assert word >> 56 == (0x80 | (-n % 8) if n % 8 else 0)
    assert stored_crc == crc and rtype == RecordType.STATE
    assert len(frame) == 8 + n + (-n % 8)


@wal_settings
@given(st.lists(st.tuples(st.lists(entries, max_size=3), states), min_size=1, max_size=4))
def test_wal_writes_the_frames_record_encodes(
    saves: list[tuple[list[Entry], HardState]],
) -> None:
    # The WAL's writer encodes entries and hard states inline (its own packer, no
    # encode_frame call): the bytes must be exactly encode_frame's.
    import os
    import tempfile

    from pyetcd.wal import WAL

    with tempfile.TemporaryDirectory() as d:
        w = WAL.create(os.path.join(d, "wal"), Metadata(1, 2))
        start, crc, last = w._offset, w._crc, w._hs
        expected = b""
        for ents, hs in saves:
            for e in ents:
                frame, crc = encode_frame(RecordType.ENTRY, encode_entry(e), crc)
                expected += frame
            if (hs.term, hs.vote, hs.commit) != (last.term, last.vote, last.commit) and (
                not hs.is_empty()
            ):
                frame, crc = encode_frame(RecordType.STATE, encode_state(hs), crc)
                expected += frame
                last = hs
            assert w.save_inline(hs, ents)
        path = os.path.join(d, "wal", str(w.segments()[-1]))
        with open(path, "rb") as f:
            f.seek(start)
            written = f.read(len(expected))
        w.close()
    assert written == expected
