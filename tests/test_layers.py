"""The import rules of DESIGN.md's layer table, enforced on every module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "pyetcd"

# package -> (forbidden top-level modules, pyetcd packages it may import)
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
    "server": (
        frozenset({"grpc"}),
        frozenset(
            {"", "server", "raft", "wal", "mvcc", "config", "flagspec", "ids", "logutil", "pb"}
        ),
    ),
}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    pkg_parts = ["pyetcd", *path.relative_to(ROOT).parent.parts]
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
    return names


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(RULES))
def test_layer_imports(package: str) -> None:
    forbidden, allowed_internal = RULES[package]
    violations = []
    for path in _modules(package):
        for name in _imports(path):
            top = name.split(".")[0]
            if top in forbidden:
                violations.append(f"{path.relative_to(ROOT)} imports {name}")
            if top == "pyetcd":
                parts = name.split(".")
                sub = parts[1] if len(parts) > 1 else ""
                if sub not in allowed_internal:
                    violations.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not violations, "\n".join(violations)


def test_rules_cover_real_modules() -> None:
    # The rule table must not pass vacuously.
    assert _modules("raft"), "pyetcd/raft has no modules"


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
