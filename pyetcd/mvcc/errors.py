"""The MVCC store's errors.

Each error's ``str()`` is etcd's exact client-visible message, because clients
match on the text; the API layer maps each class to a gRPC status code in one
table (``pyetcd/api/errors.py``).
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "BackendError",
    "CompactedError",
    "DuplicateKeyError",
    "EmptyKeyError",
    "FutureRevisionError",
    "KeyNotFoundError",
    "LeaseExistsError",
    "LeaseExpiredError",
    "LeaseNotFoundError",
    "LeaseNotPrimaryError",
    "LeaseProvidedError",
    "LeaseTTLTooLargeError",
    "MvccError",
    "NoSpaceError",
    "TooManyOpsError",
    "ValueProvidedError",
]


class BackendError(Exception):
    """The database failed under the store (disk full, read-only, I/O error, a file
    that is not a backend). Not an ``MvccError``: no request caused it, and the member
    cannot go on. ``action`` is etcd's fatal message for what failed ("failed to commit
    tx"); ``cause`` the sqlite3 or OS error."""

    def __init__(self, action: str, cause: BaseException) -> None:
        super().__init__(f"{action}: {cause}")
        self.action = action
        self.cause = cause


class MvccError(Exception):
    """Base of every error the store raises; ``message`` is etcd's text."""

    message: ClassVar[str] = "etcdserver: mvcc: unknown error"

    def __init__(self) -> None:
        super().__init__(self.message)


class CompactedError(MvccError):
    """The requested revision is older than the compaction revision."""

    message = "etcdserver: mvcc: required revision has been compacted"


class FutureRevisionError(MvccError):
    """The requested revision is newer than the store's current revision."""

    message = "etcdserver: mvcc: required revision is a future revision"


class NoSpaceError(MvccError):
    """The backend quota is exhausted (or the NOSPACE alarm is active)."""

    message = "etcdserver: mvcc: database space exceeded"


class EmptyKeyError(MvccError):
    """A request names no key."""

    message = "etcdserver: key is not provided"


class KeyNotFoundError(MvccError):
    """ignore_value/ignore_lease on a key that does not exist, or an empty RequestOp."""

    message = "etcdserver: key not found"


class ValueProvidedError(MvccError):
    """ignore_value together with a value."""

    message = "etcdserver: value is provided"


class LeaseProvidedError(MvccError):
    """ignore_lease together with a lease."""

    message = "etcdserver: lease is provided"


class DuplicateKeyError(MvccError):
    """A txn branch writes one key twice (or puts into a range it deletes)."""

    message = "etcdserver: duplicate key given in txn request"


class TooManyOpsError(MvccError):
    """A txn has more than --max-txn-ops operations in one list."""

    message = "etcdserver: too many operations in txn request"


class LeaseNotFoundError(MvccError):
    """The lease does not exist (or ID 0 was given to grant)."""

    message = "etcdserver: requested lease not found"


class LeaseExistsError(MvccError):
    """Grant with an ID that is already in use."""

    message = "etcdserver: lease already exists"


class LeaseTTLTooLargeError(MvccError):
    """Grant with a TTL above the maximum (9,000,000,000 s)."""

    message = "etcdserver: too large lease TTL"


class LeaseExpiredError(MvccError):
    """Renew of a lease that has expired and is waiting to be revoked.

    The server waits for the revoke to be applied and then answers
    :class:`LeaseNotFoundError`, as etcd does.
    """

    message = "lease: lease expired"


class LeaseNotPrimaryError(MvccError):
    """Renew on a member whose lessor is not primary (not the leader)."""

    message = "etcdserver: not leader"
