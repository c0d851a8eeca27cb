"""Running ASGI app coroutines: the first step at once, the rest in a pooled host task.

Most requests to an ASGI app never wait for anything: the app sends its start and body
messages and returns. Giving each of them a task costs more than the app itself, so the first
step of the coroutine runs inline, in the connection's callback. If the app does wait (a body
still on the wire, a database, a thread), its coroutine is handed to a *host*: a long-lived
task that drives it to the end and then waits for the next one.

The first step runs *as* that host task — ``asyncio.current_task()`` returns it — so code that
keys state by task (anyio's cancel scopes and task groups, ``asyncio.timeout``, sniffio) sees
one task for the app's whole life, as it would under any server. Each app call gets its own
copy of the contextvars context, kept across the hand-over.

The app therefore never runs in the connection's task, so the connection cancelling its task
(client gone) never cancels the app: the app hears of it through ``http.disconnect`` and a
``send`` that raises, and a response's background work finishes while the connection moves on.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import types
from asyncio.tasks import _enter_task, _leave_task  # type: ignore[attr-defined]
from typing import Any, Callable, Coroutine, Generator

log = logging.getLogger("hemi.web.asgi")

Done = Callable[["BaseException | None"], None]

try:  # the C table behind asyncio.current_task(loop), read without a Python call
    from asyncio.tasks import _current_tasks  # type: ignore[attr-defined]
    _current_task = _current_tasks.get
except ImportError:  # pragma: no cover - other Pythons
    _current_task = asyncio.current_task

MAX_IDLE_HOSTS = 128   # hosts kept waiting for work; more than that exit once their app ends


class AppRunner:
    """The host tasks of one ``asgi`` handlet, and the context every app call starts from."""

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str) -> None:
        self.loop = loop
        self.name = name
        self.context = contextvars.copy_context()
        self.idle: list[_Host] = []
        self.hosts: set[_Host] = set()
        self.busy = 0
        self.closed = False
        self._quiet: asyncio.Future | None = None   # resolved when busy drops to 0

    def start(self, coro: Coroutine[Any, Any, Any], done: Done) -> Any:
        """Run ``coro`` until it first waits. If it ends within that step, return what it
        raised (None: it returned); else return :data:`SUSPENDED`: a host drives it on and
        calls ``done(error)`` when it ends."""
        host = self.idle.pop() if self.idle else _Host(self)
        task = host.task
        ctx = self.context.copy()
        loop = self.loop
        current = _current_task(loop)
        if current is not None:  # e.g. a pipelined request started from an exchange's task
            _leave_task(loop, current)
        _enter_task(loop, task)
        try:
            yielded = ctx.run(coro.send, None)
        except StopIteration:
            self.idle.append(host)
            return None
        except BaseException as e:  # noqa: B036 - the app's failure goes to the exchange
            self.idle.append(host)
            return e
        finally:
            _leave_task(loop, task)
            if current is not None:
                _enter_task(loop, current)
        self.busy += 1
        host.adopt(coro, ctx, yielded, done)
        return SUSPENDED

    def _host_ended_job(self, host: "_Host") -> bool:
        """Bookkeeping when a host's app ends; True if the host should wait for more work."""
        self.busy -= 1
        if self.busy == 0 and self._quiet is not None and not self._quiet.done():
            self._quiet.set_result(None)
        if self.closed or len(self.idle) >= MAX_IDLE_HOSTS:
            self.hosts.discard(host)
            return False
        self.idle.append(host)
        return True

    def _forget(self, host: "_Host") -> None:
        """``host`` is ending while idle: it takes no more work."""
        self.hosts.discard(host)
        try:
            self.idle.remove(host)
        except ValueError:
            pass

    async def drain(self) -> None:
        """Wait until no app coroutine is running (background work after responses)."""
        if self.busy:
            self._quiet = self.loop.create_future()
            await self._quiet

    async def close(self) -> None:
        """Stop the hosts; an app still running is cancelled."""
        self.closed = True
        tasks = [h.task for h in self.hosts]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.hosts.clear()
        self.idle.clear()


SUSPENDED = object()   # AppRunner.start: the app waits; a host drives it on


class _Host:
    """A task that drives app coroutines handed to it, one at a time."""

    __slots__ = ("runner", "task", "job", "waiter")

    def __init__(self, runner: AppRunner) -> None:
        self.runner = runner
        self.job: tuple[Any, contextvars.Context, Any, Done] | None = None
        self.waiter: asyncio.Future | None = None
        self.task = runner.loop.create_task(self._main(), name=f"asgi {runner.name}")
        runner.hosts.add(self)

    def adopt(self, coro: Any, ctx: contextvars.Context, yielded: Any, done: Done) -> None:
        self.job = (coro, ctx, yielded, done)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _main(self) -> None:
        runner = self.runner
        task = self.task
        while True:
            pending: BaseException | None = None
            if self.job is None:
                self.waiter = runner.loop.create_future()
                try:
                    await self.waiter
                except asyncio.CancelledError as e:
                    if self.job is None:
                        # Idle: the loop is shutting down (asyncio.run cancels every task and
                        # waits for them), or a late cancel meant for an app that has ended. This
                        # host ends either way; the runner makes a new one when it needs one.
                        runner._forget(self)
                        return
                    pending = e  # meant for the app just handed over
                finally:
                    self.waiter = None
            coro, ctx, yielded, done = self.job  # type: ignore[misc]
            self.job = None
            error = await _drive(coro, ctx, yielded, pending)
            while task.cancelling():  # the app is over: cancellations aimed at it are void
                task.uncancel()
            again = runner._host_ended_job(self)
            try:
                done(error)
            except Exception:
                log.exception("asgi %s: finishing an exchange failed", runner.name)
            if not again:
                return


@types.coroutine
def _drive(coro: Any, ctx: contextvars.Context, yielded: Any,
           pending: BaseException | None) -> Generator[Any, Any, BaseException | None]:
    """Resume ``coro`` — suspended on ``yielded`` outside any task — in the current task until
    it ends; return what it raised, or None. Every step runs in the app's own context."""
    run = ctx.run
    send, throw = coro.send, coro.throw
    while True:
        if pending is None:
            try:
                yielded = yield yielded   # the task waits for the future the app waits for
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as e:  # noqa: B036 - it failed, or this task was cancelled
                pending = e
        try:
            if pending is None:
                yielded = run(send, yielded)
            else:
                e, pending = pending, None
                yielded = run(throw, e)
        except StopIteration:
            return None
        except BaseException as e:  # noqa: B036 - handed to the exchange
            return e
