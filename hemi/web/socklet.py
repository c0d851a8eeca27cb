"""Socklets written in Python: a class with ``on_open``, ``on_message`` and ``on_close``.

A rule that holds socklets answers WebSocket upgrades (see :mod:`hemi.web.rule`)::

    @socklet("chatRoom")
    class ChatRoom(AppSocklet):
        def on_open(self, ws):
            ...
        def on_message(self, ws, data):       # str for a text message, bytes for a binary one
            ws.send(data)
        def on_close(self, ws, code, reason):
            ...

    rule $path == "/chat" { chatRoom { .maxMessageSize = 64K } }

Each callback may be a plain method or a coroutine. When all are plain, the handshake and
every message are handled inline as they are parsed: no task and no future per connection or
per message (the fast path ``echoSocklet`` uses). Otherwise one task per connection runs the
callbacks in order: a message is handled after the previous one's handler has finished, and
reading pauses while messages pile up. A client that vanishes without a close handshake
cancels the callback in progress; ``on_close`` is always called, last.

``on_connect(req)`` runs before the handshake is answered and may refuse it by raising
``HTTPError`` (say 403); ``select_subprotocol(req, offered)`` picks the subprotocol.

``ws.send(data)`` writes at once and returns an awaitable that an async handler may await to
wait for a slow client. ``ws.close(code, reason)`` starts the close handshake; ``on_close``
follows with the client's code (1006: the connection just ended). ``ws.request`` is the
upgrade request (headers, cookies, query), ``ws.subprotocol`` the chosen subprotocol and
``ws.state`` a dict for the socklet's own per-connection data.

Properties, read through the parents (an app- or stage-level value is the default):
``.maxMessageSize`` (1M; larger: close 1009), ``.idleTimeout`` (60s without a message: close
1001), ``.pingInterval`` (20s), ``.compression`` (true: permessage-deflate when offered),
``.subprotocols`` (the ones served, in preference order).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import TYPE_CHECKING, Any, Awaitable

from ..core.registry import socklet
from .handlet import Socklet
from .websocket.handshake import Offer, check_upgrade, negotiate
from .websocket.session import (INTERNAL_ERROR, NORMAL, OPEN, ConnectionClosed, Limits, WebSocketSession, accept,
                                configure_limits)

if TYPE_CHECKING:
    from .exchange import Request, Response

log = logging.getLogger("hemi.web.socklet")


class WebSocket:
    """One client's WebSocket, as a socklet's callbacks see it."""

    __slots__ = ("session", "request", "subprotocol", "state", "socklet")

    def __init__(self, session: WebSocketSession, request: "Request", subprotocol: str | None,
                 socklet: "Socklet") -> None:
        self.session = session
        self.request = request
        self.subprotocol = subprotocol
        self.state: dict[str, Any] = {}
        self.socklet = socklet

    def __repr__(self) -> str:
        return f"<WebSocket {self.request.path} from {self.request.peer[0]}{' open' if self.open else ' closed'}>"

    @property
    def open(self) -> bool:
        """True until the close handshake starts: ``send`` works only while open."""
        return self.session.state == OPEN

    @property
    def close_code(self) -> int | None:
        return self.session.close_code

    def send(self, data: str | bytes) -> Awaitable[None]:
        """Send a text (str) or binary (bytes) message. Raises :class:`ConnectionClosed` once
        the connection is closing; awaiting the result waits while the client is slow."""
        return self.session.send(data)

    def close(self, code: int = NORMAL, reason: str = "") -> None:
        self.session.close(code, reason)

    def ping(self, payload: bytes = b"") -> None:
        self.session.ping(payload)

    async def receive(self) -> str | bytes | None:
        """For socklets that prefer a loop to callbacks (async ``on_open``): the next message,
        None once closed. Do not mix with an ``on_message`` of your own."""
        return await self.session.receive()


def _is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn)


class AppSocklet(Socklet):
    """The base of socklets written in Python (see the module docstring)."""

    subprotocols: tuple[str, ...] = ()

    def on_configure(self) -> None:
        self.limits: Limits = configure_limits(self)
        names = self.configure_string_list("subprotocols", list(type(self).subprotocols))
        self.subprotocols = tuple(names)
        cls = type(self)
        self._inline = not any(_is_async(getattr(cls, m)) for m in ("on_connect", "on_open", "on_message", "on_close"))
        self._tasks: set[asyncio.Task] = set()   # connections of async callbacks

    # -- what a subclass writes ----------------------------------------------------------------------
    def on_connect(self, req: "Request") -> None | Awaitable[None]:
        """Before the handshake is answered: raise ``HTTPError`` (e.g. 403) to refuse it."""

    def select_subprotocol(self, req: "Request", offered: list[str]) -> str | None:
        """The subprotocol to speak: by default the first of ``.subprotocols`` the client offers."""
        for name in self.subprotocols:
            if name in offered:
                return name
        return None

    def on_open(self, ws: WebSocket) -> None | Awaitable[None]:
        pass

    def on_message(self, ws: WebSocket, data: str | bytes) -> None | Awaitable[None]:
        pass

    def on_close(self, ws: WebSocket, code: int, reason: str) -> None | Awaitable[None]:
        pass

    # -- serving -------------------------------------------------------------------------------------
    def serve(self, req: "Request", resp: "Response") -> bool | Awaitable[bool]:
        offer = check_upgrade(req)
        if self._inline:  # plain callbacks: the handshake and every message inline, no task at all
            self.on_connect(req)
            self._run_inline(self._accept(req, resp, offer))
            return True
        return self._serve_async(req, resp, offer)

    def _accept(self, req: "Request", resp: "Response", offer: Offer) -> WebSocket:
        sub = self.select_subprotocol(req, offer.subprotocols)
        limits = self.limits
        agreement = negotiate(offer, sub, compression=limits.compression, max_message_size=limits.max_message_size)
        return WebSocket(accept(req, resp, offer, agreement, limits), req, sub, self)

    def _run_inline(self, ws: WebSocket) -> None:
        session = ws.session
        session.on_closed = lambda code, reason: self.on_close(ws, code, reason)
        try:
            self.on_open(ws)
        except Exception:
            log.exception("socklet %s: on_open failed", self.name)
            session.close(INTERNAL_ERROR, "internal error")
        else:
            session.on_message = lambda data: self.on_message(ws, data)
        session.resume()

    async def _serve_async(self, req: "Request", resp: "Response", offer: Offer) -> bool:
        result = self.on_connect(req)
        if inspect.isawaitable(result):
            await result
        ws = self._accept(req, resp, offer)
        # The callbacks run in a task of their own, not the exchange's: the HTTP connection
        # cancels that one when the transport closes, even after a clean close handshake.
        task = asyncio.get_running_loop().create_task(self._run_async(ws), name=f"socklet {self.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _run_async(self, ws: WebSocket) -> None:
        """Callbacks in order: on_open, on_message per message, on_close. A client that
        vanishes (no close handshake) cancels the callback in progress; on_close always runs."""
        session = ws.session
        me = asyncio.current_task()
        busy = False

        def lost() -> None:
            if busy and me is not None:
                me.cancel()
        session.on_lost = lost
        session.resume()
        try:
            busy = True
            result = self.on_open(ws)
            if inspect.isawaitable(result):
                await result
            busy = False
            while (data := await session.receive()) is not None:
                busy = True
                result = self.on_message(ws, data)
                if inspect.isawaitable(result):
                    await result
                busy = False
        except asyncio.CancelledError:
            if not (session.lost and me is not None and me.cancelling()):
                session.abort()  # not the client leaving (a shutdown): pass it on
                raise
            me.uncancel()
        except ConnectionClosed:
            pass  # a send after the client left: the close is reported below
        except Exception:
            log.exception("socklet %s failed", self.name)
            session.close(INTERNAL_ERROR, "internal error")
        busy = False
        session.close(NORMAL, "")  # returned with the connection open: close it; on_close follows the answer
        code, reason = await session.wait_closed()
        try:
            result = self.on_close(ws, code, reason)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("socklet %s: on_close failed", self.name)

    async def on_shutdown(self) -> None:
        # Servers shut down first, closing every WebSocket: what still runs is cancelled.
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


@socklet("echoSocklet")
class EchoSocklet(AppSocklet):
    """Sends every message back as it came (text as text, binary as binary): the reference
    endpoint for conformance tests and benchmarks."""

    def on_message(self, ws: WebSocket, data: str | bytes) -> None:
        ws.send(data)


@socklet("helloSocklet")
class HelloSocklet(AppSocklet):
    """Greets with ``.text`` (default "hello, websocket!") and closes, as Gorox's does."""

    def on_configure(self) -> None:
        super().on_configure()
        self.text = self.configure_string("text", "hello, websocket!")

    def on_open(self, ws: WebSocket) -> None:
        ws.send(self.text)
        ws.close(NORMAL, "")


__all__ = ["AppSocklet", "ConnectionClosed", "EchoSocklet", "HelloSocklet", "WebSocket"]
