"""pyetcd.server.auth: users, roles, permissions and tokens, as etcd keeps them
(``store``), the token providers (``token``), the permission checks requests get
(``check``, ``perms``) and the errors with etcd's texts (``errors``)."""

from __future__ import annotations

from .store import AuthInfo, AuthStore
from .token import SimpleTokenProvider, TokenProvider, new_token_provider

__all__ = ["AuthInfo", "AuthStore", "SimpleTokenProvider", "TokenProvider", "new_token_provider"]
