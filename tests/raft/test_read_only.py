"""ReadOnly: pending ReadIndex requests confirmed in arrival order."""

from __future__ import annotations

from pyetcd.raft import Entry, Message, MessageType
from pyetcd.raft.read_only import ReadOnly


def req(ctx: bytes, frm: int = 0) -> Message:
    return Message(MessageType.READ_INDEX, frm=frm, entries=(Entry(data=ctx),))


def test_acks_and_advance_in_order() -> None:
    ro = ReadOnly()
    ro.add_request(5, req(b"a"))
    ro.add_request(6, req(b"b", frm=2))
    ro.add_request(7, req(b"c"))
    assert ro.last_pending_request_ctx() == b"c"
    assert ro.recv_ack(1, b"b") == {1}
    assert ro.recv_ack(3, b"b") == {1, 3}
    assert ro.recv_ack(3, b"zzz") is None
    # Confirming "b" releases "a" too (it arrived earlier), but not "c".
    done = ro.advance(b"b")
    assert [(s.index, s.req.entries[0].data) for s in done] == [(5, b"a"), (6, b"b")]
    assert ro.last_pending_request_ctx() == b"c"
    assert ro.advance(b"a") == []
    assert [s.index for s in ro.advance(b"c")] == [7]
    assert ro.last_pending_request_ctx() == b""


def test_duplicate_ctx_keeps_first_index() -> None:
    ro = ReadOnly()
    ro.add_request(5, req(b"a"))
    ro.add_request(9, req(b"a"))
    assert [s.index for s in ro.advance(b"a")] == [5]


def test_reset() -> None:
    ro = ReadOnly()
    ro.add_request(5, req(b"a"))
    ro.reset()
    assert ro.advance(b"a") == [] and ro.last_pending_request_ctx() == b""
