"""gRPC status codes, as numbers on the wire and names in code.

The codes and their numbers are gRPC's (``grpc-status`` in a call's trailers);
``StatusCode.NOT_FOUND`` reads as ``grpc.StatusCode.NOT_FOUND`` does, without loading
grpcio's C core into the server process (issue 22: some 10 MiB of idle memory).

Servicers written for grpc.aio may still hand the wire a ``grpc.StatusCode``:
:func:`code_number` takes either.
"""

from __future__ import annotations

import enum
from typing import Any

__all__ = ["StatusCode", "code_number"]


class StatusCode(enum.IntEnum):
    """A gRPC status code; its value is what ``grpc-status`` carries."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


def code_number(code: Any) -> int:
    """The wire number of ``code``: a :class:`StatusCode` (or plain int), or a
    ``grpc.StatusCode``, whose value is the pair ``(number, name)``."""
    if isinstance(code, int):
        return int(code)
    return int(code.value[0])
