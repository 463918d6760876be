"""Who leads, as the Raft driver last reported it, and what the member does on a change.

The driver tells ``changed(old, new)`` whenever a Ready's soft state names another
leader. The lessor runs on the leader only (promoted when this member wins,
demoted when it loses), and requests that need a leader wait for one here.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from pyetcd.logutil import Logger
from pyetcd.mvcc import Lessor
from pyetcd.raft import NONE

from .errors import NoLeaderError

__all__ = ["Leadership"]


class TermSource(Protocol):
    @property
    def term(self) -> int: ...


class LessorSource(Protocol):
    @property
    def lessor(self) -> Lessor: ...


class Leadership:
    """The leader of the cluster as this member knows it."""

    def __init__(
        self,
        member_id: int,
        raft: TermSource,
        stores: LessorSource,
        *,
        election_timeout: float,
        request_timeout: float,
        logger: Logger,
    ) -> None:
        """``election_timeout``, ``request_timeout``: seconds."""
        self.member_id = member_id
        self._raft = raft
        self._stores = stores
        self._election_timeout = election_timeout
        self._request_timeout = request_timeout
        self.log = logger
        #: The leader's member ID, NONE while there is none.
        self.lead = NONE
        #: etcd_server_leader_changes_seen_total
        self.changes_seen = 0
        self._has_leader = asyncio.Event()

    @property
    def is_leader(self) -> bool:
        return self.lead != NONE and self.lead == self.member_id

    def changed(self, old: int, new: int) -> None:
        """The driver's report: the leader went from ``old`` to ``new``."""
        self.lead = new
        # etcd's raft.node lines, word for word (harnesses wait for "elected leader").
        me, term = self.member_id, self._raft.term
        if new == NONE:
            msg = f"raft.node: {me:x} lost leader {old:x} at term {term}"
        elif old == NONE:
            msg = f"raft.node: {me:x} elected leader {new:x} at term {term}"
        else:
            msg = f"raft.node: {me:x} changed leader from {old:x} to {new:x} at term {term}"
        self.log.info(msg, {})
        if new == self.member_id:
            self._stores.lessor.promote(self._election_timeout)
        elif old == self.member_id:
            self._stores.lessor.demote()
        if new != NONE:
            self.changes_seen += 1
            self._has_leader.set()
        else:
            self._has_leader.clear()

    def restored(self) -> None:
        """A new backend (and lessor) was installed: the leader's lessor runs again."""
        if self.is_leader:
            self._stores.lessor.promote(self._election_timeout)

    async def wait_leader(self) -> None:
        """Return once there is a leader.

        Raises:
            NoLeaderError: none within the request timeout.
        """
        if self.lead != NONE:
            return
        try:
            await asyncio.wait_for(self._has_leader.wait(), self._request_timeout)
        except TimeoutError:
            raise NoLeaderError() from None
