"""pyetcd.etcdutl: ``pyetcdutl``, which mirrors ``etcdutl`` 3.5 over pyetcd data dirs and
etcd snapshot files.

``restore`` reads a snapshot in etcd's format (``pyetcd.server.storage.schema``), from
real etcd or from pyetcd, back into a pyetcd backend and a data dir for a new cluster;
``status`` reports on a snapshot or a data dir; ``command`` is the command line.
"""

from __future__ import annotations

from .restore import RestoreConfig, RestoreError, restore_snapshot
from .status import snapshot_status

__all__ = ["RestoreConfig", "RestoreError", "restore_snapshot", "snapshot_status"]
