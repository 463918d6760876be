"""Applying committed Raft entries to the MVCC store, the lessor and the membership.

Rules:
1. Apply is deterministic: every member applies the same entries to the same state
   and gets the same result. Nothing here reads a clock or this member's role,
   except to decide whether to answer a local waiter and to time an apply for the
   slow-apply warning (``--experimental-warning-apply-duration``).
2. An entry at or below the store's consistent index was applied before a restart
   and is skipped (its effects are in the backend); conf changes are still handed
   to Raft, whose configuration is rebuilt from the log.
3. The consistent index is set before each entry's changes, so it is committed in
   the same backend transaction as they are.
4. With auth enabled, a put, delete, txn or lease revoke is checked against the
   auth store at apply, as the proposer named in the entry header (user and auth
   revision): every member decides alike, and an entry authorized before the
   latest auth change fails with "revision of auth store is old".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

from prometheus_client import Counter

from pyetcd.logutil import Logger, go_bytes, go_duration
from pyetcd.mvcc import CompactedError, KVStore, MvccError, NoSpaceError
from pyetcd.mvcc import types as mt
from pyetcd.pb import raft_internal_pb2, rpc_pb2
from pyetcd.raft import ConfChange, ConfChangeType, ConfState, Entry, EntryType, Snapshot
from pyetcd.server.auth.check import apply_auth_request, check_raft_request, is_auth_request
from pyetcd.version import CLUSTER_VERSION

from . import pbconv, txn
from .errors import (
    CorruptError,
    MemberExistsError,
    MemberNotFoundError,
    MemberRemovedError,
    PeerURLExistsError,
    ServerError,
    TooManyLearnersError,
)
from .membership import Member
from .stores import Stores
from .wait import RequestWait

__all__ = ["Applier"]

AlarmType = rpc_pb2.AlarmType


class BackendRestorer(Protocol):
    def restore(self, snap: Snapshot) -> None:
        """Install the backend that came with ``snap``."""


class ApplyObserver(Protocol):
    def observe(self, field: str, success: bool, seconds: float) -> None:
        """A request (its InternalRaftRequest field) took ``seconds`` to apply."""


class MembershipListener(Protocol):
    def sync(self) -> None:
        """The applied membership changed."""


class Applier:
    """The state machine of one member (RaftNode's StateMachine)."""

    def __init__(
        self,
        stores: Stores,
        waits: RequestWait,
        logger: Logger,
        snapshots: BackendRestorer,
        peers: MembershipListener,
        *,
        member_id: int,
        warning_apply_duration: float = 0.1,
        slow_applies: Counter | None = None,
        apply_durations: ApplyObserver | None = None,
    ) -> None:
        """``warning_apply_duration``: seconds; an entry applied slower is logged and
        counted in ``slow_applies`` (etcd_server_slow_apply_total). ``apply_durations``
        is told each request's apply time (etcd_server_apply_duration_seconds)."""
        self.warning_apply_duration = warning_apply_duration
        self.slow_applies = slow_applies
        self.apply_durations = apply_durations
        self.stores = stores
        self.waits = waits
        self.log = logger
        self.snapshots = snapshots
        self.peers = peers
        self.member_id = member_id
        # Whether "set initial cluster version" was logged by this process (see
        # _members_published).
        self._version_logged = False

    # -- the Applier protocol of RaftNode -----------------------------------------------------

    def apply_entries(
        self, entries: Sequence[Entry], apply_conf: Callable[[ConfChange], ConfState]
    ) -> None:
        kv = self.stores.kv
        ci = kv.consistent_index
        for e in entries:
            if e.type == EntryType.CONF_CHANGE_V2:
                self._apply_conf_change(e, apply_conf, skip_store=e.index <= ci)
                continue
            if e.index <= ci:
                continue
            kv.set_consistent_index(e.index, e.term)
            if e.data:
                self._apply_request(e.data, e.index)

    def apply_snapshot(self, snap: Snapshot) -> None:
        # The backend travels beside the raft snapshot (see the peer transport).
        self.snapshots.restore(snap)
        self.peers.sync()

    def snapshot_data(self) -> bytes:
        self.stores.kv.commit()
        return b""

    # -- normal entries ---------------------------------------------------------------------

    def _apply_request(self, data: bytes, index: int) -> None:
        req = raft_internal_pb2.InternalRaftRequest()
        req.ParseFromString(data)
        req_id = req.header.ID or req.ID
        # The store request this member converted when it proposed the entry (None for
        # another member's entry, or one proposed without it); its type also names the
        # request, which spares asking protobuf for the fields that are set.
        request = self.waits.take_request(req_id)
        which = _WHICH_OF_REQUEST.get(type(request)) or _which(req)
        start = time.monotonic()
        success = False
        try:
            result = self._dispatch(req, which, req_id, index, request)
            success = True
        except (MvccError, ServerError) as err:
            # etcd counts a compacted revision as a successful apply.
            success = isinstance(err, CompactedError)
            if isinstance(err, NoSpaceError):
                self._raise_alarm(AlarmType.NOSPACE)
            self.waits.fail(req_id, err)
            return
        finally:
            took = time.monotonic() - start
            if self.apply_durations is not None:
                self.apply_durations.observe(which, success, took)
            if took > self.warning_apply_duration:
                if self.slow_applies is not None:
                    self.slow_applies.inc()
                self.log.warn(
                    "apply request took too long",
                    {
                        "took": go_duration(took),
                        "expected-duration": go_duration(self.warning_apply_duration),
                        "prefix": "",
                        "request": which,
                    },
                )
        self.waits.trigger(req_id, result)

    def _lease_keys(self, lease_id: int) -> tuple[bytes, ...]:
        lease = self.stores.lessor.lookup(lease_id)
        return () if lease is None else tuple(sorted(lease.keys))

    def _dispatch(
        self,
        req: raft_internal_pb2.InternalRaftRequest,
        which: str,
        req_id: int,
        index: int,
        request: object,
    ) -> object:
        store = self.stores.kv
        auth = self.stores.auth
        if which in _REFUSED_WHEN_CORRUPT and self.stores.alarms and self._corrupt():
            # etcd's corrupt applier: every member refuses writes under the alarm.
            raise CorruptError()
        if auth.enabled and which in _CHECKED:
            check_raft_request(auth, req, self._lease_keys)
        # The proposer of the entry (if it is this member) converted the request once
        # already; every other member converts it here.
        if which == "put":
            if isinstance(request, mt.PutRequest):
                return txn.put(store, request)
            r = req.put
            if not (
                r.lease or r.prev_kv or r.ignore_value or r.ignore_lease
            ) and not self.waits.waiting(req_id):
                # another member's plain put (a follower's common entry): nobody here
                # waits for its answer, so none is built
                txn.put_plain(store, r.key, r.value)
                return None
            return txn.put(store, pbconv.put_from_pb(r))
        if which == "delete_range":
            d = (
                request
                if isinstance(request, mt.DeleteRangeRequest)
                else pbconv.delete_range_from_pb(req.delete_range)
            )
            return txn.delete_range(store, d)
        if which == "txn":
            t = request if isinstance(request, mt.TxnRequest) else pbconv.txn_from_pb(req.txn)
            return txn.txn(store, t)
        if which == "compaction":
            return self._compact(store, req.compaction.revision)
        if which == "lease_grant":
            return txn.lease_grant(store, req.lease_grant.ID, req.lease_grant.TTL)
        if which == "lease_revoke":
            return store.lease_revoke(req.lease_revoke.ID)
        if which == "lease_checkpoint":
            for cp in req.lease_checkpoint.checkpoints:
                store.lease_checkpoint(cp.ID, cp.remaining_TTL)
            return None
        if which == "alarm":
            return self._apply_alarm(req.alarm)
        if which == "cluster_member_attr_set":
            attr = req.cluster_member_attr_set
            self.stores.membership.set_attributes(
                attr.member_ID,
                attr.member_attributes.name,
                tuple(attr.member_attributes.client_urls),
            )
            self._members_published()
            return None
        if is_auth_request(req):
            return apply_auth_request(auth, req, index)
        self.log.warn("unknown entry type", {"request": which or ""})
        return None

    # -- alarms -------------------------------------------------------------------------------

    def _corrupt(self) -> bool:
        return any(alarm == AlarmType.CORRUPT for _, alarm in self.stores.alarms)

    def _compact(self, store: KVStore, revision: int) -> mt.CompactionResponse:
        start = time.monotonic()
        resp = txn.compact(store, revision)
        if store.compaction_hashes:
            self._log_stored_hash(store)
        size, in_use = store.db_size, store.db_size_in_use
        # etcd's line, with the sizes etcd 3.5.12 added (#17291)
        self.log.info(
            "finished scheduled compaction",
            {
                "compact-revision": revision,
                "took": go_duration(time.monotonic() - start),
                "current-db-size-bytes": size,
                "current-db-size": go_bytes(size),
                "current-db-size-in-use-bytes": in_use,
                "current-db-size-in-use": go_bytes(in_use),
            },
        )
        return resp

    def _apply_alarm(self, req: rpc_pb2.AlarmRequest) -> list[tuple[int, int]]:
        key = (req.memberID, int(req.alarm))
        if req.action == rpc_pb2.AlarmRequest.ACTIVATE:
            self._set_alarm(key)
            return [key]
        if req.action == rpc_pb2.AlarmRequest.DEACTIVATE:
            alarms = self.stores.alarms
            if key not in alarms:
                return []
            alarms.discard(key)
            kv = self.stores.kv
            kv.backend.delete("alarm", _alarm_key(key))
            if key[1] == AlarmType.NOSPACE:
                kv.nospace = False
            return [key]
        return sorted(self.stores.alarms)

    def _raise_alarm(self, alarm: int) -> None:
        for member_id in self.stores.membership.members:
            self._set_alarm((member_id, alarm))

    def _log_stored_hash(self, store: KVStore) -> None:
        # the hash the compaction just took (the newest kept), as etcd's HashStorage logs it
        kept = store.hashes.hashes()
        if kept:
            h = kept[-1]
            self.log.info(
                "storing new hash",
                {"hash": h.hash, "revision": h.revision, "compact-revision": h.compact_revision},
            )

    def _set_alarm(self, key: tuple[int, int]) -> None:
        alarms = self.stores.alarms
        if key in alarms:
            return
        alarms.add(key)
        kv = self.stores.kv
        kv.backend.put("alarm", _alarm_key(key), b"")
        if key[1] == AlarmType.NOSPACE:
            kv.nospace = True
        self.log.warn("alarm raised", {"alarm": AlarmType.Name(key[1]), "member-id": f"{key[0]:x}"})

    # -- membership -----------------------------------------------------------------------------

    def _apply_conf_change(
        self, e: Entry, apply_conf: Callable[[ConfChange], ConfState], skip_store: bool
    ) -> None:
        cc = ConfChange.decode(e.data)
        req_id = Member.request_id(cc.context) if cc.context else 0
        if not skip_store:
            try:
                self._validate_conf_change(cc)
            except ServerError as err:
                # Every member rejects it alike; Raft's configuration stays as it was.
                self.stores.kv.set_consistent_index(e.index, e.term)
                self.waits.fail(req_id, err)
                return
        try:
            apply_conf(cc)
        except Exception as err:  # the core refused it: answer the waiter, change nothing
            self.log.warn("failed to apply conf change", {"error": str(err)})
            if not skip_store:
                # Applied all the same: the backend covers it (a snapshot may be taken here).
                self.stores.kv.set_consistent_index(e.index, e.term)
            self.waits.fail(req_id, ServerError(str(err)))
            return
        if not skip_store:
            self.stores.kv.set_consistent_index(e.index, e.term)
            self._record_members(cc)
        self.peers.sync()
        if req_id:
            self.waits.trigger(req_id, None)

    def _validate_conf_change(self, cc: ConfChange) -> None:
        """etcd's ValidateConfigurationChange, run at apply time on every member."""
        membership = self.stores.membership
        members = membership.members
        member = Member.decode(cc.context) if cc.context else None
        for change in cc.changes:
            node = change.node_id
            if node in membership.removed:
                raise MemberRemovedError()
            if change.type in (ConfChangeType.ADD_NODE, ConfChangeType.ADD_LEARNER_NODE):
                existing = members.get(node)
                # A promotion's context is the learner itself (etcd: IsPromote); a new
                # voter that happens to get a learner's ID (same URLs, same second) is
                # an add, refused as a duplicate ID.
                promoting = (
                    existing is not None
                    and existing.is_learner
                    and change.type == ConfChangeType.ADD_NODE
                    and (member is None or member.is_learner)
                )
                if existing is not None and not promoting:
                    raise MemberExistsError()
                if member is not None and not promoting:
                    self._check_urls_free(node, member.peer_urls)
                learners = sum(1 for m in members.values() if m.is_learner)
                if change.type == ConfChangeType.ADD_LEARNER_NODE and learners >= MAX_LEARNERS:
                    raise TooManyLearnersError()
            elif change.type == ConfChangeType.REMOVE_NODE:
                if node not in members:
                    raise MemberNotFoundError()
            elif change.type == ConfChangeType.UPDATE_NODE:
                if node not in members:
                    raise MemberNotFoundError()
                if member is not None:
                    self._check_urls_free(node, member.peer_urls)

    def _check_urls_free(self, node: int, urls: tuple[str, ...]) -> None:
        for other in self.stores.membership.members.values():
            if other.id != node and set(other.peer_urls) & set(urls):
                raise PeerURLExistsError()

    def _record_members(self, cc: ConfChange) -> None:
        member = Member.decode(cc.context) if cc.context else None
        membership = self.stores.membership
        ids = {
            "cluster-id": f"{membership.cluster_id:x}",
            "local-member-id": f"{self.member_id:x}",
        }
        for change in cc.changes:
            node = change.node_id
            if change.type == ConfChangeType.REMOVE_NODE:
                gone = membership.members.get(node)
                if gone is None:
                    raise MemberNotFoundError()
                membership.remove(node)
                self.log.info(
                    "removed member",
                    {
                        **ids,
                        "removed-remote-peer-id": f"{node:x}",
                        "removed-remote-peer-urls": list(gone.peer_urls),
                    },
                )
            elif change.type in (ConfChangeType.ADD_NODE, ConfChangeType.ADD_LEARNER_NODE):
                existing = membership.members.get(node)
                learner = change.type == ConfChangeType.ADD_LEARNER_NODE
                if existing is not None and not learner:
                    membership.promote(node)
                    self.log.info("promote member", ids)
                elif member is not None and member.id == node:
                    membership.add(
                        Member(
                            member.id, member.name, member.peer_urls, member.client_urls, learner
                        )
                    )
                    self.log.info(
                        "added member",
                        {
                            **ids,
                            "added-peer-id": f"{node:x}",
                            "added-peer-peer-urls": list(member.peer_urls),
                        },
                    )
            elif change.type == ConfChangeType.UPDATE_NODE and member is not None:
                membership.update_peer_urls(node, member.peer_urls)
                self.log.info(
                    "updated member",
                    {
                        **ids,
                        "updated-remote-peer-id": f"{node:x}",
                        "updated-remote-peer-urls": list(member.peer_urls),
                    },
                )

    def _members_published(self) -> None:
        # etcd's leader sets the cluster version once every member reports its server
        # version, and each member logs it as it applies that. pyetcd's cluster version
        # is fixed (CLUSTER_VERSION), so each member logs etcd's two lines at the
        # equivalent point: when it applies the publish that completes the membership.
        if self._version_logged:
            return
        members = self.stores.membership.members.values()
        if not all(m.client_urls for m in members):
            return
        self._version_logged = True
        version = ".".join(CLUSTER_VERSION.split(".")[:2])
        self.log.info(
            "set initial cluster version",
            {
                "cluster-id": f"{self.stores.membership.cluster_id:x}",
                "local-member-id": f"{self.member_id:x}",
                "cluster-version": version,
            },
        )
        self.log.info("enabled capabilities for version", {"cluster-version": version})


#: etcd 3.5's limit on learners in a cluster (membership.maxLearners)
MAX_LEARNERS = 1

# entries checked against the auth store at apply (rule 4)
_CHECKED = frozenset(("put", "delete_range", "txn", "lease_revoke"))
# What the proposer registers with an entry it built (KVServer: put, delete_range, txn
# carry exactly that request and a header) names the entry's request.
_WHICH_OF_REQUEST: dict[type, str] = {
    mt.PutRequest: "put",
    mt.DeleteRangeRequest: "delete_range",
    mt.TxnRequest: "txn",
}
_REFUSED_WHEN_CORRUPT = frozenset(
    ("put", "delete_range", "txn", "compaction", "lease_grant", "lease_revoke")
)


def _alarm_key(key: tuple[int, int]) -> bytes:
    return key[0].to_bytes(8, "big") + key[1].to_bytes(4, "big")


def _which(req: raft_internal_pb2.InternalRaftRequest) -> str:
    # etcd's InternalRaftRequest has no oneof: the set field names the request (the
    # first in field order). A put (another member's, mostly) is asked for first:
    # three HasField cost less than ListFields; v2 and range are the fields before it.
    if req.HasField("put") and not req.HasField("range") and not req.HasField("v2"):
        return "put"
    for fd, _ in req.ListFields():
        if fd.name not in ("header", "ID"):
            return str(fd.name)
    return ""
