"""etcd 3.5's backend schema: bucket names and how each bucket encodes its records, and
the conversion to and from pyetcd's sqlite tables.

Facts, read from real etcd 3.5.1 snapshots (``etcdctl snapshot save``) and data dirs
restored by its ``etcdutl`` (tests/etcdutl check them against the real binaries):

- ``key``: 17-byte revision keys (8-byte big-endian main, ``_``, 8-byte sub), plus ``t``
  for a tombstone; values are marshalled ``mvccpb.KeyValue``; a tombstone holds only the key.
- ``meta``: ``consistent_index`` and ``term`` as 8-byte big-endian; ``scheduledCompactRev``
  and ``finishedCompactRev`` as 17-byte revision keys of ``(rev, 0)``; ``confState`` as
  Go's JSON of ``raftpb.ConfState``. etcd 3.5 writes no ``storageVersion`` (3.6 does).
- ``lease``: 8-byte big-endian lease ID -> marshalled ``leasepb.Lease``.
- ``members``: the member ID in lower-case hex without padding -> Go's JSON of the member
  (``id``, ``peerURLs``, ``isLearner`` if set, ``name``, ``clientURLs`` if set);
  ``members_removed``: hex ID -> ``removed``.
- ``alarm``: marshalled ``etcdserverpb.AlarmMember`` -> empty value.
- ``auth``: ``authEnabled`` (one byte) and ``authRevision`` (8-byte big-endian);
  ``authUsers``/``authRoles``: name -> marshalled ``authpb.User``/``authpb.Role``.
- ``cluster``: ``clusterVersion`` -> ``3.5.0``.

pyetcd keeps the same buckets as sqlite tables, some in their own form (see
``pyetcd.mvcc.backend``); everything not listed here is stored alike.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from typing import Final

from pyetcd.mvcc.hash import marshal_kv
from pyetcd.mvcc.revision import decode_kv, encode_kv
from pyetcd.mvcc.types import KeyValue
from pyetcd.pb import kv_pb2, lease_pb2, rpc_pb2
from pyetcd.raft import ConfState
from pyetcd.server.etcdserver.membership import Member

__all__ = [
    "ALARM",
    "AUTH",
    "AUTH_ROLES",
    "AUTH_USERS",
    "CLUSTER",
    "CLUSTER_VERSION_KEY",
    "CONF_STATE_KEY",
    "CONSISTENT_INDEX_KEY",
    "ETCD_BUCKETS",
    "FINISHED_COMPACT_KEY",
    "KEY",
    "LEASE",
    "MEMBERS",
    "MEMBERS_REMOVED",
    "META",
    "SCHEDULED_COMPACT_KEY",
    "STORAGE_VERSION_KEY",
    "SUPPORTED_STORAGE_VERSION",
    "TABLE_OF_BUCKET",
    "TERM_KEY",
    "alarm_from_etcd",
    "alarm_to_etcd",
    "compact_rev_from_etcd",
    "compact_rev_to_etcd",
    "conf_state_json",
    "kv_from_etcd",
    "kv_to_etcd",
    "lease_from_etcd",
    "lease_to_etcd",
    "member_from_etcd",
    "member_key",
    "member_to_etcd",
    "sorted_members",
    "storage_version_newer",
]

ALARM: Final = b"alarm"
AUTH: Final = b"auth"
AUTH_ROLES: Final = b"authRoles"
AUTH_USERS: Final = b"authUsers"
CLUSTER: Final = b"cluster"
KEY: Final = b"key"
LEASE: Final = b"lease"
MEMBERS: Final = b"members"
MEMBERS_REMOVED: Final = b"members_removed"
META: Final = b"meta"

# In byte order: the order a bbolt root bucket holds them, and the writer needs them.
ETCD_BUCKETS: Final = (
    ALARM,
    AUTH,
    AUTH_ROLES,
    AUTH_USERS,
    CLUSTER,
    KEY,
    LEASE,
    MEMBERS,
    MEMBERS_REMOVED,
    META,
)

# The pyetcd table of each bucket that is stored alike (key for key, value for value).
TABLE_OF_BUCKET: Final = {
    AUTH: "auth",
    AUTH_ROLES: "auth_roles",
    AUTH_USERS: "auth_users",
    CLUSTER: "cluster",
}

CONSISTENT_INDEX_KEY: Final = b"consistent_index"
TERM_KEY: Final = b"term"
SCHEDULED_COMPACT_KEY: Final = b"scheduledCompactRev"
FINISHED_COMPACT_KEY: Final = b"finishedCompactRev"
CONF_STATE_KEY: Final = b"confState"
STORAGE_VERSION_KEY: Final = b"storageVersion"
CLUSTER_VERSION_KEY: Final = b"clusterVersion"
# The newest storage this code reads: etcd 3.5's.
SUPPORTED_STORAGE_VERSION: Final = (3, 5)

_U64 = struct.Struct(">Q")
_REV = struct.Struct(">QcQ")


# -- key ---------------------------------------------------------------------------------------


def kv_to_etcd(raw: bytes, tombstone: bool) -> bytes:
    """A pyetcd key-table value as etcd stores it: marshalled ``mvccpb.KeyValue``."""
    return marshal_kv(decode_kv(raw), tombstone)


def kv_from_etcd(value: bytes) -> bytes:
    """An etcd ``key`` bucket value as pyetcd's key table stores it."""
    kv = kv_pb2.KeyValue.FromString(value)
    return encode_kv(
        KeyValue(kv.key, kv.create_revision, kv.mod_revision, kv.version, kv.value, kv.lease)
    )


