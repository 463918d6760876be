"""The one place that decides a member cannot go on (etcd's ``lg.Fatal``).

A storage error (the WAL, the backend, the snapshot files) leaves the member unable to
keep its promises: it could not persist what it acknowledges, or its state and its log
no longer agree. So does an exception nobody expected in a task the member runs for its
life. etcd logs one fatal line naming the error and exits 1, and a supervisor restarts
it on a clean slate; a member that lived on would be a zombie (its Raft loop gone,
every write timing out, its reads frozen).

Rules:
1. Every task a member runs for its life is started through :meth:`Fatal.spawn` (or
   handed to :meth:`Fatal.watch`): if it ends with an exception other than a
   cancellation, the member fails. A task that expects errors handles them itself.
2. Code that knows what failed raises :class:`FatalError` with etcd's message for it
   ("failed to save Raft hard state and entries"); anything else fails the member with
   the message of the task it killed.
3. :meth:`Fatal.fail` writes one fatal line, once, whatever fails after it; whoever
   runs the member awaits :meth:`Fatal.wait` and exits non-zero (``pyetcd.embed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Coroutine, Mapping
from typing import Any

from pyetcd.logutil import Logger
from pyetcd.mvcc import BackendError

__all__ = ["Fatal", "FatalError", "error_text"]


class FatalError(Exception):
    """An error the member cannot go on after: ``msg`` is etcd's fatal message for
    what failed, ``cause`` the error itself, ``fields`` more context for the line."""

    def __init__(
        self, msg: str, cause: BaseException, fields: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(f"{msg}: {error_text(cause)}")
        self.msg = msg
        self.cause = cause
        self.fields = dict(fields or {})


def error_text(err: BaseException) -> str:
    """The error as etcd would print it: an OS error as ``<path>: <strerror>`` in
    lower case ("no space left on device"), a backend error as its cause's text, and
    sqlite's "database or disk is full" naming ENOSPC as the OS would."""
    if isinstance(err, BackendError):
        err = err.cause
    if isinstance(err, FatalError):
        return str(err)
    if isinstance(err, sqlite3.Error) and getattr(err, "sqlite_errorname", "") == "SQLITE_FULL":
        # sqlite's text for ENOSPC (the backend sets no page limit, the other cause).
        return f"{err} (no space left on device)"
    if isinstance(err, OSError) and err.strerror:
        text = err.strerror[0].lower() + err.strerror[1:]
        return f"{err.filename}: {text}" if err.filename else text
    return str(err) or type(err).__name__


class Fatal:
    """Ends the member on the first fatal error (see the module docstring)."""

    def __init__(self, logger: Logger) -> None:
        self.log = logger
        #: The first fatal error, once there is one.
        self.error: BaseException | None = None
        self._failed = asyncio.Event()

    @property
    def failed(self) -> bool:
        return self.error is not None

    def fail(self, msg: str, err: BaseException, fields: Mapping[str, Any] | None = None) -> None:
        """Log the fatal line for ``err`` and wake :meth:`wait`; only the first counts.

        A :class:`FatalError` brings its own message; a backend error its action.
        Call on the event loop's thread (see :meth:`fail_threadsafe`).
        """
        if self.error is not None:
            return
        line = dict(fields or {})
        if isinstance(err, FatalError):
            msg, line = err.msg, {**err.fields, **line}
            err = err.cause
        elif isinstance(err, BackendError):
            msg, err = err.action, err.cause
        self.error = err
        self._failed.set()
        # The log may live on the disk that failed: the exit code must not depend on it.
        with contextlib.suppress(Exception):
            self.log.fatal(msg, {**line, "error": error_text(err)})

    def fail_threadsafe(
        self, loop: asyncio.AbstractEventLoop, msg: str, err: BaseException
    ) -> None:
        """:meth:`fail` from another thread (a WAL writer's callback)."""
        loop.call_soon_threadsafe(self.fail, msg, err)

    async def wait(self) -> BaseException:
        """Until the member failed; returns the error."""
        await self._failed.wait()
        assert self.error is not None
        return self.error

    def watch(self, task: asyncio.Task[Any], msg: str) -> asyncio.Task[Any]:
        """Fail the member with ``msg`` if ``task`` ends with an exception."""
        task.add_done_callback(lambda t: self._task_done(t, msg))
        return task

    def spawn(self, coro: Coroutine[Any, Any, None], name: str, msg: str) -> asyncio.Task[None]:
        """Start ``coro`` as a task of the member's life, watched (see :meth:`watch`)."""
        task = asyncio.create_task(coro, name=name)
        self.watch(task, msg)
        return task

    def _task_done(self, task: asyncio.Task[Any], msg: str) -> None:
        if task.cancelled():
            return
        err = task.exception()
        if err is not None:
            self.fail(msg, err, {"task": task.get_name()})
