"""grpc-gateway's HTTP status for each gRPC status code."""

from __future__ import annotations

from pyetcd.grpcwire.status import StatusCode

__all__ = ["HTTP_STATUS"]

SC = StatusCode

# grpc-gateway (v1, as etcd 3.5 vendors it): gRPC status code -> HTTP status.
HTTP_STATUS: dict[StatusCode, int] = {
    SC.OK: 200,
    SC.CANCELLED: 408,
    SC.UNKNOWN: 500,
    SC.INVALID_ARGUMENT: 400,
    SC.DEADLINE_EXCEEDED: 504,
    SC.NOT_FOUND: 404,
    SC.ALREADY_EXISTS: 409,
    SC.PERMISSION_DENIED: 403,
    SC.UNAUTHENTICATED: 401,
    SC.RESOURCE_EXHAUSTED: 429,
    SC.FAILED_PRECONDITION: 400,
    SC.ABORTED: 409,
    SC.OUT_OF_RANGE: 400,
    SC.UNIMPLEMENTED: 501,
    SC.INTERNAL: 500,
    SC.UNAVAILABLE: 503,
    SC.DATA_LOSS: 500,
}
