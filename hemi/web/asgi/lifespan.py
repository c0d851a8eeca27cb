"""The ASGI lifespan protocol: one ``startup`` before the stage serves, one ``shutdown`` after
it has stopped, for each stage (so once per worker process, and again for the stage a reload
brings).

The app's lifespan coroutine runs in a task of its own for the whole life of the stage: it
typically opens a pool in startup, waits in ``receive()`` while requests are served, and closes
the pool in shutdown. What it stores in ``scope["state"]`` is copied (shallowly) into every
request's scope.

Modes: ``"on"`` requires the protocol; ``"auto"`` tolerates apps without it (an exception or a
return before ``lifespan.startup.complete`` means "not supported": serving goes on without
lifespan events, as the spec asks); ``"off"`` never calls the app with a lifespan scope. An
explicit ``lifespan.startup.failed`` stops the start in every mode.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from ..appload import describe_exception

log = logging.getLogger("hemi.web.asgi")

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]

LIFESPAN_ASGI = {"version": "3.0", "spec_version": "2.0"}


class LifespanFailed(Exception):
    """The app refused to start (or, with lifespan "on", could not). ``message`` is the app's."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Lifespan:
    """Drives one app's lifespan scope; ``state`` is the namespace it fills during startup."""

    def __init__(self, app: ASGIApp, mode: str, name: str) -> None:
        self.app = app
        self.mode = mode
        self.name = name  # for log lines: the handlet that owns this app
        self.state: dict[str, Any] = {}
        self.supported = False     # startup completed: shutdown must be sent
        self._task: asyncio.Task | None = None
        self._inbox: list[dict] = []
        self._inbox_waiter: asyncio.Future | None = None
        self._reply: asyncio.Future | None = None  # the app's answer to the pending event

    # -- the app's side ----------------------------------------------------------------------------
    async def _receive(self) -> dict:
        while not self._inbox:
            self._inbox_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._inbox_waiter
            finally:
                self._inbox_waiter = None
        return self._inbox.pop(0)

    async def _send(self, message: dict) -> None:
        kind = message.get("type")
        reply = self._reply
        if kind not in ("lifespan.startup.complete", "lifespan.startup.failed",
                        "lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            raise RuntimeError(f"unexpected ASGI message {kind!r} in the lifespan scope")
        if reply is None or reply.done():
            raise RuntimeError(f"ASGI message {kind!r} sent when no lifespan event is pending")
        reply.set_result(message)

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": dict(LIFESPAN_ASGI), "state": self.state}
        try:
            await self.app(scope, self._receive, self._send)
        finally:
            reply = self._reply
            if reply is not None and not reply.done():
                reply.set_result(None)  # the app returned (or raised) before answering

    # -- the server's side ---------------------------------------------------------------------------
    async def _event(self, kind: str) -> tuple[dict | None, BaseException | None]:
        """Deliver ``kind`` and wait for the app's answer, or for the app to end."""
        loop = asyncio.get_running_loop()
        self._reply = loop.create_future()
        self._inbox.append({"type": kind})
        waiter = self._inbox_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._task is None:
            self._task = loop.create_task(self._main(), name=f"lifespan {self.name}")
        await asyncio.wait((self._reply, self._task), return_when=asyncio.FIRST_COMPLETED)
        answer = self._reply.result() if self._reply.done() else None
        error = None
        if self._task.done() and not self._task.cancelled():
            error = self._task.exception()
        return answer, error

    async def startup(self) -> None:
        """Run startup; raise :class:`LifespanFailed` when the app says it failed (or, with
        lifespan "on", when it does not take part)."""
        if self.mode == "off":
            return
        answer, error = await self._event("lifespan.startup")
        kind = answer.get("type") if answer else None
        if kind == "lifespan.startup.complete":
            self.supported = True
            return
        if kind == "lifespan.startup.failed":
            raise LifespanFailed(str(answer.get("message") or "lifespan.startup.failed"))  # type: ignore[union-attr]
        # No answer: the app raised or returned.
        if self.mode == "on":
            if error is not None:
                log.debug("asgi %s: lifespan startup raised", self.name, exc_info=error)
                raise LifespanFailed(describe_exception(error))
            raise LifespanFailed("the app returned without answering lifespan.startup")
        log.info("asgi %s: the app does not support the lifespan protocol (%s); serving without it",
                 self.name, describe_exception(error) if error else "it returned")

    async def shutdown(self) -> None:
        """Run shutdown if startup completed; a failure is logged (the stage stops anyway)."""
        task = self._task
        if task is None:
            return
        try:
            if self.supported and not task.done():
                answer, error = await self._event("lifespan.shutdown")
                kind = answer.get("type") if answer else None
                if kind == "lifespan.shutdown.failed":
                    log.error("asgi %s: lifespan shutdown failed: %s", self.name, answer.get("message") or "")  # type: ignore[union-attr]
                elif kind is None and error is not None:
                    log.error("asgi %s: lifespan shutdown raised", self.name, exc_info=error)
        finally:
            if not task.done():
                task.cancel()  # a startup that failed, or an app that keeps its task after shutdown
                await asyncio.gather(task, return_exceptions=True)
            elif not task.cancelled():
                task.exception()  # retrieved: logged above when it matters
