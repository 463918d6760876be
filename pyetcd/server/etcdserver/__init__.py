"""pyetcd.server.etcdserver: one member, composed of its parts (see ARCHITECTURE.md).

``server.EtcdServer`` builds the parts in dependency order and runs them; the API
faces call the parts (``kv.KVServer``, ``lease.LeaseServer``, ``cluster.ClusterServer``,
``maintenance.MaintenanceServer``). The package itself imports nothing: its low modules
(``errors``, ``membership``, ``transport``) are used by ``rafthttp``, ``auth`` and
``storage`` without loading the whole member, so import each part from its module.
"""

from __future__ import annotations

__all__: list[str] = []
