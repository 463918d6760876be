"""pyetcd/server/etcdserver/lease.py: the leader's lease duties, with fake collaborators.

Pinned here, from etcd's 3.5 changelog:
- 3.5.13 (#17425): a leader revokes expired leases only after a quorum confirmed it
  still leads (a stale leader's revocations are dropped);
- 3.5.3 (#13932): before renewing, the leader applies what it knows committed, so a
  lease granted a moment ago is found.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from pyetcd.server.etcdserver.errors import RequestTimeoutError
from pyetcd.server.etcdserver.lease import LeaseServer


class Fakes:
    def __init__(self, *, confirmed: bool, leader_after: bool = True) -> None:
        self.events: list[str] = []
        self.proposed: list[Any] = []
        self.leader = True
        self.confirmed = confirmed
        self.leader_after = leader_after
        self.granted: set[int] = set()

    def server(self) -> LeaseServer:
        fakes = self

        class Lessor:
            def expired_leases(self) -> list[int]:
                return [7]

            def due_checkpoints(self) -> list[tuple[int, int]]:
                return []

            def renew(self, lease_id: int) -> int:
                fakes.events.append(f"renew {lease_id}")
                return 10 if lease_id in fakes.granted else 0

        class ReadIndexer:
            async def wait_linearizable(self) -> None:
                fakes.events.append("read index")
                if not fakes.confirmed:
                    raise RequestTimeoutError()
                fakes.leader = fakes.leader_after

        class Proposer:
            async def propose(self, req: Any, auth: Any = None) -> None:
                fakes.proposed.append(req)

        class Leadership:
            @property
            def is_leader(self) -> bool:
                return fakes.leader

            async def wait_leader(self) -> None:
                return None

        class ApplyWait:
            async def wait_committed_applied(self) -> None:
                fakes.events.append("apply wait")
                fakes.granted.add(9)  # the grant committed a moment ago is applied now

        stores = SimpleNamespace(lessor=Lessor(), root_auth=lambda: None)
        return LeaseServer(
            stores,  # type: ignore[arg-type]
            Proposer(),  # type: ignore[arg-type]
            ReadIndexer(),  # type: ignore[arg-type]
            Leadership(),  # type: ignore[arg-type]
            SimpleNamespace(),  # type: ignore[arg-type]
            ApplyWait(),
        )


async def _settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


@pytest.mark.parametrize(
    ("confirmed", "leader_after", "revoked"),
    [(True, True, True), (False, True, False), (True, False, False)],
    ids=["confirmed", "no-quorum", "deposed-meanwhile"],
)
async def test_expired_leases_are_revoked_only_by_a_confirmed_leader(
    confirmed: bool, leader_after: bool, revoked: bool
) -> None:
    fakes = Fakes(confirmed=confirmed, leader_after=leader_after)
    await fakes.server().expire_once()
    await _settle()
    assert fakes.events == ["read index"]
    assert [r.lease_revoke.ID for r in fakes.proposed] == ([7] if revoked else [])


async def test_the_leader_applies_what_is_committed_before_a_renewal() -> None:
    fakes = Fakes(confirmed=True)
    assert await fakes.server().lease_renew(9) == 10
    assert fakes.events == ["apply wait", "renew 9"]
