"""Restoring a snapshot: an etcd bbolt database (from real etcd or from pyetcd) read back
into pyetcd's sqlite backend, and a data dir for a member of a new cluster.

What ``etcdutl snapshot restore`` 3.5 writes, and so what this writes (observed on the
real binaries): the backend with every bucket kept except membership, which is replaced
by the new members (``members_removed`` emptied); ``consistent_index`` set to the number
of members and ``term`` to 1; a WAL whose metadata names the new member and cluster IDs
(derived from the flags as a bootstrap derives them), holding one add-voter conf change
per member at term 1, all committed; and a raft snapshot at that index whose conf state
holds the new voters. A member started on that data dir finds its log applied up to the
snapshot and its membership in the backend, and elects a leader among the new members.

Rule: nothing is written under the target dirs until the snapshot has passed its checks,
and a restore that fails midway removes what it created (etcd's "loses nothing").
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from pyetcd.bbolt import (
    SHA256_SIZE,
    BoltError,
    BoltReader,
    has_sha256_trailer,
)
from pyetcd.bbolt.trailer import iter_with_sha256
from pyetcd.config import ServerConfig
from pyetcd.ids import BootstrapError, InitialCluster, bootstrap_cluster
from pyetcd.mvcc import Backend
from pyetcd.mvcc.revision import bytes_to_rev
from pyetcd.raft import NONE, ConfState, HardState
from pyetcd.server.etcdserver.membership import Member
from pyetcd.server.etcdserver.raft_node import conf_change_entries
from pyetcd.server.storage import schema as s
from pyetcd.wal import Metadata, WALStorage

__all__ = ["RestoreConfig", "RestoreError", "load_backend", "restore_snapshot"]

# Key-table rows buffered between sqlite commits while loading.
_LOAD_BATCH = 10_000


class RestoreError(Exception):
    """A restore refused; ``str(exc)`` is etcdutl's error text."""


@dataclass(frozen=True, slots=True)
class RestoreConfig:
    """The flags of ``snapshot restore`` (etcdutl 3.5's names and defaults)."""

    data_dir: str
    wal_dir: str = ""
    name: str = "default"
    initial_cluster: str = "default=http://localhost:2380"
    initial_cluster_token: str = "etcd-cluster"
    initial_advertise_peer_urls: tuple[str, ...] = ("http://localhost:2380",)
    skip_hash_check: bool = False
    mark_compacted: bool = False
    bump_revision: int = 0


def _go_bytes(b: bytes) -> str:
    # Go's %v of a []byte, which is how etcdutl prints the hashes it compared.
    return "[" + " ".join(str(x) for x in b) + "]"


