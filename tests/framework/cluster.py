"""N members of one kind bootstrapped statically (etcd's ``--initial-cluster`` flags).

Members are ``infra1``..``infraN`` in one directory, on free 127.0.0.1 ports, with
the cluster's token and zap logs to stderr. ``Cluster.close`` kills every process
the cluster started (members added to ``members`` later too).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from .env import HarnessError, free_ports, wait_until
from .etcdctl import Etcdctl
from .member import START_TIMEOUT, Member

__all__ = ["Cluster", "running_cluster"]

LOG_FLAGS = ("--logger", "zap", "--log-outputs", "stderr")


class Cluster:
    """N members of one cluster (``kind``: pyetcd, etcd or etcd_3.4)."""

    def __init__(
        self,
        kind: str,
        root: Path,
        size: int = 3,
        token: str = "tok",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.kind = kind
        self.root = root
        self.size = size
        self.token = token
        self.extra_args = list(extra_args)
        ports = free_ports(2 * size)
        self.members: list[Member] = [
            self.new_member(f"infra{i + 1}", ports[2 * i], ports[2 * i + 1]) for i in range(size)
        ]

    def new_member(self, name: str, client_port: int, peer_port: int) -> Member:
        """A member with this cluster's token and flags (not started, not in ``members``)."""
        return Member(
            self.kind,
            name,
            self.root,
            client_port=client_port,
            peer_port=peer_port,
            initial_cluster_token=self.token,
            extra_args=[*LOG_FLAGS, *self.extra_args],
        )

    @property
    def initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @property
    def endpoints(self) -> str:
        return ",".join(m.endpoint for m in self.members)

    def member(self, name: str) -> Member:
        return next(m for m in self.members if m.name == name)

    def start_member(self, m: Member, state: str = "new") -> None:
        """Start ``m`` with today's ``initial_cluster`` (ignored by a member that has
        data) and ``state``."""
        m.initial_cluster = self.initial_cluster
        m.initial_cluster_state = state
        m.start()

    def restart(self, m: Member) -> None:
        """Start a stopped member again on its data dir."""
        self.start_member(m)

    def start(self) -> Member:
        """Start every member; return the leader once all of them know it."""
        for m in self.members:
            self.start_member(m)
        return self.wait_leader(self.members, timeout=START_TIMEOUT)

    def leader_of(self, m: Member) -> int:
        st = m.status()
        return 0 if st is None else int(st.leader)

    def wait_leader(
        self, among: Sequence[Member] | None = None, timeout: float = 15.0, not_id: int = 0
    ) -> Member:
        """Wait until every member in ``among`` answers Status and all agree on one leader
        (other than ``not_id``) that is itself among them; return it."""
        group = list(self.members if among is None else among)

        def probe() -> Member | None:
            leaders = set()
            for m in group:
                m.check_alive()
                st = m.status(timeout=0.5)
                if st is None or st.leader == 0:
                    return None
                leaders.add(int(st.leader))
            if len(leaders) != 1 or not_id in leaders:
                return None
            (lead,) = leaders
            return next((m for m in group if self.member_id(m) == lead), None)

        return wait_until(f"one leader among {[m.name for m in group]}", probe, timeout)

    def member_id(self, m: Member) -> int:
        st = m.status()
        if st is None:
            raise HarnessError(f"{m.name} does not answer Status")
        return int(st.header.member_id)

    def etcdctl(
        self, *args: str, endpoints: str | None = None, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run stock etcdctl 3.5.1 against ``endpoints`` (default: every member)."""
        ctl = Etcdctl.v35()
        cmd = ctl.argv(endpoints or self.endpoints, *args)
        out = subprocess.run(cmd, capture_output=True, text=True, env=ctl.env(), timeout=timeout)
        if check and out.returncode != 0:
            raise HarnessError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr}")
        return out

    def logs(self, chars: int = 4000) -> str:
        """The tail of every member's log, for a failure report."""
        return "\n".join(
            f"----- {m.name} ({m.log_path}) -----\n{m.log_text()[-chars:]}" for m in self.members
        )

    def close(self) -> None:
        """Kill every process this cluster started (SIGCONT first for paused ones)."""
        for m in self.members:
            m.close()


@contextlib.contextmanager
def running_cluster(
    kind: str = "pyetcd", size: int = 3, extra_args: Sequence[str] = (), keep_dir: bool = False
) -> Iterator[Cluster]:
    """A started cluster in a fresh temp dir, always torn down (processes, then dir)."""
    root = Path(tempfile.mkdtemp(prefix=f"cluster-{kind}-"))
    c = Cluster(kind, root, size=size, extra_args=extra_args)
    try:
        c.start()
        yield c
    finally:
        c.close()
        if not keep_dir:
            shutil.rmtree(root, ignore_errors=True)
