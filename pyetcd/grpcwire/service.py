"""Method handlers from a protobuf service descriptor, without grpcio.

A generated ``*_pb2_grpc.add_FooServicer_to_server`` builds its table of
``grpc.*_rpc_method_handler`` objects by importing grpc; :func:`add_servicer` builds
the same table from the service's descriptor (every ``*_pb2`` module carries one), so
the server process never loads grpcio's C core. The wire reads a handler's fields by
name, so grpc's own handlers (tests register generated servicers) work as well.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message_factory import GetMessageClass

__all__ = ["Handler", "ServicerRegistry", "add_servicer", "service_handlers"]


@dataclass(frozen=True, slots=True)
class Handler:
    """One method's handler, with the fields of grpc's ``RpcMethodHandler``: exactly one
    of the four behaviours is set, the one its two streaming flags name."""

    request_streaming: bool
    response_streaming: bool
    request_deserializer: Callable[[bytes], Any]
    response_serializer: Callable[[Any], bytes]
    unary_unary: Callable[..., Any] | None = None
    unary_stream: Callable[..., Any] | None = None
    stream_unary: Callable[..., Any] | None = None
    stream_stream: Callable[..., Any] | None = None


class ServicerRegistry(Protocol):
    """Where handlers are registered (``GrpcServer``)."""

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, Any]
    ) -> None: ...


def service_handlers(service: ServiceDescriptor, servicer: object) -> dict[str, Handler]:
    """The handlers of ``service``'s methods that ``servicer`` defines, by method name.

    A method the servicer leaves out is not registered: the wire answers it
    UNIMPLEMENTED "unknown method M for service S", as grpc-go does.
    """
    handlers: dict[str, Handler] = {}
    for method in service.methods:
        behaviour = getattr(servicer, method.name, None)
        if behaviour is None:
            continue
        cs, ss = bool(method.client_streaming), bool(method.server_streaming)
        kind = ("stream" if cs else "unary") + "_" + ("stream" if ss else "unary")
        handlers[method.name] = Handler(
            cs,
            ss,
            GetMessageClass(method.input_type).FromString,
            GetMessageClass(method.output_type).SerializeToString,
            **{kind: behaviour},
        )
    if not handlers:
        raise TypeError(f"{type(servicer).__name__} serves no method of {service.full_name}")
    return handlers


def add_servicer(server: ServicerRegistry, service: ServiceDescriptor, servicer: object) -> None:
    """Register ``servicer``'s methods of ``service`` on ``server`` (what the generated
    ``add_*Servicer_to_server`` does)."""
    server.add_registered_method_handlers(service.full_name, service_handlers(service, servicer))
