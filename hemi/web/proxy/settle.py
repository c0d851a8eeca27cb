"""The answer a proxy's hot path hands to the client connection, and the task it falls back to.

A proxy answers most requests from the upstream connection's callbacks: no task, and the
exchange itself is the :class:`~hemi.web.deferred.Deferred` the handler returns, settled when
the response has been written (see ``http1._Exchange`` and ``gateway._Exchange``); the HTTP/1
connection hears of it in the same callback. One object per exchange, not an exchange and its
answer. What the hot path does not finish goes on in a task running the proxy's coroutine
code, and the task's outcome settles the exchange. A client that goes away cancels it; the
exchange then stops its task, and lets go of its upstream connection in :meth:`abandon`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..deferred import Deferred


class CallbackExchange(Deferred):
    """The settling part of a callback-driven exchange; subclasses add the protocol. It is
    settled as any Deferred: ``set_result(True)`` once the response is on its way, or
    ``set_exception``."""

    __slots__ = ("task",)

    def __init__(self, loop: asyncio.AbstractEventLoop, *, eof_cancels: bool = False) -> None:
        # (named, not super(): the base's __init__ is a lookup less per exchange on 3.11)
        Deferred.__init__(self, loop, eof_cancels)
        self.task: asyncio.Task | None = None

    def spawn(self, coro: Any) -> None:
        """Go on in a task (the coroutine owns the upstream connection from now on)."""
        task = self.task = self.loop.create_task(coro)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self.task = None
        if self.done():
            return
        if task.cancelled():
            self.cancel()
        elif task.exception() is not None:
            self.set_exception(task.exception())  # type: ignore[arg-type]
        else:
            self.set_result(task.result())

    def _given_up(self) -> None:
        """The exchange was given up (the client went away): stop the upstream side too."""
        if self.task is not None:
            self.task.cancel()
        self.abandon()

    def abandon(self) -> None:
        """Let go of whatever upstream resource the exchange holds (its connection is in an
        unknown state: closed, not pooled)."""
