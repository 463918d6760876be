"""JSON-lines logging with etcd's (zap's) field names.

Every record is one JSON object on one line: ``level``, ``ts``, ``caller``, ``msg``,
then the structured fields in the order given, e.g.::

    {"level":"warn","ts":"2024-01-02T03:04:05.678901Z","caller":"pyetcd/cli.py:88",
     "msg":"'data-dir' was empty; using default","data-dir":"default.etcd"}

etcd's field names use dashes (``data-dir``, ``local-member-id``); Python keyword
arguments cannot, so ``logger.info(msg, data_dir=...)`` writes ``data-dir``. Pass
``fields={...}`` for a name that must keep an underscore.

Two timestamp styles exist because etcd has two loggers: the one configured from
``--logger/--log-outputs/--log-level`` writes ISO 8601 with microseconds, as etcd
3.5.8+ does (``ts_style="iso8601"``); the bootstrap logger that reports flag and
environment problems before that one exists writes Unix seconds as a float
(``ts_style="epoch"``).
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from enum import IntEnum
from typing import Any, Literal, Protocol, TextIO

from pyetcd.logrotate import LogRotation, RotatingFile

__all__ = [
    "DEFAULT_LOG_OUTPUT",
    "Level",
    "LogLevelError",
    "LogSetupError",
    "LogSink",
    "Logger",
    "bootstrap_logger",
    "go_bytes",
    "go_duration",
    "new_logger",
    "parse_level",
]

DEFAULT_LOG_OUTPUT = "default"

TsStyle = Literal["iso8601", "epoch"]


class Level(IntEnum):
    """zap's levels, lowest first."""

    DEBUG = -1
    INFO = 0
    WARN = 1
    ERROR = 2
    DPANIC = 3
    PANIC = 4
    FATAL = 5


_LEVEL_NAMES = {level: level.name.lower() for level in Level}


class LogSetupError(Exception):
    """The logging flags cannot be honoured; the text is etcd's error message."""


class LogLevelError(LogSetupError):
    """An unknown ``--log-level``: etcd 3.5.1 panics on it (exit status 2)."""


def parse_level(text: str) -> Level:
    """Map a ``--log-level`` value to a :class:`Level`.

    Raises:
        LogLevelError: for a name zap does not know (etcd panics with this text).
    """
    for level, name in _LEVEL_NAMES.items():
        if name == text:
            return level
    raise LogLevelError(f'unrecognized level: "{text}"')


def go_bytes(n: int) -> str:
    """go-humanize's ``Bytes`` (etcd's sizes in logs and etcdutl's tables): SI units,
    one decimal below 10, none above: ``9 B``, ``20 kB``, ``1.5 MB``."""
    if n < 10:
        return f"{n} B"
    sizes = ("B", "kB", "MB", "GB", "TB", "PB", "EB")
    e = math.floor(math.log(n) / math.log(1000))
    val = math.floor(n / 1000**e * 10 + 0.5) / 10
    return (f"{val:.1f} {sizes[e]}") if val < 10 else f"{val:.0f} {sizes[e]}"


