"""Corruption checks (etcd's ``corrupt.go``): compare KV hashes with the peers'.

- Initial check (``--experimental-initial-corrupt-check``): before serving clients, the
  member hashes its store and asks every peer for its hash at the same revision
  (``GET /members/hashkv`` on the peer port, a JSON ``HashKVRequest`` body). A peer
  with the same compaction revision and another hash means this member's data differs:
  it refuses to start (``<id> found data inconsistency with peers``).
- Periodic check (``--experimental-corrupt-check-time``): the leader hashes, asks the
  followers at its revision, confirms it still leads (a linearizable read), hashes
  again, and raises the CORRUPT alarm through Raft when a member's data is wrong: a
  follower ahead of the leader, with a newer compaction, or with another hash at the
  same compaction; the leader itself if its own two hashes disagree. The alarm carries
  member ID 0, as from etcd 3.5.7 (#14852): the leader cannot tell whose data is the
  wrong one, so the logs name the member and the alarm names none.
- Compact hash check (``--experimental-compact-hash-check-enabled``, every
  ``--experimental-compact-hash-check-time``; etcd 3.5.5+): compactions happen at the
  same revision on every member, and each takes the store's hash as it compacts
  (``mvcc.HashStorage``, the last ten). The leader takes its hashes newest first, not
  older than the newest one already confirmed, and asks every follower for HashKV at
  that revision, which a follower answers from its own kept hash. A follower at the same
  previous compaction with another hash raises the CORRUPT alarm; as in etcd 3.5 the
  alarm carries member ID 0 (which side is wrong is not known; 3.6 decides by quorum)
  and the log line names the follower. A revision that not every follower could answer
  is skipped for the next older one.

Under a CORRUPT alarm every member refuses writes at apply with "etcdserver: corrupt
cluster" (see apply.py), as etcd's corrupt applier does; reads are still served.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass

from pyetcd.httpwire import HTTPWireError, request
from pyetcd.logutil import Logger, go_duration
from pyetcd.pb import raft_internal_pb2, rpc_pb2
from pyetcd.server.rafthttp.handler import HASHKV_PATH

from .leadership import Leadership
from .proposer import Proposer
from .read_index import ReadIndexer
from .stores import Stores

__all__ = ["CorruptionChecker", "DataInconsistencyError", "PeerHash"]


class DataInconsistencyError(Exception):
    """The initial check found this member's data different from a peer's."""


@dataclass(frozen=True, slots=True)
class PeerHash:
    """One peer's answer: its hash at the asked revision, or why there is none."""

    member_id: int
    endpoints: tuple[str, ...]
    revision: int = 0  # the peer's current revision (the response header's)
    hash: int = 0
    compact_revision: int = 0
    error: str = ""  # "" when the fields above are the answer


