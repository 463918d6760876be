"""EtcdServer: one member. Proposes writes through Raft, serves reads, runs the
leader's duties (lease expiry), and answers in etcd's protobuf messages.

The path of a write: ``put()`` wraps the request in an InternalRaftRequest with a
fresh ID, registers a waiter, hands the bytes to the RaftNode and awaits the waiter,
which the Applier resolves once the entry is committed and applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pyetcd.config import ServerConfig
from pyetcd.ids import InitialCluster, bootstrap_cluster
from pyetcd.logutil import Logger
from pyetcd.mvcc import (
    IDGenerator,
    KVStore,
)
from pyetcd.mvcc.watchable_store import WatchableStore
from pyetcd.pb import raft_internal_pb2, rpc_pb2
from pyetcd.raft import (
    NONE,
    HardState,
    RaftError,
    RawNode,
)
from pyetcd.raft import Config as RaftConfig
from pyetcd.server.auth.store import AuthInfo, AuthStore
from pyetcd.server.auth.token import SimpleTokenProvider, TokenProvider, new_token_provider
from pyetcd.wal import Metadata, WALStorage
from pyetcd.wal.read_ahead import ReadAhead

from .apply import Applier
from .cluster_ops import ClusterOps
from .errors import (
    NoLeaderError,
    RequestTimeoutError,
    RequestTooLargeError,
    StoppedError,
)
from .join import fetch_cluster, match_local_member
from .membership import Member, Membership
from .raft_node import RaftNode, conf_change_entries
from .read_index import ReadIndexer
from .transport import NullTransport, Transport
from .v3_ops import CLUSTER_VERSION, SERVER_VERSION, V3Ops
from .wait import AppliedWait, RequestWait

__all__ = ["CLUSTER_VERSION", "SERVER_VERSION", "EtcdServer"]


T = TypeVar("T")

#: Builds the peer transport once the member's IDs and initial peers are known.
TransportFactory = Callable[["EtcdServer", "InitialCluster | None"], Transport]


class EtcdServer(V3Ops, ClusterOps):
    """One pyetcd member. ``await start()``, serve, ``await stop()``."""

    def __init__(
        self,
        cfg: ServerConfig,
        logger: Logger,
        transport_factory: TransportFactory | None = None,
        peer_ssl: ssl.SSLContext | None = None,
    ) -> None:
        """``peer_ssl``: the client side of peer TLS, to join over https peer URLs."""
        self.cfg = cfg
        self.peer_ssl = peer_ssl
        self.log = logger
        self.transport: Transport = NullTransport()
        self.transport_factory = transport_factory
        self.member_id = 0
        self.cluster_id = 0
        self.waits = RequestWait()
        self.applied_wait = AppliedWait()
        self._tasks: list[asyncio.Future[None]] = []
        self._background: set[asyncio.Future[None]] = set()
        self._stopped = False
        self._leader_event = asyncio.Event()
        self.removed_event = asyncio.Event()
        self._received_db: str | None = None
        #: Peers learned from the running cluster when joining it.
        self.join_peers: dict[int, tuple[str, ...]] = {}
        # Whether the cluster's /members listed us as a learner when we joined: what
        # we are until our own log brings the membership in.
        self.joined_as_learner = False
        self._no_leader_backlog: list[bytes] = []
        self.heartbeat = cfg.heartbeat_interval / 1000.0
        self.election_ticks = max(2, cfg.election_timeout // max(1, cfg.heartbeat_interval))
        # etcd: 5 s plus twice the election timeout.
        self.request_timeout = 5.0 + 2 * cfg.election_timeout / 1000.0
        self.started_at = time.time()
        self.leader_changes_seen = 0  # etcd_server_leader_changes_seen_total
        self.proposals_failed = 0  # etcd_server_proposals_failed_total

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.cfg
        member_dir = os.path.join(cfg.data_dir, "member")
        os.makedirs(os.path.join(member_dir, "snap"), mode=0o700, exist_ok=True)
        # A restart reads the WAL in a child process while this one rebuilds the key
        # index: both are CPU-bound, and under one GIL they would take turns.
        ahead = self._start_wal_read_ahead()
        try:
            store = self._new_kvstore()
            storage, boot = await asyncio.to_thread(self._open_storage, ahead)
        finally:
            if ahead is not None:
                ahead.close()
        self.storage = storage
        md = storage.metadata
        self.member_id, self.cluster_id = md.member_id, md.cluster_id
        self._watch_kick = asyncio.Event()
        self.applier = Applier(self.waits, self.log)
        self._open_store(store)
        self.applier.on_member_change = self._sync_peers
        self.applier.on_restore = self._restore_backend
        if self.transport_factory is not None:
            self.transport = self.transport_factory(self, boot)
        self.idgen = IDGenerator(self.member_id, int(time.time() * 1000))
        hs, cs = storage.initial_state()
        snap_index = storage.snapshot().metadata.index
        rawnode = RawNode(
            RaftConfig(
                id=self.member_id,
                storage=storage,
                election_tick=self.election_ticks,
                heartbeat_tick=1,
                applied=snap_index,
                pre_vote=cfg.pre_vote,
                check_quorum=True,
                max_size_per_msg=1 << 20,
                max_inflight_msgs=512,
                rng=random.Random(self.member_id ^ time.time_ns()),
                logger=lambda line: self.log.info(line),
            )
        )
        self.raft = RaftNode(
            rawnode,
            storage,
            self.transport,
            self.applier,
            tick_interval=self.heartbeat,
            snapshot_count=cfg.snapshot_count,
            conf_state=cs,
            logger=self.log,
            on_leader_change=self._on_leader_change,
            on_read_states=lambda rs: self.read_indexer.on_read_states(rs),
            on_dropped=self._on_dropped,
        )
        self.applied_wait.applied = self.store.consistent_index
        self.read_indexer = ReadIndexer(self)
        self._advance_election_ticks(rawnode, boot)
        await self.transport.start()
        self._sync_peers()
        self.raft.start()
        self.raft.on_applied = self.applied_wait.trigger
        self._spawn(self._expire_loop(), "expire-requests")
        self._spawn(self._lease_loop(), "lease-expiry")
        self._spawn(self._token_expiry_loop(), "token-expiry")
        self._spawn(self._backend_commit_loop(), "backend-commit")
        self._spawn(self._watch_sync_loop(), "watch-sync")
        self._spawn(self.read_indexer.run(), "read-index")
        self._spawn(self._publish(), "publish")
        self.log.info(
            "started pyetcd member",
            {
                "local-member-id": f"{self.member_id:x}",
                "cluster-id": f"{self.cluster_id:x}",
                "data-dir": cfg.data_dir,
                "hard-state-term": hs.term,
                "commit-index": hs.commit,
            },
        )

    def _new_kvstore(self) -> KVStore:
        cfg = self.cfg
        return KVStore(
            os.path.join(cfg.data_dir, "member", "snap", "db"),
            quota_bytes=cfg.quota_backend_bytes,
            min_lease_ttl=max(2, -(-3 * cfg.election_timeout // 2000)),
        )

    def _open_store(self, store: KVStore | None = None) -> None:
        """Serve ``store`` (default: the backend file as it is now) and everything kept in
        its backend: leases, watches, membership, auth."""
        cfg = self.cfg
        self.store = store if store is not None else self._new_kvstore()
        self.lessor = self.store.lessor
        if self.is_leader_now():
            self.lessor.promote(cfg.election_timeout / 1000.0)
        old = getattr(self, "watchable", None)
        self.watchable = WatchableStore(self.store)
        if old is not None:
            # Watchers move to the restored store; they catch up from their next revision.
            for w in [*old.synced, *old.unsynced, *old.victims]:
                self.watchable.unsynced.add(w)
        self.membership = Membership(self.store.backend, self.cluster_id)
        self.auth_store = self._open_auth_store()
        self.applier.attach(self.store, self.membership, self.auth_store)

    def _open_auth_store(self) -> AuthStore:
        # The token provider outlives a backend swap (snapshot restore): tokens stay
        # valid while the restored state still has auth enabled.
        old = getattr(self, "auth_store", None)
        tokens: TokenProvider = (
            old.tokens
            if old is not None
            else new_token_provider(self.cfg.auth_token, float(self.cfg.auth_token_ttl))
        )
        return AuthStore(
            self.store.backend, tokens, bcrypt_cost=self.cfg.bcrypt_cost, logger=self.log
        )

    def is_leader_now(self) -> bool:
        raft = getattr(self, "raft", None)
        return raft is not None and raft.is_leader

    def _start_wal_read_ahead(self) -> ReadAhead | None:
        if not self._member_initialized():
            return None
        cfg = self.cfg
        return ReadAhead.start(
            cfg.data_dir, wal_dir=cfg.wal_dir or None, max_snapshots=cfg.max_snapshots
        )

    def _open_storage(
        self, ahead: ReadAhead | None = None
    ) -> tuple[WALStorage, InitialCluster | None]:
        cfg = self.cfg
        wal_dir = cfg.wal_dir or None
        if self._member_initialized():
            # A restarted member ignores the --initial-* flags and trusts its data dir.
            storage = WALStorage.open(
                cfg.data_dir,
                wal_dir=wal_dir,
                max_wals=cfg.max_wals,
                max_snapshots=cfg.max_snapshots,
                read=None if ahead is None else ahead.result(),
                lock_fd=None if ahead is None else ahead.take_lock(),
            )
            return storage, None
        boot = bootstrap_cluster(cfg)
        if cfg.initial_cluster_state == "existing":
            return self._join_existing(boot), None
        storage = WALStorage.open(
            cfg.data_dir,
            wal_dir=wal_dir,
            metadata=Metadata(member_id=boot.local_member_id, cluster_id=boot.cluster_id),
            max_wals=cfg.max_wals,
            max_snapshots=cfg.max_snapshots,
        )
        members = [(m.id, Member(m.id, "", m.peer_urls).encode()) for m in boot.members]
        ents = conf_change_entries(members)
        # The bootstrap log: every initial member added at term 1, already committed.
        storage.save(HardState(term=1, vote=NONE, commit=len(ents)), ents).result()
        return storage, boot

    def _join_existing(self, boot: InitialCluster) -> WALStorage:
        """Create an empty log for a member added to a running cluster."""
        cfg = self.cfg
        others = [url for m in boot.members if m.id != boot.local_member_id for url in m.peer_urls]
        cluster_id, members = fetch_cluster(others, ssl_context=self.peer_ssl)
        local = match_local_member(members, cfg.initial_advertise_peer_urls)
        self.join_peers = {m.id: m.peer_urls for m in members if m.id != local.id}
        self.joined_as_learner = local.is_learner
        return WALStorage.open(
            cfg.data_dir,
            wal_dir=cfg.wal_dir or None,
            metadata=Metadata(member_id=local.id, cluster_id=cluster_id),
            max_wals=cfg.max_wals,
            max_snapshots=cfg.max_snapshots,
        )

    def _member_initialized(self) -> bool:
        wal_dir = self.cfg.wal_dir or os.path.join(self.cfg.data_dir, "member", "wal")
        return os.path.isdir(wal_dir)

    def _advance_election_ticks(self, rawnode: RawNode, boot: InitialCluster | None) -> None:
        # etcd's --initial-election-tick-advance: a member that has no peers to hear
        # from fast-forwards its election clock so a single member elects itself quickly.
        if not self.cfg.initial_election_tick_advance:
            return
        peers = len(boot.members) if boot is not None else len(self.membership.members)
        if peers > 1:
            return
        cs = rawnode.raft.trk.config
        if set(cs.voters.incoming) == {self.member_id} and not cs.voters.is_joint():
            # The sole voter of a restarted member: nobody to disrupt, campaign now.
            rawnode.campaign()
            return
        for _ in range(self.election_ticks - 1):
            rawnode.tick()

    async def stop(self) -> None:
        if self._stopped:
            return
        await self._transfer_leadership_on_stop()
        self._stopped = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.raft.stop()
        await self.transport.close()
        self.waits.fail_all(StoppedError())
        self.store.close()
        await asyncio.to_thread(self.storage.close)
        self.log.info("stopped pyetcd member", {"local-member-id": f"{self.member_id:x}"})

    async def _transfer_leadership_on_stop(self) -> None:
        """A leader hands over before it stops, so writes go on without an election."""
        voters = [v for v in self._voters() if v != self.member_id]
        if not self.is_leader or not voters:
            return
        progress = self.raft.rawnode.raft.trk.progress
        target = max(voters, key=lambda v: progress[v].match if v in progress else -1)
        self.log.info(
            "leadership transfer starting",
            {"local-member-id": f"{self.member_id:x}", "transferee": f"{target:x}"},
        )
        self.raft.transfer_leader(target)
        deadline = time.monotonic() + self.cfg.election_timeout / 1000.0
        while self.raft.lead in (self.member_id, NONE) and time.monotonic() < deadline:
            await asyncio.sleep(self.heartbeat / 4)
        self.log.info(
            "leadership transfer finished",
            {"local-member-id": f"{self.member_id:x}", "new-leader": f"{self.raft.lead:x}"},
        )

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        self._tasks.append(asyncio.ensure_future(coro))

    # -- leadership ----------------------------------------------------------------------------

    @property
    def leader(self) -> int:
        return self.raft.lead

    @property
    def is_leader(self) -> bool:
        return self.raft.is_leader

    @property
    def term(self) -> int:
        return self.raft.term

    def _on_leader_change(self, old: int, new: int) -> None:
        self.log.info(
            "raft.node: elected leader" if new != NONE else "raft.node: lost leader",
            {"local-member-id": f"{self.member_id:x}", "leader": f"{new:x}", "term": self.term},
        )
        if new == self.member_id:
            self.lessor.promote(self.cfg.election_timeout / 1000.0)
        elif old == self.member_id:
            self.lessor.demote()
        if new != NONE:
            self.leader_changes_seen += 1
            self._leader_event.set()
            backlog, self._no_leader_backlog = self._no_leader_backlog, []
            for data in backlog:
                self.raft.propose(data)
        else:
            self._leader_event.clear()

    def _on_dropped(self, batch: list[bytes], err: RaftError) -> None:
        # Proposals made while there is no leader wait for one (until they time out).
        self._no_leader_backlog.extend(batch)

    async def wait_leader(self) -> None:
        if self.raft.lead != NONE:
            return
        try:
            await asyncio.wait_for(self._leader_event.wait(), self.request_timeout)
        except TimeoutError:
            raise NoLeaderError() from None

    # -- proposing -----------------------------------------------------------------------------

    async def propose(
        self, req: raft_internal_pb2.InternalRaftRequest, auth: AuthInfo | None = None
    ) -> object:
        """Replicate ``req`` through Raft and return what applying it produced.

        ``auth`` (who asked, from the request's token) goes into the entry header,
        so every member checks the entry's permissions at apply alike.
        """
        if self._stopped:
            raise StoppedError()
        req_id = self.idgen.next()
        req.header.ID = req_id
        if auth is not None:
            req.header.username = auth.username
            req.header.auth_revision = auth.revision
        data = req.SerializeToString()
        if len(data) > self.cfg.max_request_bytes:
            raise RequestTooLargeError()
        loop = asyncio.get_running_loop()
        fut = self.waits.register(req_id, loop.time() + self.request_timeout)
        self.raft.propose(data)
        # _expire_loop fails the waiter once its deadline passed.
        return await fut

    def _timeout_error(self) -> BaseException:
        self.proposals_failed += 1
        if self.raft.lead == NONE:
            return NoLeaderError()
        return RequestTimeoutError()

    async def _expire_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.1)
            self.waits.expire(loop.time(), self._timeout_error)

    def header(self, revision: int | None = None) -> rpc_pb2.ResponseHeader:
        return rpc_pb2.ResponseHeader(
            cluster_id=self.cluster_id,
            member_id=self.member_id,
            revision=self.store.current_revision if revision is None else revision,
            raft_term=self.raft.term,
        )

    def _fill(self, h: rpc_pb2.ResponseHeader) -> None:
        h.cluster_id = self.cluster_id
        h.member_id = self.member_id
        h.raft_term = self.raft.term

    # -- background duties ------------------------------------------------------------------

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            if not self.is_leader:
                continue
            for lease_id in self.lessor.expired_leases():
                self._spawn_revoke(lease_id)
            cps = self.lessor.due_checkpoints()
            if cps:
                req = raft_internal_pb2.InternalRaftRequest()
                for lease_id, remaining in cps:
                    req.lease_checkpoint.checkpoints.add(ID=lease_id, remaining_TTL=remaining)
                self._spawn_quiet(self.propose(req))

    def _spawn_revoke(self, lease_id: int) -> None:
        req = raft_internal_pb2.InternalRaftRequest(
            lease_revoke=rpc_pb2.LeaseRevokeRequest(ID=lease_id)
        )
        # An expired lease is revoked as root (etcd's WithRoot), whatever its keys.
        self._spawn_quiet(self.propose(req, self.root_auth()))

    def root_auth(self) -> AuthInfo | None:
        """The identity of the server's own requests while auth is enabled."""
        store = self.auth_store
        return AuthInfo("root", store.revision) if store.enabled else None

    async def _token_expiry_loop(self) -> None:
        # Simple tokens also expire lazily on use; this drops the ones never used again.
        tokens = self.auth_store.tokens
        if not isinstance(tokens, SimpleTokenProvider):
            return
        while True:
            await asyncio.sleep(1.0)
            tokens.expire()

    def _spawn_quiet(self, coro: Awaitable[object]) -> None:
        async def run() -> None:
            with contextlib.suppress(Exception):
                await coro

        task = asyncio.ensure_future(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def kick_watch_sync(self) -> None:
        """Catch unsynced watchers up soon (a watcher was created or a consumer drained)."""
        if self.watchable.unsynced or self.watchable.victims:
            self._watch_kick.set()

    async def _watch_sync_loop(self) -> None:
        # etcd syncs unsynced watchers every 100 ms; we also sync at once when kicked.
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._watch_kick.wait(), 0.1)
            self._watch_kick.clear()
            if self.watchable.sync() and self.watchable.unsynced:
                # More history to catch up on: yield to writers, then continue.
                self._watch_kick.set()
                await asyncio.sleep(0)

    async def _backend_commit_loop(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            self.store.backend.maybe_commit()

    async def _publish(self) -> None:
        # Tell the cluster this member's name and client URLs (etcd's publish).
        req = raft_internal_pb2.InternalRaftRequest()
        attr = req.cluster_member_attr_set
        attr.member_ID = self.member_id
        attr.member_attributes.name = self.cfg.name
        attr.member_attributes.client_urls.extend(self.cfg.advertise_client_urls)
        while True:
            try:
                await self.wait_leader()
                await self.propose(req)
                return
            except Exception as err:  # keep trying until it lands
                self.log.warn("failed to publish local member to cluster", {"error": str(err)})
                await asyncio.sleep(self.heartbeat * 5)
