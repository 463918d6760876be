"""EtcdServer: one member, composed of its parts and run for its life.

``start()`` opens the storage and builds the parts in dependency order (each is given
its collaborators when it is built, see inbox.py for how the peer transport and the
Raft driver are untied), then starts the driver and the background duties:

    storage, backend (Stores) -> RawNode -> RaftInbox, AppliedIndex -> Leadership
    -> ReadIndexer, Proposer -> BackendSnapshots, ClusterFace -> peer transport
    -> Peers, Applier -> RaftNode -> ResponseHeaders -> KVServer, LeaseServer,
    ClusterServer, MaintenanceServer -> CorruptionChecker, Compactor

The API faces (v3rpc, the HTTP gateway and endpoints) call those parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import ssl
import time
from collections.abc import Callable, Coroutine
from typing import Any

from pyetcd.config import ServerConfig, compaction_retention
from pyetcd.ids import InitialCluster, bootstrap_cluster
from pyetcd.logutil import Logger
from pyetcd.mvcc import BackendError, KVStore, Lessor
from pyetcd.mvcc.watchable_store import WatchableStore
from pyetcd.pb import raft_internal_pb2, rpc_pb2
from pyetcd.raft import NONE, HardState, RawNode
from pyetcd.raft import Config as RaftConfig
from pyetcd.server.auth.store import AuthInfo, AuthStore
from pyetcd.server.auth.token import SimpleTokenProvider
from pyetcd.version import SERVER_VERSION
from pyetcd.wal import NO_SYNC_FS, OS_FS, Metadata, WALStorage
from pyetcd.wal.read_ahead import ReadAhead

from .apply import Applier
from .backend import backend_exists, open_backend, recover_snapshot_backend
from .cluster import ClusterFace, ClusterServer, Peers
from .compactor import Compactor
from .corrupt import CorruptionChecker
from .errors import StoppedError
from .events import NO_EVENTS, EventRecorder
from .fatal import Fatal
from .header import ResponseHeaders
from .inbox import RaftInbox
from .join import fetch_cluster, match_local_member
from .kv import KVServer
from .leadership import Leadership
from .lease import LeaseServer
from .maintenance import MaintenanceServer
from .membership import Member, Membership
from .metrics import Metrics
from .pacer import OtherWork, ReadPacer
from .proposer import Proposer
from .publish import Publisher
from .raft_node import RaftNode, conf_change_entries
from .read_index import ReadIndexer
from .stores import BackendSnapshots, Stores
from .transport import NullTransport, Transport, TransportParams
from .wait import AppliedIndex, RequestWait, set_or_after

__all__ = ["EtcdServer", "TransportFactory"]

#: Builds the peer transport from parts that exist before it.
TransportFactory = Callable[[TransportParams], Transport]


class EtcdServer:
    """One pyetcd member. ``await start()``, serve, ``await stop()``."""

    # The parts, built by start() in this order.
    storage: WALStorage
    stores: Stores
    rawnode: RawNode
    inbox: RaftInbox
    applied: AppliedIndex
    leadership: Leadership
    read_indexer: ReadIndexer
    proposer: Proposer
    snapshots: BackendSnapshots
    cluster_face: ClusterFace
    transport: Transport
    peers: Peers
    applier: Applier
    raft: RaftNode
    headers: ResponseHeaders
    kv: KVServer
    lease: LeaseServer
    cluster: ClusterServer
    maintenance: MaintenanceServer
    compactor: Compactor | None
    corruption: CorruptionChecker

    def __init__(
        self,
        cfg: ServerConfig,
        logger: Logger,
        transport_factory: TransportFactory | None = None,
        peer_ssl: ssl.SSLContext | None = None,
        events: EventRecorder = NO_EVENTS,
        metrics: Metrics | None = None,
    ) -> None:
        """``peer_ssl``: the client side of peer TLS, to join over https peer URLs;
        ``events``: told of elections, leader changes, snapshots, defragmentation;
        ``metrics``: the instruments the parts observe (a fresh set if not given)."""
        self.cfg = cfg
        self.metrics = metrics or Metrics(extensive=cfg.metrics == "extensive")
        self.events = events
        self.peer_ssl = peer_ssl
        self.log = logger
        #: Decides when the member cannot go on; ``pyetcd.embed`` awaits it.
        self.fatal = Fatal(logger)
        self.transport_factory = transport_factory
        self.member_id = 0
        self.cluster_id = 0
        self.waits = RequestWait()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False
        self.removed_event = asyncio.Event()
        #: Peers learned from the running cluster when joining it.
        self.join_peers: dict[int, tuple[str, ...]] = {}
        # Whether the cluster's /members listed us as a learner when we joined: what
        # we are until our own log brings the membership in.
        self.joined_as_learner = False
        self.heartbeat = cfg.heartbeat_interval / 1000.0
        self.election_ticks = max(2, cfg.election_timeout // max(1, cfg.heartbeat_interval))
        # etcd: 5 s plus twice the election timeout.
        self.request_timeout = 5.0 + 2 * cfg.election_timeout / 1000.0
        self.started_at = time.time()
        self._watch_kick = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.cfg
        member_dir = os.path.join(cfg.data_dir, "member")
        os.makedirs(os.path.join(member_dir, "snap"), mode=0o700, exist_ok=True)
        # A backend lost from a member that has a log is not recreated before the log
        # says whether it can be rebuilt (see backend.py).
        kv = None
        initialized = self._member_initialized()
        reopen = not initialized or backend_exists(cfg)
        # A restart reads the WAL in a child process while this one rebuilds the key
        # index: both are CPU-bound, and under one GIL they would take turns.
        ahead = self._start_wal_read_ahead()
        try:
            kv = open_backend(cfg, self.metrics.mvcc) if reopen else None
            storage, boot = await asyncio.to_thread(self._open_storage, ahead)
        except BaseException:
            if kv is not None:
                kv.close()
            raise
        finally:
            if ahead is not None:
                ahead.close()
        try:
            index = storage.snapshot().metadata.index
            kv = recover_snapshot_backend(cfg, kv, index, self.log, self.metrics.mvcc)
        except BaseException:
            await asyncio.to_thread(storage.close)
            raise
        self.storage = storage
        md = storage.metadata
        self.member_id, self.cluster_id = md.member_id, md.cluster_id
        ids = {"local-member-id": f"{self.member_id:x}", "cluster-id": f"{self.cluster_id:x}"}
        commit = {"commit-index": storage.initial_state()[0].commit} if initialized else {}
        starting = "restarting local member" if initialized else "starting local member"
        self.log.info(starting, {**ids, **commit})
        self._build(kv, boot)
        self._advance_election_ticks(boot)
        await self.transport.start()
        self.peers.sync()
        self.raft.start()
        version = {"local-server-version": SERVER_VERSION, "cluster-version": "to_be_decided"}
        self.log.info(
            "starting etcd server", {"local-member-id": ids["local-member-id"], **version}
        )
        self._spawn(self.proposer.run_expiry(), "request-expiry")
        self._spawn(self.lease.run_expiry(), "lease-expiry")
        self._spawn(self._token_expiry_loop(), "token-expiry")
        self._spawn(self._backend_commit_loop(), "backend-commit")
        self._spawn(self._watch_sync_loop(), "watch-sync")
        self._spawn(self.read_indexer.run(), "read-index")
        self._spawn(self.publisher.run(), "publish")
        if self.compactor is not None:
            self._spawn(self.compactor.run(), "auto-compaction")
        checks = self.corruption
        if cfg.experimental_initial_corrupt_check:
            await checks.initial_check()  # DataInconsistencyError: no start
        if cfg.experimental_corrupt_check_time > 0:
            self._spawn(checks.run_periodic(cfg.experimental_corrupt_check_time), "corrupt-check")
        if cfg.experimental_compact_hash_check_enabled:
            every = cfg.experimental_compact_hash_check_time
            self._spawn(checks.run_compact_hash_check(every), "compact-hash-check")
        hs = storage.initial_state()[0]
        where = {"data-dir": cfg.data_dir, "hard-state-term": hs.term, "commit-index": hs.commit}
        self.log.info("started pyetcd member", {**ids, **where})

    def _build(self, kv: KVStore, boot: InitialCluster | None) -> None:
        """Build the parts in dependency order (see the module docstring)."""
        cfg, log, storage = self.cfg, self.log, self.storage
        member_id, cluster_id = self.member_id, self.cluster_id
        self.stores = stores = Stores(cfg, cluster_id, log, kv)
        _, conf_state = storage.initial_state()
        snap_index = storage.snapshot().metadata.index
        self.rawnode = rawnode = RawNode(
            RaftConfig(
                id=member_id,
                storage=storage,
                election_tick=self.election_ticks,
                heartbeat_tick=1,
                applied=snap_index,
                pre_vote=cfg.pre_vote,
                check_quorum=True,
                max_size_per_msg=1 << 20,
                max_inflight_msgs=512,
                rng=random.Random(member_id ^ time.time_ns()),
                logger=log.info,
            )
        )
        self.inbox = inbox = RaftInbox()
        # The driver replays the log from the snapshot on: applied starts there.
        self.applied = applied = AppliedIndex(snap_index)
        self.leadership = leadership = Leadership(
            member_id,
            rawnode,
            stores,
            election_timeout=cfg.election_timeout / 1000.0,
            request_timeout=self.request_timeout,
            logger=log,
        )
        self.read_indexer = ReadIndexer(
            rawnode, inbox, applied, leadership, self.request_timeout, self.metrics
        )
        self.proposer = proposer = Proposer(
            member_id,
            inbox,
            self.waits,
            leadership,
            max_request_bytes=cfg.max_request_bytes,
            request_timeout=self.request_timeout,
        )
        self.snapshots = snapshots = BackendSnapshots(
            stores, leadership, log, self.metrics.backend_snapshot
        )
        strict = cfg.strict_reconfig_check
        self.cluster_face = face = ClusterFace(
            cluster_id, stores, rawnode, applied, leadership, proposer, log, self.metrics,
            strict_reconfig_check=strict,
        )  # fmt: skip
        self.transport = transport = self._new_transport(boot)
        self.peers = peers = Peers(member_id, transport, stores, self)
        self.applier = applier = Applier(
            stores,
            self.waits,
            log,
            snapshots,
            peers,
            member_id=member_id,
            warning_apply_duration=cfg.experimental_warning_apply_duration,
            slow_applies=self.metrics.slow_applies,
            apply_durations=self.metrics.apply_durations,
        )
        self.raft = raft = RaftNode(
            rawnode,
            inbox,
            storage,
            transport,
            applier,
            applied,
            tick_interval=self.heartbeat,
            snapshot_count=cfg.snapshot_count,
            conf_state=conf_state,
            logger=log,
            fatal=self.fatal,
            on_leader_change=leadership.changed,
            on_read_states=self.read_indexer.on_read_states,
            events=self.events,
            metrics=self.metrics,
        )
        self.headers = headers = ResponseHeaders(member_id, cluster_id, stores, raft)
        self.kv = KVServer(
            stores,
            proposer,
            self.read_indexer,
            headers,
            max_txn_ops=cfg.max_txn_ops,
            pacer=ReadPacer(rivals=OtherWork(self.waits, stores.membership)),
        )
        self.lease = LeaseServer(
            stores,
            proposer,
            self.read_indexer,
            leadership,
            headers,
            face,
            self.metrics.leases_expired,
        )
        self.publisher = Publisher(
            member_id,
            cluster_id,
            cfg.name,
            cfg.advertise_client_urls,
            leadership,
            proposer,
            log,
            timeout=self.request_timeout,
            retry_delay=self.heartbeat * 5,
        )
        self.cluster = ClusterServer(
            member_id,
            face,
            transport,
            inbox,
            strict_reconfig_check=cfg.strict_reconfig_check,
            heartbeat=self.heartbeat,
        )
        self.maintenance = MaintenanceServer(
            member_id,
            stores,
            rawnode,
            applied,
            leadership,
            proposer,
            headers,
            log,
            joined_as_learner=self.joined_as_learner,
            events=self.events,
            metrics=self.metrics,
        )
        self.corruption = CorruptionChecker(
            member_id,
            stores,
            leadership,
            self.read_indexer,
            proposer,
            log,
            request_timeout=self.request_timeout,
            peer_ssl=self.peer_ssl,
        )
        retention = compaction_retention(cfg)
        self.compactor = (
            Compactor(cfg.auto_compaction_mode, retention, stores, self.kv, leadership, log)
            if retention > 0
            else None
        )

    def _new_transport(self, boot: InitialCluster | None) -> Transport:
        if self.transport_factory is None:
            return NullTransport()
        if boot is not None:
            peers = {m.id: m.peer_urls for m in boot.members}
        else:
            peers = dict(self.join_peers)
        return self.transport_factory(
            TransportParams(
                member_id=self.member_id,
                cluster_id=self.cluster_id,
                listen_urls=tuple(self.cfg.listen_peer_urls),
                peers=peers,
                receiver=self.inbox,
                snapshots=self.snapshots,
                snapshot_dir=os.path.join(self.cfg.data_dir, "member", "snap"),
                removed=self,
                http=self.cluster_face,
                logger=self.log,
                fatal=self.fatal,
                metrics=self.metrics.peers,
            )
        )

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
                fs=NO_SYNC_FS if cfg.unsafe_no_fsync else OS_FS,
                snap_metrics=self.metrics.snap,
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
            fs=NO_SYNC_FS if cfg.unsafe_no_fsync else OS_FS,
            snap_metrics=self.metrics.snap,
        )
        # Named as in --initial-cluster, as etcd's: they count as started members.
        members = [(m.id, Member(m.id, m.name, m.peer_urls).encode()) for m in boot.members]
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
            fs=NO_SYNC_FS if cfg.unsafe_no_fsync else OS_FS,
            snap_metrics=self.metrics.snap,
        )

    def _member_initialized(self) -> bool:
        wal_dir = self.cfg.wal_dir or os.path.join(self.cfg.data_dir, "member", "wal")
        return os.path.isdir(wal_dir)

    def _advance_election_ticks(self, boot: InitialCluster | None) -> None:
        # etcd's --initial-election-tick-advance: a member that has no peers to hear
        # from fast-forwards its election clock so a single member elects itself quickly.
        if not self.cfg.initial_election_tick_advance:
            return
        peers = len(boot.members) if boot is not None else len(self.stores.membership.members)
        if peers > 1:
            return
        rawnode = self.rawnode
        if rawnode.is_sole_voter():
            # The sole voter of a restarted member: nobody to disrupt, campaign now.
            rawnode.campaign()
            return
        for _ in range(self.election_ticks - 1):
            rawnode.tick()

    async def stop(self) -> None:
        if self._stopped:
            return
        await self.cluster.transfer_leadership_on_stop(self.cfg.election_timeout / 1000.0)
        self._stopped = True
        self.proposer.stopped = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.raft.stop()
        await self.transport.close()
        self.waits.fail_all(StoppedError())
        try:
            self.stores.close()
        except BackendError as err:
            self.fatal.fail(err.action, err)
        try:
            await asyncio.to_thread(self.storage.close)
        except OSError as err:
            self.fatal.fail("failed to close WAL", err)
        self.log.info("stopped pyetcd member", {"local-member-id": f"{self.member_id:x}"})

    async def abort(self) -> None:
        """Stop after a fatal error: end the tasks and the peer transport, answer the
        waiters, and leave the storage alone (it failed; the process exits next)."""
        if self._stopped:
            return
        self._stopped = True
        self.proposer.stopped = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        with contextlib.suppress(Exception):
            await self.raft.stop()
        with contextlib.suppress(Exception):
            await self.transport.close()
        self.waits.fail_all(StoppedError())

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        # Every duty runs for the member's life: an exception ending one ends the member.
        self._tasks.append(self.fatal.spawn(coro, name, "member task failed unexpectedly"))

    # -- removal -----------------------------------------------------------------------------

    def removed(self) -> None:
        """The applied membership lists this member as removed."""
        if not self._stopped:
            self.log.warn("the member has been permanently removed from the cluster", {})
            self.removed_event.set()

    def removed_by_peer(self, peer: int) -> None:
        """A peer refused us as a removed member (etcd then stops the member)."""
        self.removed_event.set()

    def is_removed(self, peer: int) -> bool:
        return peer in self.stores.membership.removed

    # -- what the API layer's shared helpers ask (auth, forwarding, headers) ------------------

    @property
    def leader(self) -> int:
        return self.leadership.lead

    @property
    def is_leader(self) -> bool:
        return self.leadership.is_leader

    async def wait_leader(self) -> None:
        await self.leadership.wait_leader()

    @property
    def client_cert_auth(self) -> bool:
        return self.cfg.client_cert_auth

    @property
    def auth_store(self) -> AuthStore:
        return self.stores.auth

    @property
    def membership(self) -> Membership:
        return self.stores.membership

    @property
    def lessor(self) -> Lessor:
        return self.stores.lessor

    @property
    def watchable(self) -> WatchableStore:
        return self.stores.watchable

    @property
    def applied_wait(self) -> AppliedIndex:
        return self.applied

    def header(self, revision: int | None = None) -> rpc_pb2.ResponseHeader:
        return self.headers.header(revision)

    async def propose(
        self, req: raft_internal_pb2.InternalRaftRequest, auth: AuthInfo | None = None
    ) -> object:
        return await self.proposer.propose(req, auth)

    # -- background duties ------------------------------------------------------------------

    async def _token_expiry_loop(self) -> None:
        # Simple tokens also expire lazily on use; this drops the ones never used again.
        tokens = self.stores.auth.tokens
        if not isinstance(tokens, SimpleTokenProvider):
            return
        while True:
            await asyncio.sleep(1.0)
            tokens.expire()

    def kick_watch_sync(self) -> None:
        """Catch unsynced watchers up soon (a watcher was created or a consumer drained)."""
        watchable = self.stores.watchable
        if watchable.unsynced or watchable.victims:
            self._watch_kick.set()

    async def _watch_sync_loop(self) -> None:
        # etcd syncs unsynced watchers every 100 ms; we also sync at once when kicked.
        while True:
            await set_or_after(self._watch_kick, 0.1)
            self._watch_kick.clear()
            watchable = self.stores.watchable
            if watchable.sync() and watchable.unsynced:
                # More history to catch up on: yield to writers, then continue.
                self._watch_kick.set()
                await asyncio.sleep(0)

    async def _backend_commit_loop(self) -> None:
        # The backend decides when its batch commits (full, or batch_interval old); it is
        # asked at the end of every write transaction, and here for the interval.
        while True:
            await asyncio.sleep(0.1)
            self.stores.kv.backend.maybe_commit()
