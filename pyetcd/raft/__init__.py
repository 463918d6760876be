"""The pure Raft core: no I/O, no clock. Drive it through ``RawNode``."""

from __future__ import annotations

from .errors import (
    CompactedError,
    ProposalDroppedError,
    RaftError,
    ReadyContractError,
    SnapOutOfDateError,
    StepLocalMsgError,
    StepPeerNotFoundError,
    UnavailableError,
)
from .raft import Config
from .rawnode import RawNode, Ready, Status
from .storage import MemoryStorage, Storage
from .types import (
    NONE,
    CampaignType,
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Snapshot,
    SnapshotMetadata,
    SoftState,
    StateType,
)

__all__ = [
    "NONE",
    "CampaignType",
    "CompactedError",
    "ConfChange",
    "ConfChangeSingle",
    "ConfChangeTransition",
    "ConfChangeType",
    "ConfState",
    "Config",
    "Entry",
    "EntryType",
    "HardState",
    "MemoryStorage",
    "Message",
    "MessageType",
    "ProposalDroppedError",
    "RaftError",
    "RawNode",
    "ReadState",
    "Ready",
    "ReadyContractError",
    "SnapOutOfDateError",
    "Snapshot",
    "SnapshotMetadata",
    "SoftState",
    "StateType",
    "Status",
    "StepLocalMsgError",
    "StepPeerNotFoundError",
    "Storage",
    "UnavailableError",
]
