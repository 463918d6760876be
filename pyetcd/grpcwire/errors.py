"""The HTTP/2 protocol violations the connection core raises, each with its error code.

Rules:

1. Every violation is one class per RFC 9113 error code; the code travels on the
   exception (``error_code``), never in its message text, and nothing is told apart by
   matching a message.
2. ``stream_id`` says what the error ends (RFC 9113 5.4): 0 is a *connection error*
   (answered with GOAWAY, the connection is over), any other id a *stream error*
   (answered with RST_STREAM on that stream, the connection lives on).
3. ``H2Connection.receive_data`` raises connection errors only; stream errors it answers
   itself and reports as a ``StreamReset`` event.
"""

from __future__ import annotations

from typing import ClassVar

from .frames import ErrorCode

__all__ = [
    "CompressionError",
    "EnhanceYourCalmError",
    "FlowControlError",
    "FrameSizeError",
    "H2Error",
    "ProtocolError",
    "StreamClosedError",
]


class H2Error(Exception):
    """A violation of RFC 9113 by either side.

    Attributes:
        error_code: the HTTP/2 error code that answers it.
        stream_id: the stream it ends, or 0 when it ends the whole connection.
    """

    error_code: ClassVar[ErrorCode] = ErrorCode.INTERNAL_ERROR

    def __init__(self, reason: str, stream_id: int = 0) -> None:
        super().__init__(reason)
        self.stream_id = stream_id

    @property
    def connection_error(self) -> bool:
        """True when the error ends the connection (GOAWAY), not one stream."""
        return self.stream_id == 0


class ProtocolError(H2Error):
    """PROTOCOL_ERROR: a frame that is not allowed where it arrived."""

    error_code = ErrorCode.PROTOCOL_ERROR


class FlowControlError(H2Error):
    """FLOW_CONTROL_ERROR: more DATA than the window allowed, or a window past 2^31-1."""

    error_code = ErrorCode.FLOW_CONTROL_ERROR


class FrameSizeError(H2Error):
    """FRAME_SIZE_ERROR: a frame longer than allowed, or of the wrong size for its type."""

    error_code = ErrorCode.FRAME_SIZE_ERROR


class StreamClosedError(H2Error):
    """STREAM_CLOSED: a frame on a stream whose sender already ended its side."""

    error_code = ErrorCode.STREAM_CLOSED


class CompressionError(H2Error):
    """COMPRESSION_ERROR: a header block HPACK cannot decode."""

    error_code = ErrorCode.COMPRESSION_ERROR


class EnhanceYourCalmError(H2Error):
    """ENHANCE_YOUR_CALM: the peer asks for more than we are willing to hold."""

    error_code = ErrorCode.ENHANCE_YOUR_CALM
