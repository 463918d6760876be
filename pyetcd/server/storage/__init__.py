"""pyetcd.server.storage: etcd's backend schema (``schema``) and the snapshot that
``Maintenance.Snapshot`` sends (``snapshot``): pyetcd's sqlite backend written as the
bbolt database etcd 3.5 would hold, with etcd's buckets and encodings."""

from __future__ import annotations

from .snapshot import save_snapshot, stream_snapshot, write_snapshot_db

__all__ = ["save_snapshot", "stream_snapshot", "write_snapshot_db"]
