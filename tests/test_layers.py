"""The layer rules of ARCHITECTURE.md, enforced on every module: what each package may
import, no import cycles between modules, and no module too long to read."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "pyetcd"

#: Generated code, exempt from the rules below.
GENERATED = "pb"

#: The longest module a reader is asked to hold in mind (the style rule: under roughly 600 lines).
MAX_LINES = 600

#: The one cycle kept on purpose: the leader's step handlers live beside the Raft state
#: machine they extend (``raft.raft`` dispatches to them, they call back its methods).
ALLOWED_CYCLES = frozenset({frozenset({"pyetcd.raft.raft", "pyetcd.raft.leader"})})

_LOWER = frozenset({"pb", "logutil", "config", "flagspec", "goflag", "ids", "tlsutil",
                    "httpwire", "version"})

# package -> (forbidden top-level modules, pyetcd packages (dotted prefixes) it may import)
RULES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "raft": (
        frozenset({"asyncio", "time", "socket", "grpc", "os", "sqlite3", "io", "threading",
                   "subprocess", "pathlib", "shutil", "tempfile", "select", "selectors",
                   "msgpack", "google"}),
        frozenset({"raft"}),
    ),
    "wal": (
        frozenset({"asyncio", "grpc", "sqlite3", "google"}),
        frozenset({"wal", "raft"}),
    ),
    "mvcc": (
        frozenset({"asyncio", "grpc", "socket", "google"}),
        frozenset({"mvcc"}),
    ),
    # The HTTP/2 + gRPC wire and the bbolt file codec know nothing of etcd.
    "grpcwire": (frozenset(), frozenset({"grpcwire"})),
    "bbolt": (frozenset({"asyncio", "grpc", "google"}), frozenset({"bbolt"})),
    "server.auth": (
        frozenset({"grpc"}),
        frozenset({"server.auth", "server.etcdserver.errors", "mvcc", *_LOWER}),
    ),
    "server.rafthttp": (
        frozenset({"grpc"}),
        frozenset({"server.rafthttp", "server.etcdserver.errors", "server.etcdserver.membership",
                   "server.etcdserver.transport", "raft", "mvcc", *_LOWER}),
    ),
    # etcd's backend schema and the snapshot export in etcd's format.
    "server.storage": (
        frozenset({"asyncio", "grpc"}),
        frozenset({"server.storage", "server.etcdserver.membership", "bbolt", "mvcc", "raft",
                   *_LOWER}),
    ),
    "server.etcdserver": (
        frozenset({"grpc"}),
        frozenset({"server.etcdserver", "server.auth", "server.rafthttp", "raft", "wal", "mvcc",
                   *_LOWER}),
    ),
    # pyetcdutl: offline tools over a data dir or a snapshot file.
    "etcdutl": (
        frozenset({"asyncio", "grpc"}),
        frozenset({"etcdutl", "server.storage", "server.etcdserver", "bbolt", "mvcc", "raft",
                   "wal", *_LOWER}),
    ),
    "api.v3rpc": (
        frozenset(),
        frozenset({"api.v3rpc", "grpcwire", "server", "mvcc", *_LOWER}),
    ),
    "api.etcdhttp": (
        frozenset(),
        frozenset({"api.etcdhttp", "api.v3rpc", "grpcwire", "server", "mvcc", *_LOWER}),
    ),
    # The dashboard: the gateway's error documents, v3rpc's auth checks, the server's state.
    "api.dashboard": (
        frozenset(),
        frozenset({"api.dashboard", "api.etcdhttp", "api.v3rpc", "server", "mvcc", *_LOWER}),
    ),
}


def _module_name(path: Path, root: Path) -> str:
    parts = ["pyetcd", *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, root: Path | None = None) -> list[str]:
    """Every module ``path`` imports (TYPE_CHECKING blocks included), absolute."""
    root = root or ROOT
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    pkg_parts = ["pyetcd", *path.relative_to(root).parent.parts]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg_parts[: len(pkg_parts) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            names.append(mod)
            # ``from pkg import submodule`` imports the submodule too.
            names.extend(f"{mod}.{a.name}" for a in node.names)
    return names


def _modules(package: str, root: Path | None = None) -> list[Path]:
    return sorted((root or ROOT).joinpath(*package.split(".")).rglob("*.py"))


def _all_modules(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*.py")):
        if path.relative_to(root).parts[0] != GENERATED:
            yield path


@pytest.mark.parametrize("package", sorted(RULES))
def test_layer_imports(package: str) -> None:
    forbidden, allowed_internal = RULES[package]
    violations = []
    for path in _modules(package):
        own = _module_name(path, ROOT)
        for name in _imports(path):
            top = name.split(".")[0]
            if top in forbidden:
                violations.append(f"{path.relative_to(ROOT)} imports {name}")
            if top != "pyetcd" or name == "pyetcd":
                continue
            sub = name.removeprefix("pyetcd.")
            if own.startswith(name + "."):
                continue  # its own parent package
            allowed = any(sub == a or sub.startswith(a + ".") for a in allowed_internal)
            if not (allowed or _is_attribute_of_allowed(sub, allowed_internal)):
                violations.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not violations, "\n".join(sorted(set(violations)))


def _is_attribute_of_allowed(sub: str, allowed: frozenset[str]) -> bool:
    # ``from pyetcd.raft import Entry`` is recorded as ``raft.Entry`` too; only names
    # that are modules count as imports of their own.
    head, _, _ = sub.rpartition(".")
    in_allowed = not head or any(head == a or head.startswith(a + ".") for a in allowed)
    return in_allowed and not (
        ROOT.joinpath(*sub.split(".")).with_suffix(".py").exists()
        or ROOT.joinpath(*sub.split(".")).is_dir()
    )


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the pyetcd modules it imports (packages' own parents left out)."""
    paths = {_module_name(p, root): p for p in _all_modules(root)}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        deps = set()
        for dep in _imports(path, root):
            if dep in paths and dep != name and not name.startswith(dep + "."):
                deps.add(dep)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(frozenset(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    bad = [sorted(c) for c in cycles(import_graph(ROOT)) if c not in ALLOWED_CYCLES]
    assert not bad, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in bad)


def test_modules_are_short() -> None:
    long = [
        f"{p.relative_to(ROOT)}: {n} lines"
        for p in _all_modules(ROOT)
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    ]
    assert not long, "\n".join(long)


def test_rules_cover_real_modules() -> None:
    # The rule table must not pass vacuously.
    for package in RULES:
        assert _modules(package), f"pyetcd/{package} has no modules"


def test_checker_catches_a_violation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The same checker must flag a forbidden import placed in the raft package.
    fake_root = tmp_path / "pyetcd"
    (fake_root / "raft").mkdir(parents=True)
    (fake_root / "raft" / "bad.py").write_text(
        "import asyncio\nfrom time import monotonic\nfrom ..mvcc import KVStore\n"
    )
    monkeypatch.setattr(__import__(__name__), "ROOT", fake_root)
    with pytest.raises(AssertionError) as exc:
        test_layer_imports("raft")
    text = str(exc.value)
    assert "imports asyncio" in text
    assert "imports time" in text
    assert "imports pyetcd.mvcc" in text


def test_cycle_finder_sees_type_checking_imports(tmp_path: Path) -> None:
    root = tmp_path / "pyetcd"
    (root / "a").mkdir(parents=True)
    (root / "a" / "__init__.py").write_text("")
    (root / "a" / "x.py").write_text("from .y import Y\n")
    (root / "a" / "y.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pyetcd.a.x import X\n"
    )
    (root / "a" / "z.py").write_text("from . import x\n")
    assert cycles(import_graph(root)) == [frozenset({"pyetcd.a.x", "pyetcd.a.y"})]


def _loads_grpcio(name: str) -> bool:
    """Whether importing ``name`` loads grpcio (the package, a generated ``*_pb2_grpc``
    module, or grpc_health's servicers; its ``health_pb2`` is plain protobuf)."""
    top = name.split(".")[0]
    return (
        top == "grpc"
        or name.endswith("_pb2_grpc")
        or (top == "grpc_health" and not name.endswith("_pb2")
            and name not in ("grpc_health", "grpc_health.v1"))
    )


def test_no_module_imports_grpcio() -> None:
    # The member serves gRPC with its own wire (grpcwire); grpcio's C core would only
    # add some 10 MiB to every member's memory (issue 22). Tests and clients use grpc.
    violations = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _all_modules(ROOT)
        for name in _imports(path)
        if _loads_grpcio(name)
    ]
    assert not violations, "\n".join(sorted(set(violations)))
    assert _loads_grpcio("grpc.aio") and _loads_grpcio("pyetcd.pb.rpc_pb2_grpc")
    assert _loads_grpcio("grpc_health.v1.health")
    assert not _loads_grpcio("grpc_health.v1.health_pb2") and not _loads_grpcio("grpcwire")


def test_importing_every_server_module_leaves_grpc_out() -> None:
    # What a member process imports (every module outside the generated *_pb2_grpc),
    # checked in a fresh interpreter: a third-party module could pull grpc in too.
    names = sorted(
        _module_name(p, ROOT)
        for p in ROOT.rglob("*.py")
        if not p.stem.endswith("_pb2_grpc") and p.parent.name != "static"
    )
    code = (
        "import importlib, sys\n"
        f"for n in {names!r}: importlib.import_module(n)\n"
        "print(sorted(m for m in sys.modules if m == 'grpc' or m.startswith('grpc.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
        cwd=ROOT.parent, check=False,
    )
    assert out.returncode == 0, out.stderr
    assert len(names) > 100 and "pyetcd.embed" in names and "pyetcd.cli" in names
    assert out.stdout.strip() == "[]", f"grpc was imported: {out.stdout}"
