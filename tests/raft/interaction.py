"""A scripted environment of RawNodes, driven by the commands of golden files.

Every node has a MemoryStorage as its disk and a list of applied payloads as its
state machine; messages wait in one queue until a ``deliver-msgs``/``stabilize``
hands them over. Output is a stable text rendering of Readys, messages and the
core's own log lines, so a golden file reads as a trace of the protocol.

Commands (``ID`` is a node id):
  add-nodes N [voters=(..)] [learners=(..)] [index=I] [prevote=B] [checkquorum=B]
            [max-inflight=N] [max-inflight-bytes=N] [max-size=N] [max-uncommitted=N]
            [max-committed-size=N] [disable-forwarding=B] [election=N] [heartbeat=N]
            [jitter=B]
  campaign ID | propose ID DATA | propose-conf-change ID [transition=T] CHANGES...
  tick ID N | tick-heartbeat ID | tick-election ID
  process-ready ID... | deliver-msgs [drop=B] [ID...] | stabilize [ID...]
  partition IDS / IDS [/ IDS...] | cut ID ID | heal
  status ID | raft-state | raft-log ID | applied ID
  read-index ID CTX | transfer-leader from=ID to=ID
  report-unreachable ID PEER | report-snapshot ID PEER [ok=B]
  compact ID INDEX | restart ID | log-level none|info
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from datadriven import DataDrivenError, TestData

from pyetcd.raft import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    Config,
    ConfState,
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    RaftError,
    RawNode,
    Ready,
    Snapshot,
    SnapshotMetadata,
    StateType,
)

__all__ = ["InteractionEnv", "describe_entry", "describe_message", "describe_ready"]

_STATE_NAMES = {
    StateType.FOLLOWER: "StateFollower",
    StateType.CANDIDATE: "StateCandidate",
    StateType.LEADER: "StateLeader",
    StateType.PRE_CANDIDATE: "StatePreCandidate",
}

_CC_LETTERS = {
    "v": ConfChangeType.ADD_NODE,
    "l": ConfChangeType.ADD_LEARNER_NODE,
    "r": ConfChangeType.REMOVE_NODE,
    "u": ConfChangeType.UPDATE_NODE,
}
_CC_TO_LETTER = {v: k for k, v in _CC_LETTERS.items()}

_TRANSITIONS = {
    "auto": ConfChangeTransition.AUTO,
    "implicit": ConfChangeTransition.JOINT_IMPLICIT,
    "explicit": ConfChangeTransition.JOINT_EXPLICIT,
}


class _NoJitter(random.Random):
    """Randomized election timeout == election timeout: scripts stay predictable."""

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:
        return 0 if stop is None else start


# -- rendering ------------------------------------------------------------------------


def message_type_name(t: MessageType) -> str:
    return "Msg" + "".join(w.capitalize() for w in t.name.split("_"))


def describe_conf_change(cc: ConfChange) -> str:
    parts = [f"{_CC_TO_LETTER[c.type]}{c.node_id}" for c in cc.changes]
    if cc.transition != ConfChangeTransition.AUTO:
        parts.append(f"transition={cc.transition.name.lower()}")
    return " ".join(parts) if parts else "(leave joint)"


def describe_entry(e: Entry) -> str:
    if e.type == EntryType.CONF_CHANGE_V2:
        cc = describe_conf_change(ConfChange.decode(e.data))
        return f"{e.term}/{e.index} EntryConfChangeV2 {cc}"
    return f"{e.term}/{e.index} EntryNormal {json.dumps(e.data.decode(errors='replace'))}"


def _ids(ids: tuple[int, ...]) -> str:
    return "[" + " ".join(str(i) for i in ids) + "]"


def describe_conf_state(cs: ConfState) -> str:
    s = f"Voters:{_ids(cs.voters)}"
    if cs.voters_outgoing:
        s += f" VotersOutgoing:{_ids(cs.voters_outgoing)}"
    if cs.learners:
        s += f" Learners:{_ids(cs.learners)}"
    if cs.learners_next:
        s += f" LearnersNext:{_ids(cs.learners_next)}"
    if cs.auto_leave:
        s += " AutoLeave"
    return s


def describe_snapshot(s: Snapshot) -> str:
    md = s.metadata
    return f"Index:{md.index} Term:{md.term} ConfState:{describe_conf_state(md.conf_state)}"


def describe_message(m: Message) -> str:
    s = f"{m.frm}->{m.to} {message_type_name(m.type)} Term:{m.term} Log:{m.log_term}/{m.index}"
    if m.reject:
        s += f" Rejected (Hint: {m.reject_hint})"
    if m.commit:
        s += f" Commit:{m.commit}"
    if m.entries:
        s += " Entries:[" + ", ".join(describe_entry(e) for e in m.entries) + "]"
    if m.snapshot is not None and not m.snapshot.is_empty():
        s += f" Snapshot: {describe_snapshot(m.snapshot)}"
    if m.context:
        s += f" Context:{json.dumps(m.context.decode(errors='replace'))}"
    return s


def describe_hard_state(hs: HardState) -> str:
    s = f"HardState Term:{hs.term}"
    if hs.vote:
        s += f" Vote:{hs.vote}"
    return s + f" Commit:{hs.commit}"


def describe_ready(rd: Ready) -> list[str]:
    out = [f"Ready MustSync={str(rd.must_sync).lower()}:"]
    if rd.soft_state is not None:
        out.append(f"Lead:{rd.soft_state.lead} State:{_STATE_NAMES[rd.soft_state.raft_state]}")
    if rd.hard_state is not None:
        out.append(describe_hard_state(rd.hard_state))
    if rd.entries:
        out.append("Entries:")
        out.extend(describe_entry(e) for e in rd.entries)
    if rd.snapshot is not None:
        out.append(f"Snapshot {describe_snapshot(rd.snapshot)}")
    if rd.committed_entries:
        out.append("CommittedEntries:")
        out.extend(describe_entry(e) for e in rd.committed_entries)
    if rd.messages:
        out.append("Messages:")
        out.extend(describe_message(m) for m in rd.messages)
    if rd.read_states:
        out.append("ReadStates:")
        out.extend(
            f"Index:{rs.index} RequestCtx:{json.dumps(rs.request_ctx.decode())}"
            for rs in rd.read_states
        )
    return out


# -- the environment ----------------------------------------------------------------------


class SnapOverrideStorage(MemoryStorage):
    """A MemoryStorage whose ``snapshot()`` is the node's applied state right now,
    as an application would produce on demand for a follower that needs one."""

    def __init__(self) -> None:
        super().__init__()
        self.snapshot_override: Callable[[], Snapshot] | None = None

    def snapshot(self) -> Snapshot:
        if self.snapshot_override is not None:
            return self.snapshot_override()
        return super().snapshot()


@dataclass(slots=True)
class Node:
    """One member: its RawNode, its 'disk' and its state machine."""

    id: int
    config: Config
    storage: SnapOverrideStorage
    rawnode: RawNode
    # The state machine: (index, payload) of every applied non-empty normal entry.
    applied: list[tuple[int, str]] = field(default_factory=list)
    # (index, ConfState) after every applied conf change, to snapshot at any index.
    conf_states: list[tuple[int, ConfState]] = field(default_factory=list)


class InteractionEnv:
    """Nodes, a message queue, network cuts, and the output of the current command."""

    def __init__(self) -> None:
        self.nodes: dict[int, Node] = {}
        self.messages: list[Message] = []
        self.cuts: set[frozenset[int]] = set()
        self.log_enabled = True
        self._out: list[str] = []
        self._indent = ""
        self._handlers: dict[str, Callable[[TestData], None]] = {
            "add-nodes": self._add_nodes,
            "campaign": self._campaign,
            "propose": self._propose,
            "propose-conf-change": self._propose_conf_change,
            "tick": self._tick,
            "tick-heartbeat": self._tick_heartbeat,
            "tick-election": self._tick_election,
            "process-ready": self._process_ready_cmd,
            "deliver-msgs": self._deliver_msgs_cmd,
            "stabilize": self._stabilize,
            "partition": self._partition,
            "cut": self._cut,
            "heal": self._heal,
            "status": self._status,
            "raft-state": self._raft_state,
            "raft-log": self._raft_log,
            "applied": self._applied,
            "read-index": self._read_index,
            "transfer-leader": self._transfer_leader,
            "report-unreachable": self._report_unreachable,
            "report-snapshot": self._report_snapshot,
            "compact": self._compact,
            "restart": self._restart,
            "log-level": self._log_level,
        }

    # -- plumbing -------------------------------------------------------------------------

    def handle(self, td: TestData) -> str:
        """Run one command; returns its output ("ok" when it printed nothing)."""
        handler = self._handlers.get(td.cmd)
        if handler is None:
            raise DataDrivenError(f"{td.pos}: unknown command {td.cmd!r}")
        self._out = []
        self._indent = ""
        try:
            handler(td)
        except RaftError as e:
            self._print(f"error: {type(e).__name__}: {e}")
        out = "\n".join(self._out)
        return out + "\n" if out else "ok\n"

    def _print(self, line: str) -> None:
        # "log-level none" silences everything, to keep the setup of a script short.
        if self.log_enabled:
            self._out.append(self._indent + line)

    def _logger(self, line: str) -> None:
        self._print(line)

    def _node(self, arg: str | int) -> Node:
        node = self.nodes.get(int(arg))
        if node is None:
            raise DataDrivenError(f"no node {arg}")
        return node

    def _id_args(self, td: TestData) -> list[int]:
        ids = [int(a) for a in td.positional()]
        return ids if ids else sorted(self.nodes)

    # -- building nodes -------------------------------------------------------------------

    def _add_nodes(self, td: TestData) -> None:
        count = int(td.positional()[0])
        voters = tuple(td.get_ints("voters"))
        learners = tuple(td.get_ints("learners"))
        index = td.get_int("index", 1 if voters else 0)
        for _ in range(count):
            nid = max(self.nodes, default=0) + 1
            storage = SnapOverrideStorage()
            cs = ConfState(voters=voters, learners=learners)
            conf_states: list[tuple[int, ConfState]] = []
            if index > 0:
                # Start from a snapshot holding the initial membership at term 1.
                md = SnapshotMetadata(conf_state=cs, index=index, term=1)
                storage.apply_snapshot(Snapshot(data=b"[]", metadata=md))
                conf_states.append((index, cs))
            config = Config(
                id=nid,
                storage=storage,
                election_tick=td.get_int("election", 3),
                heartbeat_tick=td.get_int("heartbeat", 1),
                applied=index,
                max_size_per_msg=td.get_int("max-size", 1 << 20),
                max_uncommitted_entries_size=td.get_int("max-uncommitted", 0),
                max_inflight_msgs=td.get_int("max-inflight", 256),
                max_inflight_bytes=td.get_int("max-inflight-bytes", 0),
                check_quorum=td.get_bool("checkquorum"),
                pre_vote=td.get_bool("prevote"),
                disable_proposal_forwarding=td.get_bool("disable-forwarding"),
                rng=random.Random(nid) if td.get_bool("jitter") else _NoJitter(nid),
                logger=self._logger,
            )
            if td.has("max-committed-size"):
                config.max_committed_size_per_ready = td.get_int("max-committed-size")
            node = Node(nid, config, storage, RawNode(config), conf_states=conf_states)
            storage.snapshot_override = lambda node=node: self._applied_snapshot(node)
            self.nodes[nid] = node

    def _restart(self, td: TestData) -> None:
        """Crash and restart: keep only what storage holds; the state machine is
        rebuilt from the storage's snapshot and replayed from the log."""
        node = self._node(td.positional()[0])
        snap = node.storage.snapshot()
        node.applied = [(i, d) for i, d in json.loads(snap.data or b"[]")]
        node.conf_states = [(snap.metadata.index, snap.metadata.conf_state)]
        node.config.applied = snap.metadata.index
        node.rawnode = RawNode(node.config)

    # -- inputs ------------------------------------------------------------------------------

    def _campaign(self, td: TestData) -> None:
        self._node(td.positional()[0]).rawnode.campaign()

    def _propose(self, td: TestData) -> None:
        nid, data = td.positional()
        self._node(nid).rawnode.propose(data.encode())

    def _propose_conf_change(self, td: TestData) -> None:
        args = td.positional()
        words = args[1:] + td.input.split()
        changes = []
        for w in words:
            if w[:1] not in _CC_LETTERS:
                raise DataDrivenError(f"{td.pos}: bad conf change {w!r}")
            changes.append(ConfChangeSingle(_CC_LETTERS[w[0]], int(w[1:])))
        transition = _TRANSITIONS[td.get("transition", "auto")]
        cc = ConfChange(changes=tuple(changes), transition=transition)
        self._node(args[0]).rawnode.propose_conf_change(cc)

    def _tick(self, td: TestData) -> None:
        nid, n = td.positional()
        node = self._node(nid)
        for _ in range(int(n)):
            node.rawnode.tick()

    def _tick_heartbeat(self, td: TestData) -> None:
        for nid in self._id_args(td):
            node = self._node(nid)
            for _ in range(node.config.heartbeat_tick):
                node.rawnode.tick()

    def _tick_election(self, td: TestData) -> None:
        for nid in self._id_args(td):
            node = self._node(nid)
            for _ in range(node.config.election_tick):
                node.rawnode.tick()

    def _read_index(self, td: TestData) -> None:
        nid, ctx = td.positional()
        self._node(nid).rawnode.read_index(ctx.encode())

    def _transfer_leader(self, td: TestData) -> None:
        self._node(td.get("from")).rawnode.transfer_leader(td.get_int("to"))

    def _report_unreachable(self, td: TestData) -> None:
        nid, peer = td.positional()
        self._node(nid).rawnode.report_unreachable(int(peer))

    def _report_snapshot(self, td: TestData) -> None:
        nid, peer = td.positional()
        self._node(nid).rawnode.report_snapshot(int(peer), td.get_bool("ok", True))

    def _log_level(self, td: TestData) -> None:
        self.log_enabled = td.positional()[0] != "none"

    # -- Ready handling ----------------------------------------------------------------------

    def process_ready(self, node: Node) -> None:
        """One turn of the application loop: persist, send, apply, advance."""
        rn = node.rawnode
        if not rn.has_ready():
            self._print("<empty Ready>")
            return
        rd = rn.ready()
        for line in describe_ready(rd):
            self._print(line)
        st = node.storage
        if rd.snapshot is not None:
            st.apply_snapshot(rd.snapshot)
            node.applied = [(i, d) for i, d in json.loads(rd.snapshot.data or b"[]")]
            md = rd.snapshot.metadata
            node.conf_states = [(md.index, md.conf_state)]
        st.append(rd.entries)
        if rd.hard_state is not None:
            st.set_hard_state(rd.hard_state)
        self.messages.extend(rd.messages)
        for e in rd.committed_entries:
            self._apply(node, e)
        rn.advance()

    def _apply(self, node: Node, e: Entry) -> None:
        if e.type == EntryType.CONF_CHANGE_V2:
            cs = node.rawnode.apply_conf_change(ConfChange.decode(e.data))
            node.conf_states.append((e.index, cs))
        elif e.data:
            node.applied.append((e.index, e.data.decode()))

    def _process_ready_cmd(self, td: TestData) -> None:
        ids = self._id_args(td)
        for nid in ids:
            if len(ids) > 1:
                self._print(f"> {nid} handling Ready")
                self._indent = "  "
            self.process_ready(self._node(nid))
            self._indent = ""

    def _cut_between(self, a: int, b: int) -> bool:
        return frozenset((a, b)) in self.cuts

    def deliver(self, nid: int, drop: bool = False) -> int:
        """Hand every queued message addressed to ``nid`` to it; returns how many."""
        mine = [m for m in self.messages if m.to == nid]
        self.messages = [m for m in self.messages if m.to != nid]
        node = self.nodes.get(nid)
        for m in mine:
            if drop or node is None or self._cut_between(m.frm, m.to):
                self._print(f"dropped: {describe_message(m)}")
                continue
            self._print(describe_message(m))
            try:
                node.rawnode.step(m)
            except RaftError as e:
                self._print(f"error: {type(e).__name__}: {e}")
        return len(mine)

    def _deliver_msgs_cmd(self, td: TestData) -> None:
        drop = td.get_bool("drop")
        targets = [int(a) for a in td.positional()]
        if not targets:
            targets = sorted({m.to for m in self.messages})
        for nid in targets:
            self.deliver(nid, drop)

    def _stabilize(self, td: TestData) -> None:
        ids = self._id_args(td)
        for _ in range(1000):
            idle = True
            for nid in ids:
                node = self._node(nid)
                if node.rawnode.has_ready():
                    idle = False
                    self._print(f"> {nid} handling Ready")
                    self._indent = "  "
                    self.process_ready(node)
                    self._indent = ""
            for nid in ids:
                if any(m.to == nid for m in self.messages):
                    idle = False
                    self._print(f"> {nid} receiving messages")
                    self._indent = "  "
                    self.deliver(nid)
                    self._indent = ""
            if idle:
                return
        raise DataDrivenError(f"{td.pos}: stabilize did not converge")

    # -- network ----------------------------------------------------------------------------

    def _partition(self, td: TestData) -> None:
        groups: list[list[int]] = [[]]
        for a in td.positional():
            if a == "/":
                groups.append([])
            else:
                groups[-1].append(int(a))
        self.cuts = set()
        for i, g in enumerate(groups):
            for h in groups[i + 1 :]:
                for x in g:
                    for y in h:
                        self.cuts.add(frozenset((x, y)))

    def _cut(self, td: TestData) -> None:
        a, b = td.positional()
        self.cuts.add(frozenset((int(a), int(b))))

    def _heal(self, td: TestData) -> None:
        self.cuts = set()

    # -- inspection -------------------------------------------------------------------------

    def _status(self, td: TestData) -> None:
        st = self._node(td.positional()[0]).rawnode.status()
        self._print(
            f"{st.id}: {_STATE_NAMES[st.raft_state]} Term:{st.term} Lead:{st.lead} "
            f"Commit:{st.commit} Applied:{st.applied}"
            + (f" LeadTransferee:{st.lead_transferee}" if st.lead_transferee else "")
        )
        for nid in sorted(st.progress):
            self._print(f"{nid}: {st.progress[nid]!r}")

    def _raft_state(self, td: TestData) -> None:
        for nid in sorted(self.nodes):
            r = self.nodes[nid].rawnode.raft
            pr = r.trk.progress.get(nid)
            kind = "Voter" if pr is not None and not pr.is_learner else "Non-Voter"
            self._print(f"{nid}: {_STATE_NAMES[r.state]} ({kind}) Term:{r.term} Lead:{r.lead}")

    def _raft_log(self, td: TestData) -> None:
        st = self._node(td.positional()[0]).storage
        fi, li = st.first_index(), st.last_index()
        if li < fi:
            self._print(f"log is empty: first index={fi}, last index={li}")
            return
        for e in st.entries(fi, li + 1, 1 << 62):
            self._print(describe_entry(e))

    def _applied(self, td: TestData) -> None:
        node = self._node(td.positional()[0])
        data = [d for _, d in node.applied]
        self._print(f"applied index {node.rawnode.raft.raft_log.applied}: {data}")

    @staticmethod
    def _state_at(node: Node, idx: int) -> tuple[ConfState, bytes]:
        """The membership and the encoded state machine as of applied index ``idx``."""
        cs = ConfState()
        for i, c in node.conf_states:
            if i <= idx:
                cs = c
        return cs, json.dumps([[i, d] for i, d in node.applied if i <= idx]).encode()

    def _applied_snapshot(self, node: Node) -> Snapshot:
        st = node.storage
        stored = MemoryStorage.snapshot(st)
        idx = node.rawnode.raft.raft_log.applied
        if idx <= stored.metadata.index:
            return stored
        cs, data = self._state_at(node, idx)
        md = SnapshotMetadata(conf_state=cs, index=idx, term=st.term(idx))
        return Snapshot(data=data, metadata=md)

    def _compact(self, td: TestData) -> None:
        nid, idx_s = td.positional()
        node, idx = self._node(nid), int(idx_s)
        cs, data = self._state_at(node, idx)
        node.storage.create_snapshot(idx, cs, data)
        node.storage.compact(idx)
        self._raft_log(td)
