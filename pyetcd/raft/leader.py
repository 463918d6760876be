"""The leader's message handling: one small function per message type.

Rule: every function here takes the ``Raft`` in the LEADER state and only changes it
through its fields and methods; none of them is called for another role.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .errors import (
    CompactedError,
    ProposalDroppedError,
    SnapshotTemporarilyUnavailableError,
    UnavailableError,
)
from .quorum import VoteResult
from .tracker import Progress, ProgressState
from .types import NONE, ConfChange, Entry, EntryType, Message, MessageType, ReadState

if TYPE_CHECKING:
    from .raft import Raft

__all__ = ["bcast_append", "bcast_heartbeat", "maybe_send_append", "step_leader"]

MT = MessageType


# -- sending ---------------------------------------------------------------------------


def maybe_send_append(r: Raft, to: int, send_if_empty: bool = True) -> bool:
    """Send the entries ``to`` is missing (or a snapshot); False if nothing was sent."""
    pr = r.trk.progress[to]
    state = pr.state
    # Progress.is_paused(), read in place (this runs on every proposal and every ack)
    if state == ProgressState.SNAPSHOT or pr.msg_app_flow_paused:
        return False
    log = r.raft_log
    last = log.last_index()
    nxt = pr.next
    if not send_if_empty and nxt == last + 1:
        # Nothing to send (the leader asks this after every acknowledgement, to keep
        # the pipeline full): the same answer as below, without reading the log.
        return False
    prev_index = nxt - 1
    try:
        prev_term = log.term(prev_index)
        ents: list[Entry] = []
        # With a full window only an empty append goes out: if all in-flight appends
        # were lost, the follower's answer to it (ack or reject) restarts the flow.
        # (RaftLog.entries(nxt) is empty past the last index, without a log read.)
        if nxt <= last and (state != ProgressState.REPLICATE or not pr.inflights.full()):
            ents = log.slice(nxt, last + 1, r.max_msg_size)
    except (CompactedError, UnavailableError):
        return _maybe_send_snapshot(r, to, pr)
    if not ents:
        if not send_if_empty:
            return False
        r.msgs.append(Message(MT.APP, to, r.id, r.term, prev_term, prev_index, (), log.committed))
        pr.update_on_entries_send(0, 0, nxt)
        return True
    r.msgs.append(
        Message(MT.APP, to, r.id, r.term, prev_term, prev_index, tuple(ents), log.committed)
    )
    nbytes = 0
    for e in ents:
        nbytes += len(e.data)
    pr.update_on_entries_send(len(ents), nbytes, nxt)
    return True


def _maybe_send_snapshot(r: Raft, to: int, pr: Progress) -> bool:
    if not pr.recent_active:
        # The follower has not answered lately; a snapshot would likely be wasted.
        return False
    try:
        snap = r.raft_log.snapshot()
    except SnapshotTemporarilyUnavailableError:
        return False
    if snap.is_empty():
        raise AssertionError("need non-empty snapshot")
    r.log(
        f"{r.id:x} [firstindex: {r.raft_log.first_index()}, commit: {r.raft_log.committed}] "
        f"sent snapshot[index: {snap.metadata.index}, term: {snap.metadata.term}] "
        f"to {to:x} [{pr!r}]"
    )
    pr.become_snapshot(snap.metadata.index)
    r.send(r.msg(MT.SNAP, to, snapshot=snap))
    return True


def bcast_append(r: Raft) -> None:
    prs = r.trk.progress
    if len(prs) == 1 and r.id in prs:
        return  # a sole member: nobody to send to
    me = r.id
    for node in sorted(prs):  # trk.visit()'s order, without the generator
        if node != me:
            maybe_send_append(r, node)


def send_heartbeat(r: Raft, to: int, ctx: bytes) -> None:
    # Never tell a follower to commit beyond what it is known to hold.
    commit = min(r.trk.progress[to].match, r.raft_log.committed)
    r.send(r.msg(MT.HEARTBEAT, to, commit=commit, context=ctx))


def bcast_heartbeat(r: Raft, ctx: bytes | None = None) -> None:
    if ctx is None:
        ctx = r.read_only.last_pending_request_ctx()
    for node, _ in r.trk.visit():
        if node != r.id:
            send_heartbeat(r, node, ctx)


def send_timeout_now(r: Raft, to: int) -> None:
    r.send(r.msg(MT.TIMEOUT_NOW, to))


# -- local messages -----------------------------------------------------------------------


def _on_beat(r: Raft, m: Message) -> None:
    bcast_heartbeat(r)


def _on_check_quorum(r: Raft, m: Message) -> None:
    if not r.trk.quorum_active():
        r.log(f"{r.id:x} stepped down to follower since quorum is not active")
        r.become_follower(r.term, NONE)
    # Mark everyone inactive; they prove themselves again within the next round.
    for node, pr in r.trk.progress.items():
        pr.recent_active = node == r.id


def _on_prop(r: Raft, m: Message) -> None:
    if not m.entries:
        raise AssertionError(f"{r.id:x} stepped empty MsgProp")
    if r.id not in r.trk.progress:
        raise ProposalDroppedError("raft proposal dropped: leader was removed")
    if r.lead_transferee != NONE:
        raise ProposalDroppedError(
            f"raft proposal dropped: leadership transfer to {r.lead_transferee:x} in progress"
        )
    ents = list(m.entries)
    for i, e in enumerate(ents):
        if e.type == EntryType.NORMAL:  # (IntEnum: 0)
            continue
        refused = _refuse_conf_change(r, ConfChange.decode(e.data))
        if refused:
            r.log(f"{r.id:x} ignoring conf change at config {r.trk.config!r}: {refused}")
            ents[i] = Entry(type=EntryType.NORMAL)
        else:
            r.pending_conf_index = r.raft_log.last_index() + i + 1
    if not r.append_entries(ents):
        raise ProposalDroppedError("raft proposal dropped: too many uncommitted entries")
    bcast_append(r)


def _refuse_conf_change(r: Raft, cc: ConfChange) -> str:
    already_joint = r.trk.config.voters.is_joint()
    if r.pending_conf_index > r.raft_log.applied:
        return "possible unapplied conf change"
    if already_joint and not cc.leave_joint():
        return "must transition out of joint config first"
    if not already_joint and cc.leave_joint():
        return "not in joint state; refusing empty conf change"
    return ""


def _on_read_index(r: Raft, m: Message) -> None:
    if r.trk.is_singleton():
        resp = _response_to_read_index_req(r, m, r.raft_log.committed)
        if resp is not None:
            r.send(resp)
        return
    if not r.committed_entry_in_current_term():
        # Until an entry of its term commits the leader does not know the true
        # commit index; hold the read until then.
        r.pending_read_index_messages.append(m)
        return
    send_read_index_response(r, m)


def send_read_index_response(r: Raft, m: Message) -> None:
    ctx = m.entries[0].data
    r.read_only.add_request(r.raft_log.committed, m)
    r.read_only.recv_ack(r.id, ctx)
    bcast_heartbeat(r, ctx)


def release_pending_read_index_messages(r: Raft) -> None:
    if not r.pending_read_index_messages or not r.committed_entry_in_current_term():
        return
    pending, r.pending_read_index_messages = r.pending_read_index_messages, []
    for m in pending:
        send_read_index_response(r, m)


def _response_to_read_index_req(r: Raft, req: Message, read_index: int) -> Message | None:
    if req.frm in (NONE, r.id):
        r.read_states.append(ReadState(read_index, req.entries[0].data))
        return None
    return r.msg(MT.READ_INDEX_RESP, req.frm, index=read_index, entries=req.entries)


# -- responses from followers ---------------------------------------------------------------


def _on_append_resp(r: Raft, m: Message, pr: Progress) -> None:
    pr.recent_active = True
    if m.reject:
        _on_append_rejected(r, m, pr)
        return
    old_paused = pr.state == ProgressState.SNAPSHOT or pr.msg_app_flow_paused  # is_paused()
    if pr.maybe_update(m.index) or (pr.match == m.index and pr.state == ProgressState.PROBE):
        if pr.state == ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state == ProgressState.SNAPSHOT and pr.match + 1 >= r.raft_log.first_index():
            # The follower caught up through the snapshot and can take entries again.
            pr.become_probe()
            pr.become_replicate()
        elif pr.state == ProgressState.REPLICATE:
            pr.inflights.free_le(m.index)
        if r.maybe_commit():
            if r.pending_read_index_messages:
                release_pending_read_index_messages(r)
            bcast_append(r)
        elif old_paused:
            maybe_send_append(r, m.frm)
        # Keep the pipeline full: send more while the window allows.
        while maybe_send_append(r, m.frm, send_if_empty=False):
            pass
        if m.frm == r.lead_transferee and pr.match == r.raft_log.last_index():
            r.log(f"{r.id:x} sent TIMEOUT_NOW to {m.frm:x} after its log is up to date")
            send_timeout_now(r, m.frm)


def _on_append_rejected(r: Raft, m: Message, pr: Progress) -> None:
    # Fast backtrack: the follower told us where its log could match; jump to the
    # last index of ours whose term is at most the follower's term there.
    next_probe = m.reject_hint
    if m.log_term > 0:
        next_probe, _ = r.raft_log.find_conflict_by_term(m.reject_hint, m.log_term)
    if pr.maybe_decr_to(m.index, next_probe):
        if pr.state == ProgressState.REPLICATE:
            pr.become_probe()
        maybe_send_append(r, m.frm)


def _on_heartbeat_resp(r: Raft, m: Message, pr: Progress) -> None:
    pr.recent_active = True
    pr.msg_app_flow_paused = False
    if pr.match < r.raft_log.last_index() or pr.state == ProgressState.PROBE:
        maybe_send_append(r, m.frm)
    if not m.context:
        return
    acks = r.read_only.recv_ack(m.frm, m.context)
    if acks is None:
        return
    if r.trk.config.voters.vote_result(dict.fromkeys(acks, True)) != VoteResult.WON:
        return
    for rs in r.read_only.advance(m.context):
        resp = _response_to_read_index_req(r, rs.req, rs.index)
        if resp is not None:
            r.send(resp)


def _on_snap_status(r: Raft, m: Message, pr: Progress) -> None:
    if pr.state != ProgressState.SNAPSHOT:
        return
    if m.reject:
        pr.pending_snapshot = 0
    pr.become_probe()
    # Wait for a heartbeat response before probing: the snapshot may still be applying.
    pr.msg_app_flow_paused = True


def _on_unreachable(r: Raft, m: Message, pr: Progress) -> None:
    # Optimistic pipelining to an unreachable follower wastes messages; probe instead.
    if pr.state == ProgressState.REPLICATE:
        pr.become_probe()


def _on_transfer_leader(r: Raft, m: Message, pr: Progress) -> None:
    if pr.is_learner:
        r.log(f"{r.id:x} is learner. Ignored transferring leadership")
        return
    transferee = m.frm
    if r.lead_transferee != NONE:
        if r.lead_transferee == transferee:
            return
        r.abort_leader_transfer()
    if transferee == r.id:
        return
    # The transfer must finish within one election timeout.
    r.election_elapsed = 0
    r.lead_transferee = transferee
    if pr.match == r.raft_log.last_index():
        send_timeout_now(r, transferee)
    else:
        maybe_send_append(r, transferee)


_LOCAL: dict[MessageType, Callable[[Raft, Message], None]] = {
    MT.BEAT: _on_beat,
    MT.CHECK_QUORUM: _on_check_quorum,
    MT.PROP: _on_prop,
    MT.READ_INDEX: _on_read_index,
}

_FROM_PEER: dict[MessageType, Callable[[Raft, Message, Progress], None]] = {
    MT.APP_RESP: _on_append_resp,
    MT.HEARTBEAT_RESP: _on_heartbeat_resp,
    MT.SNAP_STATUS: _on_snap_status,
    MT.UNREACHABLE: _on_unreachable,
    MT.TRANSFER_LEADER: _on_transfer_leader,
}


def step_leader(r: Raft, m: Message) -> None:
    handler = _LOCAL.get(m.type)
    if handler is not None:
        handler(r, m)
        return
    peer_handler = _FROM_PEER.get(m.type)
    if peer_handler is None:
        return
    pr = r.trk.progress.get(m.frm)
    if pr is None:
        return
    peer_handler(r, m, pr)