def _dir_empty(path: str) -> bool:
    try:
        return not os.listdir(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False


def check_snapshot_hash(f: BinaryIO, skip_hash_check: bool) -> int:
    """etcdutl's integrity check of a snapshot file; returns the database's size.

    Raises:
        RestoreError: no trailer without ``--skip-hash-check``, or a trailer that is not
            the SHA-256 of the database.
    """
    size = f.seek(0, os.SEEK_END)
    if not has_sha256_trailer(size):
        if not skip_hash_check:
            raise RestoreError("snapshot missing hash but --skip-hash-check=false")
        return size
    db_size = size - SHA256_SIZE
    if not skip_hash_check:
        f.seek(db_size)
        want = f.read(SHA256_SIZE)
        got = b""
        for chunk in iter_with_sha256(f, db_size, 1 << 20):
            got = chunk
        if got != want:
            raise RestoreError(f"expected sha256 {_go_bytes(want)}, got {_go_bytes(got)}")
    return db_size


def load_backend(reader: BoltReader, be: Backend) -> int:
    """Copy every etcd bucket of ``reader`` into the pyetcd backend ``be`` (committed).

    Membership is copied as it is; a restore replaces it afterwards. Returns the main
    revision of the last record of the ``key`` bucket (0 if it is empty).

    Raises:
        RestoreError: the database holds a storage version newer than etcd 3.5's.
        BoltError: the database is corrupt.
    """
    raw_version = reader.get(s.META, s.STORAGE_VERSION_KEY) if reader.has_bucket(s.META) else None
    if raw_version is not None and s.storage_version_newer(raw_version):
        raise RestoreError(
            f"snapshot has storage version {raw_version.decode(errors='replace')}, newer "
            f"than {'.'.join(map(str, s.SUPPORTED_STORAGE_VERSION))} this tool reads"
        )
    present = set(reader.buckets())
    last_main = 0
    if s.KEY in present:
        n = 0
        for rev, value in reader.items(s.KEY):
            if not value:
                # etcd's --bump-revision marker: a revision with no key; the compaction
                # revision marked with it carries the store's revision forward.
                continue
            be.key_put(rev, s.kv_from_etcd(value))
            last_main = bytes_to_rev(rev)[0]
            n += 1
            if n % _LOAD_BATCH == 0:
                be.commit()
    for bucket, table in s.TABLE_OF_BUCKET.items():
        if bucket in present:
            for k, v in reader.items(bucket):
                be.put(table, k, v)
    if s.LEASE in present:
        for _, v in reader.items(s.LEASE):
            be.lease_put(*s.lease_from_etcd(v))
    if s.ALARM in present:
        for k, _ in reader.items(s.ALARM):
            be.put("alarm", s.alarm_from_etcd(k), b"")
    if s.MEMBERS in present:
        for _, v in reader.items(s.MEMBERS):
            m = s.member_from_etcd(v)
            be.put("members", m.id.to_bytes(8, "big"), m.encode())
    if s.MEMBERS_REMOVED in present:
        for k, _ in reader.items(s.MEMBERS_REMOVED):
            be.put("members", int(k, 16).to_bytes(8, "big"), b"removed")
    if s.META in present:
        _load_meta(reader, be)
    be.commit()
    return last_main


def _load_meta(reader: BoltReader, be: Backend) -> None:
    for k, v in reader.items(s.META):
        if k in (s.SCHEDULED_COMPACT_KEY, s.FINISHED_COMPACT_KEY):
            be.put("meta", k, s.compact_rev_from_etcd(v))
        elif k in (s.CONSISTENT_INDEX_KEY, s.TERM_KEY):
            be.put("meta", k, v)
        # confState and storageVersion describe etcd's raft log and schema, not pyetcd's.


def _bootstrap(cfg: RestoreConfig) -> InitialCluster:
    server_cfg = ServerConfig(
        name=cfg.name,
        initial_cluster=cfg.initial_cluster,
        initial_cluster_token=cfg.initial_cluster_token,
        initial_advertise_peer_urls=cfg.initial_advertise_peer_urls,
        initial_cluster_state="new",
    )
    try:
        return bootstrap_cluster(server_cfg)
    except BootstrapError as err:
        raise RestoreError(str(err)) from None


def _rewrite_for_new_cluster(
    be: Backend, boot: InitialCluster, last_main: int, cfg: RestoreConfig
) -> None:
    """etcd's restore edits: new membership, consistent index and term, revision bump."""
    for k, _ in be.items("members"):
        be.delete("members", k)
    for m in boot.members:
        be.put("members", m.id.to_bytes(8, "big"), Member(m.id, m.name, m.peer_urls).encode())
    be.put_int("meta", s.CONSISTENT_INDEX_KEY, len(boot.members))
    be.put_int("meta", s.TERM_KEY, 1)
    if cfg.bump_revision:
        finished = be.get_int("meta", s.FINISHED_COMPACT_KEY)
        rev = max(last_main, finished) + cfg.bump_revision
        be.put_int("meta", s.SCHEDULED_COMPACT_KEY, rev)
        be.put_int("meta", s.FINISHED_COMPACT_KEY, rev)
    be.commit()


def _write_wal(cfg: RestoreConfig, boot: InitialCluster) -> None:
    """The log a new member of ``boot`` starts from, applied up to a raft snapshot."""
    storage = WALStorage.open(
        cfg.data_dir,
        wal_dir=cfg.wal_dir or None,
        metadata=Metadata(member_id=boot.local_member_id, cluster_id=boot.cluster_id),
    )
    try:
        ents = conf_change_entries(
            [(m.id, Member(m.id, m.name, m.peer_urls).encode()) for m in boot.members]
        )
        commit = len(ents)
        storage.save(HardState(term=1, vote=NONE, commit=commit), ents).result()
        voters = tuple(m.id for m in boot.members)
        storage.create_snapshot(commit, ConfState(voters=voters), b"")
    finally:
        storage.close()


@contextlib.contextmanager
def _cleanup_on_error(paths: list[str]) -> Iterator[None]:
    created = [p for p in paths if not os.path.exists(p)]
    try:
        yield
    except BaseException:
        for p in created:
            shutil.rmtree(p, ignore_errors=True)
        raise


def restore_snapshot(snapshot_path: str, cfg: RestoreConfig) -> InitialCluster:
    """``etcdutl snapshot restore``: make ``cfg.data_dir`` a pyetcd member of a new cluster
    holding the data of the snapshot at ``snapshot_path``.

    Raises:
        RestoreError: etcdutl's error text for a refused restore (bad flags, a data dir
            not empty, no such snapshot, a missing or wrong hash, a corrupt database).
    """
    boot = _bootstrap(cfg)
    for d in (cfg.data_dir, cfg.wal_dir):
        if d and not _dir_empty(d):
            raise RestoreError(f'data-dir "{d}" not empty or could not be read')
    try:
        f = open(snapshot_path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise RestoreError(f"open {snapshot_path}: no such file or directory") from None
    with f:
        check_snapshot_hash(f, cfg.skip_hash_check)
        snap_dir = os.path.join(cfg.data_dir, "member", "snap")
        with _cleanup_on_error([d for d in (cfg.data_dir, cfg.wal_dir) if d]):
            os.makedirs(snap_dir, mode=0o700, exist_ok=True)
            db_path = os.path.join(snap_dir, "db")
            try:
                # The trailer lies past the pages the meta pages count: bbolt ignores it.
                reader = BoltReader(f)
                be = Backend(db_path)
                try:
                    last_main = load_backend(reader, be)
                    _rewrite_for_new_cluster(be, boot, last_main, cfg)
                finally:
                    be.close()
            except BoltError as err:
                raise RestoreError(str(err)) from None
            _write_wal(cfg, boot)
    return boot
