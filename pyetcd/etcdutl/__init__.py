"""pyetcd.etcdutl: etcd's snapshot format for pyetcd, and the ``pyetcdutl`` tool.

``snapshot`` writes pyetcd's sqlite backend as the bbolt database etcd's
``Maintenance.Snapshot`` sends (etcd's buckets and encodings, see ``schema``);
``restore`` reads such a file, from real etcd or from pyetcd, back into a pyetcd
backend and a data dir for a new cluster; ``command`` is ``pyetcdutl``, which mirrors
``etcdutl`` 3.5.
"""

from __future__ import annotations

from .snapshot import save_snapshot, write_snapshot_db

__all__ = ["save_snapshot", "write_snapshot_db"]
