"""Member and cluster IDs, and the static-bootstrap checks, as etcd derives them.

Facts (etcd 3.5 ``membership``; checked against the real etcd 3.5.1 in tests/test_ids.py):

- Member ID: the first 8 bytes, big-endian, of SHA-1 over the member's peer URLs
  (sorted, concatenated with no separator) followed by the cluster token. A member
  added at runtime has no token; the Unix time in decimal seconds is appended instead.
- Cluster ID: the first 8 bytes, big-endian, of SHA-1 over the member IDs in ascending
  order, each as 8 big-endian bytes.
- ``--initial-cluster`` is ``name=url,name=url,...``; a name may repeat to give one
  member several URLs.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pyetcd.config import ServerConfig
from pyetcd.flagspec import FlagValueError, check_url, split_host_port

__all__ = [
    "BootstrapError",
    "InitialCluster",
    "InitialMember",
    "bootstrap_cluster",
    "cluster_id",
    "member_id",
    "parse_initial_cluster",
    "urls_map_string",
]

URLsMap = Mapping[str, tuple[str, ...]]


class BootstrapError(Exception):
    """The static bootstrap flags are inconsistent; ``str(exc)`` is etcd's error text."""


def _first8(data: bytes) -> int:
    return int.from_bytes(hashlib.sha1(data).digest()[:8], "big")


def member_id(peer_urls: Iterable[str], cluster_token: str, now: int | None = None) -> int:
    """The ID etcd gives a member with ``peer_urls`` in a cluster with ``cluster_token``.

    Args:
        peer_urls: the member's peer URLs, in any order.
        cluster_token: ``--initial-cluster-token`` for bootstrap members, "" for a member
            added at runtime.
        now: Unix seconds, only for members added at runtime.
    """
    data = "".join(sorted(peer_urls)) + cluster_token
    if now is not None:
        data += str(now)
    return _first8(data.encode())


def cluster_id(member_ids: Iterable[int]) -> int:
    """The cluster ID etcd derives from the IDs of the bootstrap members."""
    return _first8(b"".join(mid.to_bytes(8, "big") for mid in sorted(member_ids)))


def parse_initial_cluster(text: str) -> dict[str, tuple[str, ...]]:
    """Parse ``--initial-cluster`` into name -> sorted peer URLs (etcd's URLsMap).

    Raises:
        BootstrapError: ``error setting up initial cluster: <URL error>``.
    """
    raw: dict[str, list[str]] = {}
    for item in text.split(","):
        if item == "":
            continue
        name, _, url = item.partition("=")
        raw.setdefault(name, []).append(url)
    try:
        return {
            name: tuple(sorted(check_url(url.strip()) for url in urls))
            for name, urls in raw.items()
        }
    except FlagValueError as exc:
        raise BootstrapError(f"error setting up initial cluster: {exc}") from None


def urls_map_string(urls_map: URLsMap) -> str:
    """etcd's URLsMap.String(): sorted ``name=url`` pairs joined by commas."""
    return ",".join(sorted(f"{name}={url}" for name, urls in urls_map.items() for url in urls))


def _go_quote_list(items: Iterable[str]) -> str:
    return "[" + " ".join(f'"{item}"' for item in items) + "]"


def _resolve(url: str) -> str:
    """Replace a host name in ``url`` with its IPv4 address, as etcd does to compare URLs."""
    scheme, _, hostport = url.partition("://")
    if scheme in ("unix", "unixs"):
        return url
    host, port = split_host_port(hostport)
    try:
        ipaddress.ip_address(host)
        return url
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)
    except OSError as exc:
        raise BootstrapError(f"failed to resolve {url}: {exc}") from None
    return f"{scheme}://{infos[0][4][0]}:{port}"


def _urls_equal(a: list[str], b: list[str]) -> str | None:
    """None when the URL lists match after resolving; else etcd's reason text."""
    if len(a) != len(b):
        return f"len({_go_quote_list(a)}) != len({_go_quote_list(b)})"
    resolved_a, resolved_b = sorted(map(_resolve, a)), sorted(map(_resolve, b))
    for i, (ra, rb) in enumerate(zip(resolved_a, resolved_b, strict=True)):
        if ra != rb:
            return f'"{ra}"(resolved from "{a[i]}") != "{rb}"(resolved from "{b[i]}")'
    return None


def _check_advertise_matches(name: str, advertised: tuple[str, ...], urls_map: URLsMap) -> None:
    initial, adv = sorted(urls_map[name]), sorted(advertised)
    reason = _urls_equal(adv, initial)
    if reason is None:
        return
    adv_str = ",".join(adv)
    missing = [f"{name}={url}" for url in initial if url not in adv]
    if missing:
        raise BootstrapError(
            f"--initial-cluster has {','.join(missing)} but missing from "
            f"--initial-advertise-peer-urls={adv_str} ({reason})"
        )
    own = urls_map_string({name: advertised})
    extra = [url for url in adv if url not in initial]
    if extra:
        raise BootstrapError(
            f"--initial-advertise-peer-urls has {','.join(extra)} but missing from "
            f"--initial-cluster={own}"
        )
    raise BootstrapError(f"failed to resolve {adv_str} to match --initial-cluster={own} ({reason})")


def _has_duplicate_url(urls_map: URLsMap) -> bool:
    seen: set[str] = set()
    for urls in urls_map.values():
        for url in urls:
            if url in seen:
                return True
            seen.add(url)
    return False


@dataclass(frozen=True, slots=True)
class InitialMember:
    """One member of ``--initial-cluster`` with its derived ID."""

    name: str
    id: int
    peer_urls: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class InitialCluster:
    """The cluster a new member bootstraps: members sorted by ID, and the two IDs."""

    members: tuple[InitialMember, ...]
    cluster_id: int
    local_member_id: int


def bootstrap_cluster(cfg: ServerConfig) -> InitialCluster:
    """Check the static-bootstrap flags and derive the IDs, as a member without a WAL does.

    With ``--initial-cluster-state new`` every check of etcd's VerifyBootstrap runs; with
    ``existing`` only the local-name and duplicate-URL checks (the member list then comes
    from the running cluster, so the IDs returned are what a new cluster would use).

    Raises:
        BootstrapError: etcd's message, e.g. ``couldn't find local name "x" in the
            initial cluster configuration``.
    """
    urls_map = parse_initial_cluster(cfg.initial_cluster)
    if cfg.name not in urls_map:
        raise BootstrapError(
            f'couldn\'t find local name "{cfg.name}" in the initial cluster configuration'
        )
    if cfg.initial_cluster_state == "new":
        _check_advertise_matches(cfg.name, cfg.initial_advertise_peer_urls, urls_map)
    if _has_duplicate_url(urls_map):
        raise BootstrapError(f"initial cluster {urls_map_string(urls_map)} has duplicate url")
    members: dict[int, InitialMember] = {}
    for name, urls in urls_map.items():
        mid = member_id(urls, cfg.initial_cluster_token)
        if mid in members:
            raise BootstrapError(f"member exists with identical ID {mid:x}")
        if mid == 0:
            raise BootstrapError(f"cannot use {mid:x} as member id")
        members[mid] = InitialMember(name, mid, urls)
    ordered = tuple(members[mid] for mid in sorted(members))
    local = next(m.id for m in ordered if m.name == cfg.name)
    return InitialCluster(ordered, cluster_id(members), local)
