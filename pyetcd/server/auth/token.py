"""Auth tokens: etcd's ``--auth-token simple`` and ``jwt,...`` providers.

Rules this module keeps:

1. A simple token is ``<16 random letters>.<raft index>``: the proposing member
   picks the letters before proposing Authenticate, every member registers the
   token when it applies the entry at that index. Tokens live in memory only
   (a restart forgets them), expire after ``--auth-token-ttl`` seconds without
   use (each use restarts the TTL, as etcd's TTL keeper does), and are dropped
   when their user is deleted or changes password and when auth is disabled.
   A simple token carries no auth revision: it answers with the store's
   current one.
2. A JWT carries the claims ``username``, ``revision`` (the auth revision at
   issue) and ``exp``; it is valid on any member holding the verification key,
   so it survives restarts, and goes stale ("revision of auth store is old")
   with any auth change.
3. Time comes from clocks handed in; tokens never reach a log.
4. ``jwt`` and ``cryptography`` are imported only by the JWT provider's code: they
   take ~40 ms to import, a tenth of a restart, and most members never use them.
"""

from __future__ import annotations

import secrets
import string
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pyetcd.flagspec import FlagValueError, parse_duration

from .errors import (
    AuthMethodError,
    AuthOptionsError,
    KeyMismatchError,
    MissingKeyError,
    VerifyOnlyError,
)

__all__ = [
    "DEFAULT_TOKEN_TTL",
    "AuthInfo",
    "JWTTokenProvider",
    "SimpleTokenProvider",
    "TokenProvider",
    "new_token_provider",
    "parse_token_options",
]

#: etcd's default for both --auth-token-ttl and the jwt ``ttl`` option (seconds)
DEFAULT_TOKEN_TTL = 300.0

_LETTERS = string.ascii_lowercase + string.ascii_uppercase
_SIMPLE_TOKEN_LENGTH = 16

_JWT_METHODS = {
    **{f"HS{n}": "hmac" for n in (256, 384, 512)},
    **{f"RS{n}": "rsa" for n in (256, 384, 512)},
    **{f"PS{n}": "rsa" for n in (256, 384, 512)},
    **{f"ES{n}": "ec" for n in (256, 384, 512)},
}


@dataclass(frozen=True, slots=True)
class AuthInfo:
    """Who sent a request and under which auth revision it was authorized."""

    username: str
    revision: int


class TokenProvider(Protocol):
    """What the auth store needs from a token type."""

    def enable(self) -> None:
        """Auth was enabled (or found enabled at start)."""

    def disable(self) -> None:
        """Auth was disabled: every token issued so far becomes invalid."""

    def invalidate_user(self, username: str) -> None:
        """The user was deleted or changed password: drop their tokens."""

    def gen_token_prefix(self) -> str:
        """What the proposing member puts into InternalAuthenticateRequest.simple_token."""

    def assign(self, username: str, revision: int, index: int, prefix: str) -> str:
        """Issue a token while applying Authenticate at raft ``index``."""

    def info(self, token: str, revision: int) -> AuthInfo | None:
        """Who ``token`` authenticates (``revision``: the store's current one), or None."""


