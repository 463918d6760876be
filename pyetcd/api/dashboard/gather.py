"""Asking the other members for their views: ``GET /dashboard/api/member`` on each
one's first client URL, with the page's token, all at once, each within a timeout.

The client port is used (not the peer port) so that a peer answers with exactly the
checks it applies to any dashboard: the token the page holds is valid on every member
(Authenticate goes through Raft), and nothing is readable this way that the caller
could not read from that member directly.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Iterable, Mapping
from typing import Any

from pyetcd.httpwire import HTTPWireError, request

from .state import MemberRef

__all__ = ["fetch_view", "fetch_views"]

MEMBER_PATH = "/dashboard/api/member"


async def fetch_view(
    url: str, token: str, *, ssl_context: ssl.SSLContext | None, timeout: float
) -> dict[str, Any] | str:
    """One member's view from client URL ``url``, or why it could not be had."""
    headers = (("Authorization", token),) if token else ()
    try:
        resp = await request(
            url.rstrip("/") + MEMBER_PATH, ssl=ssl_context, timeout=timeout, headers=headers
        )
    except TimeoutError:
        return "timed out"
    except (OSError, ValueError, HTTPWireError) as err:
        return str(err) or type(err).__name__
    if resp.status != 200:
        try:
            return str(json.loads(resp.body).get("message", resp.text))
        except ValueError:
            return f"HTTP {resp.status}"
    try:
        view = json.loads(resp.body)
    except ValueError:
        return "not a dashboard answer"
    return view if isinstance(view, dict) else "not a dashboard answer"


async def fetch_views(
    members: Iterable[MemberRef],
    skip: int,
    token: str,
    *,
    ssl_context: ssl.SSLContext | None,
    timeout: float,
) -> Mapping[int, dict[str, Any] | str]:
    """Every member's view but ``skip``'s (this member), fetched concurrently."""
    asks: dict[int, asyncio.Future[dict[str, Any] | str]] = {}
    out: dict[int, dict[str, Any] | str] = {}
    for m in members:
        if m.id == skip:
            continue
        if not m.client_urls:
            out[m.id] = "has not published its client URLs yet"
            continue
        asks[m.id] = asyncio.ensure_future(
            fetch_view(m.client_urls[0], token, ssl_context=ssl_context, timeout=timeout)
        )
    if asks:
        await asyncio.wait(asks.values())
    for member_id, fut in asks.items():
        out[member_id] = fut.result()
    return out
