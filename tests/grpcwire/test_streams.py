"""The stream state table: every (state, input) pair is a transition or its typed error."""

from __future__ import annotations

import itertools

import pytest

from pyetcd.grpcwire.errors import ProtocolError, StreamClosedError
from pyetcd.grpcwire.frames import ErrorCode
from pyetcd.grpcwire.streams import TRANSITIONS, H2Stream, StreamInput, StreamState

S, In = StreamState, StreamInput
SENDS = {In.SEND_HEADERS, In.SEND_DATA, In.SEND_END_STREAM}


def stream_in(state: StreamState) -> H2Stream:
    s = H2Stream(7, 100, 100)
    s.state = state
    return s


@pytest.mark.parametrize(("state", "event"), list(itertools.product(S, In)))
def test_every_pair_moves_or_raises_its_error(state: StreamState, event: StreamInput) -> None:
    s = stream_in(state)
    if (state, event) in TRANSITIONS:
        assert s.step(event) is TRANSITIONS[state, event]
        return
    if state is S.IDLE and event not in SENDS:
        with pytest.raises(ProtocolError) as perr:
            s.step(event)
        assert (perr.value.stream_id, perr.value.error_code) == (0, ErrorCode.PROTOCOL_ERROR)
    else:
        with pytest.raises(StreamClosedError) as cerr:
            s.step(event)
        assert (cerr.value.stream_id, cerr.value.error_code) == (7, ErrorCode.STREAM_CLOSED)
    assert s.state is state  # an illegal input changes nothing


def test_rfc_9113_figure_2_paths() -> None:
    # A unary call: the client ends its side first, then the server.
    s = stream_in(S.IDLE)
    for event in (In.RECV_HEADERS, In.RECV_DATA, In.RECV_END_STREAM, In.SEND_HEADERS, In.SEND_DATA):
        s.step(event)
    assert s.state is S.HALF_CLOSED_REMOTE and not s.remote_open
    assert s.step(In.SEND_END_STREAM) is S.CLOSED
    # The server ends first; the client may still send until it ends too.
    s = stream_in(S.OPEN)
    assert s.step(In.SEND_END_STREAM) is S.HALF_CLOSED_LOCAL and s.remote_open
    assert s.step(In.RECV_DATA) is S.HALF_CLOSED_LOCAL
    assert s.step(In.RECV_END_STREAM) is S.CLOSED
    # Either reset closes from any open state; a closed stream takes late resets.
    for state in (S.OPEN, S.HALF_CLOSED_LOCAL, S.HALF_CLOSED_REMOTE, S.CLOSED):
        for reset in (In.RECV_RST_STREAM, In.SEND_RST_STREAM):
            assert stream_in(state).step(reset) is S.CLOSED
