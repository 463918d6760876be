"""Value types of the Raft core: messages, entries, hard state, snapshots.

Rule: every type here is an immutable value. The core never mutates a message
or an entry once built, so the same object may sit in the log, in an outgoing
message and in a test's recorded trace at once.

The types built on every proposal and every peer message (entries, messages, hard and
soft state, Ready) are ``value_type``s: frozen for the type checker (mypy refuses an
assignment to a field), plain slotted dataclasses at run time. A frozen dataclass's
``__init__`` sets each field through ``object.__setattr__``: 9 us for a Message against
1 us, paid on every message built or decoded (issue 22).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import TypeVar, dataclass_transform

__all__ = [
    "ENTRY_OVERHEAD",
    "NONE",
    "CampaignType",
    "ConfChange",
    "ConfChangeSingle",
    "ConfChangeTransition",
    "ConfChangeType",
    "ConfState",
    "Entry",
    "EntryType",
    "HardState",
    "Message",
    "MessageType",
    "ReadState",
    "Snapshot",
    "SnapshotMetadata",
    "SoftState",
    "StateType",
    "value_type",
]

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True)
def value_type(cls: type[_T]) -> type[_T]:
    """An immutable value type: frozen to the type checker, a fast slotted dataclass at
    run time (no ``__setattr__`` guard in its ``__init__``); hashable and compared by
    value as a frozen dataclass is. Nothing may assign to its fields after building it:
    ``dataclasses.replace`` makes a changed copy."""
    return dataclass(slots=True, unsafe_hash=True)(cls)


#: The "no node" id: no leader, no vote.
NONE = 0

#: Bytes an entry counts for beyond its payload, for message size limits.
ENTRY_OVERHEAD = 24


class StateType(enum.IntEnum):
    """The role a member plays."""

    FOLLOWER = 0
    CANDIDATE = 1
    LEADER = 2
    PRE_CANDIDATE = 3


class CampaignType(enum.Enum):
    """Why a member campaigns: a pre-vote, a real election, or a leadership transfer."""

    PRE_ELECTION = "CampaignPreElection"
    ELECTION = "CampaignElection"
    TRANSFER = "CampaignTransfer"


class EntryType(enum.IntEnum):
    NORMAL = 0
    CONF_CHANGE = 1
    CONF_CHANGE_V2 = 2


class MessageType(enum.IntEnum):
    """Every input the core steps on. Local messages never cross the network."""

    HUP = 0  # local: start an election
    BEAT = 1  # local: leader sends heartbeats
    PROP = 2  # proposal (local, or forwarded by a follower)
    APP = 3
    APP_RESP = 4
    VOTE = 5
    VOTE_RESP = 6
    SNAP = 7
    HEARTBEAT = 8
    HEARTBEAT_RESP = 9
    UNREACHABLE = 10  # local
    SNAP_STATUS = 11  # local
    CHECK_QUORUM = 12  # local
    TRANSFER_LEADER = 13
    TIMEOUT_NOW = 14
    READ_INDEX = 15
    READ_INDEX_RESP = 16
    PRE_VOTE = 17
    PRE_VOTE_RESP = 18


LOCAL_MESSAGES = frozenset(
    {
        MessageType.HUP,
        MessageType.BEAT,
        MessageType.UNREACHABLE,
        MessageType.SNAP_STATUS,
        MessageType.CHECK_QUORUM,
    }
)

RESPONSE_MESSAGES = frozenset(
    {
        MessageType.APP_RESP,
        MessageType.VOTE_RESP,
        MessageType.HEARTBEAT_RESP,
        MessageType.UNREACHABLE,
        MessageType.READ_INDEX_RESP,
        MessageType.PRE_VOTE_RESP,
    }
)


def vote_response_type(t: MessageType) -> MessageType:
    """The response type that answers a (pre-)vote request."""
    if t == MessageType.VOTE:
        return MessageType.VOTE_RESP
    if t == MessageType.PRE_VOTE:
        return MessageType.PRE_VOTE_RESP
    raise ValueError(f"not a vote message: {t!r}")


@value_type
class Entry:
    """One log entry. ``index`` is its log position, ``term`` the leader's term
    when it was appended; an entry never changes once written at (index, term)."""

    term: int = 0
    index: int = 0
    type: EntryType = EntryType.NORMAL
    data: bytes = b""

    def size(self) -> int:
        # Rough byte size used for flow control (max message size, uncommitted budget).
        return len(self.data) + ENTRY_OVERHEAD


@value_type
class HardState:
    """What must be durable before any message depending on it is sent."""

    term: int = 0
    vote: int = NONE
    commit: int = 0

    def is_empty(self) -> bool:
        return self.term == 0 and self.vote == NONE and self.commit == 0


EMPTY_HARD_STATE = HardState()


@value_type
class SoftState:
    """Volatile state, useful for logging and metrics; need not be persisted."""

    lead: int = NONE
    raft_state: StateType = StateType.FOLLOWER


@dataclass(frozen=True, slots=True)
class ConfState:
    """The membership configuration at a point of the log."""

    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()
    # Non-empty only in a joint configuration: the voters of the outgoing config.
    voters_outgoing: tuple[int, ...] = ()
    # Voters of the outgoing config that become learners when the joint config is left.
    learners_next: tuple[int, ...] = ()
    auto_leave: bool = False

    def equivalent(self, other: ConfState) -> bool:
        def norm(cs: ConfState) -> tuple[object, ...]:
            return (
                sorted(cs.voters),
                sorted(cs.learners),
                sorted(cs.voters_outgoing),
                sorted(cs.learners_next),
                cs.auto_leave,
            )

        return norm(self) == norm(other)


@dataclass(frozen=True, slots=True)
class SnapshotMetadata:
    conf_state: ConfState = field(default_factory=ConfState)
    index: int = 0
    term: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The application's state up to and including ``metadata.index``."""

    data: bytes = b""
    metadata: SnapshotMetadata = field(default_factory=SnapshotMetadata)

    def is_empty(self) -> bool:
        return self.metadata.index == 0


