"""Stock etcdctl 3.5 and 3.4 key-value commands against pyetcd, compared with etcd 3.5.1.

Both servers get the same commands in the same order, so revisions (and, because the
flags are identical, member and cluster IDs) match and outputs compare byte for byte.
Each test writes under its own prefix; the module shares one pair of servers.
"""

from __future__ import annotations

import json
import queue

import pytest

from tests.framework import CtlResult, Etcdctl

from .ctl import Lines, Pair, both, same


def prefix(request: pytest.FixtureRequest, ctl: Etcdctl) -> str:
    return f"{request.node.originalname}-{ctl.version}/"


def revision(r: CtlResult) -> int:
    return int(json.loads(r.stdout)["header"]["revision"])


def fill(pair: Pair, ctl: Etcdctl, p: str) -> int:
    """Five keys, one updated twice; returns the revision after the first put."""
    first = same(pair, ctl, "put", f"{p}a", "va", "-w", "json")
    for k, v in (("b", "vb"), ("c", "vc"), ("d", "vd"), ("b", "vb2"), ("e", "ve"), ("b", "vb3")):
        same(pair, ctl, "put", f"{p}{k}", v)
    return revision(first)


def at_revision(flag: str, rev: int) -> str:
    """``REV`` or ``REV+n`` in a flag table means that revision of the test's data."""
    if not flag.startswith("REV"):
        return flag
    return str(rev + int(flag[4:] or 0))


GET_FLAGS: list[list[str]] = [
    [],
    ["--prefix"],
    ["--prefix", "-w", "json"],
    ["--prefix", "-w", "fields"],
    ["--prefix", "-w", "protobuf"],
    ["--prefix", "--limit", "2"],
    ["--prefix", "--limit", "2", "-w", "json"],
    ["--prefix", "--keys-only"],
    ["--prefix", "--count-only", "-w", "fields"],
    ["--prefix", "--print-value-only"],
    ["--prefix", "--consistency", "s"],
    ["--prefix", "--sort-by", "MODIFY", "--order", "DESCEND"],
    ["--prefix", "--sort-by", "CREATE", "--order", "DESCEND", "--limit", "3"],
    ["--prefix", "--sort-by", "VERSION", "--order", "ASCEND"],
    ["--prefix", "--sort-by", "VALUE", "--order", "DESCEND"],
    ["--prefix", "--sort-by", "KEY", "--order", "DESCEND"],
    ["--prefix", "--order", "DESCEND"],
    ["--prefix", "--hex"],
    ["--prefix", "-w", "table"],
    ["--from-key", "--limit", "1"],
    ["--rev", "REV"],
    ["--prefix", "--rev", "REV+2", "-w", "json"],
]


@pytest.mark.parametrize("flags", GET_FLAGS, ids=[" ".join(f) or "plain" for f in GET_FLAGS])
def test_get_flags(
    pair: Pair, etcdctl: Etcdctl, flags: list[str], request: pytest.FixtureRequest
) -> None:
    p = prefix(request, etcdctl) + str(GET_FLAGS.index(flags)) + "/"
    rev = fill(pair, etcdctl, p)
    args = [at_revision(f, rev) for f in flags]
    key = f"{p}a" if "--rev" in flags and "--prefix" not in flags else p
    if not flags:
        key = f"{p}b"
    r = same(pair, etcdctl, "get", key, *args)
    expected_rc = 0
    if "table" in flags:
        expected_rc = 4  # etcdctl has no table output for get
    elif "--count-only" in flags and etcdctl.version == "3.4":
        expected_rc = 1  # a 3.5 flag
    assert r.rc == expected_rc


def test_get_range_and_from_key(
    pair: Pair, etcdctl: Etcdctl, request: pytest.FixtureRequest
) -> None:
    p = prefix(request, etcdctl)
    fill(pair, etcdctl, p)
    r = same(pair, etcdctl, "get", f"{p}b", f"{p}d")
    assert r.stdout.split() == [f"{p}b", "vb3", f"{p}c", "vc"]
    r = same(pair, etcdctl, "get", f"{p}d", "--from-key", "--keys-only", "--limit", "2")
    assert r.stdout.split() == [f"{p}d", f"{p}e"]
    same(pair, etcdctl, "get", f"{p}zz")
    same(pair, etcdctl, "get", f"{p}zz", "-w", "json")


def test_get_errors(pair: Pair, etcdctl: Etcdctl, request: pytest.FixtureRequest) -> None:
    p = prefix(request, etcdctl)
    rev = fill(pair, etcdctl, p)
    r = same(pair, etcdctl, "get", p, "--prefix", "--rev", str(rev + 100000))
    assert r.rc != 0 and "required revision is a future revision" in r.errors[-1]
    same(pair, etcdctl, "get", "")
    same(pair, etcdctl, "get", p, "--sort-by", "BOGUS")


