"""EtcdServer's cluster duties: peers, snapshots sent and received, membership changes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pyetcd.ids import member_id as derive_member_id
from pyetcd.raft import ConfChange, ConfChangeSingle, ConfChangeType, Snapshot
from pyetcd.server.rafthttp.handler import PeerHTTP

from .errors import (
    InvalidPeerURLsError,
    LearnerNotReadyError,
    MemberNotFoundError,
    MemberNotLearnerError,
    NotEnoughStartedMembersError,
    NotLeaderError,
    RequestTimeoutError,
)
from .membership import Member
from .state import ServerState

if TYPE_CHECKING:
    from .wait import AppliedWait

__all__ = ["ClusterOps"]


class ClusterOps(ServerState):
    """Mixed into EtcdServer."""

    applied_wait: AppliedWait  # EtcdServer's (declared for the type checker)

    if TYPE_CHECKING:

        def member_list(self) -> list[Member]: ...

    # -- peers and snapshots ------------------------------------------------------------------

    def _sync_peers(self) -> None:
        """Make the transport's peers match the applied membership."""
        tr = self.transport
        for m in self.membership.members.values():
            if m.id != self.member_id and m.peer_urls:
                if tr.has_peer(m.id):
                    tr.update_peer(m.id, m.peer_urls)
                else:
                    tr.add_peer(m.id, m.peer_urls)
        for member_id in self.membership.removed:
            tr.remove_peer(member_id)
        if self.member_id in self.membership.removed and not self._stopped:
            self.log.warn("the member has been permanently removed from the cluster", {})
            self.removed_event.set()

    async def open_snapshot_db(self, msg: object) -> AsyncIterator[bytes]:
        """The backend, consistent as of now, streamed to a follower with a MsgSnap."""
        fd, path = tempfile.mkstemp(prefix="pyetcd-send-", suffix=".db")
        os.close(fd)
        try:
            self.store.commit()
            await asyncio.to_thread(self.store.backend.snapshot_to, path)
            with open(path, "rb") as f:
                while chunk := await asyncio.to_thread(f.read, 1 << 20):
                    yield chunk
        finally:
            os.unlink(path)

    def on_snapshot_received(self, msg: object, path: str | None) -> None:
        if path is not None:
            self._received_db = path

    def _restore_backend(self, snap: Snapshot) -> None:
        """Replace the backend with the one that came with ``snap`` (etcd's recoverSnapshot)."""
        path = self._received_db
        if path is None:
            raise RuntimeError(f"no backend received for snapshot {snap.metadata.index}")
        self._received_db = None
        db = os.path.join(self.cfg.data_dir, "member", "snap", "db")
        self.store.close()
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(db + suffix)
        os.replace(path, db)
        self._open_store()
        self.log.info(
            "restored backend from snapshot",
            {
                "snapshot-index": snap.metadata.index,
                "consistent-index": self.store.consistent_index,
            },
        )

    async def serve_peer_http(
        self, first: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """One HTTP request on the peer port (``first``: its first 4 bytes, already read)."""
        await PeerHTTP(self, self.log).serve(first, reader, writer)

    async def wait_committed_applied(self) -> None:
        """Return once this member applied all it knows committed (etcd's ApplyWait)."""
        await self.applied_wait.wait(self.raft.rawnode.raft.raft_log.committed)

    # -- membership changes ------------------------------------------------------------------

    async def member_add(
        self, peer_urls: list[str], is_learner: bool
    ) -> tuple[Member, list[Member]]:
        """Add a member (etcd: ID from the peer URLs and the current time)."""
        if not peer_urls:
            raise InvalidPeerURLsError()
        for url in peer_urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.port is None:
                raise InvalidPeerURLsError()
        new_id = derive_member_id(peer_urls, "", int(time.time()))
        member = Member(new_id, "", tuple(peer_urls), (), is_learner)
        if not is_learner:
            self._check_quorum_after(len(self._voters()) + 1, len(self._started_voters()))
        cc_type = ConfChangeType.ADD_LEARNER_NODE if is_learner else ConfChangeType.ADD_NODE
        await self._propose_conf_change(cc_type, member)
        return member, self.membership.sorted()

    async def member_remove(self, mid: int) -> list[Member]:
        m = self.membership.members.get(mid)
        if m is None:
            raise MemberNotFoundError()
        if not m.is_learner:
            voters = self._voters()
            started = [v for v in self._started_voters() if v != mid]
            self._check_quorum_after(len(voters) - 1, len(started))
        await self._propose_conf_change(ConfChangeType.REMOVE_NODE, m)
        return self.membership.sorted()

    async def member_update(self, mid: int, peer_urls: list[str]) -> list[Member]:
        m = self.membership.members.get(mid)
        if m is None:
            raise MemberNotFoundError()
        await self._propose_conf_change(
            ConfChangeType.UPDATE_NODE,
            Member(mid, m.name, tuple(peer_urls), m.client_urls, m.is_learner),
        )
        return self.membership.sorted()

    async def member_promote(self, mid: int) -> list[Member]:
        m = self.membership.members.get(mid)
        if m is None:
            raise MemberNotFoundError()
        if not m.is_learner:
            raise MemberNotLearnerError()
        if not self.is_leader:
            # Only the leader knows whether the learner has caught up.
            raise NotLeaderError()
        pr = self.raft.rawnode.raft.trk.progress.get(mid)
        last = self.raft.rawnode.raft.raft_log.last_index()
        if pr is None or pr.match < last * 0.9:
            raise LearnerNotReadyError()
        await self._propose_conf_change(ConfChangeType.ADD_NODE, m)
        return self.membership.sorted()

    def _voters(self) -> list[int]:
        return [i for i, m in self.membership.members.items() if not m.is_learner]

    def _started_voters(self) -> list[int]:
        # A member counts as started when it is this member or its stream is up.
        return [i for i in self._voters() if i == self.member_id or self.transport.peer_active(i)]

    def _check_quorum_after(self, voters: int, started: int) -> None:
        if self.cfg.strict_reconfig_check and started < voters // 2 + 1:
            raise NotEnoughStartedMembersError()

    async def _propose_conf_change(self, cc_type: ConfChangeType, member: Member) -> None:
        req_id = self.idgen.next()
        ctx = member.encode_with_request(req_id)
        cc = ConfChange(changes=(ConfChangeSingle(cc_type, member.id),), context=ctx)
        fut = self.waits.register(req_id)
        self.raft.propose_conf_change(cc)
        try:
            await asyncio.wait_for(fut, self.request_timeout)
        except TimeoutError:
            self.waits.cancel(req_id)
            raise RequestTimeoutError() from None
