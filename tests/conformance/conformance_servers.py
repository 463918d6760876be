"""Real etcd 3.5.1 and pyetcd as processes on 127.0.0.1, started with identical flags.

Both members get the same ``--name``, ``--initial-advertise-peer-urls`` and
``--initial-cluster`` (hence the same member and cluster IDs, which etcd derives
from the advertised peer URLs and the cluster token). Only what cannot be shared
differs: the data dir and the ports they *listen* on. pyetcd advertises etcd's peer
URL but listens on its own port; a single member never dials a peer, so nothing
ever connects to the advertised address. The processes are ``tests.framework``
members.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

from tests.framework import Member

__all__ = ["MEMBER_NAME", "ServerPair"]

MEMBER_NAME = "conf"


class ServerPair:
    """etcd (the oracle) and pyetcd, started and restarted together."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="pyetcd-conformance-"))
        self.etcd = Member("etcd", MEMBER_NAME, self.root / "etcd")
        self.pyetcd = Member(
            "pyetcd", MEMBER_NAME, self.root / "pyetcd", advertise_peer_url=self.etcd.peer_url
        )
        self.restarts = 0

    @property
    def servers(self) -> tuple[Member, Member]:
        return (self.etcd, self.pyetcd)

    def start(self) -> None:
        for s in self.servers:
            s.start()
        for s in self.servers:
            s.wait_ready()

    def restart(self, fresh: bool = True) -> None:
        """Stop both; with ``fresh`` both come back on empty data dirs."""
        self.restarts += 1
        for s in self.servers:
            s.stop()
            s.close_channel()
            if fresh:
                s.wipe()
        self.start()

    def close(self) -> None:
        for s in self.servers:
            with contextlib.suppress(Exception):
                s.stop()
            s.close()
        shutil.rmtree(self.root, ignore_errors=True)
