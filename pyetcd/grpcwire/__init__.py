"""pyetcd.grpcwire: a gRPC server over our own HTTP/2, on the event loop.

Two layers. ``H2Connection`` is a sans-I/O HTTP/2 server connection (RFC 9113):
``receive_data(bytes)`` returns events, ``data_to_send()`` returns bytes, every
violation is a typed ``H2Error``. ``GrpcServer`` / ``GrpcConnection`` / ``ServerCall``
drive it on asyncio and run gRPC method handlers (what ``add_*Servicer_to_server``
registers) against it.

This package knows nothing of etcd: it imports only the standard library, ``grpc``,
``hpack`` and itself.
"""

from __future__ import annotations

from .call import CallAborted, MethodHandler, ServerCall
from .connection import GrpcConnection
from .errors import (
    CompressionError,
    EnhanceYourCalmError,
    FlowControlError,
    FrameSizeError,
    H2Error,
    ProtocolError,
    StreamClosedError,
)
from .events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    PingAckReceived,
    PingReceived,
    RemoteSettingsChanged,
    RequestReceived,
    SettingsAcknowledged,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from .frames import ErrorCode
from .h2connection import ConnectionState, H2Connection
from .limits import ServerLimits
from .server import ErrorLog, GrpcServer
from .stats import CODE_NAMES, HandlingObserver, MethodStats, grpc_type
from .streams import StreamState

__all__ = [
    "CODE_NAMES",
    "CallAborted",
    "CompressionError",
    "ConnectionState",
    "ConnectionTerminated",
    "DataReceived",
    "EnhanceYourCalmError",
    "ErrorCode",
    "ErrorLog",
    "Event",
    "FlowControlError",
    "FrameSizeError",
    "GrpcConnection",
    "GrpcServer",
    "H2Connection",
    "H2Error",
    "HandlingObserver",
    "MethodHandler",
    "MethodStats",
    "PingAckReceived",
    "PingReceived",
    "ProtocolError",
    "RemoteSettingsChanged",
    "RequestReceived",
    "ServerCall",
    "ServerLimits",
    "SettingsAcknowledged",
    "StreamClosedError",
    "StreamReset",
    "StreamState",
    "TrailersReceived",
    "WindowUpdated",
    "grpc_type",
]
