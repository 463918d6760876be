"""RawNode: the Ready contract and the input checks at the core's boundary."""

from __future__ import annotations

import pytest

from pyetcd.raft import (
    Config,
    ConfState,
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    ProposalDroppedError,
    RawNode,
    ReadState,
    ReadyContractError,
    Snapshot,
    SnapshotMetadata,
    StateType,
    StepLocalMsgError,
    StepPeerNotFoundError,
)

MT = MessageType


def new_node(node_id: int = 1, voters: tuple[int, ...] = (1,), **kw: object) -> RawNode:
    s = MemoryStorage()
    md = SnapshotMetadata(conf_state=ConfState(voters=voters), index=1, term=1)
    s.apply_snapshot(Snapshot(metadata=md))
    return RawNode(Config(id=node_id, storage=s, applied=1, **kw))  # type: ignore[arg-type]


def persist_and_advance(rn: RawNode) -> None:
    """Stand-in for the application loop: persist, (drop messages), advance."""
    st = rn.raft.raft_log.storage
    assert isinstance(st, MemoryStorage)
    rd = rn.ready()
    if rd.snapshot is not None:
        st.apply_snapshot(rd.snapshot)
    st.append(rd.entries)
    if rd.hard_state is not None:
        st.set_hard_state(rd.hard_state)
    rn.advance()


def elected_single() -> RawNode:
    rn = new_node()
    rn.campaign()
    while rn.has_ready():
        persist_and_advance(rn)
    return rn


def test_second_ready_before_advance_raises() -> None:
    rn = new_node()
    rn.campaign()
    rn.ready()
    assert not rn.has_ready()
    with pytest.raises(ReadyContractError):
        rn.ready()
    rn.advance()
    with pytest.raises(ReadyContractError):
        rn.advance()


def test_advance_without_ready_raises() -> None:
    with pytest.raises(ReadyContractError):
        new_node().advance()


def test_inputs_allowed_between_ready_and_advance() -> None:
    rn = elected_single()
    rd = rn.ready() if rn.has_ready() else None
    assert rd is None
    rn.propose(b"a")
    rd1 = rn.ready()
    rn.propose(b"b")  # allowed while rd1 is in progress; lands in the next Ready
    rn.tick()
    st = rn.raft.raft_log.storage
    assert isinstance(st, MemoryStorage)
    st.append(rd1.entries)
    rn.advance()
    rd2 = rn.ready()
    assert [e.data for e in rd1.entries] == [b"a"]
    assert [e.data for e in rd1.committed_entries] == [b"a"]
    assert [e.data for e in rd2.entries] == [b"b"]
    assert [e.data for e in rd2.committed_entries] == [b"b"]


def test_single_node_commits_in_the_ready_that_persists() -> None:
    rn = new_node()
    rn.campaign()
    assert rn.is_leader()
    rd = rn.ready()
    assert rd.soft_state is not None and rd.soft_state.raft_state == StateType.LEADER
    assert rd.hard_state == HardState(term=1, vote=1, commit=2)
    assert rd.must_sync and [e.index for e in rd.entries] == [2]
    # A sole voter's entry is committed at once: it is handed out for applying in the
    # Ready that persists it (the contract: persist first, then apply).
    assert [e.index for e in rd.committed_entries] == [2]
    st = rn.raft.raft_log.storage
    assert isinstance(st, MemoryStorage)
    st.append(rd.entries)
    rn.advance()
    assert not rn.has_ready()
    st_ = rn.status()
    assert (st_.term, st_.commit, st_.applied, st_.lead) == (1, 2, 2, 1)
    assert set(st_.progress) == {1}


def test_vote_is_in_the_same_ready_as_the_vote_response() -> None:
    rn = new_node(2, voters=(1, 2, 3))
    rn.step(Message(MT.VOTE, to=2, frm=1, term=5, index=1, log_term=1))
    rd = rn.ready()
    assert rd.hard_state == HardState(term=5, vote=1, commit=1) and rd.must_sync
    assert [(m.type, m.to, m.reject) for m in rd.messages] == [(MT.VOTE_RESP, 1, False)]


def test_step_rejects_local_messages_and_unknown_peers() -> None:
    rn = new_node(1, voters=(1, 2, 3))
    for t in (MT.HUP, MT.BEAT, MT.CHECK_QUORUM, MT.UNREACHABLE, MT.SNAP_STATUS):
        with pytest.raises(StepLocalMsgError):
            rn.step(Message(t, frm=2, to=1))
    with pytest.raises(StepPeerNotFoundError):
        rn.step(Message(MT.APP_RESP, frm=9, to=1, term=1))


