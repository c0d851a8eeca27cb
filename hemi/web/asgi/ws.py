"""The ASGI ``websocket`` scope: an upgrade request served by the app with ``receive``/``send``.

The app is started by the handlet's :class:`~hemi.web.asgi.runner.AppRunner`, as for
``http``: its first step runs at once (a typical app reads ``websocket.connect`` and accepts
within it, so the 101 goes out with no task for the handshake), and an app that waits goes on
in a host task. The connection's task, if any, only waits for the handshake's answer.

The app's first ``receive`` is ``websocket.connect``; then it answers with one of:

- ``websocket.accept`` (``subprotocol``, ``headers``): the 101 goes out, the connection is
  taken over by a :class:`~hemi.web.websocket.session.WebSocketSession`, and ``receive``
  yields ``websocket.receive`` (``text`` or ``bytes``) until ``websocket.disconnect``
  (``code``, ``reason``); ``websocket.send`` writes a message and waits while the client is
  slow; ``websocket.close`` starts the close handshake;
- ``websocket.close`` before accepting: 403, as the spec asks;
- ``websocket.http.response.start`` / ``.body`` (the denial extension): an ordinary HTTP
  response, written by the ``http`` scope's code (:class:`~.http.HttpExchange`).

An app that returns without answering gets 403; one that raises first, 500 and a log line;
one that raises after accepting, close 1011 and a log line. The app is never cancelled when
the client goes away: ``receive`` returns ``websocket.disconnect`` and ``send`` raises
:class:`~hemi.web.websocket.session.ConnectionClosed` (an ``OSError``, spec 2.4).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Awaitable

from ..errors import HTTPError
from ..websocket.handshake import Offer, check_upgrade, negotiate
from ..websocket.session import INTERNAL_ERROR, NORMAL, ConnectionClosed, WebSocketSession, accept
from .handlet import UPGRADES
from .http import DONE as HTTP_DONE
from .http import ClientDisconnected, HttpExchange, raise_later, wait_answer
from .runner import SUSPENDED

if TYPE_CHECKING:
    from ..exchange import Request, Response
    from .handlet import AsgiHandlet

log = logging.getLogger("hemi.web.asgi")

# Phases of the handshake.
CONNECTING, ACCEPTED, DENYING, ANSWERED = range(4)


class WebSocketExchange:
    """One WebSocket between a client and the app."""

    __slots__ = ("handlet", "req", "resp", "offer", "phase", "connect_sent", "session", "denial", "failure",
                 "answered", "gone", "_waiter")

    def __init__(self, handlet: "AsgiHandlet", req: "Request", resp: "Response", offer: Offer) -> None:
        self.handlet = handlet
        self.req = req
        self.resp = resp
        self.offer = offer
        self.phase = CONNECTING
        self.connect_sent = False
        self.session: WebSocketSession | None = None
        self.denial: HttpExchange | None = None
        self.failure: BaseException | None = None     # what the connection must do instead of a 101
        self.answered: asyncio.Future | None = None   # the connection's task waits on it
        self.gone = False                             # the client left before the handshake's answer
        self._waiter: asyncio.Future | None = None    # a receive() waiting for the app's own answer

    # -- running the app ------------------------------------------------------------------------------
    def start(self, scope: dict) -> "bool | Awaitable[bool]":
        """Call the app. True once the handshake is answered (101, refusal or denial); else an
        awaitable for the connection's task, done when it is."""
        h = self.handlet
        result = h.runner.start(h.asgi_app(scope, self.receive, self.send), self._app_ended)  # type: ignore[union-attr]
        if result is not SUSPENDED:
            self._app_ended(result)
        if self.failure is not None:
            if isinstance(self.failure, HTTPError):
                raise self.failure
            return raise_later(self.failure)
        if self.phase in (ACCEPTED, ANSWERED):
            return True
        answered = self.answered = h.loop.create_future()  # type: ignore[union-attr]
        return wait_answer(self, answered)

    def _answer(self) -> None:
        answered = self.answered
        if answered is not None and not answered.done():
            answered.set_result(None)

    def _app_ended(self, error: BaseException | None) -> None:
        """The app's coroutine has ended (``error``: what it raised)."""
        if error is not None and not isinstance(error, (Exception, asyncio.CancelledError)):
            raise error  # KeyboardInterrupt, SystemExit: not ours to swallow
        name, target = self.handlet.name, self.req.target
        quiet = error is None or isinstance(error, (ConnectionClosed, ClientDisconnected, asyncio.CancelledError))
        phase = self.phase
        if phase == ACCEPTED:
            assert self.session is not None
            if quiet or (isinstance(error, OSError) and not self.session.open):
                self.session.close(NORMAL, "")  # a no-op if the app or the client closed it already
            else:
                log.error("asgi %s: the app raised on the WebSocket %s", name, target, exc_info=error)
                self.session.close(INTERNAL_ERROR, "internal error")
            return
        if phase == ANSWERED:  # refused, or denied with a complete response
            if not quiet:
                log.error("asgi %s: the app raised after answering the WebSocket handshake %s", name, target,
                          exc_info=error)
            return
        if self.gone:
            self.failure = ConnectionResetError("client went away")
        elif phase == DENYING:
            log.error("asgi %s: the app %s its denial response to %s", name,
                      "raised before finishing" if error is not None else "did not finish", target, exc_info=error)
            self.failure = (ConnectionAbortedError("the app did not finish its response") if self.resp.sent
                            else HTTPError(500))
        elif error is not None:
            if not isinstance(error, asyncio.CancelledError):
                log.error("asgi %s: the app raised on the WebSocket handshake %s", name, target, exc_info=error)
            self.failure = HTTPError(500)
        else:
            self._refuse()  # it returned without answering: 403
        self.phase = ANSWERED
        self._wake()
        self._answer()

    def _refuse(self) -> None:
        """The app closed (or returned) before accepting: 403 (ASGI spec)."""
        self.phase = ANSWERED
        self._wake()
        if not self.resp.sent and not self.gone:
            self.resp.send_error(403, "the application refused the WebSocket")
        self._answer()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- receive --------------------------------------------------------------------------------------
    async def receive(self) -> dict:
        session = self.session
        if session is None:
            if not self.connect_sent:
                self.connect_sent = True
                return {"type": "websocket.connect"}
            if self.phase == CONNECTING and not self.gone:
                # Nothing comes before the app answers the connect: wait for that answer.
                waiter = self._waiter = self.handlet.loop.create_future()  # type: ignore[union-attr]
                await waiter
                session = self.session
            if session is None:
                return {"type": "websocket.disconnect", "code": 1006, "reason": ""}
        data = await session.receive()
        if data is None:
            return {"type": "websocket.disconnect", "code": session.close_code or 1006, "reason": session.close_reason}
        if type(data) is str:
            return {"type": "websocket.receive", "text": data}
        return {"type": "websocket.receive", "bytes": data}

    # -- send -----------------------------------------------------------------------------------------
    async def send(self, message: dict) -> None:
        kind = message["type"]
        if kind == "websocket.send":
            session = self.session
            if session is None:
                raise RuntimeError("ASGI app sent websocket.send before websocket.accept")
            text = message.get("text")
            if text is not None:
                await session.send(text)
            else:
                data = message.get("bytes")
                if data is None:
                    raise RuntimeError("ASGI app sent websocket.send with neither text nor bytes")
                await session.send(data)
        elif kind == "websocket.accept":
            self._accept(message)
        elif kind == "websocket.close":
            if self.session is not None:
                # Closing a connection that is already closing or gone is a no-op: apps often
                # close in a ``finally`` after the client left.
                self.session.close(message.get("code") or NORMAL, message.get("reason") or "")
            elif self.phase == CONNECTING:
                if self.gone:
                    raise ConnectionClosed(1006)
                self._refuse()
            else:
                raise RuntimeError("ASGI app sent websocket.close after its denial response")
        elif kind == "websocket.http.response.start":
            if self.phase != CONNECTING:
                raise RuntimeError("ASGI app sent websocket.http.response.start after answering the handshake")
            if self.gone:
                raise ConnectionClosed(1006)
            self.phase = DENYING
            self._wake()
            self.denial = HttpExchange(self.handlet, self.req, self.resp)
            await self.denial.send({**message, "type": "http.response.start"})
        elif kind == "websocket.http.response.body":
            if self.phase != DENYING or self.denial is None:
                raise RuntimeError("ASGI app sent websocket.http.response.body before websocket.http.response.start")
            await self.denial.send({**message, "type": "http.response.body"})
            if self.denial.phase == HTTP_DONE:
                self.phase = ANSWERED
                self._answer()
        else:
            raise RuntimeError(f"ASGI app sent {kind!r} in the websocket scope")

    def _accept(self, message: dict) -> None:
        if self.phase != CONNECTING:
            raise RuntimeError("ASGI app sent websocket.accept twice, or after refusing")
        if self.gone:
            raise ConnectionClosed(1006)
        subprotocol = message.get("subprotocol")
        headers = [(bytes(k).decode("latin-1"), bytes(v).decode("latin-1")) for k, v in message.get("headers") or ()]
        limits = self.handlet.ws_limits
        agreement = negotiate(self.offer, subprotocol, compression=limits.compression,
                              max_message_size=limits.max_message_size)
        try:
            session = accept(self.req, self.resp, self.offer, agreement, limits, headers)
        except ValueError as e:
            raise RuntimeError(f"ASGI app sent websocket.accept with {e}") from None
        self.session = session
        self.phase = ACCEPTED
        session.resume()
        self._wake()
        self._answer()


def serve_websocket(handlet: "AsgiHandlet", req: "Request", resp: "Response") -> Any:
    """The ``websocket`` scope for an upgrade the asgi handlet received."""
    offer = check_upgrade(req)  # a broken handshake never reaches the app
    scope = handlet.connection_scope(req, "websocket", "wss" if req.scheme == "https" else "ws")
    scope["subprotocols"] = offer.subprotocols
    scope["extensions"] = {"websocket.http.response": {}}
    return WebSocketExchange(handlet, req, resp, offer).start(scope)


UPGRADES["websocket"] = serve_websocket

__all__ = ["WebSocketExchange", "serve_websocket"]