class SimpleTokenProvider:
    """etcd's simple tokens: random, member-local, with an idle TTL."""

    def __init__(
        self, ttl: float = DEFAULT_TOKEN_TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Args: ttl: seconds a token lives without use (<= 0: 300); clock: monotonic seconds."""
        self.ttl = ttl if ttl > 0 else DEFAULT_TOKEN_TTL
        self._clock = clock
        self._enabled = False
        # token -> (username, expiry clock reading)
        self._tokens: dict[str, tuple[str, float]] = {}

    def enable(self) -> None:
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False
        self._tokens.clear()

    def invalidate_user(self, username: str) -> None:
        for token in [t for t, (name, _) in self._tokens.items() if name == username]:
            del self._tokens[token]

    def gen_token_prefix(self) -> str:
        return "".join(secrets.choice(_LETTERS) for _ in range(_SIMPLE_TOKEN_LENGTH))

    def assign(self, username: str, revision: int, index: int, prefix: str) -> str:
        token = f"{prefix}.{index}"
        # etcd keeps no tokens while auth is disabled
        if self._enabled:
            self._tokens[token] = (username, self._clock() + self.ttl)
        return token

    def info(self, token: str, revision: int) -> AuthInfo | None:
        if self.token_index(token) is None:
            return None
        entry = self._tokens.get(token)
        if entry is None:
            return None
        username, expiry = entry
        now = self._clock()
        if now >= expiry:
            del self._tokens[token]
            return None
        self._tokens[token] = (username, now + self.ttl)
        return AuthInfo(username, revision)

    def expire(self) -> int:
        """Drop every token past its TTL (info() does it lazily too); returns how many."""
        now = self._clock()
        dead = [t for t, (_, expiry) in self._tokens.items() if now >= expiry]
        for token in dead:
            del self._tokens[token]
        return len(dead)

    @staticmethod
    def token_index(token: str) -> int | None:
        """The raft index a well-formed simple token was issued at, else None.

        The API layer waits until this member applied that index before asking
        :meth:`info`, as etcd does: a token issued by a faster member is not
        unknown here, only not yet registered.
        """
        parts = token.split(".")
        if len(parts) != 2 or not parts[1].isascii() or not parts[1].isdigit():
            return None
        return int(parts[1])

    def __len__(self) -> int:
        return len(self._tokens)


class JWTTokenProvider:
    """etcd's JWT tokens: signed claims ``username``, ``revision``, ``exp``."""

    def __init__(
        self,
        sign_method: str,
        key: Any,
        verify_key: Any,
        ttl: float = DEFAULT_TOKEN_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Args:
        sign_method: a JWT ``alg`` (HS256, RS256, PS256, ES256, ... 384/512).
        key: the signing key, or None on a verify-only member (public key only).
        verify_key: the key that checks signatures.
        ttl: seconds until ``exp``.
        clock: wall-clock seconds (``exp`` is Unix time).
        """
        self.sign_method = sign_method
        self._key = key
        self._verify_key = verify_key
        self.ttl = ttl
        self._clock = clock

    @property
    def verify_only(self) -> bool:
        """Whether this member can only check tokens, not issue them."""
        return self._key is None

    def enable(self) -> None:
        pass

    def disable(self) -> None:
        pass

    def invalidate_user(self, username: str) -> None:
        pass

    def gen_token_prefix(self) -> str:
        return ""

    def assign(self, username: str, revision: int, index: int, prefix: str) -> str:
        if self._key is None:
            raise VerifyOnlyError()
        import jwt

        claims = {"username": username, "revision": revision, "exp": int(self._clock() + self.ttl)}
        return jwt.encode(claims, self._key, algorithm=self.sign_method)

    def info(self, token: str, revision: int) -> AuthInfo | None:
        import jwt

        try:
            # exp is checked below against the injected clock
            claims = jwt.decode(
                token,
                self._verify_key,
                algorithms=[self.sign_method],
                options={"verify_exp": False},
            )
        except jwt.PyJWTError:
            return None
        username = claims.get("username")
        rev = claims.get("revision")
        exp = claims.get("exp")
        if not isinstance(username, str) or not isinstance(rev, int | float):
            return None
        if isinstance(rev, bool) or rev < 0:
            return None
        if not isinstance(exp, int | float) or self._clock() >= exp:
            return None
        return AuthInfo(username, int(rev))


def parse_token_options(opts: str) -> tuple[str, dict[str, str]]:
    """Split ``--auth-token`` (``type[,k=v]...``) into the type and its options.

    Raises:
        AuthOptionsError: a part is not ``k=v`` or a key repeats.
    """
    parts = opts.split(",")
    extra: dict[str, str] = {}
    for part in parts[1:]:
        pair = part.split("=")
        if len(pair) != 2 or pair[0] in extra:
            raise AuthOptionsError()
        extra[pair[0]] = pair[1]
    return parts[0], extra


def new_token_provider(
    opts: str,
    ttl: float = DEFAULT_TOKEN_TTL,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
) -> SimpleTokenProvider | JWTTokenProvider:
    """The provider ``--auth-token`` names (``simple`` or ``jwt,sign-method=...``).

    Args:
        opts: the flag's value.
        ttl: ``--auth-token-ttl`` in seconds (simple tokens only).
        clock: monotonic seconds for simple token TTLs.
        wall_clock: Unix seconds for JWT ``exp``.

    Raises:
        AuthOptionsError: an unknown type or malformed options (subclasses say
            which: bad sign method, missing key, keys that do not match).
    """
    kind, extra = parse_token_options(opts)
    if kind == "simple":
        return SimpleTokenProvider(ttl, clock)
    if kind == "jwt":
        return _jwt_provider(extra, wall_clock)
    raise AuthOptionsError()


def _jwt_provider(extra: Mapping[str, str], clock: Callable[[], float]) -> JWTTokenProvider:
    ttl = DEFAULT_TOKEN_TTL
    if extra.get("ttl"):
        try:
            ttl = parse_duration(extra["ttl"])
        except FlagValueError as err:
            raise AuthOptionsError() from err
    pub = _read(extra.get("pub-key", ""))
    priv = _read(extra.get("priv-key", ""))
    method = extra.get("sign-method", "")
    family = _JWT_METHODS.get(method)
    if family is None:
        raise AuthMethodError()
    if family == "hmac":
        if not priv:
            raise MissingKeyError()
        return JWTTokenProvider(method, priv, priv, ttl, clock)
    key, verify_key = _key_pair(family, priv, pub)
    return JWTTokenProvider(method, key, verify_key, ttl, clock)


def _read(path: str) -> bytes:
    if not path:
        return b""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise AuthOptionsError() from err


def _key_pair(family: str, priv_pem: bytes, pub_pem: bytes) -> tuple[Any, Any]:
    """(signing key or None, verification key) from PEM data of one family."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import (
        load_pem_private_key,
        load_pem_public_key,
    )

    kind: type[Any] = rsa.RSAPrivateKey if family == "rsa" else ec.EllipticCurvePrivateKey
    pub_kind: type[Any] = rsa.RSAPublicKey if family == "rsa" else ec.EllipticCurvePublicKey
    try:
        priv = load_pem_private_key(priv_pem, password=None) if priv_pem else None
        pub = load_pem_public_key(pub_pem) if pub_pem else None
    except (ValueError, TypeError) as err:
        raise AuthOptionsError() from err
    if (priv is not None and not isinstance(priv, kind)) or (
        pub is not None and not isinstance(pub, pub_kind)
    ):
        raise AuthOptionsError()
    if priv is None:
        if pub is None:
            raise MissingKeyError()
        return None, pub
    derived = priv.public_key()
    if pub is not None and pub.public_numbers() != derived.public_numbers():
        raise KeyMismatchError()
    return priv, derived