def test_put_flags(pair: Pair, etcdctl: Etcdctl, request: pytest.FixtureRequest) -> None:
    p = prefix(request, etcdctl)
    same(pair, etcdctl, "put", f"{p}k", "v1")
    r = same(pair, etcdctl, "put", f"{p}k", "v2", "--prev-kv")
    assert r.stdout.split() == ["OK", f"{p}k", "v1"]
    same(pair, etcdctl, "put", f"{p}k", "v3", "--prev-kv", "-w", "json")
    same(pair, etcdctl, "put", f"{p}k", "--ignore-value")
    same(pair, etcdctl, "get", f"{p}k", "-w", "json")
    same(pair, etcdctl, "put", f"{p}new", "--ignore-value")
    same(pair, etcdctl, "put", f"{p}k", "v4", "--ignore-lease")
    same(pair, etcdctl, "put", f"{p}k", "v5", "--lease", "1234")
    same(pair, etcdctl, "put", "", "v")
    same(pair, etcdctl, "put", f"{p}dash", "--", "-v")
    same(pair, etcdctl, "get", p, "--prefix", "-w", "json")


def test_del(pair: Pair, etcdctl: Etcdctl, request: pytest.FixtureRequest) -> None:
    p = prefix(request, etcdctl)
    fill(pair, etcdctl, p)
    r = same(pair, etcdctl, "del", f"{p}a")
    assert r.stdout == "1\n"
    same(pair, etcdctl, "del", f"{p}a")
    r = same(pair, etcdctl, "del", f"{p}b", "--prev-kv")
    assert r.stdout.split() == ["1", f"{p}b", "vb3"]
    same(pair, etcdctl, "del", f"{p}c", f"{p}d", "-w", "json")
    same(pair, etcdctl, "put", f"{p}x/1", "1")
    same(pair, etcdctl, "put", f"{p}x/2", "2")
    same(pair, etcdctl, "del", f"{p}x/", "--prefix", "--prev-kv", "-w", "json")
    same(pair, etcdctl, "put", f"{p}y", "y")
    r = same(pair, etcdctl, "del", f"{p}e", "--from-key", "--prev-kv")
    assert r.stdout.split()[0] != "0"
    same(pair, etcdctl, "get", p, "--prefix", "-w", "json")


def test_txn_interactive(pair: Pair, etcdctl: Etcdctl, request: pytest.FixtureRequest) -> None:
    p = prefix(request, etcdctl)
    same(pair, etcdctl, "put", f"{p}k", "v1")
    script = (
        f'value("{p}k") = "v1"\nmod("{p}k") > "0"\nversion("{p}k") = "1"\n\n'
        f"put {p}k v2\nget {p}k\ndel {p}none\n\n"
        f"put {p}failed yes\n\n"
    )
    r = same(pair, etcdctl, "txn", "-i", input=script)
    assert "SUCCESS" in r.stdout
    # The same compares now fail: the failure branch runs.
    r = same(pair, etcdctl, "txn", input=script)
    assert "FAILURE" in r.stdout
    same(pair, etcdctl, "txn", "-w", "json", input=script)
    create = f'create("{p}k") > "0"\n\nget {p} --prefix\n\n\n'
    same(pair, etcdctl, "txn", "-w", "json", input=create)
    same(pair, etcdctl, "txn", "-w", "fields", input=create)
    same(pair, etcdctl, "txn", input='value("") = "x"\n\n\n\n')
    same(pair, etcdctl, "txn", input=f"\nput {p}a 1\nput {p}a 2\n\n")
    same(pair, etcdctl, "get", p, "--prefix")


# -- watch ------------------------------------------------------------------------------------


def watch_both(
    pair: Pair, ctl: Etcdctl, n: int, *args: str, stdin: str | None = None
) -> tuple[list[str], list[str]]:
    """Start ``etcdctl watch`` on both servers and read ``n`` lines from each."""
    outs = []
    for m in (pair.pyetcd, pair.etcd):
        proc = ctl.popen(m.endpoint, "watch", *args, stdin=stdin is not None)
        if stdin is not None:
            assert proc.stdin is not None
            proc.stdin.write(stdin)
            proc.stdin.flush()  # stdin stays open: EOF would end interactive mode
        lines = Lines(proc)
        try:
            outs.append(lines.take(n))
        finally:
            lines.close()
    return outs[0], outs[1]


