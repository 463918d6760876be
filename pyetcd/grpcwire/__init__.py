"""pyetcd.grpcwire: a gRPC server over our own HTTP/2, on the event loop.

Two layers. ``H2Connection`` is a sans-I/O HTTP/2 server connection (RFC 9113):
``receive_data(bytes)`` returns events, ``data_to_send()`` returns bytes, every
violation is a typed ``H2Error``. ``GrpcServer`` / ``GrpcConnection`` / ``ServerCall``
drive it on asyncio and run gRPC method handlers (what ``add_*Servicer_to_server``
registers) against it.

This package knows nothing of etcd: it imports only the standard library, protobuf's
descriptors (``service``), ``hpack`` and itself; never grpcio, whose C core would cost
the server process some 10 MiB (``status.StatusCode`` stands in for its codes).
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
from .service import Handler, add_servicer, service_handlers
from .stats import CODE_NAMES, HandlingObserver, MethodStats, grpc_type
from .status import StatusCode, code_number
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
    "Handler",
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
    "StatusCode",
    "StreamClosedError",
    "StreamReset",
    "StreamState",
    "TrailersReceived",
    "WindowUpdated",
    "add_servicer",
    "code_number",
    "grpc_type",
    "service_handlers",
]