def test_proposals_dropped_without_leader() -> None:
    rn = new_node(1, voters=(1, 2, 3))
    with pytest.raises(ProposalDroppedError, match="no leader"):
        rn.propose(b"x")
    rn.campaign()  # candidate now: still no leader
    with pytest.raises(ProposalDroppedError):
        rn.propose(b"x")


def test_proposal_forwarding_can_be_disabled() -> None:
    rn = new_node(2, voters=(1, 2, 3), disable_proposal_forwarding=True)
    rn.step(Message(MT.HEARTBEAT, frm=1, to=2, term=1))
    assert rn.raft.lead == 1
    with pytest.raises(ProposalDroppedError, match="forwarding"):
        rn.propose(b"x")
    fwd = new_node(2, voters=(1, 2, 3))
    fwd.step(Message(MT.HEARTBEAT, frm=1, to=2, term=1))
    fwd.propose(b"x")
    msgs = fwd.ready().messages
    assert [(m.type, m.to, m.entries[0].data) for m in msgs if m.type == MT.PROP] == [
        (MT.PROP, 1, b"x")
    ]


def test_uncommitted_budget_drops_proposals() -> None:
    rn = new_node(1, voters=(1, 2), max_uncommitted_entries_size=10)
    rn.raft.become_candidate()
    rn.raft.become_leader()
    rn.propose(b"x" * 8)
    with pytest.raises(ProposalDroppedError, match="uncommitted"):
        rn.propose(b"y" * 8)


def test_read_index_on_single_node_is_immediate() -> None:
    rn = elected_single()
    rn.read_index(b"ctx")
    rd = rn.ready()
    assert rd.read_states == (ReadState(index=2, request_ctx=b"ctx"),)
    rn.advance()


def test_sole_voter_read_index_is_what_a_read_index_round_answers() -> None:
    rn = new_node()
    assert rn.sole_voter_read_index() is None  # not leader yet
    rn.campaign()
    while rn.has_ready():
        persist_and_advance(rn)
    rn.propose(b"x")
    persist_and_advance(rn)
    got = rn.sole_voter_read_index()
    rn.read_index(b"ctx")
    rd = rn.ready()
    assert got == 3 and rd.read_states == (ReadState(index=3, request_ctx=b"ctx"),)
    rn.advance()
    three = new_node(voters=(1, 2, 3), pre_vote=False)
    three.campaign()
    for peer in (2, 3):
        three.step(Message(MT.VOTE_RESP, frm=peer, to=1, term=three.raft.term))
    assert three.is_leader() and three.sole_voter_read_index() is None


def test_conf_change_proposal_and_apply() -> None:
    from pyetcd.raft import ConfChange, ConfChangeSingle, ConfChangeType

    rn = elected_single()
    cc = ConfChange(changes=(ConfChangeSingle(ConfChangeType.ADD_LEARNER_NODE, 2),))
    rn.propose_conf_change(cc)
    rd = rn.ready()
    assert [(e.type, ConfChange.decode(e.data)) for e in rd.entries] == [
        (EntryType.CONF_CHANGE_V2, cc)
    ]
    assert [e.type for e in rd.committed_entries] == [EntryType.CONF_CHANGE_V2]
    st = rn.raft.raft_log.storage
    assert isinstance(st, MemoryStorage)
    st.append(rd.entries)
    assert rn.apply_conf_change(cc) == ConfState(voters=(1,), learners=(2,))
    rn.advance()


def test_config_validation() -> None:
    s = MemoryStorage()
    for kw, msg in (
        ({"id": 0}, "none as id"),
        ({"id": 1, "heartbeat_tick": 0}, "heartbeat"),
        ({"id": 1, "election_tick": 1, "heartbeat_tick": 1}, "election tick"),
        ({"id": 1, "max_inflight_msgs": 0}, "inflight"),
    ):
        with pytest.raises(ValueError, match=msg):
            RawNode(Config(storage=s, **kw))  # type: ignore[arg-type]


def test_restart_keeps_term_vote_and_commit() -> None:
    rn = elected_single()
    rn.propose(b"a")
    while rn.has_ready():
        persist_and_advance(rn)
    st = rn.raft.raft_log.storage
    again = RawNode(Config(id=1, storage=st, applied=3))
    assert (again.raft.term, again.raft.vote, again.raft.raft_log.committed) == (1, 1, 3)
    assert again.raft.state == StateType.FOLLOWER and not again.has_ready()
    assert again.raft.raft_log.entries(2) == [
        Entry(term=1, index=2),
        Entry(term=1, index=3, data=b"a"),
    ]
