"""The JSON gateway's streaming routes, as etcd 3.5's grpc-gateway serves them.

``POST /v3/watch`` and ``/v3/lease/keepalive`` (bidi: every JSON value of the body is
one request, read in order; a value that does not decode ends the requests quietly,
and a bad first one is answered 500, code 2, as etcd does), ``/v3/election/observe`` and
``/v3/maintenance/snapshot`` (server streams: the body's first value is the request; a
bad one is 400, code 3; both are ordinary gateway error documents). The answer waits
for the first message; then each message is one ``{"result": ...}`` line of a chunked
200 answer, and an error ends the answer with one
``{"error": {"grpc_code", "http_code", "message", "http_status"}}`` line. An error
before the first message is that one line in a chunked answer with the error's HTTP
status (grpc-gateway had no message to start with), as etcd 3.5.1 answers a snapshot
refused for lack of permission.

A watch outlives its request body (etcd's watch stream ends when the client leaves, not
when it stops sending); a keep-alive stream ends after answering the last request.

Backpressure: the HTTP writer asks for the next line only when the previous one is
written; a servicer that writes to its context (Watch) waits on a queue of
:data:`OUT_QUEUE` messages, and the watch session takes from its store stream only as
fast as it is consumed, so a slow reader cannot grow the server's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from google.protobuf.message import Message

from pyetcd.api.v3rpc.errors import code_of
from pyetcd.grpcwire import CallAborted
from pyetcd.grpcwire.status import StatusCode

from .context import GatewayContext
from .gojson import GoJSONError, decode_values, parse_message
from .status import HTTP_STATUS

__all__ = [
    "OUT_QUEUE",
    "STREAM_ROUTES",
    "ErrorAnswer",
    "StreamAnswer",
    "StreamContext",
    "open_stream",
]

SC = StatusCode

#: path -> (service full name, method name, bidi)
STREAM_ROUTES: dict[str, tuple[str, str, bool]] = {
    "/v3/watch": ("etcdserverpb.Watch", "Watch", True),
    "/v3/lease/keepalive": ("etcdserverpb.Lease", "LeaseKeepAlive", True),
    "/v3/election/observe": ("v3electionpb.Election", "Observe", False),
    "/v3/maintenance/snapshot": ("etcdserverpb.Maintenance", "Snapshot", False),
}

#: messages a servicer writing to its context may be ahead of the HTTP writer
OUT_QUEUE = 8


class StreamContext(GatewayContext):
    """The part of grpc.aio.ServicerContext a streaming servicer uses, for one HTTP call."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        super().__init__(metadata)
        self.out: asyncio.Queue[Message] = asyncio.Queue(OUT_QUEUE)

    async def write(self, msg: Message) -> None:
        await self.out.put(msg)


ErrorAnswer = tuple[StatusCode, str]


@dataclass(frozen=True, slots=True)
class StreamAnswer:
    """A started stream: its HTTP status and lines, and whether a message came (else
    the call ended at once, and grpc-gateway forwards no gRPC header)."""

    status: int
    lines: AsyncIterator[bytes]
    forwarded: bool


async def open_stream(
    handler: Callable[..., Any],
    request_type: type[Message],
    bidi: bool,
    body: bytes,
    metadata: tuple[tuple[str, str], ...],
    to_json: Callable[[Message], dict[str, Any]],
) -> ErrorAnswer | StreamAnswer:
    """Start the call; an error before its first message, or its answer's lines.

    Waits for the first message (as grpc-gateway waits for the stream's header).
    """
    values = decode_values(body)
    first: Message | None = None
    try:
        raw = next(values, None)
        if raw is not None:
            first = request_type()
            parse_message(raw, first)
    except GoJSONError as err:
        # a bidi route passes the decoder's error on as is: gRPC's Unknown
        return (SC.UNKNOWN if bidi else SC.INVALID_ARGUMENT), str(err)
    ctx = StreamContext(metadata)
    arg: Any
    if bidi:
        arg = _requests(first, values, request_type)
    else:
        arg = first if first is not None else request_type()
    messages = _messages(handler, arg, ctx)
    try:
        head = await anext(messages)
    except StopAsyncIteration:
        return StreamAnswer(200, _lines(None, messages, to_json), forwarded=False)
    except BaseException as err:
        await messages.aclose()
        if isinstance(err, Exception):
            code, text = _status(err)
            return StreamAnswer(HTTP_STATUS.get(code, 500), _one(_error_line(code, text)), False)
        raise
    return StreamAnswer(200, _lines(head, messages, to_json), forwarded=True)


async def _requests(
    first: Message | None, rest: Iterator[bytes], request_type: type[Message]
) -> AsyncIterator[Message]:
    if first is None:
        return
    yield first
    while True:
        try:
            raw = next(rest, None)
            if raw is None:
                return
            req = request_type()
            parse_message(raw, req)
        except GoJSONError:
            return  # etcd's gateway stops sending at a request it cannot decode
        yield req


async def _messages(
    handler: Callable[..., Any], arg: Any, ctx: StreamContext
) -> AsyncGenerator[Message, None]:
    if inspect.isasyncgenfunction(handler):
        async for msg in handler(arg, ctx):
            yield msg
        return
    # a servicer that writes to its context and returns when the call is over
    call = asyncio.ensure_future(handler(arg, ctx))
    try:
        while True:
            get = asyncio.ensure_future(ctx.out.get())
            await asyncio.wait((get, call), return_when=asyncio.FIRST_COMPLETED)
            if get.done():
                yield get.result()
                continue
            get.cancel()
            while not ctx.out.empty():
                yield ctx.out.get_nowait()
            call.result()  # its error, if it failed
            return
    finally:
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await call


def _status(err: Exception) -> ErrorAnswer:
    if isinstance(err, CallAborted):
        return err.code, err.details
    return code_of(err) or SC.UNKNOWN, str(err)


def _line(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def _error_line(code: StatusCode, text: str) -> bytes:
    http = HTTP_STATUS.get(code, 500)
    return _line(
        {
            "error": {
                "grpc_code": int(code),
                "http_code": http,
                "message": text,
                "http_status": HTTPStatus(http).phrase,
            }
        }
    )


async def _one(line: bytes) -> AsyncIterator[bytes]:
    yield line


async def _lines(
    head: Message | None,
    messages: AsyncGenerator[Message, None],
    to_json: Callable[[Message], dict[str, Any]],
) -> AsyncIterator[bytes]:
    try:
        if head is not None:
            yield _line({"result": to_json(head)})
        while True:
            try:
                msg = await anext(messages)
            except StopAsyncIteration:
                return
            except Exception as err:
                yield _error_line(*_status(err))
                return
            yield _line({"result": to_json(msg)})
    finally:
        with contextlib.suppress(Exception):
            await messages.aclose()
