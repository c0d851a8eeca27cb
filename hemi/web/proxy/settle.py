"""The answer a proxy's hot path hands to the client connection, and the task it falls back to.

A proxy answers most requests from the upstream connection's callbacks: no task, one
:class:`~hemi.web.deferred.Deferred`, settled when the response has been written (see
``http1._Exchange`` and ``gateway._Exchange``); the HTTP/1 connection hears of it in the same
callback. What the hot path does not finish goes on in a task running the proxy's coroutine
code, and the task's outcome settles the same answer. A client that goes away cancels it;
the exchange then stops its task, and lets go of its upstream connection in :meth:`abandon`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..deferred import Deferred


class CallbackExchange:
    """The settling part of a callback-driven exchange; subclasses add the protocol."""

    __slots__ = ("answer", "task")

    def __init__(self) -> None:
        self.task: asyncio.Task | None = None

    def new_answer(self, loop: asyncio.AbstractEventLoop, *, eof_cancels: bool = False) -> Deferred:
        fut = self.answer = Deferred(loop, self._cancelled, eof_cancels)
        return fut

    def settle(self, result: bool = True) -> None:
        self.answer.set_result(result)

    def settle_error(self, exc: BaseException) -> None:
        self.answer.set_exception(exc)

    def spawn(self, coro: Any) -> None:
        """Go on in a task (the coroutine owns the upstream connection from now on)."""
        task = self.task = self.answer.loop.create_task(coro)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self.task = None
        fut = self.answer
        if fut.done():
            return
        if task.cancelled():
            fut.cancel()
        elif task.exception() is not None:
            fut.set_exception(task.exception())  # type: ignore[arg-type]
        else:
            fut.set_result(task.result())

    def _cancelled(self) -> None:
        """The exchange was given up (the client went away): stop the upstream side too."""
        if self.task is not None:
            self.task.cancel()
        self.abandon()

    def abandon(self) -> None:
        """Let go of whatever upstream resource the exchange holds (its connection is in an
        unknown state: closed, not pooled)."""
