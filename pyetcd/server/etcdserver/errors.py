"""The server's typed errors, each carrying etcd's exact message.

``pyetcd/api/errors.py`` maps every class here (and the store's) to a gRPC code.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "BadLeaderTransfereeError",
    "CorruptError",
    "InvalidPeerURLsError",
    "LeaderChangedError",
    "LearnerNotReadyError",
    "MemberExistsError",
    "MemberNotFoundError",
    "MemberNotLearnerError",
    "MemberRemovedError",
    "NoLeaderError",
    "NotEnoughStartedMembersError",
    "NotLeaderError",
    "NotSupportedError",
    "PeerURLExistsError",
    "RequestTimeoutError",
    "RequestTooLargeError",
    "ServerError",
    "StoppedError",
    "TooManyLearnersError",
    "TooManyRequestsError",
    "UnhealthyError",
]


class ServerError(Exception):
    """Base of the server's errors; ``str()`` is etcd's message."""

    message: ClassVar[str] = "etcdserver: unknown error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)


class NoLeaderError(ServerError):
    message = "etcdserver: no leader"


class NotLeaderError(ServerError):
    message = "etcdserver: not leader"


class LeaderChangedError(ServerError):
    message = "etcdserver: leader changed"


class RequestTimeoutError(ServerError):
    message = "etcdserver: request timed out"


class CorruptError(ServerError):
    """A write refused while the CORRUPT alarm is active."""

    message = "etcdserver: corrupt cluster"


class StoppedError(ServerError):
    message = "etcdserver: server stopped"


class RequestTooLargeError(ServerError):
    message = "etcdserver: request is too large"


class TooManyRequestsError(ServerError):
    message = "etcdserver: too many requests"


class BadLeaderTransfereeError(ServerError):
    message = "etcdserver: bad leader transferee"


class MemberNotFoundError(ServerError):
    message = "etcdserver: member not found"


class MemberExistsError(ServerError):
    message = "etcdserver: member ID already exist"


class PeerURLExistsError(ServerError):
    message = "etcdserver: Peer URLs already exists"


class LearnerNotReadyError(ServerError):
    message = "etcdserver: can only promote a learner member which is in sync with leader"


class MemberNotLearnerError(ServerError):
    message = "etcdserver: can only promote a learner member"


class NotEnoughStartedMembersError(ServerError):
    message = "etcdserver: re-configuration failed due to not enough started members"


class UnhealthyError(ServerError):
    """A reconfiguration refused because this member has not been connected to every
    voting peer for etcd's health interval (the change could break the active quorum)."""

    message = "etcdserver: unhealthy cluster"


class TooManyLearnersError(ServerError):
    message = "etcdserver: too many learner members in cluster"


class InvalidPeerURLsError(ServerError):
    message = "etcdserver: given member URLs are invalid"


class MemberRemovedError(ServerError):
    message = "etcdserver: member ID has been removed"


class NotSupportedError(ServerError):
    message = "etcdserver: not capable"
