"""The Raft core's typed errors. The API layer maps them to etcd's texts."""

from __future__ import annotations

__all__ = [
    "CompactedError",
    "ProposalDroppedError",
    "RaftError",
    "ReadyContractError",
    "SnapOutOfDateError",
    "SnapshotTemporarilyUnavailableError",
    "StepLocalMsgError",
    "StepPeerNotFoundError",
    "UnavailableError",
]


class RaftError(Exception):
    """Base of every error the core raises."""


class ProposalDroppedError(RaftError):
    """The proposal was dropped (no leader, leader transfer in progress, full budget)."""

    def __init__(self, reason: str = "raft proposal dropped") -> None:
        super().__init__(reason)


class StepLocalMsgError(RaftError):
    """A local-only message arrived from the network."""


class StepPeerNotFoundError(RaftError):
    """A response arrived from a member the core does not track."""


class ReadyContractError(RaftError):
    """``ready()``/``advance()`` were called out of order."""


class CompactedError(RaftError):
    """The requested index is older than the storage's first index."""


class SnapOutOfDateError(RaftError):
    """The snapshot is older than the storage's current one."""


class UnavailableError(RaftError):
    """The requested index is beyond the storage's last index."""


class SnapshotTemporarilyUnavailableError(RaftError):
    """The storage cannot produce a snapshot right now; the leader retries later."""