def test_watch_history(pair: Pair, etcdctl: Etcdctl, request: pytest.FixtureRequest) -> None:
    p = prefix(request, etcdctl)
    rev = fill(pair, etcdctl, p)
    same(pair, etcdctl, "del", f"{p}a")
    ours, theirs = watch_both(pair, etcdctl, 24, "--rev", str(rev), "--prefix", p)
    assert ours == theirs
    assert ours[:3] == ["PUT", f"{p}a", "va"]
    assert ours[-3:] == ["DELETE", f"{p}a", ""]
    ours, theirs = watch_both(pair, etcdctl, 6, "--rev", str(rev + 1), "--prev-kv", f"{p}b")
    assert ours == theirs
    assert ours == ["PUT", f"{p}b", "vb", "PUT", f"{p}b", "vb2"] or ours[:3] == [
        "PUT",
        f"{p}b",
        "vb",
    ]
    ours, theirs = watch_both(pair, etcdctl, 1, "--rev", str(rev), "-w", "json", f"{p}a")
    assert ours == theirs
    assert json.loads(ours[0])["Events"][0]["kv"]["value"] == "dmE="


def test_watch_interactive(pair: Pair, etcdctl: Etcdctl, request: pytest.FixtureRequest) -> None:
    p = prefix(request, etcdctl)
    rev = fill(pair, etcdctl, p)
    cmds = f"watch {p}c --rev {rev}\nwatch {p}d {p}e --rev {rev} --prev-kv\n"
    ours, theirs = watch_both(pair, etcdctl, 6, "-i", stdin=cmds)
    assert sorted(ours) == sorted(theirs)
    assert f"{p}c" in ours and f"{p}d" in ours


def test_watch_live(pair: Pair, etcdctl: Etcdctl, request: pytest.FixtureRequest) -> None:
    """Events written after the watch started reach it (no --rev: from now)."""
    p = prefix(request, etcdctl)
    puts = {}
    for m in (pair.pyetcd, pair.etcd):
        lines = Lines(etcdctl.popen(m.endpoint, "watch", "--prefix", p))
        try:
            # Keep writing until the first event shows up: creation is not observable.
            got: list[str] = []
            for i in range(50):
                etcdctl.run(m.endpoint, "put", f"{p}live", str(i))
                puts[m.kind] = i + 1
                try:
                    got = [lines.q.get(timeout=0.2).rstrip("\n")]
                    break
                except queue.Empty:
                    continue
            assert got == ["PUT"]
            key, value = lines.take(2)
            assert key == f"{p}live" and value.isdigit()
        finally:
            lines.close()
    # Both servers must have seen as many writes, so later revisions still match.
    behind = pair.etcd if puts["etcd"] < puts["pyetcd"] else pair.pyetcd
    for _ in range(abs(puts["etcd"] - puts["pyetcd"])):
        assert etcdctl.run(behind.endpoint, "put", f"{p}pad", "x").rc == 0


def test_watch_compacted_rev(pair: Pair, etcdctl: Etcdctl, request: pytest.FixtureRequest) -> None:
    p = prefix(request, etcdctl)
    fill(pair, etcdctl, p)
    same(pair, etcdctl, "compaction", "3")
    ours, theirs = both(pair, etcdctl, "watch", "--rev", "2", p, "--prefix")
    assert (ours.rc, ours.stdout, ours.errors) == (theirs.rc, theirs.stdout, theirs.errors)
    assert "required revision has been compacted" in ours.stdout + ours.stderr


# -- compaction ---------------------------------------------------------------------------------


def test_compaction(pair: Pair, etcdctl: Etcdctl, request: pytest.FixtureRequest) -> None:
    p = prefix(request, etcdctl)
    rev = fill(pair, etcdctl, p)
    r = same(pair, etcdctl, "compaction", str(rev + 2))
    assert r.stdout == f"compacted revision {rev + 2}\n"
    r = same(pair, etcdctl, "get", f"{p}a", "--rev", str(rev + 1))
    assert r.rc != 0
    assert r.errors[-1] == "Error: etcdserver: mvcc: required revision has been compacted"
    same(pair, etcdctl, "get", f"{p}a", "--rev", str(rev + 2))
    same(pair, etcdctl, "get", p, "--prefix", "--rev", str(rev + 4), "-w", "json")
    same(pair, etcdctl, "compaction", str(rev + 1))
    same(pair, etcdctl, "compaction", str(rev + 3), "--physical")
    same(pair, etcdctl, "compaction", str(rev + 100000))
    same(pair, etcdctl, "get", p, "--prefix")