class CorruptionChecker:
    """The corruption checks of one member (see the module docstring)."""

    def __init__(
        self,
        member_id: int,
        stores: Stores,
        leadership: Leadership,
        read_indexer: ReadIndexer,
        proposer: Proposer,
        logger: Logger,
        *,
        request_timeout: float,
        peer_ssl: ssl.SSLContext | None,
    ) -> None:
        self.member_id = member_id
        self.stores = stores
        self.leadership = leadership
        self.read_indexer = read_indexer
        self.proposer = proposer
        self.log = logger
        self.request_timeout = request_timeout
        self.peer_ssl = peer_ssl
        # the newest compaction revision the compact hash check found equal everywhere
        self._latest_revision_checked = 0

    def _hash(self) -> tuple[int, int, int]:
        """(hash, revision, compact revision) of the local store now."""
        return self.stores.kv.hash_kv(0)

    # -- asking the peers ---------------------------------------------------------------------

    async def peer_hashes(self, revision: int) -> list[PeerHash]:
        """Every other member's hash at ``revision`` (one entry per peer)."""
        peers = [
            m for m in self.stores.membership.sorted() if m.id != self.member_id and m.peer_urls
        ]
        return list(await asyncio.gather(*(self._ask(m.id, m.peer_urls, revision) for m in peers)))

    async def _ask(self, member_id: int, urls: tuple[str, ...], revision: int) -> PeerHash:
        error = ""
        body = json.dumps({"revision": revision}).encode()
        for url in urls:
            try:
                resp = await request(
                    url.rstrip("/") + HASHKV_PATH,
                    "GET",
                    body,
                    ssl=self.peer_ssl,
                    timeout=self.request_timeout,
                    content_type="application/json",
                )
                if resp.status != 200:
                    raise ValueError(resp.text.strip() or f"HTTP {resp.status}")
                doc = json.loads(resp.body)
                return PeerHash(
                    member_id,
                    urls,
                    revision=int(doc.get("header", {}).get("revision", 0)),
                    hash=int(doc.get("hash", 0)),
                    compact_revision=int(doc.get("compact_revision", 0)),
                )
            except (OSError, TimeoutError, HTTPWireError, ValueError, AttributeError) as err:
                error = str(err) or type(err).__name__
                self.log.warn(
                    "failed hash kv request",
                    {
                        "local-member-id": f"{self.member_id:x}",
                        "requested-revision": revision,
                        "remote-peer-endpoint": url,
                        "error": error,
                    },
                )
        return PeerHash(member_id, urls, error=error)

    # -- the initial check --------------------------------------------------------------------

    async def initial_check(self) -> None:
        """Compare with every peer before serving.

        Raises:
            DataInconsistencyError: a peer at the same compaction has another hash.
        """
        me = f"{self.member_id:x}"
        self.log.info(
            "starting initial corruption check",
            {"local-member-id": me, "timeout": go_duration(self.request_timeout)},
        )
        h, rev, crev = self._hash()
        mismatch = 0
        for p in await self.peer_hashes(rev):
            if p.error:
                continue
            fields = {
                "local-member-id": me,
                "local-member-revision": rev,
                "local-member-compact-revision": crev,
                "local-member-hash": h,
                "remote-peer-id": f"{p.member_id:x}",
                "remote-peer-endpoints": list(p.endpoints),
                "remote-peer-revision": p.revision,
                "remote-peer-compact-revision": p.compact_revision,
                "remote-peer-hash": p.hash,
            }
            if p.hash != h:
                if p.compact_revision == crev:
                    self.log.warn("found different hash values from remote peer", fields)
                    mismatch += 1
                else:
                    self.log.warn(
                        "found different compact revision values from remote peer", fields
                    )
        if mismatch:
            raise DataInconsistencyError(f"{me} found data inconsistency with peers")
        self.log.info("initial corruption checking passed; no corruption", {"local-member-id": me})

    # -- the periodic check -------------------------------------------------------------------

    async def run_periodic(self, interval: float) -> None:
        """Check every ``interval`` seconds while this member leads (cancel to stop)."""
        self.log.info(
            "enabled corruption checking",
            {"local-member-id": f"{self.member_id:x}", "interval": go_duration(interval)},
        )
        while True:
            await asyncio.sleep(interval)
            if not self.leadership.is_leader:
                continue
            try:
                await self.periodic_check()
            except Exception as err:  # the next round tries again, as etcd's loop does
                self.log.warn("failed to check hash KV", {"error": str(err)})

    async def periodic_check(self) -> None:
        """One leader check; raises the CORRUPT alarm for a member found corrupt."""
        h, rev, crev = self._hash()
        peers = await self.peer_hashes(rev)
        await self.read_indexer.wait_linearizable()
        h2, rev2, crev2 = self._hash()
        alarmed: list[int] = []

        def mismatch(member_id: int) -> None:
            if not alarmed:
                alarmed.append(member_id)

        if h2 != h and rev2 == rev and crev == crev2:
            self.log.warn(
                "found hash mismatch",
                {
                    "revision-1": rev,
                    "compact-revision-1": crev,
                    "hash-1": h,
                    "revision-2": rev2,
                    "compact-revision-2": crev2,
                    "hash-2": h2,
                },
            )
            mismatch(self.member_id)
        checked = 0
        for p in peers:
            if p.error:
                continue
            checked += 1
            peer = f"{p.member_id:x}"
            if p.revision > rev2:
                self.log.warn(
                    "revision from follower must be less than or equal to leader's",
                    {
                        "leader-revision": rev2,
                        "follower-revision": p.revision,
                        "follower-peer-id": peer,
                    },
                )
                mismatch(p.member_id)
            if p.compact_revision > crev2:
                self.log.warn(
                    "compact revision from follower must be less than or equal to leader's",
                    {
                        "leader-compact-revision": crev2,
                        "follower-compact-revision": p.compact_revision,
                        "follower-peer-id": peer,
                    },
                )
                mismatch(p.member_id)
            if p.compact_revision == crev and p.hash != h:
                self.log.warn(
                    "same compact revision then hashes must match",
                    {
                        "leader-compact-revision": crev2,
                        "leader-hash": h,
                        "follower-compact-revision": p.compact_revision,
                        "follower-hash": p.hash,
                        "follower-peer-id": peer,
                    },
                )
                mismatch(p.member_id)
        self.log.info("finished peer corruption check", {"number-of-peers-checked": checked})
        if alarmed:
            await self._raise_corrupt_alarm(0)  # etcd 3.5.7: see the module docstring

    async def _raise_corrupt_alarm(self, member_id: int) -> None:
        await self.proposer.propose(
            raft_internal_pb2.InternalRaftRequest(
                alarm=rpc_pb2.AlarmRequest(
                    action=rpc_pb2.AlarmRequest.ACTIVATE,
                    memberID=member_id,
                    alarm=rpc_pb2.CORRUPT,
                )
            ),
            self.stores.root_auth(),
        )

    # -- the compact hash check ---------------------------------------------------------------

    async def run_compact_hash_check(self, interval: float) -> None:
        """Check every ``interval`` seconds while this member leads (cancel to stop)."""
        while True:
            await asyncio.sleep(interval)
            if not self.leadership.is_leader:
                continue
            try:
                await self.compact_hash_check()
            except Exception as err:  # the next round tries again
                self.log.warn("failed compaction hash check", {"error": str(err)})

    async def compact_hash_check(self) -> None:
        """One leader check of the hashes taken at recent compactions (module docstring)."""
        self.log.info(
            "starting compact hash check",
            {
                "local-member-id": f"{self.member_id:x}",
                "timeout": go_duration(self.request_timeout),
            },
        )
        hashes = [
            h
            for h in reversed(self.stores.kv.hashes.hashes())
            if h.revision > self._latest_revision_checked
        ]
        for i, taken in enumerate(hashes):
            peers = await self.peer_hashes(taken.revision)
            if not peers:
                continue
            checked = 0
            for p in peers:
                if p.error or p.compact_revision != taken.compact_revision:
                    continue
                if p.hash != taken.hash:
                    await self._raise_corrupt_alarm(0)
                    self.log.error(
                        "failed compaction hash check",
                        {
                            "revision": taken.revision,
                            "leader-compact-revision": taken.compact_revision,
                            "leader-hash": taken.hash,
                            "follower-compact-revision": p.compact_revision,
                            "follower-hash": p.hash,
                            "follower-peer-id": f"{p.member_id:x}",
                        },
                    )
                    return
                checked += 1
                self.log.info(
                    "successfully checked hash on follower",
                    {"revision": taken.revision, "peer-id": f"{p.member_id:x}"},
                )
            if checked == len(peers):
                self.log.info(
                    "successfully checked hash on whole cluster",
                    {"number-of-peers-checked": checked, "revision": taken.revision},
                )
                self._latest_revision_checked = max(
                    self._latest_revision_checked, taken.revision
                )
                self.log.info("finished compaction hash check", {"number-of-hashes-checked": i + 1})
                return
            self.log.warn(
                "skipped revision in compaction hash check; was not able to check all peers",
                {
                    "number-of-peers-checked": checked,
                    "number-of-peers": len(peers),
                    "revision": taken.revision,
                },
            )
        self.log.info("finished compaction hash check", {"number-of-hashes-checked": len(hashes)})
