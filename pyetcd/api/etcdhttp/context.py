"""The part of grpc.aio.ServicerContext the servicers use, for one gateway HTTP call."""

from __future__ import annotations

from typing import Any, NoReturn

from pyetcd.grpcwire import CallAborted
from pyetcd.grpcwire.status import StatusCode

__all__ = ["GatewayContext"]


class GatewayContext:
    """A servicer's context for one JSON gateway call (unary; ``StreamContext`` adds
    the stream's writes).

    Its metadata is the request's ``Authorization`` header (the token), as etcd's
    gateway forwards it.
    """

    def __init__(self, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self._metadata = metadata

    async def abort(self, code: StatusCode, details: str = "", *args: Any) -> NoReturn:
        raise CallAborted(code, details)

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def set_code(self, code: StatusCode) -> None:
        pass

    def set_details(self, details: str) -> None:
        pass

    def peer(self) -> str:
        return "gateway"
