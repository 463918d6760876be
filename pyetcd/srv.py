"""DNS SRV discovery of the initial cluster (etcd's ``--discovery-srv``, ``client/pkg/srv``).

Facts (etcd 3.5 ``embed.Config.GetDNSClusterNames`` and ``srv.GetCluster``):

- Two services are looked up under the domain: ``_etcd-server-ssl._tcp.<domain>``
  (scheme https) and ``_etcd-server._tcp.<domain>`` (scheme http);
  ``--discovery-srv-name X`` makes them ``_etcd-server-ssl-X`` and ``_etcd-server-X``.
  Both answers are combined; a lookup that fails only counts if neither found anything.
- Each SRV target becomes one ``name=scheme://target:port`` (the target without its
  trailing dot). A target that resolves to the same address as one of this member's
  advertised peer URLs is named after this member; the others are named ``0``, ``1``,
  ... in the order found (names do not enter member IDs, the URLs do). A target whose
  address matches this member's URL with the other scheme is an error.
- This member must be among them: ``cannot find local etcd member "<name>" in SRV
  records``.

Lookups go through the system's resolver configuration (``/etc/resolv.conf``) with
dnspython; target host names resolve with ``getaddrinfo``, as Go's resolver does.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from pyetcd.config import ServerConfig
from pyetcd.flagspec import split_host_port
from pyetcd.logutil import Logger

__all__ = ["SRVError", "srv_initial_cluster"]

#: How long one SRV lookup may take, all retries included (Go's resolver: 5 s x 2 tries).
LOOKUP_TIMEOUT = 10.0


class SRVError(Exception):
    """The SRV discovery did not give a cluster; ``str(exc)`` says why, in etcd's words."""


def _tcp_addr(host: str, port: str) -> str:
    """``host:port`` resolved to ``ip:port``, IPv4 first, as Go's ResolveTCPAddr."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise SRVError(f"lookup {host}: {exc.strerror or exc}") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    ip = str(infos[0][4][0])
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _lookup_srv(service: str, domain: str) -> list[tuple[str, int]]:
    """(target, port) of ``_<service>._tcp.<domain>``, by priority then weight."""
    # imported here: only --discovery-srv needs dnspython (~30 ms off every other start)
    import dns.exception
    import dns.rdtypes.IN.SRV
    import dns.resolver

    qname = f"_{service}._tcp.{domain}"
    try:
        resolver = dns.resolver.get_default_resolver()
        servers = resolver.nameservers
        where = f"lookup {qname} on {servers[0]}:53" if servers else f"lookup {qname}"
        answer = resolver.resolve(qname, "SRV", lifetime=LOOKUP_TIMEOUT)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        raise SRVError(f"{where}: no such host") from None
    except dns.exception.DNSException as exc:
        raise SRVError(f"lookup {qname}: {exc}") from None
    records = [r for r in answer if isinstance(r, dns.rdtypes.IN.SRV.SRV)]
    records.sort(key=lambda r: (r.priority, -r.weight))
    return [(r.target.to_text(), r.port) for r in records]


def get_cluster(
    scheme: str, service: str, name: str, domain: str, advertised: Sequence[str]
) -> list[str]:
    """``name=url`` entries from one SRV service (etcd's ``srv.GetCluster``).

    Raises:
        SRVError: the lookup failed, or no target was usable.
    """
    own: dict[str, str] = {}
    for url in advertised:
        own_host, own_port = split_host_port(url.partition("://")[2])
        own[_tcp_addr(own_host, own_port)] = url
    parts: list[str] = []
    temp_name = 0
    last_error: SRVError | None = None
    try:
        targets = _lookup_srv(service, domain)
    except SRVError as exc:
        raise SRVError(f"error querying DNS SRV records for _{service} {exc}") from None
    for target, port in targets:
        try:
            addr = _tcp_addr(target, str(port))
        except SRVError as exc:
            last_error = exc
            continue
        short = target.removesuffix(".")
        host = f"[{short}]" if ":" in short else short
        url = f"{scheme}://{host}:{port}"
        mine = own.get(addr)
        if mine is not None and not mine.startswith(scheme + "://"):
            last_error = SRVError(
                f"bootstrap at {url} from DNS for {service} has scheme mismatch with "
                f"expected peer {mine}"
            )
            continue
        if mine is not None:
            member = name
        else:
            member = str(temp_name)
            temp_name += 1
        parts.append(f"{member}={url}")
    if not parts:
        why = f" {last_error}" if last_error is not None else ""
        raise SRVError(f"error querying DNS SRV records for _{service}{why}")
    return parts


def srv_initial_cluster(cfg: ServerConfig, logger: Logger) -> str:
    """The ``--initial-cluster`` that ``--discovery-srv`` finds for this member.

    Raises:
        SRVError: nothing found, or this member is not among what was found.
    """
    suffix = f"-{cfg.discovery_srv_name}" if cfg.discovery_srv_name else ""
    found: list[str] = []
    errors: list[str] = []
    for scheme, base in (("https", "etcd-server-ssl"), ("http", "etcd-server")):
        service = base + suffix
        parts: list[str] = []
        fields: dict[str, object] = {
            "service-scheme": scheme,
            "service-name": service,
            "server-name": cfg.name,
            "discovery-srv": cfg.discovery_srv,
            "advertise-peer-urls": list(cfg.initial_advertise_peer_urls),
        }
        error = ""
        try:
            parts = get_cluster(
                scheme, service, cfg.name, cfg.discovery_srv, cfg.initial_advertise_peer_urls
            )
        except SRVError as exc:
            error = str(exc)
            errors.append(error)
        found += parts
        fields["found-cluster"] = parts
        if error:
            fields["error"] = error
        logger.info(f"get cluster for {base} SRV", fields)
    why = "; ".join(errors)
    if errors:
        logger.warn("failed to resolve during SRV discovery", {"error": why})
    if not found:
        raise SRVError(f"error setting up initial cluster: {why}")
    for node in found:
        logger.info("got bootstrap from DNS for etcd-server", {"node": node})
    if not any(part.partition("=")[0] == cfg.name for part in found):
        raise SRVError(
            f'error setting up initial cluster: cannot find local etcd member "{cfg.name}" '
            "in SRV records"
        )
    return ",".join(found)
