"""What the server counts per gRPC method, in the shape of go-grpc-prometheus.

One :class:`MethodStats` per method path, made when the method is registered (or first
looked up through a generic handler), holds plain integers that calls bump as they go:
started, handled by status code, messages and message bytes in each direction. The
owner of the server turns them into metrics when it is scraped, so a call pays a few
attribute increments and nothing else. A :class:`HandlingObserver`, when the server is
given one, is also told each call's duration (``grpc_server_handling_seconds``, which
etcd keeps only with ``--metrics=extensive``).
"""

from __future__ import annotations

from typing import Final, Protocol

__all__ = ["CODE_NAMES", "HandlingObserver", "MethodStats", "grpc_type"]

#: Status code names as grpc-go spells them (``codes.Code.String()``), by value.
CODE_NAMES: Final = (
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
)


def grpc_type(request_streaming: bool, response_streaming: bool) -> str:
    """go-grpc-prometheus's ``grpc_type`` label of a method."""
    if request_streaming:
        return "bidi_stream" if response_streaming else "client_stream"
    return "server_stream" if response_streaming else "unary"


class MethodStats:
    """The counts of one method (see the module docstring). ``handled[c]`` counts the
    calls that ended with status code value ``c``; byte counts are of message payloads
    (without gRPC's 5-byte prefix, after inflation)."""

    __slots__ = (
        "bytes_received",
        "bytes_sent",
        "client_api_versions",
        "grpc_type",
        "handled",
        "method",
        "msg_received",
        "msg_sent",
        "service",
        "started",
        "unary",
    )

    def __init__(self, path: str, request_streaming: bool, response_streaming: bool) -> None:
        self.service, _, self.method = path.lstrip("/").partition("/")
        self.grpc_type = grpc_type(request_streaming, response_streaming)
        self.unary = not (request_streaming or response_streaming)
        self.started = 0
        self.handled = [0] * len(CODE_NAMES)
        self.msg_received = 0
        self.msg_sent = 0
        self.bytes_received = 0
        self.bytes_sent = 0
        #: Calls started, by the caller's ``client-api-version`` metadata ("unknown"
        #: without it): etcd_server_client_requests_total.
        self.client_api_versions: dict[str, int] = {}


class HandlingObserver(Protocol):
    """Told how long each call of a method took, from its start to its status."""

    def observe_handling(self, stats: MethodStats, seconds: float) -> None: ...
