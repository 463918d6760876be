"""Log file rotation (etcd 3.5's ``--enable-log-rotation``, lumberjack's semantics).

``--log-rotation-config-json`` holds lumberjack's settings (keys matched without regard
to case, unknown keys ignored, as Go's JSON decoder does):

- ``maxsize``: megabytes a file may reach before it is rotated (0: 100);
- ``maxage``: days a rotated file is kept (0: no limit by age);
- ``maxbackups``: rotated files kept (0: all);
- ``localtime``: name rotated files in local time instead of UTC;
- ``compress``: gzip rotated files.

A write that would take the file over ``maxsize`` first renames it to
``<name>-<2006-01-02T15-04-05.000><ext>`` and opens a new one. Old files are then
removed and compressed off the writer's thread, as lumberjack's mill goroutine does.
etcd allows rotation only with exactly one file among ``--log-outputs``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["LogRotation", "LogRotationError", "RotatingFile", "parse_log_rotation"]

_MEGABYTE = 1024 * 1024
_DEFAULT_MAX_SIZE_MB = 100
_TS_FORMAT = "%Y-%m-%dT%H-%M-%S.%f"  # Go's "2006-01-02T15-04-05.000" once cut to millis
_GO_STRUCT = "logRotationConfig"


class LogRotationError(ValueError):
    """``--log-rotation-config-json`` is not valid; ``str(exc)`` is etcd's text."""


@dataclass(frozen=True, slots=True)
class LogRotation:
    """lumberjack's settings (see the module docstring)."""

    maxsize: int = 0
    maxage: int = 0
    maxbackups: int = 0
    localtime: bool = False
    compress: bool = False

    @property
    def max_bytes(self) -> int:
        return (self.maxsize if self.maxsize > 0 else _DEFAULT_MAX_SIZE_MB) * _MEGABYTE


_FIELD_TYPES: dict[str, type] = {
    "filename": str, "maxsize": int, "maxage": int, "maxbackups": int,
    "localtime": bool, "compress": bool,
}  # fmt: skip


def _go_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


# Python's JSON error -> where Go's decoder says it found the bad character
_GO_SYNTAX = {
    "Expecting property name enclosed in double quotes": (
        "looking for beginning of object key string"
    ),
    "Expecting ':' delimiter": "after object key",
    "Expecting ',' delimiter": "after object key:value pair",
    "Extra data": "after top-level value",
}


def _go_syntax_error(text: str, err: json.JSONDecodeError) -> str:
    if err.pos >= len(text):
        return "unexpected end of JSON input"
    ch = text[err.pos]
    where = _GO_SYNTAX.get(err.msg, "looking for beginning of value")
    return f"invalid character '{ch}' {where}"