EMPTY_SNAPSHOT = Snapshot()


@value_type
class Message:
    """A message between members (or a local input to ``step``).

    ``frm``/``to`` are member ids; ``index``/``log_term`` describe the log position a
    message refers to (for APP: the entry preceding ``entries``); ``reject_hint`` and
    ``log_term`` on a rejected APP_RESP carry the follower's hint for fast backtracking.
    """

    type: MessageType
    to: int = NONE
    frm: int = NONE
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    snapshot: Snapshot | None = None
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""


@value_type
class ReadState:
    """A linearizable read is safe once the applied index reaches ``index``."""

    index: int
    request_ctx: bytes


class ConfChangeType(enum.IntEnum):
    ADD_NODE = 0
    REMOVE_NODE = 1
    UPDATE_NODE = 2
    ADD_LEARNER_NODE = 3


class ConfChangeTransition(enum.IntEnum):
    """How a multi-change enters and leaves joint consensus."""

    AUTO = 0  # joint if needed, left automatically
    JOINT_IMPLICIT = 1  # joint, left automatically
    JOINT_EXPLICIT = 2  # joint, left by an explicit empty conf change


@dataclass(frozen=True, slots=True)
class ConfChangeSingle:
    type: ConfChangeType
    node_id: int


@dataclass(frozen=True, slots=True)
class ConfChange:
    """A membership change (etcd-io/raft's ConfChangeV2).

    A single change is applied directly; several changes (or a JOINT_* transition)
    go through joint consensus. An empty change leaves a joint configuration.
    ``context`` is opaque to the core (the server puts the member's URLs there).
    """

    changes: tuple[ConfChangeSingle, ...] = ()
    transition: ConfChangeTransition = ConfChangeTransition.AUTO
    context: bytes = b""

    def enter_joint(self) -> tuple[bool, bool]:
        """Whether applying this change enters a joint config, and whether it
        leaves that config automatically."""
        if self.transition != ConfChangeTransition.AUTO or len(self.changes) > 1:
            auto_leave = self.transition in (
                ConfChangeTransition.AUTO,
                ConfChangeTransition.JOINT_IMPLICIT,
            )
            return True, auto_leave
        return False, False

    def leave_joint(self) -> bool:
        """An empty change with the AUTO transition and no context leaves joint."""
        return (
            not self.changes and self.transition == ConfChangeTransition.AUTO and not self.context
        )

    def encode(self) -> bytes:
        """The entry payload for a CONF_CHANGE_V2 entry."""
        return json.dumps(
            {
                "t": int(self.transition),
                "c": [[int(c.type), c.node_id] for c in self.changes],
                "x": self.context.hex(),
            },
            separators=(",", ":"),
        ).encode()

    @staticmethod
    def decode(data: bytes) -> ConfChange:
        if not data:
            return ConfChange()
        raw = json.loads(data)
        return ConfChange(
            changes=tuple(ConfChangeSingle(ConfChangeType(t), n) for t, n in raw["c"]),
            transition=ConfChangeTransition(raw["t"]),
            context=bytes.fromhex(raw["x"]),
        )
