"""``sock1Proxy``: a socklet that relays WebSockets to an ``http1Backend``, message by message.

The upstream handshake comes first: the client's request is passed on (its end-to-end fields,
its subprotocol offers, plus Via and X-Forwarded-*) with a key of our own, and our own
permessage-deflate offer when ``.compression`` is on. An upstream that answers anything but a
valid 101 has its answer relayed to the client as an ordinary response (a 403 stays a 403); no
answer is 502, a timeout 504. Then the client gets its 101, with the subprotocol the upstream
chose.

From there the proxy speaks WebSocket on both sides — a server session to the client
(:class:`~hemi.web.websocket.session.WebSocketSession`: limits, idle timeout, pings) and a
wsproto client connection upstream — and relays whole messages: each side's frames are
checked and reassembled before they reach the other, each side negotiates its own
compression, pings are answered where they arrive, and a close on either side is passed on
with its code. Each direction waits while the other side does not keep up.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from typing import TYPE_CHECKING, Any, Final

from wsproto import ConnectionType
from wsproto.connection import Connection, ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.utilities import LocalProtocolError

from ...core.registry import socklet
from ...net.backend import BackendConn, BackendError, BackendTimeout, bind_backend
from ..errors import HTTPError
from ..handlet import Socklet
from ..http1.codec import NEED_DATA, Body, EndOfMessage, ProtocolError, ResponseParser
from ..websocket.handshake import BoundedDeflate, MessageLimit, accept_token, check_upgrade, comma_list, negotiate
from ..websocket.session import (ABNORMAL, CLOSE_TIMEOUT, GOING_AWAY, INTERNAL_ERROR, NORMAL, ConnectionClosed,
                                 WebSocketSession, accept, configure_limits)
from . import HOP_BY_HOP, connection_options, copy_request_headers, forwarding_headers
from .http1 import Http1Backend, read_response_head

if TYPE_CHECKING:
    from ..exchange import Request, Response

log = logging.getLogger("hemi.web.proxy.sock1")

# Client fields not passed upstream: the handshake's own (we write ours), framing, and the
# ones we merge (Via, X-Forwarded-For).
_REQUEST_DROP: Final = HOP_BY_HOP | {"host", "content-length", "sec-websocket-key", "sec-websocket-version",
                                     "sec-websocket-extensions", "sec-websocket-protocol", "sec-websocket-accept",
                                     "via", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"}
_DENIAL_DROP: Final = HOP_BY_HOP | {"content-length", "server", "date", "via", "content-type"}
_MAX_DENIAL_BODY: Final = 1 << 20


@socklet("sock1Proxy")
class Sock1Proxy(Socklet):
    """Relays the WebSockets of its rule to ``.toBackend`` (an ``http1Backend``)."""

    is_proxy = True

    def on_configure(self) -> None:
        self.limits = configure_limits(self)
        self.backend_name = self.configure_string("toBackend", None, required=True)
        self.via_name = self.configure_string("viaName", "gorox")
        self.backend: Http1Backend | None = None
        self._via = f"1.1 {self.via_name}"

    def on_bind(self) -> None:
        if not self.backend_name:
            return
        self.backend = bind_backend(self, self.backend_name, "an http1Backend",
                                    lambda c: isinstance(c, Http1Backend), self.block.prop_locs.get("toBackend"))

    def serve(self, req: "Request", resp: "Response") -> Any:
        return self._serve(req, resp)

    # -- the upstream handshake ------------------------------------------------------------------------
    async def _serve(self, req: "Request", resp: "Response") -> bool:
        offer = check_upgrade(req)
        backend = self.backend
        assert backend is not None
        try:
            conn = await backend.acquire(client_ip=req.client_ip)
        except BackendTimeout as e:
            raise HTTPError(504, str(e)) from None
        except BackendError as e:
            raise HTTPError(502, str(e)) from None
        try:
            key = base64.b64encode(os.urandom(16)).decode("ascii")
            conn.write(self._request_head(req, conn, key, offer.subprotocols))
            parser = ResponseParser("GET")
            try:
                rhead = await read_response_head(conn, parser)
            except BackendTimeout as e:
                raise HTTPError(504, str(e)) from None
            except (ProtocolError, BackendError) as e:
                raise HTTPError(502, f"bad handshake answer from {conn.node.name}: {e}") from None
            if rhead is None:
                raise HTTPError(502, f"{conn.node.name} closed the connection without an answer")
            if rhead.status != 101:
                await self._relay_denial(conn, parser, rhead, resp)
                return True
            upstream = self._upstream_codec(conn, rhead, key, offer.subprotocols)
            upstream.receive_data(parser.take_buffer())
            fields = {name: value for name, value in rhead.headers}
            sub = fields.get("sec-websocket-protocol")
            limits = self.limits
            agreement = negotiate(offer, sub, compression=limits.compression, max_message_size=limits.max_message_size)
            session = accept(req, resp, offer, agreement, limits, [("via", self._via)])
            session.resume()
            await _Relay(session, upstream, conn).run()
            return True
        finally:
            backend.release(conn, reusable=False)

    def _request_head(self, req: "Request", conn: BackendConn, key: str, subprotocols: list[str]) -> bytes:
        drop = _REQUEST_DROP | connection_options(req.header("connection"))
        host = req.header("host") or conn.node.name
        lines = [f"GET {req.uri} HTTP/1.1\r\nhost: {host}\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
                 f"sec-websocket-key: {key}\r\nsec-websocket-version: 13\r\n"]
        if subprotocols:
            lines.append(f"sec-websocket-protocol: {', '.join(subprotocols)}\r\n")
        if self.limits.compression:
            lines.append("sec-websocket-extensions: permessage-deflate; client_max_window_bits\r\n")
        via, xff = copy_request_headers(req.headers, drop, lines.append)
        lines.append(forwarding_headers(req, via, xff, self._via))
        lines.append("\r\n")
        return "".join(lines).encode("latin-1")

    def _upstream_codec(self, conn: BackendConn, rhead: Any, key: str, offered: list[str]) -> Connection:
        """Check the upstream's 101 (RFC 6455 §4.1) and build the client-side codec it agreed to."""
        name = conn.node.name
        fields: dict[str, list[str]] = {}
        for field_name, value in rhead.headers:
            fields.setdefault(field_name, []).append(value)
        if (rhead.upgrade or "") != "websocket":
            raise HTTPError(502, f"{name} switched to {rhead.upgrade!r}, not websocket")
        if fields.get("sec-websocket-accept") != [accept_token(key)]:
            raise HTTPError(502, f"{name} answered the WebSocket handshake with a wrong sec-websocket-accept")
        subs = comma_list(fields.get("sec-websocket-protocol", []))
        if len(subs) > 1 or (subs and subs[0] not in offered):
            raise HTTPError(502, f"{name} chose a subprotocol the client did not offer")
        limits = self.limits
        extensions: list[Any] = []
        for item in comma_list(fields.get("sec-websocket-extensions", [])):
            if item.split(";", 1)[0].strip().lower() != "permessage-deflate" or not limits.compression or extensions:
                raise HTTPError(502, f"{name} accepted an extension we did not offer: {item}")
            deflate = BoundedDeflate(limits.max_message_size)
            try:
                deflate.finalize(item)
            except ValueError:
                raise HTTPError(502, f"{name} answered permessage-deflate with bad parameters") from None
            extensions.append(deflate)
        extensions.append(MessageLimit(limits.max_message_size))
        return Connection(ConnectionType.CLIENT, extensions)

    async def _relay_denial(self, conn: BackendConn, parser: ResponseParser, rhead: Any, resp: "Response") -> None:
        """The upstream refused the upgrade: its answer (status, fields, body) goes to the client."""
        resp.status = rhead.status
        for name, value in rhead.headers:
            if name == "content-type":
                resp.content_type = value
            elif name not in _DENIAL_DROP:
                resp.headers.append((name, value))
        resp.headers.append(("via", self._via))
        body: list[bytes] = []
        size = 0
        try:
            while True:
                event = parser.next_event()
                if event is NEED_DATA:
                    parser.feed(await conn.read())
                elif type(event) is Body:
                    size += len(event.data)
                    if size > _MAX_DENIAL_BODY:
                        raise HTTPError(502, f"{conn.node.name} refused the WebSocket with a body too large to relay")
                    body.append(event.data)
                elif type(event) is EndOfMessage:
                    break
                else:
                    break
        except BackendTimeout as e:
            raise HTTPError(504, str(e)) from None
        except (ProtocolError, BackendError) as e:
            raise HTTPError(502, f"bad answer from {conn.node.name}: {e}") from None
        resp.send(b"".join(body))