# -- meta --------------------------------------------------------------------------------------


def compact_rev_to_etcd(raw: bytes) -> bytes:
    """pyetcd's 8-byte compaction revision as etcd's 17-byte revision key."""
    return _REV.pack(_U64.unpack(raw)[0], b"_", 0)


def compact_rev_from_etcd(raw: bytes) -> bytes:
    """etcd's 17-byte compaction revision key as pyetcd's 8 bytes."""
    return raw[:8]


def conf_state_json(cs: ConfState) -> bytes:
    """``confState`` as etcd 3.5 stores it: Go's JSON of ``raftpb.ConfState`` (empty lists
    omitted, ``auto_leave`` always there)."""
    doc: dict[str, object] = {}
    for name, ids in (
        ("voters", cs.voters),
        ("learners", cs.learners),
        ("voters_outgoing", cs.voters_outgoing),
        ("learners_next", cs.learners_next),
    ):
        if ids:
            doc[name] = list(ids)
    doc["auto_leave"] = cs.auto_leave
    return json.dumps(doc, separators=(",", ":")).encode()


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")[:2])


def storage_version_newer(raw: bytes) -> bool:
    """Whether ``storageVersion`` names a storage newer than this code reads."""
    try:
        return _version_tuple(raw.decode()) > SUPPORTED_STORAGE_VERSION
    except ValueError:
        return True


# -- lease -------------------------------------------------------------------------------------


def lease_to_etcd(lease_id: int, ttl: int, remaining_ttl: int) -> tuple[bytes, bytes]:
    """A pyetcd lease row as etcd's ``lease`` bucket record."""
    value = lease_pb2.Lease(ID=lease_id, TTL=ttl, RemainingTTL=remaining_ttl)
    return _U64.pack(lease_id & (2**64 - 1)), value.SerializeToString()


def lease_from_etcd(value: bytes) -> tuple[int, int, int]:
    """An etcd ``lease`` bucket value as pyetcd's ``(id, ttl, remaining_ttl)``."""
    lease = lease_pb2.Lease.FromString(value)
    return lease.ID, lease.TTL, lease.RemainingTTL


# -- alarm -------------------------------------------------------------------------------------


def alarm_to_etcd(key: bytes) -> bytes:
    """pyetcd's alarm key (8-byte member ID, 4-byte type) as etcd's marshalled AlarmMember."""
    member_id, alarm = int.from_bytes(key[:8], "big"), int.from_bytes(key[8:], "big")
    am = rpc_pb2.AlarmMember(memberID=member_id, alarm=rpc_pb2.AlarmType.Name(alarm))
    data: bytes = am.SerializeToString()
    return data


def alarm_from_etcd(key: bytes) -> bytes:
    """etcd's alarm key as pyetcd's."""
    am = rpc_pb2.AlarmMember.FromString(key)
    member_id, alarm = int(am.memberID), int(am.alarm)
    return member_id.to_bytes(8, "big") + alarm.to_bytes(4, "big")


# -- members -----------------------------------------------------------------------------------


def member_key(member_id: int) -> bytes:
    """etcd's key of a member in ``members`` and ``members_removed``: hex, no padding."""
    return f"{member_id:x}".encode()


def member_to_etcd(m: Member) -> bytes:
    """Go's JSON of etcd's ``membership.Member`` (field order and omitempty as Go's)."""
    doc: dict[str, object] = {"id": m.id, "peerURLs": list(m.peer_urls)}
    if m.is_learner:
        doc["isLearner"] = True
    if m.name:
        doc["name"] = m.name
    if m.client_urls:
        doc["clientURLs"] = list(m.client_urls)
    return json.dumps(doc, separators=(",", ":")).encode()


def member_from_etcd(value: bytes) -> Member:
    """A record of etcd's ``members`` bucket as pyetcd's Member."""
    return Member.decode(value)


def sorted_members(
    rows: Iterable[tuple[bytes, bytes]],
) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """pyetcd's ``members`` table as etcd's ``members`` and ``members_removed`` buckets,
    each in key order."""
    members, removed = [], []
    for k, v in rows:
        member_id = int.from_bytes(k, "big")
        if v == b"removed":
            removed.append((member_key(member_id), b"removed"))
        else:
            members.append((member_key(member_id), member_to_etcd(Member.decode(v))))
    return sorted(members), sorted(removed)
