"""``pyetcdutl``: etcdutl 3.5's commands, flags, output formats and errors, over pyetcd's
data dirs and etcd's snapshot files.

Facts (etcdutl 3.5.1): ``-w/--write-out`` is global (``simple`` by default; ``json``,
``table``, ``fields``; ``protobuf`` is refused by these commands); an error prints
``Error: <text>`` on stderr and exits 1; a command given the wrong number of arguments
exits 128 (``ExitBadArgs``), an unknown output format exits 4 (``ExitBadFeature``).
Sizes print as go-humanize's ``Bytes`` (powers of 1000: ``20 kB``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from pyetcd.logutil import bootstrap_logger, go_bytes
from pyetcd.mvcc import Backend
from pyetcd.version import API_VERSION, SERVER_VERSION

from .restore import RestoreConfig, RestoreError, restore_snapshot
from .status import HashKV, SnapshotStatus, StatusError, backend_path, hashkv, snapshot_status

__all__ = ["main"]

EXIT_ERROR = 1
EXIT_BAD_FEATURE = 4
EXIT_BAD_ARGS = 128
FORMATS = ("simple", "json", "table", "fields")


class _Exit(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    raise _Exit(code, message)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """olekukonko/tablewriter as etcdutl uses it: centered header, right-aligned cells."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def center(text: str, w: int) -> str:
        gap = w - len(text)
        return " " * (gap // 2) + text + " " * (gap - gap // 2)

    lines = [
        rule,
        "| " + " | ".join(center(h, w) for h, w in zip(header, widths, strict=True)) + " |",
        rule,
    ]
    lines += [
        "| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    lines.append(rule)
    return "\n".join(lines) + "\n"


def format_status(st: SnapshotStatus, fmt: str) -> str:
    """``snapshot status`` output in each of etcdutl's formats."""
    if fmt == "json":
        doc = {
            "hash": st.hash,
            "revision": st.revision,
            "totalKey": st.total_key,
            "totalSize": st.total_size,
        }
        return json.dumps(doc, separators=(",", ":")) + "\n"
    if fmt == "fields":
        return (
            f'"Hash" : {st.hash}\n"Revision" : {st.revision}\n"Keys" : {st.total_key}\n'
            f'"Size" : {st.total_size}\n'
        )
    cells = [f"{st.hash:x}", str(st.revision), str(st.total_key), go_bytes(st.total_size)]
    if fmt == "table":
        return table(["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"], [cells])
    return ", ".join(cells) + "\n"


def format_hashkv(h: HashKV, fmt: str) -> str:
    """``hashkv`` output (etcdutl 3.6's command; etcdutl 3.5 has none)."""
    if fmt == "json":
        doc = {
            "hash": h.hash,
            "hashRevision": h.hash_revision,
            "compactRevision": h.compact_revision,
        }
        return json.dumps(doc, separators=(",", ":")) + "\n"
    if fmt == "fields":
        return (
            f'"Hash" : {h.hash}\n"Hash revision" : {h.hash_revision}\n'
            f'"Compact revision" : {h.compact_revision}\n'
        )
    cells = [str(h.hash), str(h.hash_revision), str(h.compact_revision)]
    if fmt == "table":
        return table(["HASH", "HASH REVISION", "COMPACT REVISION"], [cells])
    return ", ".join(cells) + "\n"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pyetcdutl",
        description="A simple command line client for pyetcd data files and etcd snapshots.",
    )
    sub = p.add_subparsers(dest="command")
    snap = sub.add_parser("snapshot", help="Manages etcd node snapshots")
    snap_sub = snap.add_subparsers(dest="snapshot_command")
    st = snap_sub.add_parser("status", help="Gets backend snapshot status of a given file")
    st.add_argument("args", nargs="*")
    rs = snap_sub.add_parser(
        "restore", help="Restores an etcd member snapshot to an etcd directory"
    )
    rs.add_argument("args", nargs="*")
    rs.add_argument("--data-dir", default="", help="Path to the output data directory")
    rs.add_argument(
        "--wal-dir", default="", help="Path to the WAL directory (use --data-dir if none given)"
    )
    rs.add_argument("--name", default="default", help="Human-readable name for this member")
    rs.add_argument(
        "--initial-cluster",
        default="default=http://localhost:2380",
        help="Initial cluster configuration for restore bootstrap",
    )
    rs.add_argument(
        "--initial-cluster-token",
        default="etcd-cluster",
        help="Initial cluster token for the etcd cluster during restore bootstrap",
    )
    rs.add_argument(
        "--initial-advertise-peer-urls",
        default="http://localhost:2380",
        help="List of this member's peer URLs to advertise to the rest of the cluster",
    )
    rs.add_argument(
        "--skip-hash-check",
        action="store_true",
        help="Ignore snapshot integrity hash value (required if copied from data directory)",
    )
    rs.add_argument(
        "--mark-compacted",
        action="store_true",
        help="Mark the latest revision after restore as the point of scheduled "
        "compaction (required if --bump-revision > 0, disallowed otherwise)",
    )
    rs.add_argument(
        "--bump-revision",
        type=int,
        default=0,
        help="How much to increase the latest revision after restore",
    )
    df = sub.add_parser("defrag", help="Defragments the storage of the etcd")
    df.add_argument(
        "--data-dir", default="", help="Required. Defragments a data directory not in use by etcd."
    )
    hk = sub.add_parser("hashkv", help="Prints the KV history hash of a given file")
    hk.add_argument("args", nargs="*")
    hk.add_argument(
        "--rev",
        type=int,
        default=0,
        help="Revision number. Default is 0, which means the latest revision.",
    )
    sub.add_parser("version", help="Prints the version of etcdutl")
    return p


def _take_write_out(argv: list[str]) -> tuple[str, list[str]]:
    # -w is a global flag, allowed anywhere on the line, as cobra's persistent flags are.
    fmt, rest, i = "simple", [], 0
    while i < len(argv):
        a = argv[i]
        if a in ("-w", "--write-out") and i + 1 < len(argv):
            fmt, i = argv[i + 1], i + 2
            continue
        if a.startswith(("-w=", "--write-out=")):
            fmt = a.split("=", 1)[1]
        else:
            rest.append(a)
        i += 1
    return fmt, rest


def _one_arg(args: list[str], what: str) -> str:
    if len(args) != 1:
        _fail(f"{what} requires exactly one argument", EXIT_BAD_ARGS)
    return args[0]


def _restore(ns: argparse.Namespace) -> str:
    if not ns.data_dir:
        _fail('required flag(s) "data-dir" not set')
    path = _one_arg(ns.args, "snapshot restore")
    if ns.bump_revision and not ns.mark_compacted:
        _fail("--mark-compacted required if --bump-revision > 0")
    if ns.mark_compacted and not ns.bump_revision:
        _fail("--bump-revision > 0 required if --mark-compacted")
    cfg = RestoreConfig(
        data_dir=ns.data_dir,
        wal_dir=ns.wal_dir,
        name=ns.name,
        initial_cluster=ns.initial_cluster,
        initial_cluster_token=ns.initial_cluster_token,
        initial_advertise_peer_urls=tuple(
            u for u in ns.initial_advertise_peer_urls.split(",") if u
        ),
        skip_hash_check=ns.skip_hash_check,
        mark_compacted=ns.mark_compacted,
        bump_revision=ns.bump_revision,
    )
    log = bootstrap_logger(sys.stderr)
    wal_dir = cfg.wal_dir or os.path.join(cfg.data_dir, "member", "wal")
    fields = {
        "path": path,
        "wal-dir": wal_dir,
        "data-dir": cfg.data_dir,
        "snap-dir": os.path.join(cfg.data_dir, "member", "snap"),
    }
    log.info("restoring snapshot", fields)
    try:
        boot = restore_snapshot(path, cfg)
    except RestoreError as err:
        _fail(str(err))
    for m in boot.members:
        log.info(
            "added member",
            {
                "cluster-id": f"{boot.cluster_id:x}",
                "added-peer-id": f"{m.id:x}",
                "added-peer-peer-urls": list(m.peer_urls),
            },
        )
    log.info("restored snapshot", fields)
    return ""


def _defrag(ns: argparse.Namespace) -> str:
    if not ns.data_dir:
        _fail('required flag(s) "data-dir" not set')
    db = os.path.join(ns.data_dir, "member", "snap", "db")
    if not os.path.isfile(db):
        _fail(f"cannot open database at {db}")
    log = bootstrap_logger(sys.stderr)
    be = Backend(db)
    before = be.size
    log.info("defragmenting", {"path": db, "current-db-size-bytes": before})
    be.defragment()
    log.info(
        "finished defragmenting directory",
        {
            "path": db,
            "current-db-size-bytes": be.size,
            "current-db-size-bytes-diff": be.size - before,
        },
    )
    be.close()
    return ""


def _run(fmt: str, ns: argparse.Namespace) -> str:
    if ns.command == "version":
        return f"etcdutl version: {SERVER_VERSION}\nAPI version: {API_VERSION}\n"
    if fmt not in FORMATS:
        _fail("unsupported output format", EXIT_BAD_FEATURE)
    if ns.command == "defrag":
        return _defrag(ns)
    if ns.command == "hashkv":
        try:
            return format_hashkv(hashkv(backend_path(_one_arg(ns.args, "hashkv")), ns.rev), fmt)
        except StatusError as err:
            _fail(str(err))
    if ns.command == "snapshot" and ns.snapshot_command == "status":
        try:
            return format_status(snapshot_status(_one_arg(ns.args, "snapshot status")), fmt)
        except StatusError as err:
            _fail(str(err))
    if ns.command == "snapshot" and ns.snapshot_command == "restore":
        return _restore(ns)
    _parser().print_help(sys.stderr)
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pyetcdutl`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    fmt, rest = _take_write_out(list(sys.argv[1:] if argv is None else argv))
    ns = _parser().parse_args(rest)
    try:
        sys.stdout.write(_run(fmt, ns))
    except _Exit as e:
        sys.stderr.write(f"Error: {e}\n")
        return e.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
