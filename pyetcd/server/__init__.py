"""pyetcd.server: the member and its rooms, named as etcd names them.

- ``etcdserver``: the member (lifecycle, the Raft driver, propose, apply, read index,
  membership, request semantics); its parts are imported from their modules.
- ``rafthttp``: the peer transport (and an in-memory one for tests).
- ``auth``: users, roles, permissions and tokens.
- ``storage``: etcd's backend schema and the snapshot export in etcd's format.
"""

from __future__ import annotations

__all__: list[str] = []
