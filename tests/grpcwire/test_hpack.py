"""Our HPACK decoder against the hpack library's encoder and decoder."""

from __future__ import annotations

import hpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyetcd.grpcwire.hpack import Decoder, HPACKDecodeError

names = st.sampled_from([":path", ":method", "te", "grpc-timeout", "token", "x-a", "x-b"])
values = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=300)
blocks = st.lists(
    st.tuples(st.lists(st.tuples(names, values), max_size=6), st.booleans()),
    min_size=1,
    max_size=30,
)


@settings(max_examples=200, derandomize=True)
@given(blocks, st.sampled_from([0, 100, 4096]))
def test_decodes_what_hpack_encodes(
    seq: list[tuple[list[tuple[str, str]], bool]], size: int
) -> None:
    enc, ref, ours = hpack.Encoder(), hpack.Decoder(), Decoder()
    enc.header_table_size = size  # the next block starts with a table size update
    for headers, huffman in seq:
        block = enc.encode(headers, huffman=huffman)
        want = [(str(n), str(v)) for n, v in ref.decode(block)]
        assert ours.decode(block) == want


def test_repeated_block_is_cached_until_the_table_changes() -> None:
    enc, ours = hpack.Encoder(), Decoder()
    headers = [(":path", "/etcdserverpb.KV/Put"), ("x-a", "1")]
    first = ours.decode(enc.encode(headers))
    block = enc.encode(headers)  # now all references into the tables
    assert ours.decode(block) is ours.decode(block)
    assert ours.decode(block) == first
    # A block that adds an entry moves the table on: the same bytes mean something else.
    enc2 = hpack.Encoder()
    ours2 = Decoder()
    ours2.decode(enc2.encode([("x-a", "1")]))
    same = enc2.encode([("x-a", "1")])  # "dynamic entry 62"
    assert ours2.decode(same) == [("x-a", "1")]
    ours2.decode(enc2.encode([("x-b", "2")]))  # now entry 62 is x-b
    assert ours2.decode(same) == [("x-b", "2")]


@pytest.mark.parametrize(
    "block",
    [
        b"\x80",  # index 0
        b"\xff\x80\x80\x80\x80\x80\x01",  # integer past 2**28
        b"\xbf",  # dynamic entry 63 of an empty table
        b"\x40\x05ab",  # string past the end
        b"\x3f\xe1\x7f",  # table size update above the maximum
    ],
)
def test_malformed_blocks_raise_our_error(block: bytes) -> None:
    with pytest.raises(HPACKDecodeError):
        Decoder().decode(block)


def test_big_blocks_are_not_cached() -> None:
    # A cache of big blocks would let one connection hold hundreds of MiB.
    ours = Decoder()
    block = hpack.Encoder().encode([("x-a", "v" * 5000)], huffman=False)
    block = b"\x00" + block[1:]  # the same header, as a literal that is never indexed
    assert ours.decode(block) == [("x-a", "v" * 5000)]
    assert ours.decode(block) is not ours.decode(block)


def test_eviction_moves_the_generation_on() -> None:
    # A table of room for two entries: the third insertion evicts the oldest, and the
    # bytes that named it (dynamic entry 63) now name another entry.
    enc, ours = hpack.Encoder(), Decoder()
    enc.header_table_size = 80  # each x-?: ? entry is 32 + 4 bytes
    ours.decode(enc.encode([("x-a", "1")]))  # carries the size update, then inserts
    ours.decode(enc.encode([("x-b", "2")]))
    older = b"\xbf"  # dynamic entry 63: x-a, the older of the two
    assert ours.decode(older) == [("x-a", "1")]
    assert ours.decode(older) is ours.decode(older)  # cached
    ours.decode(enc.encode([("x-c", "3")]))  # evicts x-a
    assert ours.decode(older) == [("x-b", "2")]


def test_evicted_entry_is_no_longer_found_through_the_cache() -> None:
    enc, ours = hpack.Encoder(), Decoder()
    ours.decode(enc.encode([("x-a", "1")]))
    block = b"\xbe"  # dynamic entry 62
    assert ours.decode(block) == [("x-a", "1")]
    ours.decode(b"\x20")  # a size update to 0 empties the table
    with pytest.raises(HPACKDecodeError):
        ours.decode(block)
    ours.decode(b"\x3f\xe1\x1f")  # back to 4096: still empty
    with pytest.raises(HPACKDecodeError):
        ours.decode(block)


def test_size_update_without_eviction_still_misses_and_is_not_cached() -> None:
    enc, ours = hpack.Encoder(), Decoder()
    ours.decode(enc.encode([("x-a", "1")]))
    block = b"\xbe"
    first = ours.decode(block)
    shrink = b"\x3f\xe1\x0f"  # a size update to 2048: x-a stays
    assert ours.decode(shrink) == []
    again = ours.decode(block)
    assert again == first and again is not first  # decoded anew, not a stale hit
    update_then_ref = b"\x3f\xe1\x0f\xbe"  # a block with an update is never cached
    assert ours.decode(update_then_ref) == [("x-a", "1")]
    assert ours.decode(update_then_ref) is not ours.decode(update_then_ref)


def test_cache_is_bounded() -> None:
    # 1,000 distinct cacheable blocks (static references only): never more than the bound.
    ours = Decoder()
    for i in range(1000):
        ours.decode(b"\x82" * (1 + i % 500) + b"\x83" * (i // 500))
        assert len(ours._cache) <= 256


def test_a_cached_list_keeps_its_readers_meaning() -> None:
    enc, ours = hpack.Encoder(), Decoder()
    ours.decode(enc.encode([(":path", "/a")]))
    block = enc.encode([(":path", "/a")])
    headers = ours.decode(block)
    assert headers.meaning is None
    headers.meaning = ("/a",)
    assert ours.decode(block).meaning == ("/a",)
    ours.decode(enc.encode([("x-b", "2")]))  # the table moved: a fresh list
    assert ours.decode(block).meaning is None
