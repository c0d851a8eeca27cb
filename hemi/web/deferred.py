"""A handler's answer that is settled later by callbacks, told to its connection at once.

A proxy answers most requests from its upstream connection's ``data_received``. With an
``asyncio.Future`` as the handle, that answer reaches the client's connection one loop hop
later: ``set_result`` schedules the done-callbacks, the loop runs them in its next pass, and
only then does the connection end the exchange and read the next request. :class:`Deferred`
calls its one listener (the HTTP/1 connection) synchronously instead, so the exchange ends
within the callback that completed it, with no loop callback scheduled for it (bench/RESULTS.md
has what it and the changes made with it did to the proxies).

Everything that does not know the type still works: ``await deferred`` waits on a real
future made on demand (the rules' slow path; the HTTP/2 and HTTP/3 streams to come), and
cancelling that awaiter cancels the deferred. ``cancel()`` (the client went away) calls
:meth:`Deferred._given_up` at once: a producer that is a Deferred (the proxies' exchanges)
overrides it to let go of its upstream resources then and there.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Generator

log = logging.getLogger("hemi.web")

Listener = Callable[["Deferred"], None]


class Deferred:
    """One result (True: answered), an exception, or a cancellation; set once."""

    __slots__ = ("loop", "eof_cancels", "value", "error", "_done", "_cancelled", "_listener", "_future")

    def __init__(self, loop: asyncio.AbstractEventLoop, eof_cancels: bool = False) -> None:
        self.loop = loop
        # The producer's wish: a client that closes its side gives the exchange up (a proxy:
        # the upstream work stops when nobody waits for it; see Http1Conn.abort_on_eof).
        self.eof_cancels = eof_cancels
        # The outcome, for a listener to read directly (``result()`` raises the error).
        self.value: Any = None
        self.error: BaseException | None = None
        self._done = False
        self._cancelled = False
        self._listener: Listener | None = None
        self._future: asyncio.Future | None = None   # made only for an awaiter

    def __repr__(self) -> str:
        state = "cancelled" if self._cancelled else "done" if self._done else "pending"
        return f"<Deferred {state}>"

    # -- the consumer's side: the Future API the connections use ------------------------------------
    def done(self) -> bool:
        return self._done

    def cancelled(self) -> bool:
        return self._cancelled

    def exception(self) -> BaseException | None:
        if self._cancelled:
            raise asyncio.CancelledError()
        if not self._done:
            raise asyncio.InvalidStateError("the result is not set yet")
        return self.error

    def result(self) -> Any:
        error = self.exception()
        if error is not None:
            raise error
        return self.value

    def listen(self, listener: Listener) -> None:
        """Call ``listener(self)`` as soon as the result is set (at once if it is): the one
        consumer that reads results synchronously. A cancel is not reported: the canceller
        knows."""
        if self._done:
            if not self._cancelled:
                listener(self)
            return
        self._listener = listener

    def cancel(self) -> bool:
        if self._done:
            return False
        self._done = self._cancelled = True
        self._listener = None
        self._given_up()
        fut = self._future
        if fut is not None and not fut.done():
            fut.cancel()
        return True

    def _given_up(self) -> None:
        """The consumer gave up (``cancel()``, once, before any result): a producer that holds
        something for the answer overrides this to let go of it."""

    def __await__(self) -> Generator[Any, None, Any]:
        if not self._done:
            fut = self._future = self.loop.create_future()
            fut.add_done_callback(self._awaiter_done)
            yield from fut.__await__()
        return self.result()

    def _awaiter_done(self, fut: asyncio.Future) -> None:
        if fut.cancelled():  # the task awaiting us was cancelled: so are we
            self.cancel()

    # -- the producer's side -------------------------------------------------------------------------
    def set_result(self, result: Any) -> None:
        if self._done:
            return
        self._done = True
        self.value = result
        self._tell()

    def set_exception(self, error: BaseException) -> None:
        if self._done:
            return
        self._done = True
        self.error = error
        self._tell()

    def _tell(self) -> None:
        listener = self._listener
        if listener is not None:
            self._listener = None
            try:
                listener(self)
            except Exception:  # the consumer's failure is not the producer's to handle
                log.exception("a connection failed to take an answer")
        fut = self._future
        if fut is not None and not fut.done():
            if self.error is not None:
                fut.set_exception(self.error)
            else:
                fut.set_result(self.value)


# What a rule passes up untouched from its last handlet, for the connection to wait on
# without a task (see Rule.execute, App.dispatch).
SETTLED_LATER = (Deferred, asyncio.Future)
