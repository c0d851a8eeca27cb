"""The ASGI ``websocket`` scope: an upgrade request served by the app with ``receive``/``send``.

The app runs in the exchange's task, as for ``http``. Its first ``receive`` is
``websocket.connect``; then it answers with one of:

- ``websocket.accept`` (``subprotocol``, ``headers``): the 101 goes out, the connection is
  taken over by a :class:`~hemi.web.websocket.session.WebSocketSession`, and ``receive``
  yields ``websocket.receive`` (``text`` or ``bytes``) until ``websocket.disconnect``
  (``code``, ``reason``); ``websocket.send`` writes a message and waits while the client is
  slow; ``websocket.close`` starts the close handshake;
- ``websocket.close`` before accepting: 403, as the spec asks;
- ``websocket.http.response.start`` / ``.body`` (the denial extension): an ordinary HTTP
  response, written by the ``http`` scope's code (:class:`~.http.HttpExchange`).

An app that returns without answering gets 403; one that raises first, 500 and a log line;
one that raises after accepting, close 1011. When the client goes away, the connection cancels
the exchange's task: a ``receive`` that waits takes the cancellation back and returns
``websocket.disconnect``; ``send`` raises :class:`~hemi.web.websocket.session.ConnectionClosed`
(an ``OSError``, spec 2.4).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from ..errors import HTTPError
from ..websocket.handshake import Offer, check_upgrade, negotiate
from ..websocket.session import INTERNAL_ERROR, NORMAL, ConnectionClosed, WebSocketSession, accept
from .handlet import UPGRADES
from .http import DONE as HTTP_DONE
from .http import HttpExchange

if TYPE_CHECKING:
    from ..exchange import Request, Response
    from .handlet import AsgiHandlet

log = logging.getLogger("hemi.web.asgi")

# Phases of the exchange.
CONNECTING, ACCEPTED, DENYING, REFUSED = range(4)


class WebSocketExchange:
    """One WebSocket between a client and the app."""

    __slots__ = ("handlet", "req", "resp", "offer", "phase", "connect_sent", "session", "denial", "_waiter")

    def __init__(self, handlet: "AsgiHandlet", req: "Request", resp: "Response", offer: Offer) -> None:
        self.handlet = handlet
        self.req = req
        self.resp = resp
        self.offer = offer
        self.phase = CONNECTING
        self.connect_sent = False
        self.session: WebSocketSession | None = None
        self.denial: HttpExchange | None = None
        self._waiter: asyncio.Future | None = None   # a receive() waiting for the app's own answer

    # -- running the app ------------------------------------------------------------------------------
    async def serve(self, scope: dict) -> bool:
        try:
            await self.handlet.asgi_app(scope, self.receive, self.send)
        except BaseException as e:  # noqa: B036 - every way out is decided here
            return self._failed(e)
        return self._returned()

    def _failed(self, e: BaseException) -> bool:
        session = self.session
        if isinstance(e, asyncio.CancelledError):
            if session is not None and session.swallow_cancel():
                return True
            raise e
        if not isinstance(e, Exception):
            raise e
        req = self.req
        if session is not None:
            if isinstance(e, OSError) and not session.open:
                return True  # a send after the client left: the app's way to learn it
            log.error("asgi %s: the app raised on the WebSocket %s", self.handlet.name, req.target, exc_info=e)
            session.close(INTERNAL_ERROR, "internal error")
            return True
        log.error("asgi %s: the app raised on the WebSocket handshake %s", self.handlet.name, req.target, exc_info=e)
        if self.resp.sent:
            raise ConnectionAbortedError("the app failed mid-response")
        raise HTTPError(500)

    def _returned(self) -> bool:
        phase = self.phase
        if phase == ACCEPTED:
            assert self.session is not None
            self.session.close(NORMAL, "")  # a no-op if the app closed it, or the client did
            return True
        if phase == DENYING:
            assert self.denial is not None
            if self.denial.phase == HTTP_DONE:
                return True
            if self.resp.sent:
                log.error("asgi %s: the app did not finish its denial response to %s", self.handlet.name,
                          self.req.target)
                raise ConnectionAbortedError("the app did not finish its response")
            raise HTTPError(500)
        if phase == CONNECTING:
            self._refuse()
        return True

    def _refuse(self) -> None:
        """The app closed (or returned) before accepting: 403 (ASGI spec)."""
        self.phase = REFUSED
        self._wake()
        if not self.resp.sent:
            self.resp.send_error(403, "the application refused the WebSocket")

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
            if self.phase == CONNECTING:
                # Nothing comes before the app answers the connect: wait for that answer.
                waiter = self._waiter = self.handlet.loop.create_future()  # type: ignore[union-attr]
                await waiter
                session = self.session
            if session is None:
                return {"type": "websocket.disconnect", "code": 1006, "reason": ""}
        while True:
            try:
                data = await session.receive()
            except asyncio.CancelledError:
                if session.swallow_cancel():
                    continue  # the queue now ends with the close
                raise
            if data is None:
                return {"type": "websocket.disconnect", "code": session.close_code or 1006,
                        "reason": session.close_reason}
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
                drained = session.send(text)
            else:
                data = message.get("bytes")
                if data is None:
                    raise RuntimeError("ASGI app sent websocket.send with neither text nor bytes")
                drained = session.send(data)
            try:
                await drained
            except asyncio.CancelledError:
                if session.swallow_cancel():
                    raise ConnectionClosed(session.close_code, session.close_reason) from None
                raise
        elif kind == "websocket.accept":
            self._accept(message)
        elif kind == "websocket.close":
            if self.session is not None:
                # Closing a connection that is already closing or gone is a no-op: apps often
                # close in a ``finally`` after the client left.
                self.session.close(message.get("code") or NORMAL, message.get("reason") or "")
            elif self.phase == CONNECTING:
                self._refuse()
            else:
                raise RuntimeError("ASGI app sent websocket.close after its denial response")
        elif kind == "websocket.http.response.start":
            if self.phase != CONNECTING:
                raise RuntimeError("ASGI app sent websocket.http.response.start after answering the handshake")
            self.phase = DENYING
            self._wake()
            self.denial = HttpExchange(self.handlet, self.req, self.resp)
            await self.denial.send({**message, "type": "http.response.start"})
        elif kind == "websocket.http.response.body":
            if self.phase != DENYING or self.denial is None:
                raise RuntimeError("ASGI app sent websocket.http.response.body before websocket.http.response.start")
            await self.denial.send({**message, "type": "http.response.body"})
        else:
            raise RuntimeError(f"ASGI app sent {kind!r} in the websocket scope")

    def _accept(self, message: dict) -> None:
        if self.phase != CONNECTING:
            raise RuntimeError("ASGI app sent websocket.accept twice, or after refusing")
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


def serve_websocket(handlet: "AsgiHandlet", req: "Request", resp: "Response") -> Any:
    """The ``websocket`` scope for an upgrade the asgi handlet received."""
    offer = check_upgrade(req)  # a broken handshake never reaches the app
    scope = handlet.connection_scope(req, "websocket", "wss" if req.scheme == "https" else "ws")
    scope["subprotocols"] = offer.subprotocols
    scope["extensions"] = {"websocket.http.response": {}}
    return WebSocketExchange(handlet, req, resp, offer).serve(scope)


UPGRADES["websocket"] = serve_websocket

__all__ = ["WebSocketExchange", "serve_websocket"]
