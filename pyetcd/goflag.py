"""Go's flag value syntax: booleans, integers, durations and etcd's URL checks.

The same input is accepted or refused with the same words as by Go's ``flag``,
``strconv`` and ``time`` packages and etcd's URL validation (``flagspec`` says which
flag takes which kind of value).
"""

from __future__ import annotations

import re

__all__ = [
    "FlagValueError",
    "check_url",
    "parse_bool",
    "parse_duration",
    "parse_int",
    "parse_urls",
    "split_host_port",
]


class FlagValueError(ValueError):
    """A flag value does not parse; ``str(exc)`` is the reason Go's flag package gives."""


_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_INT_RE = re.compile(r"[+-]?[0-9][0-9a-zA-Z_]*")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_RE = re.compile(r"([0-9]*(?:\.[0-9]*)?)([a-zµμ]+)")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")


def parse_bool(text: str) -> bool:
    """Go's ``strconv.ParseBool``."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise FlagValueError("parse error")


def parse_int(text: str, unsigned: bool) -> int:
    """Go's ``strconv.ParseInt/ParseUint(text, 0, 64)``: 0x/0o/0b and leading-0 octal."""
    if not _INT_RE.fullmatch(text) or (unsigned and text[0] in "+-"):
        raise FlagValueError("parse error")
    sign = -1 if text[0] == "-" else 1
    digits = text.lstrip("+-")
    try:
        if digits[:2].lower() in ("0x", "0o", "0b"):
            value = int(digits, 0)
        elif len(digits) > 1 and digits[0] == "0":
            value = int(digits, 8)
        else:
            value = int(digits, 10)
    except ValueError:
        raise FlagValueError("parse error") from None
    value *= sign
    low, high = (0, 2**64 - 1) if unsigned else (-(2**63), 2**63 - 1)
    if not low <= value <= high:
        raise FlagValueError("value out of range")
    return value


def parse_duration(text: str) -> float:
    """Go's ``time.ParseDuration`` (``1h30m``, ``100ms``, ``0``), in seconds."""
    body = text.lstrip("+-")
    sign = -1.0 if text.startswith("-") else 1.0
    if body == "0":
        return 0.0
    if not body:
        raise FlagValueError("parse error")
    total, pos = 0.0, 0
    while pos < len(body):
        match = _DURATION_RE.match(body, pos)
        if not match or match.group(1) in ("", ".") or match.group(2) not in _DURATION_UNITS:
            raise FlagValueError("parse error")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    return sign * total


def split_host_port(hostport: str) -> tuple[str, str]:
    """Go's ``net.SplitHostPort`` for the forms etcd meets (``h:p``, ``[v6]:p``)."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0 or not hostport[end + 1 :].startswith(":"):
            raise FlagValueError(f"address {hostport}: missing port in address")
        return hostport[1:end], hostport[end + 2 :]
    if ":" not in hostport:
        raise FlagValueError(f"address {hostport}: missing port in address")
    host, _, port = hostport.rpartition(":")
    if ":" in host:
        raise FlagValueError(f"address {hostport}: too many colons in address")
    return host, port


def check_url(url: str) -> str:
    """One URL checked as etcd's ``types.NewURLs`` does; returns it unchanged.

    Raises:
        FlagValueError: etcd's text, e.g. ``URL must not contain a path: <url>``.
    """
    if "://" in url:
        scheme, _, rest = url.partition("://")
    else:
        match = _SCHEME_RE.match(url)
        if match is None and ":" in url.split("/", 1)[0]:
            raise FlagValueError(f'parse "{url}": first path segment in URL cannot contain colon')
        scheme, rest = (match.group(0)[:-1], "") if match else ("", url)
    if scheme in ("unix", "unixs"):
        return url
    if scheme not in ("http", "https"):
        raise FlagValueError(f"URL scheme must be http, https, unix, or unixs: {url}")
    host = re.split(r"[/?#]", rest, maxsplit=1)[0]
    try:
        split_host_port(host)
    except FlagValueError:
        raise FlagValueError(f'URL address does not have the form "host:port": {url}') from None
    if rest[len(host) :].split("?", 1)[0].split("#", 1)[0]:
        raise FlagValueError(f"URL must not contain a path: {url}")
    return url


def parse_urls(text: str, unique: bool = True) -> tuple[str, ...]:
    """etcd's URL list: comma-separated, each checked, then sorted (and de-duplicated)."""
    if text == "":
        return ()
    urls = [check_url(part.strip()) for part in text.split(",")]
    return tuple(sorted(set(urls) if unique else urls))
