"""Joining a running cluster (``--initial-cluster-state existing``).

A new member learns the cluster ID and its own member ID from a running member's
peer port (``GET /members``, as etcd serves it), matching itself by peer URLs.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Sequence

from pyetcd.server.rafthttp.handler import members_from_json

from .membership import Member

__all__ = ["JoinError", "fetch_cluster", "match_local_member"]


class JoinError(Exception):
    """The running cluster could not be reached or does not list this member."""


def fetch_cluster(
    peer_urls: Iterable[str], timeout: float = 2.0, ssl_context: ssl.SSLContext | None = None
) -> tuple[int, list[Member]]:
    """(cluster ID, members) from the first running member that answers.

    ``ssl_context``: how to reach ``https://`` peer URLs (the peer client TLS settings).

    Raises:
        JoinError: none answered.
    """
    # only a joining member needs an HTTP client: ~15 ms off every other start
    import urllib.error
    import urllib.request

    errors: list[str] = []
    for url in peer_urls:
        try:
            ctx = ssl_context if url.startswith("https:") else None
            with urllib.request.urlopen(
                url.rstrip("/") + "/members", timeout=timeout, context=ctx
            ) as resp:
                cluster_id = int(resp.headers.get("X-Etcd-Cluster-ID", "0"), 16)
                members = members_from_json(resp.read())
        except (OSError, urllib.error.URLError, ValueError) as err:
            errors.append(f"{url}: {err}")
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
