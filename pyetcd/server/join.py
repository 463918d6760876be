"""Joining a running cluster (``--initial-cluster-state existing``).

A new member learns the cluster ID and its own member ID from a running member's
peer port (``GET /members``, as etcd serves it), matching itself by peer URLs.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence

from .membership import Member

__all__ = ["JoinError", "fetch_cluster", "match_local_member", "serve_members"]


class JoinError(Exception):
    """The running cluster could not be reached or does not list this member."""


async def serve_members(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    cluster_id: int,
    members: Callable[[], Iterable[Member]],
) -> None:
    """Answer one HTTP GET on the peer port; ``reader`` is positioned after "GET "."""
    head = await reader.readuntil(b"\r\n\r\n")
    path = head.split(b" ", 1)[0]
    if path != b"/members":
        body = b"404 page not found\n"
        status = b"404 Not Found"
        ctype = b"text/plain; charset=utf-8"
    else:
        body = json.dumps(
            [
                {
                    "id": m.id,
                    "name": m.name,
                    "peerURLs": list(m.peer_urls),
                    "clientURLs": list(m.client_urls),
                    "isLearner": m.is_learner,
                }
                for m in members()
            ]
        ).encode()
        status = b"200 OK"
        ctype = b"application/json"
    writer.write(
        b"HTTP/1.1 "
        + status
        + b"\r\nContent-Type: "
        + ctype
        + b"\r\nX-Etcd-Cluster-ID: "
        + f"{cluster_id:x}".encode()
        + b"\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\nConnection: close\r\n\r\n"
        + body
    )
    await writer.drain()


def fetch_cluster(
    peer_urls: Iterable[str], timeout: float = 2.0, ssl_context: ssl.SSLContext | None = None
) -> tuple[int, list[Member]]:
    """(cluster ID, members) from the first running member that answers.

    ``ssl_context``: how to reach ``https://`` peer URLs (the peer client TLS settings).

    Raises:
        JoinError: none answered.
    """
    errors: list[str] = []
    for url in peer_urls:
        try:
            ctx = ssl_context if url.startswith("https:") else None
            with urllib.request.urlopen(
                url.rstrip("/") + "/members", timeout=timeout, context=ctx
            ) as resp:
                cluster_id = int(resp.headers.get("X-Etcd-Cluster-ID", "0"), 16)
                raw = json.loads(resp.read())
        except (OSError, urllib.error.URLError, ValueError) as err:
            errors.append(f"{url}: {err}")
            continue
        members = [
            Member(
                id=int(m["id"]),
                name=m.get("name", ""),
                peer_urls=tuple(m.get("peerURLs", ())),
                client_urls=tuple(m.get("clientURLs", ())),
                is_learner=bool(m.get("isLearner", False)),
            )
            for m in raw
        ]
        return cluster_id, members
    raise JoinError(
        "cannot fetch cluster info from peer urls: could not retrieve cluster information "
        "from the given URLs (" + "; ".join(errors) + ")"
    )


def match_local_member(members: Sequence[Member], advertise_peer_urls: Sequence[str]) -> Member:
    """The member whose peer URLs are ours (etcd's ValidateClusterAndAssignIDs)."""
    want = sorted(advertise_peer_urls)
    for m in members:
        if sorted(m.peer_urls) == want:
            return m
    raise JoinError(
        "error validating peerURLs "
        f"{{ClusterID:... Members:[{len(members)} members]}}: unmatched member while checking "
        f"PeerURLs ({','.join(want)} not found; was the member added with etcdctl member add?)"
    )
