"""Joining a running cluster (``--initial-cluster-state existing``).

A new member learns the cluster ID and its own member ID from a running member's
peer port (``GET /members``, as etcd serves it), matching itself by peer URLs.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable, Sequence

from pyetcd.httpwire import HTTPWireError, request
from pyetcd.server.rafthttp.handler import MEMBERS_PATH, members_from_json

from .membership import Member

__all__ = ["JoinError", "fetch_cluster", "match_local_member"]


class JoinError(Exception):
    """The running cluster could not be reached or does not list this member."""


def fetch_cluster(
    peer_urls: Iterable[str], timeout: float = 2.0, ssl_context: ssl.SSLContext | None = None
) -> tuple[int, list[Member]]:
    """(cluster ID, members) from the first running member that answers.

    Blocking: it runs its own event loop, so call it off the member's loop (the server
    opens its storage in a worker thread).
    ``ssl_context``: how to reach ``https://`` peer URLs (the peer client TLS settings).

    Raises:
        JoinError: none answered.
    """
    return asyncio.run(_fetch_cluster(list(peer_urls), timeout, ssl_context))


async def _fetch_cluster(
    peer_urls: list[str], timeout: float, ssl_context: ssl.SSLContext | None
) -> tuple[int, list[Member]]:
    errors: list[str] = []
    for url in peer_urls:
        try:
            resp = await request(url.rstrip("/") + MEMBERS_PATH, ssl=ssl_context, timeout=timeout)
            if resp.status != 200:
                raise ValueError(f"HTTP {resp.status}: {resp.text}")
            cluster_id = int(resp.header("X-Etcd-Cluster-ID") or "0", 16)
            members = members_from_json(resp.body)
        except (OSError, TimeoutError, HTTPWireError, ValueError) as err:
            errors.append(f"{url}: {err or type(err).__name__}")
            continue
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
