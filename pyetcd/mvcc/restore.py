"""Rebuilding the key index from the backend's key table, as a restart does.

One pass over the key table in revision order, reading of each record only its head
(the encoded KeyValue's header and key: ``Backend.key_index_rows``), never the value.
The loop is the restart's largest cost at a million keys, so it decodes the revision
and the header inline rather than through ``pyetcd.mvcc.revision``'s helpers (the
encodings are theirs: ``rev_to_bytes`` and ``encode_kv``).
"""

from __future__ import annotations

import struct

from pyetcd.mvcc.backend import Backend
from pyetcd.mvcc.key_index import KeyIndex
from pyetcd.mvcc.revision import REV_BYTES_LEN, Revision, rev_to_bytes

__all__ = ["read_key_index"]

_BATCH = 10000
# revision_to_bytes: main, b"_", sub (and b"t" for a tombstone)
_unpack_rev = struct.Struct(">QxQ").unpack_from
# encode_kv's header: create, mod, version, lease, key length; then the key
_HEAD = struct.Struct(">qqqqI")
_unpack_head = _HEAD.unpack_from
_HEAD_SIZE = _HEAD.size


def read_key_index(backend: Backend) -> tuple[dict[bytes, KeyIndex], int]:
    """Every key's KeyIndex as the key table has it (``lease`` set from the newest
    put, not checked against the lessor), and the newest main revision in the table
    (0 when it is empty)."""
    keys: dict[bytes, KeyIndex] = {}
    get = keys.get
    restored = KeyIndex.restored
    last_main = 0
    lo = rev_to_bytes((0, 0))
    while True:
        rows = backend.key_index_rows(lo, _BATCH)
        for rb, head in rows:
            rev: Revision = _unpack_rev(rb)
            create, _mod, version, lease, klen = _unpack_head(head)
            key = head[_HEAD_SIZE : _HEAD_SIZE + klen]
            if len(key) < klen:
                # a key longer than the record's head: read the whole record
                key = (backend.key_get(rb) or b"")[_HEAD_SIZE : _HEAD_SIZE + klen]
            ki = get(key)
            if len(rb) > REV_BYTES_LEN:  # a tombstone
                if ki is not None and ki.revs:
                    ki.tombstone(rev)
                continue
            # a generation whose older revisions were compacted away starts here; its
            # creating put's own revision when this is it (one tuple, not two)
            created: Revision = rev if rev == (create, 0) else (create, 0)
            if ki is None:  # the common case: one record per key
                keys[key] = restored(key, rev, created, version, lease)
                continue
            if ki.revs:
                ki.put(rev)
            else:
                ki.restore(created, rev, version)
            ki.lease = lease
        if rows:
            main, sub = _unpack_rev(rows[-1][0])
            last_main = main
            lo = rev_to_bytes((main, sub + 1))
        if len(rows) < _BATCH:
            return keys, last_main