def go_duration(seconds: float) -> str:
    """``seconds`` as Go's ``time.Duration.String`` writes it (zap's duration fields):
    ``0s``, ``812.5µs``, ``12ms``, ``2s``, ``1m30s``, ``2h0m0s``."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_trim(ns / 1e3)}\u00b5s"
    if ns < 1_000_000_000:
        return f"{sign}{_trim(ns / 1e6)}ms"
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    secs = f"{_trim(rest / 1e9)}s"
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}"
    if minutes:
        return f"{sign}{minutes}m{secs}"
    return f"{sign}{secs}"


def _trim(value: float) -> str:
    return f"{value:.9f}".rstrip("0").rstrip(".")


def _format_ts(now: float, style: TsStyle) -> str | float:
    if style == "epoch":
        return now
    # etcd 3.5.8's layout (#15240), Go's "2006-01-02T15:04:05.999999Z0700": local time,
    # microseconds without trailing zeros (none at all when zero), "Z" for UTC else "+hhmm".
    local = time.localtime(now)
    fraction = f"{int((now % 1) * 1_000_000):06d}".rstrip("0")
    offset = local.tm_gmtoff or 0
    if offset == 0:
        zone = "Z"
    else:
        sign = "+" if offset > 0 else "-"
        hours, minutes = divmod(abs(offset) // 60, 60)
        zone = f"{sign}{hours:02d}{minutes:02d}"
    dot = f".{fraction}" if fraction else ""
    return time.strftime("%Y-%m-%dT%H:%M:%S", local) + dot + zone


def _caller(depth: int) -> str:
    # zap's short caller: the last directory and the file name, then the line.
    frame = sys._getframe(depth)
    path = frame.f_code.co_filename
    short = "/".join(path.replace(os.sep, "/").split("/")[-2:])
    return f"{short}:{frame.f_lineno}"


class LogSink(Protocol):
    """Where log lines go: a text stream, or a rotating file."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class Logger:
    """A zap-shaped JSON logger writing to one or more text streams.

    Thread-safe: one lock around each write so lines from threads never interleave.
    """

    def __init__(
        self,
        streams: Sequence[LogSink],
        level: Level = Level.INFO,
        ts_style: TsStyle = "iso8601",
        name: str = "",
        owned: Sequence[LogSink] = (),
    ) -> None:
        self._streams = tuple(streams)
        self._owned = tuple(owned)  # files this logger opened and must close
        self._level = level
        self._ts_style: TsStyle = ts_style
        self._name = name
        self._lock = threading.Lock()

    @property
    def level(self) -> Level:
        """The lowest level written."""
        return self._level

    def named(self, name: str) -> Logger:
        """A logger sharing these outputs whose records carry ``"logger": name``."""
        child = Logger(self._streams, self._level, self._ts_style, name)
        child._lock = self._lock
        return child

    def enabled(self, level: Level) -> bool:
        """Whether a record at ``level`` would be written."""
        return level >= self._level

    def log(
        self,
        level: Level,
        msg: str,
        fields: Mapping[str, Any] | None = None,
        *,
        depth: int = 2,
        **kw: Any,
    ) -> None:
        """Write one record; ``kw`` names get ``_`` turned into ``-``."""
        if level < self._level:
            return
        record: dict[str, Any] = {
            "level": _LEVEL_NAMES[level],
            "ts": _format_ts(time.time(), self._ts_style),
        }
        if self._name:
            record["logger"] = self._name
        record["caller"] = _caller(depth)
        record["msg"] = msg
        for key, value in kw.items():
            record[key.replace("_", "-")] = value
        if fields:
            record.update(fields)
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)
        with self._lock:
            for stream in self._streams:
                stream.write(line + "\n")
                stream.flush()

    def debug(self, msg: str, fields: Mapping[str, Any] | None = None, **kw: Any) -> None:
        """Write a debug record."""
        self.log(Level.DEBUG, msg, fields, depth=3, **kw)

    def info(self, msg: str, fields: Mapping[str, Any] | None = None, **kw: Any) -> None:
        """Write an info record."""
        self.log(Level.INFO, msg, fields, depth=3, **kw)

    def warn(self, msg: str, fields: Mapping[str, Any] | None = None, **kw: Any) -> None:
        """Write a warn record."""
        self.log(Level.WARN, msg, fields, depth=3, **kw)

    def error(self, msg: str, fields: Mapping[str, Any] | None = None, **kw: Any) -> None:
        """Write an error record."""
        self.log(Level.ERROR, msg, fields, depth=3, **kw)

    def fatal(self, msg: str, fields: Mapping[str, Any] | None = None, **kw: Any) -> None:
        """Write a fatal record. Exiting is the caller's job (zap would exit 1 here)."""
        self.log(Level.FATAL, msg, fields, depth=3, **kw)

    def close(self) -> None:
        """Close the files this logger opened (never stdout/stderr)."""
        for stream in self._owned:
            stream.close()


def bootstrap_logger(stream: TextIO | None = None) -> Logger:
    """The logger etcd uses before the flags are known: info level, epoch ``ts``, stderr."""
    return Logger([stream if stream is not None else sys.stderr], Level.INFO, "epoch")


def _open_output(
    target: str, stdout: TextIO, stderr: TextIO, rotation: LogRotation | None
) -> LogSink:
    if target in (DEFAULT_LOG_OUTPUT, "stderr"):
        return stderr
    if target == "stdout":
        return stdout
    try:
        if rotation is not None:
            return RotatingFile(target, rotation)
        return open(target, "a", encoding="utf-8")  # closed by Logger.close()
    except OSError as exc:
        raise LogSetupError(f"open {target}: {exc.strerror}") from exc


def new_logger(
    logger: str,
    log_outputs: Sequence[str],
    log_level: str,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    rotation: LogRotation | None = None,
) -> Logger:
    """Build the server logger from ``--logger``, ``--log-outputs`` and ``--log-level``.

    Outputs: ``default`` and ``stderr`` write to stderr, ``stdout`` to stdout, anything
    else is a file path opened for appending; with ``rotation`` (``--enable-log-rotation``,
    validated to leave one such file) it is rotated as lumberjack does.

    Raises:
        LogSetupError: with etcd's message for a removed or unknown logger, ``default``
            mixed with other outputs, an unknown level or a file that cannot be opened.
    """
    if logger == "capnslog":
        raise LogSetupError("--logger=capnslog is removed in v3.5")
    if logger != "zap":
        raise LogSetupError(f'unknown logger option "{logger}"')
    outputs = list(log_outputs) or [DEFAULT_LOG_OUTPUT]
    if len(outputs) > 1 and DEFAULT_LOG_OUTPUT in outputs:
        raise LogSetupError(f'multi logoutput for "{DEFAULT_LOG_OUTPUT}" is not supported yet')
    level = parse_level(log_level)
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    streams: list[LogSink] = []
    owned: list[LogSink] = []
    for target in outputs:
        stream = _open_output(target, out, err, rotation)
        if stream not in (out, err):
            owned.append(stream)
        if stream not in streams:
            streams.append(stream)
    return Logger(streams, level, "iso8601", owned=owned)
