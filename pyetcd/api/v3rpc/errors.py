"""The one table mapping pyetcd's typed errors to gRPC status codes.

The message sent is always the error's ``str()``, which is etcd's exact text:
clients decide the typed error from the text and whether to retry from the code.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from functools import wraps
from typing import Any, NoReturn, TypeVar

from pyetcd.grpcwire.status import StatusCode
from pyetcd.mvcc import errors as mvcc_errors
from pyetcd.server.auth import errors as ae
from pyetcd.server.etcdserver import errors as server_errors

from .common import Ctx

__all__ = [
    "AUTH_ERROR_CODES",
    "ERROR_CODES",
    "StatusCode",
    "abort",
    "code_of",
    "translate_errors",
]

SC = StatusCode

ERROR_CODES: dict[type[Exception], StatusCode] = {
    mvcc_errors.EmptyKeyError: SC.INVALID_ARGUMENT,
    mvcc_errors.ValueProvidedError: SC.INVALID_ARGUMENT,
    mvcc_errors.LeaseProvidedError: SC.INVALID_ARGUMENT,
    mvcc_errors.TooManyOpsError: SC.INVALID_ARGUMENT,
    mvcc_errors.DuplicateKeyError: SC.INVALID_ARGUMENT,
    mvcc_errors.KeyNotFoundError: SC.INVALID_ARGUMENT,
    mvcc_errors.CompactedError: SC.OUT_OF_RANGE,
    mvcc_errors.FutureRevisionError: SC.OUT_OF_RANGE,
    mvcc_errors.LeaseTTLTooLargeError: SC.OUT_OF_RANGE,
    mvcc_errors.NoSpaceError: SC.RESOURCE_EXHAUSTED,
    mvcc_errors.LeaseNotFoundError: SC.NOT_FOUND,
    mvcc_errors.LeaseExpiredError: SC.NOT_FOUND,
    mvcc_errors.LeaseExistsError: SC.FAILED_PRECONDITION,
    mvcc_errors.LeaseNotPrimaryError: SC.FAILED_PRECONDITION,
    server_errors.RequestTooLargeError: SC.INVALID_ARGUMENT,
    server_errors.TooManyRequestsError: SC.RESOURCE_EXHAUSTED,
    server_errors.MemberNotFoundError: SC.NOT_FOUND,
    server_errors.MemberExistsError: SC.FAILED_PRECONDITION,
    server_errors.PeerURLExistsError: SC.FAILED_PRECONDITION,
    server_errors.LearnerNotReadyError: SC.FAILED_PRECONDITION,
    server_errors.NotLeaderError: SC.FAILED_PRECONDITION,
    server_errors.BadLeaderTransfereeError: SC.FAILED_PRECONDITION,
    server_errors.MemberNotLearnerError: SC.FAILED_PRECONDITION,
    server_errors.NotEnoughStartedMembersError: SC.FAILED_PRECONDITION,
    server_errors.InvalidPeerURLsError: SC.INVALID_ARGUMENT,
    server_errors.TooManyLearnersError: SC.FAILED_PRECONDITION,
    server_errors.MemberRemovedError: SC.FAILED_PRECONDITION,
    server_errors.NoLeaderError: SC.UNAVAILABLE,
    server_errors.LeaderChangedError: SC.UNAVAILABLE,
    server_errors.RequestTimeoutError: SC.UNAVAILABLE,
    server_errors.StoppedError: SC.UNAVAILABLE,
    server_errors.NotSupportedError: SC.UNAVAILABLE,
    server_errors.UnhealthyError: SC.UNAVAILABLE,
    server_errors.CorruptError: SC.DATA_LOSS,
}

#: gRPC codes of the auth errors (etcd's rpctypes), part of ERROR_CODES
AUTH_ERROR_CODES: dict[type[Exception], StatusCode] = {
    ae.RootUserNotExistError: SC.FAILED_PRECONDITION,
    ae.RootRoleNotExistError: SC.FAILED_PRECONDITION,
    ae.UserAlreadyExistError: SC.FAILED_PRECONDITION,
    ae.UserEmptyError: SC.INVALID_ARGUMENT,
    ae.UserNotFoundError: SC.FAILED_PRECONDITION,
    ae.RoleAlreadyExistError: SC.FAILED_PRECONDITION,
    ae.RoleNotFoundError: SC.FAILED_PRECONDITION,
    ae.RoleEmptyError: SC.INVALID_ARGUMENT,
    ae.AuthFailedError: SC.INVALID_ARGUMENT,
    ae.PermissionNotGivenError: SC.INVALID_ARGUMENT,
    ae.PermissionDeniedError: SC.PERMISSION_DENIED,
    ae.RoleNotGrantedError: SC.FAILED_PRECONDITION,
    ae.PermissionNotGrantedError: SC.FAILED_PRECONDITION,
    ae.AuthNotEnabledError: SC.FAILED_PRECONDITION,
    ae.InvalidAuthTokenError: SC.UNAUTHENTICATED,
    ae.InvalidAuthMgmtError: SC.INVALID_ARGUMENT,
    ae.AuthOldRevisionError: SC.INVALID_ARGUMENT,
    # etcd sends these untranslated, with code Unknown and its "auth: ..." text
    ae.NoPasswordUserError: SC.UNKNOWN,
    ae.AuthOptionsError: SC.UNKNOWN,
    ae.VerifyOnlyError: SC.UNKNOWN,
}
ERROR_CODES.update(AUTH_ERROR_CODES)


def code_of(err: BaseException) -> StatusCode | None:
    for cls in type(err).__mro__:
        code = ERROR_CODES.get(cls)
        if code is not None:
            return code
    return None


async def abort(context: Ctx, err: BaseException) -> NoReturn:
    code = code_of(err)
    if code is None:
        raise err
    await context.abort(code, str(err))
    raise AssertionError("unreachable")


F = TypeVar("F", bound=Callable[..., Coroutine[Any, Any, Any]])


def translate_errors(fn: F) -> F:
    """Wrap a unary handler: typed errors become etcd's status; others propagate."""

    @wraps(fn)
    async def wrapper(self: Any, request: Any, context: Ctx) -> Any:
        try:
            return await fn(self, request, context)
        except (mvcc_errors.MvccError, server_errors.ServerError) as err:
            await abort(context, err)

    return wrapper  # type: ignore[return-value]
