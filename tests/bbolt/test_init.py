"""The package's surface: what it exports, and that it stands alone."""

from __future__ import annotations

import ast
from pathlib import Path

import pyetcd.bbolt

PACKAGE = Path(pyetcd.bbolt.__file__).parent


def test_exports_exist() -> None:
    for name in pyetcd.bbolt.__all__:
        assert hasattr(pyetcd.bbolt, name), name


def test_imports_nothing_else_from_pyetcd() -> None:
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert not (node.module or "").startswith("pyetcd"), (path.name, node.module)
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("pyetcd") for a in node.names), path.name