class _Relay:
    """Both directions of an accepted, proxied WebSocket; ``run`` returns when both are over."""

    def __init__(self, session: WebSocketSession, upstream: Connection, conn: BackendConn) -> None:
        self.session = session
        self.upstream = upstream
        self.conn = conn
        self.parts: list[Any] = []

    def _send_up(self, event: Any) -> None:
        if self.upstream.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            try:
                self.conn.write(self.upstream.send(event))
            except (LocalProtocolError, BackendError):
                pass

    async def run(self) -> None:
        session = self.session
        pump = asyncio.get_running_loop().create_task(self._downstream())
        try:
            try:
                while (data := await session.receive()) is not None:
                    if self.upstream.state is not ConnectionState.OPEN:
                        continue  # the upstream is closing: the client hears of it soon
                    self.conn.write(self.upstream.send(TextMessage(data=data) if type(data) is str
                                                       else BytesMessage(data=data)))
                    await self.conn.drain()
            except asyncio.CancelledError:
                if not session.swallow_cancel():
                    raise
            except BackendError:
                session.close(INTERNAL_ERROR, "upstream connection lost")
            # The client's side is over: pass its close on (a client that just vanished is
            # "going away") and give the upstream a moment to answer.
            code = session.close_code or NORMAL
            self._send_up(CloseConnection(code=GOING_AWAY if code == ABNORMAL else code,
                                          reason=session.close_reason or None))
            try:
                await asyncio.wait_for(asyncio.shield(pump), CLOSE_TIMEOUT)
            except asyncio.TimeoutError:
                pass
            except asyncio.CancelledError:
                if not session.swallow_cancel():
                    raise
        finally:
            if not pump.done():
                pump.cancel()
                try:
                    await pump
                except (asyncio.CancelledError, Exception):
                    pass
            self.conn.close()

    async def _downstream(self) -> None:
        """Upstream frames to the client, until the upstream's close or its connection ends."""
        session, upstream, conn = self.session, self.upstream, self.conn
        try:
            while True:
                for event in upstream.events():
                    kind = type(event)
                    if kind is TextMessage or kind is BytesMessage:
                        self.parts.append(event.data)
                        if event.message_finished:
                            parts, self.parts = self.parts, []
                            data = parts[0] if len(parts) == 1 else ("".join(parts) if kind is TextMessage
                                                                     else b"".join(parts))
                            if session.open:
                                await session.send(data)
                    elif kind is Ping:
                        self._send_up(event.response())
                    elif kind is CloseConnection:
                        if upstream.state is ConnectionState.REMOTE_CLOSING:
                            self._send_up(event.response())   # the upstream closes: answer, tell the client
                            session.close(int(event.code), event.reason or "")
                        elif upstream.state is not ConnectionState.CLOSED:
                            # A protocol error from the upstream: fail it, and close the client.
                            self._send_up(CloseConnection(code=int(event.code)))
                            session.close(INTERNAL_ERROR, "bad frames from upstream")
                        return
                try:
                    data = await conn.read()
                except BackendTimeout:
                    continue  # a quiet upstream is fine: the client side's timers rule
                if not data:
                    session.close(INTERNAL_ERROR, "upstream connection lost")
                    return
                upstream.receive_data(data)
        except ConnectionClosed:
            pass  # the client is gone; run() passes that on
        except BackendError:
            session.close(INTERNAL_ERROR, "upstream connection lost")


__all__ = ["Sock1Proxy"]
