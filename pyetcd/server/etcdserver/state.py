"""The state EtcdServer's parts share, declared once for the type checker."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from pyetcd.config import ServerConfig
from pyetcd.logutil import Logger
from pyetcd.mvcc import IDGenerator, KVStore, Lessor
from pyetcd.mvcc.watchable_store import WatchableStore
from pyetcd.pb import raft_internal_pb2, rpc_pb2
from pyetcd.server.auth.store import AuthInfo, AuthStore

from .apply import Applier
from .membership import Membership
from .transport import Transport
from .wait import RequestWait

if TYPE_CHECKING:
    from .raft_node import RaftNode
    from .read_index import ReadIndexer

__all__ = ["ServerState"]


class ServerState:
    """Base of EtcdServer's mixins: what EtcdServer owns and they use."""

    # State owned by EtcdServer (declared here for the type checker).
    cfg: ServerConfig
    log: Logger
    member_id: int
    cluster_id: int
    store: KVStore
    lessor: Lessor
    watchable: WatchableStore
    membership: Membership
    joined_as_learner: bool
    applier: Applier
    auth_store: AuthStore
    raft: RaftNode
    read_indexer: ReadIndexer
    idgen: IDGenerator
    transport: Transport
    waits: RequestWait
    heartbeat: float
    request_timeout: float
    removed_event: asyncio.Event
    _received_db: str | None
    _stopped: bool

    if TYPE_CHECKING:

        async def propose(
            self, req: raft_internal_pb2.InternalRaftRequest, auth: AuthInfo | None = None
        ) -> object: ...

        def header(self, revision: int | None = None) -> rpc_pb2.ResponseHeader: ...

        def _fill(self, h: rpc_pb2.ResponseHeader) -> None: ...

        def _open_store(self) -> None: ...

        @property
        def is_leader(self) -> bool: ...

        async def wait_leader(self) -> None: ...
