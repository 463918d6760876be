"""A small runner for golden-file tests in the style of cockroachdb/datadriven.

A test file is a sequence of blocks::

    # comments and blank lines between blocks are kept verbatim
    command pos1 key=val key=(v1,v2)
    optional input lines
    ----
    expected output lines

The expected output ends at the first blank line. Output that itself contains blank
lines is written between a doubled separator (``----`` / ``----`` ... ``----`` /
``----``). With ``rewrite=True`` the runner writes the actual output back into the
file instead of comparing, so goldens are regenerated with a flag.
"""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CmdArg", "DataDrivenError", "TestData", "parse", "run_file"]

SEP = "----"


class DataDrivenError(Exception):
    """A malformed test file, a bad command argument, or a golden mismatch."""


@dataclass(frozen=True, slots=True)
class CmdArg:
    """One argument of a command: ``key`` alone, ``key=val`` or ``key=(v1,v2)``."""

    key: str
    vals: tuple[str, ...] = ()


@dataclass(slots=True)
class TestData:
    """One block of a test file."""

    __test__ = False  # not a pytest class

    pos: str
    cmd: str
    cmd_args: list[CmdArg] = field(default_factory=list)
    input: str = ""
    expected: str = ""
    # Line span [start, end) of the whole block in the file, for rewriting.
    start: int = 0
    end: int = 0

    def positional(self) -> list[str]:
        """Arguments given without ``=``, in order."""
        return [a.key for a in self.cmd_args if not a.vals]

    def has(self, key: str) -> bool:
        return any(a.key == key and a.vals for a in self.cmd_args)

    def get(self, key: str, default: str | None = None) -> str:
        for a in self.cmd_args:
            if a.key == key and a.vals:
                if len(a.vals) != 1:
                    raise DataDrivenError(f"{self.pos}: {key} takes one value")
                return a.vals[0]
        if default is None:
            raise DataDrivenError(f"{self.pos}: missing argument {key}=")
        return default

    def get_int(self, key: str, default: int | None = None) -> int:
        v = self.get(key, None if default is None else str(default))
        return int(v)

    def get_bool(self, key: str, default: bool = False) -> bool:
        v = self.get(key, "true" if default else "false")
        if v not in ("true", "false"):
            raise DataDrivenError(f"{self.pos}: {key}={v} is not a bool")
        return v == "true"

    def get_ints(self, key: str) -> list[int]:
        for a in self.cmd_args:
            if a.key == key and a.vals:
                return [int(v) for v in a.vals]
        return []


def _parse_args(pos: str, line: str) -> tuple[str, list[CmdArg]]:
    try:
        words = shlex.split(line)
    except ValueError as e:
        raise DataDrivenError(f"{pos}: {e}") from e
    if not words:
        raise DataDrivenError(f"{pos}: empty command")
    args: list[CmdArg] = []
    for w in words[1:]:
        key, eq, val = w.partition("=")
        if not eq:
            args.append(CmdArg(key))
        elif val.startswith("(") and val.endswith(")"):
            inner = val[1:-1].strip()
            vals = tuple(v.strip() for v in inner.split(",")) if inner else ()
            args.append(CmdArg(key, vals))
        else:
            args.append(CmdArg(key, (val,)))
    return words[0], args


def parse(path: Path) -> tuple[list[str], list[TestData]]:
    """Split ``path`` into its lines and its blocks."""
    lines = path.read_text().split("\n")
    blocks: list[TestData] = []
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        if not line.strip() or line.lstrip().startswith("#"):
            i += 1
            continue
        start = i
        pos = f"{path.name}:{i + 1}"
        cmd, args = _parse_args(pos, line)
        i += 1
        inp: list[str] = []
        while i < n and lines[i] != SEP:
            if not lines[i].strip():
                raise DataDrivenError(f"{pos}: command without {SEP} separator")
            inp.append(lines[i])
            i += 1
        if i >= n:
            raise DataDrivenError(f"{pos}: command without {SEP} separator")
        i += 1
        out: list[str] = []
        if i < n and lines[i] == SEP:
            # Doubled separator: output may contain blank lines; ends at SEP SEP.
            i += 1
            while i + 1 < n and not (lines[i] == SEP and lines[i + 1] == SEP):
                out.append(lines[i])
                i += 1
            if i + 1 >= n:
                raise DataDrivenError(f"{pos}: unterminated {SEP}/{SEP} block")
            i += 2
        else:
            while i < n and lines[i].strip():
                out.append(lines[i])
                i += 1
        expected = "\n".join(out) + "\n" if out else ""
        blocks.append(TestData(pos, cmd, args, "\n".join(inp), expected, start, i))
    return lines, blocks


def _render_block(lines: list[str], td: TestData, actual: str) -> list[str]:
    head = lines[td.start : td.start + 1 + (len(td.input.split("\n")) if td.input else 0)]
    body = actual.rstrip("\n").split("\n") if actual.strip() else []
    if any(not b.strip() for b in body):
        return [*head, SEP, SEP, *body, SEP, SEP]
    return [*head, SEP, *body]


def run_file(path: Path, handler: Callable[[TestData], str], rewrite: bool = False) -> None:
    """Run every block of ``path`` through ``handler``; compare or rewrite goldens.

    Raises DataDrivenError with a unified diff at the first mismatch.
    """
    lines, blocks = parse(path)
    out_lines: list[str] = []
    last = 0
    for td in blocks:
        actual = handler(td)
        if actual and not actual.endswith("\n"):
            actual += "\n"
        if rewrite:
            out_lines.extend(lines[last : td.start])
            out_lines.extend(_render_block(lines, td, actual))
            last = td.end
            continue
        if actual != td.expected:
            diff = "".join(
                difflib.unified_diff(
                    td.expected.splitlines(keepends=True),
                    actual.splitlines(keepends=True),
                    "expected",
                    "actual",
                )
            )
            raise DataDrivenError(f"{td.pos}: output of {td.cmd!r} differs:\n{diff}")
    if rewrite:
        out_lines.extend(lines[last:])
        path.write_text("\n".join(out_lines))