def parse_log_rotation(text: str) -> LogRotation:
    """Read ``--log-rotation-config-json`` as etcd does.

    Raises:
        LogRotationError: ``improperly formatted log rotation config: ...`` (not JSON)
            or ``invalid log rotation config: json: cannot unmarshal ...`` (wrong types).
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        why = _go_syntax_error(text, err)
        raise LogRotationError(f"improperly formatted log rotation config: {why}") from None
    if doc is None:
        return LogRotation()
    if not isinstance(doc, dict):
        raise LogRotationError(
            f"invalid log rotation config: json: cannot unmarshal {_go_kind(doc)} into Go "
            f"value of type embed.{_GO_STRUCT}"
        )
    values: dict[str, Any] = {}
    for key, value in doc.items():
        name = key.lower()
        want = _FIELD_TYPES.get(name)
        if want is None or value is None:
            continue
        ok = isinstance(value, want) and (want is bool or not isinstance(value, bool))
        if not ok:
            shown = _go_kind(value)
            if want is int and isinstance(value, float) and not isinstance(value, bool):
                shown = f"number {value:g}"
            raise LogRotationError(
                f"invalid log rotation config: json: cannot unmarshal {shown} into Go struct "
                f"field {_GO_STRUCT}.{name} of type {want.__name__}"
            )
        if name != "filename":  # the file comes from --log-outputs
            values[name] = value
    return LogRotation(**values)


class RotatingFile:
    """An append-only log file rotated at ``rotation.max_bytes`` (lumberjack.Logger)."""

    def __init__(
        self,
        path: str,
        rotation: LogRotation,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Open (or create) ``path`` for appending.

        Raises:
            OSError: it cannot be opened.
        """
        self.path = path
        self.rotation = rotation
        self._clock = clock
        self._lock = threading.Lock()
        self._mill: threading.Thread | None = None
        self._file = open(path, "ab")  # noqa: SIM115 - kept open until close()
        self._size = self._file.tell()

    def write(self, text: str, /) -> int:
        """Append ``text``, rotating first if it would not fit."""
        data = text.encode("utf-8")
        with self._lock:
            if self._size > 0 and self._size + len(data) > self.rotation.max_bytes:
                self._rotate()
            self._file.write(data)
            self._size += len(data)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()
        self.wait_mill()

    def wait_mill(self) -> None:
        """Wait for the clean-up started by the last rotation (tests, close)."""
        mill = self._mill
        if mill is not None:
            mill.join()

    def _rotate(self) -> None:
        self._file.close()
        os.replace(self.path, self._backup_name(self._clock()))
        self._file = open(self.path, "ab")  # noqa: SIM115
        self._size = 0
        previous = self._mill
        self._mill = threading.Thread(
            target=self._run_mill, args=(previous,), name="log-rotation", daemon=True
        )
        self._mill.start()

    def _backup_name(self, now: float) -> str:
        tz = None if self.rotation.localtime else dt.UTC
        stamp = dt.datetime.fromtimestamp(now, tz).strftime(_TS_FORMAT)[:-3]
        base, ext = os.path.splitext(self.path)
        return f"{base}-{stamp}{ext}"

    def _backups(self) -> list[tuple[float, str]]:
        """(time in the name, path) of the rotated files, newest first."""
        directory = os.path.dirname(self.path) or "."
        base, ext = os.path.splitext(os.path.basename(self.path))
        tz = None if self.rotation.localtime else dt.UTC
        out = []
        for name in os.listdir(directory):
            if not name.startswith(base + "-"):
                continue
            stem = name.removesuffix(".gz")
            if not stem.endswith(ext):
                continue
            stamp = stem[len(base) + 1 : len(stem) - len(ext)]
            try:
                when = dt.datetime.strptime(stamp + "000", _TS_FORMAT).replace(tzinfo=tz)
            except ValueError:
                continue
            out.append((when.timestamp(), os.path.join(directory, name)))
        out.sort(reverse=True)
        return out

    def _run_mill(self, previous: threading.Thread | None) -> None:
        if previous is not None:
            previous.join()
        with contextlib.suppress(OSError):  # a file gone meanwhile is not an error
            self._mill_once()

    def _mill_once(self) -> None:
        r = self.rotation
        if not (r.maxbackups or r.maxage or r.compress):
            return
        files = self._backups()
        doomed: list[str] = []
        if r.maxbackups > 0:
            # a file and its .gz count once
            order: list[str] = []
            for _, path in files:
                base = path.removesuffix(".gz")
                if base not in order:
                    order.append(base)
                if order.index(base) >= r.maxbackups:
                    doomed.append(path)
        if r.maxage > 0:
            cutoff = self._clock() - r.maxage * 86400
            doomed += [p for when, p in files if when < cutoff and p not in doomed]
        for path in doomed:
            os.remove(path)
        if r.compress:
            for _, path in files:
                if path in doomed or path.endswith(".gz"):
                    continue
                with open(path, "rb") as src, gzip.open(path + ".gz", "wb") as dst:
                    shutil.copyfileobj(src, dst)
                os.remove(path)
