"""Regenerate pyetcd/pb from proto/ with grpcio-tools' bundled protoc.

Usage:
    python scripts/gen_proto.py           rewrite the generated files in pyetcd/pb
    python scripts/gen_proto.py --check   exit 1 if pyetcd/pb differs from a fresh generation

The .proto files live under proto/pyetcd/pb/ and import each other as
"pyetcd/pb/<name>.proto", so protoc (run with -I proto) emits modules that import
each other as ``pyetcd.pb.<name>_pb2`` with no rewriting. gRPC stubs are generated
only for the files that declare a service.
"""

from __future__ import annotations

import argparse
import difflib
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PB_PACKAGE = Path("pyetcd") / "pb"
OUT_DIR = ROOT / PB_PACKAGE

# Every file that protoc may write into pyetcd/pb; anything else there (__init__.py)
# is hand-written and left alone.
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
_SERVICE = re.compile(r"^service\s+\w+\s*\{", re.MULTILINE)


def proto_files() -> list[Path]:
    """Return the .proto files to compile, relative to proto/, in a stable order."""
    return sorted(p.relative_to(PROTO_ROOT) for p in (PROTO_ROOT / PB_PACKAGE).glob("*.proto"))


def _has_service(rel: Path) -> bool:
    return _SERVICE.search((PROTO_ROOT / rel).read_text(encoding="utf-8")) is not None


def _protoc(args: list[str]) -> None:
    # A subprocess keeps protoc's global state (and its exit on errors) out of the caller.
    cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_ROOT}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"protoc failed ({proc.returncode}):\n{proc.stderr}")


def generate(out_root: Path) -> dict[str, bytes]:
    """Compile every proto into ``out_root`` and return {file name: content} of pyetcd/pb.

    Args:
        out_root: an empty directory; protoc writes ``pyetcd/pb/...`` below it.

    Returns:
        The generated files of the pb package keyed by bare file name.

    Raises:
        RuntimeError: protoc rejected a .proto file.
    """
    protos = proto_files()
    if not protos:
        raise RuntimeError(f"no .proto files under {PROTO_ROOT / PB_PACKAGE}")
    _protoc([f"--python_out={out_root}", f"--pyi_out={out_root}", *map(str, protos)])
    services = [str(p) for p in protos if _has_service(p)]
    if services:
        _protoc([f"--grpc_python_out={out_root}", *services])
    pb_dir = out_root / PB_PACKAGE
    return {p.name: p.read_bytes() for p in sorted(pb_dir.iterdir()) if p.is_file()}


def committed() -> dict[str, bytes]:
    """Return the generated files currently in pyetcd/pb, keyed by file name."""
    return {
        p.name: p.read_bytes()
        for p in sorted(OUT_DIR.iterdir())
        if p.is_file() and p.name.endswith(GENERATED_SUFFIXES)
    }


def fresh() -> dict[str, bytes]:
    """Generate into a temporary directory and return the files (see ``generate``)."""
    with tempfile.TemporaryDirectory(prefix="pyetcd-pb-") as tmp:
        return generate(Path(tmp))


def differences(old: dict[str, bytes], new: dict[str, bytes]) -> list[str]:
    """Describe how ``old`` differs from ``new``: one line per file, a short diff each."""
    lines: list[str] = []
    for name in sorted(old.keys() - new.keys()):
        lines.append(f"stale file (no longer generated): {name}")
    for name in sorted(new.keys() - old.keys()):
        lines.append(f"missing file: {name}")
    for name in sorted(old.keys() & new.keys()):
        if old[name] != new[name]:
            diff = difflib.unified_diff(
                old[name].decode("utf-8", "replace").splitlines(),
                new[name].decode("utf-8", "replace").splitlines(),
                f"committed/{name}",
                f"fresh/{name}",
                lineterm="",
                n=1,
            )
            lines.append(f"differs: {name}")
            lines.extend(list(diff)[:20])
    return lines


def write(files: dict[str, bytes]) -> None:
    """Replace the generated files in pyetcd/pb with ``files``, removing stale ones."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name in committed().keys() - files.keys():
        (OUT_DIR / name).unlink()
    for name, content in files.items():
        target = OUT_DIR / name
        if not target.exists() or target.read_bytes() != content:
            target.write_bytes(content)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="compare pyetcd/pb with a fresh generation instead of writing it",
    )
    args = parser.parse_args(argv)
    new = fresh()
    if args.check:
        diff = differences(committed(), new)
        if diff:
            print("pyetcd/pb is out of date; run python scripts/gen_proto.py", file=sys.stderr)
            print("\n".join(diff), file=sys.stderr)
            return 1
        print(f"pyetcd/pb is up to date ({len(new)} files)")
        return 0
    write(new)
    print(f"wrote {len(new)} files to {OUT_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
