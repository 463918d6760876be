"""Bucket trees as nested dicts, written with ``BoltWriter`` and read back whole.

A tree maps a key to its value (bytes) or to a nested bucket (a dict); the top level
holds only buckets, as bbolt's root bucket does.
"""

from __future__ import annotations

from typing import BinaryIO, Union

from pyetcd.bbolt import BoltReader, BoltWriter, Meta

Tree = dict[bytes, Union[bytes, "Tree"]]


def write_tree(fileobj: BinaryIO, tree: Tree, page_size: int = 4096) -> Meta:
    with BoltWriter(fileobj, page_size) as w:
        _write(w, (), tree)
    return w.close()


def _write(w: BoltWriter, path: tuple[bytes, ...], tree: Tree) -> None:
    for name in sorted(tree):
        value = tree[name]
        if isinstance(value, dict):
            w.bucket((*path, name))
            _write(w, (*path, name), value)
        else:
            w.put(path, name, value)


def read_tree(reader: BoltReader, path: tuple[bytes, ...] = ()) -> Tree:
    out: Tree = {}
    for key, value in reader.entries(path):
        out[key] = read_tree(reader, (*path, key)) if value is None else value
    return out
