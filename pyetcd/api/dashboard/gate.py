"""The dashboard's auth gate: the same checks the gRPC services make, for HTTP requests.

With auth enabled, every data endpoint of the dashboard needs what etcd's MemberList
needs (an existing user, from a token sent as ``Authorization``, the header etcd's
JSON gateway reads), and the watch feed needs READ over the watched range, as a gRPC
Watch does. The page's reads and writes of keys, leases, compaction and leader moves
go through the ``/v3`` JSON gateway, which calls the gRPC services themselves. With
auth disabled everything is open, as on the gRPC port.
"""

from __future__ import annotations

from typing import Any

from pyetcd.api.etcdhttp.gateway import GatewayResult, error_body
from pyetcd.api.v3rpc.access import require_user
from pyetcd.api.v3rpc.errors import AUTH_ERROR_CODES, StatusCode, code_of
from pyetcd.httpwire import Request
from pyetcd.server.auth.check import check_watch
from pyetcd.server.auth.store import AuthInfo
from pyetcd.server.etcdserver.server import EtcdServer

__all__ = ["Denied", "authorize", "authorize_watch", "token_of", "user_json"]


class Denied(Exception):
    """The caller may not have this; ``result`` is the gateway's error document."""

    def __init__(self, result: GatewayResult) -> None:
        super().__init__(result.body.get("message", ""))
        self.result = result


class _TokenContext:
    """The part of a servicer context the auth lookups read: the token, as metadata."""

    def __init__(self, token: str) -> None:
        self._token = token

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", self._token),) if self._token else ()


def token_of(req: Request) -> str:
    """The token a request carries (``Authorization``, as etcd's gateway reads it)."""
    return req.headers.get("authorization", "")


def _denied(err: Exception) -> Denied:
    code = AUTH_ERROR_CODES.get(type(err)) or code_of(err) or StatusCode.UNKNOWN
    return Denied(error_body(code, str(err)))


async def authorize(server: EtcdServer, token: str) -> AuthInfo | None:
    """The caller, who must be an authenticated user when auth is enabled.

    Raises:
        Denied: no token, an invalid or expired one, or a user that no longer exists.
    """
    try:
        return await require_user(server, _TokenContext(token))
    except Exception as err:
        raise _denied(err) from None


async def authorize_watch(
    server: EtcdServer, token: str, key: bytes, range_end: bytes
) -> AuthInfo | None:
    """As :func:`authorize`, plus READ over ``[key, range_end)`` (a gRPC Watch's check).

    Raises:
        Denied: as :func:`authorize`, or permission denied on the range.
    """
    info = await authorize(server, token)
    try:
        check_watch(server.auth_store, info, key, range_end)
    except Exception as err:
        raise _denied(err) from None
    return info


def user_json(server: EtcdServer, info: AuthInfo | None) -> dict[str, Any]:
    """Who the page acts as, for what it offers (the server checks every write anyway)."""
    store = server.auth_store
    if not store.enabled:
        return {"auth": False, "name": "", "admin": True}
    return {"auth": True, "name": info.username if info else "", "admin": store.is_admin(info)}
