"""The ASGI ``http`` scope: one request served by calling the app with ``receive`` and ``send``.

The app runs in the exchange's task (the connection makes one per exchange that awaits), so
there is one task per request and no queue: ``receive`` reads the request body straight from
the connection when the app asks for it (that is the back-pressure on uploads), and ``send``
writes straight to the response, waiting while the client is slow.

Responses map onto :class:`~hemi.web.exchange.Response`:

- start + one final body message (the common case): one ``resp.send`` — head and body in one
  write, Content-Length from the body;
- start + several body messages: ``resp.echo`` per message, with the app's Content-Length
  when it gave one (``resp.set_length``), else chunked;
- ``http.response.pathsend``: ``resp.send_fd`` (sendfile);
- ``http.response.trailers``: the trailers end a chunked body (only when the client said
  ``TE: trailers``, as the extension asks; they are dropped otherwise).

The client going away: the connection fails the waits it owns and cancels the exchange's task.
``receive`` turns that into ``http.disconnect`` and ``send`` into :class:`ClientDisconnected`
(an ``OSError``, spec 2.4), so an app waiting on either sees the ASGI events rather than a
cancellation; anything else the app awaits at that moment is cancelled (the response can no
longer be delivered).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from typing import TYPE_CHECKING, Any, Awaitable

from ..errors import HTTPError

if TYPE_CHECKING:
    from ..exchange import Request, Response
    from .handlet import AsgiHandlet

log = logging.getLogger("hemi.web.asgi")

# Response phases.
START, HEAD, BODY, TRAILERS, DONE = range(5)

_NAME_OK = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+").fullmatch   # a token, lower-cased
_VALUE_BAD = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]").search     # CTLs but HTAB: no header splitting
# Names whose meaning is the server's: gorox frames the message and writes Date and Server.
_DROPPED = frozenset(("transfer-encoding", "connection", "keep-alive", "upgrade", "te", "date", "server",
                      "proxy-connection"))
_NAMES: dict[bytes, str] = {}     # lower-case name bytes -> str, for names already checked
_MAX_NAMES = 4096
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)


class ClientDisconnected(ConnectionResetError):
    """``send`` after the client has gone away (ASGI HTTP spec 2.4: an ``OSError``)."""


async def _raise(error: BaseException) -> bool:
    raise error


def _disconnect() -> dict:
    return {"type": "http.disconnect"}


def _header_name(raw: bytes) -> str:
    name = _NAMES.get(raw)
    if name is not None:
        return name
    low = raw.lower()
    if not _NAME_OK(low):
        raise RuntimeError(f"ASGI app sent an invalid header name {raw!r}")
    name = low.decode("latin-1")
    if len(_NAMES) < _MAX_NAMES:
        _NAMES[raw] = name
    return name


class HttpExchange:
    """One request/response cycle between a connection and the app."""

    __slots__ = ("handlet", "req", "resp", "stream", "phase", "length", "sent", "trailers", "keep_trailers",
                 "body_done", "body_iter", "received", "waiter", "error", "gone", "done", "failure")

    def __init__(self, handlet: "AsgiHandlet", req: "Request", resp: "Response") -> None:
        self.handlet = handlet
        self.req = req
        self.resp = resp
        self.stream = req.stream
        self.phase = START
        self.length: int | None = None   # the app's Content-Length
        self.sent = 0                    # body bytes the app has sent (checked against length)
        self.trailers = False            # the app announced trailers: the body ends with them
        self.keep_trailers = False       # ...and the client takes them
        self.body_done = not (req.chunked or req.content_length)
        self.body_iter: Any = None
        self.received = 0
        self.waiter: asyncio.Future | None = None
        self.error: HTTPError | None = None   # the request body broke (limit, framing, timeout)
        self.gone = False
        self.done: asyncio.Future | None = None    # the connection's task waits on it (slow path)
        self.failure: BaseException | None = None  # what the connection must do instead of ending normally

    # -- running the app ------------------------------------------------------------------------------
    def start(self, scope: dict) -> "bool | Awaitable[bool]":
        """Call the app. True when the response is complete already (the common case: no task
        at all); otherwise an awaitable the connection's task waits on until it is."""
        h = self.handlet
        coro = h.asgi_app(scope, self.receive, self.send)
        if h.runner.start(coro, self._app_ended) or self.phase == DONE:
            return self._outcome()
        self.done = h.loop.create_future()  # type: ignore[union-attr]
        return self._wait()

    async def _wait(self) -> bool:
        try:
            await self.done  # type: ignore[misc]
        except asyncio.CancelledError:
            # The connection gave the exchange up (the client is gone): the app runs on and
            # learns it from receive() and send().
            self._lost()
            raise
        return self._outcome()

    def _outcome(self) -> bool:
        """The connection's view once the response is complete or the app has ended."""
        failure = self.failure
        if failure is None:
            return True
        if isinstance(failure, HTTPError) or self.done is not None:
            raise failure
        # Synchronous path: an abort must reach the connection as an exchange error it handles
        # quietly (raising here would be logged again as a handler failure).
        return _raise(failure)  # type: ignore[return-value]

    def _app_ended(self, error: BaseException | None) -> None:
        """The app's coroutine has ended (``error``: what it raised). Decide what the
        connection must do if the response is not complete, and log what went wrong."""
        self._close_body()
        req = self.req
        name = self.handlet.name
        if error is not None and not isinstance(error, Exception):
            if not isinstance(error, asyncio.CancelledError):
                raise error  # KeyboardInterrupt, SystemExit: not ours to swallow
        if self.phase == DONE:
            if error is not None and not self._quiet_error(error):
                log.error("asgi %s: the app raised after its response to %s %s was complete", name, req.method,
                          req.target, exc_info=error)
        elif self.error is not None and self.phase <= HEAD and not self.resp.sent:
            self.failure = self.error  # the request body broke: the connection answers 4xx and closes
        elif self._client_gone() or (error is not None and self._quiet_error(error)):
            self.failure = ConnectionResetError("client went away")
        elif self.phase <= HEAD and not self.resp.sent:
            if error is not None:
                log.error("asgi %s: the app raised on %s %s", name, req.method, req.target, exc_info=error)
                self.failure = HTTPError(500)
            else:
                log.error("asgi %s: the app returned without sending a response to %s %s", name, req.method,
                          req.target)
                self.failure = HTTPError(500)
        else:
            if error is not None:
                log.error("asgi %s: the app raised after the response started on %s %s; closing the connection",
                          name, req.method, req.target, exc_info=error)
            else:
                log.error("asgi %s: the app returned without finishing its response to %s %s; closing the "
                          "connection", name, req.method, req.target)
            self.failure = ConnectionAbortedError("the app did not finish its response")
        self._resolve()

    def _quiet_error(self, error: BaseException) -> bool:
        """Errors that only say the client went away (our ClientDisconnected let through, or a
        cancellation after it): not the app's fault, not worth a log line."""
        return isinstance(error, (ClientDisconnected, asyncio.CancelledError)) or (
            isinstance(error, OSError) and self._client_gone())

    def _resolve(self) -> None:
        done = self.done
        if done is not None and not done.done():
            done.set_result(None)

    def _client_gone(self) -> bool:
        if not self.gone and getattr(self.stream, "closing", False):
            self.gone = True
        return self.gone

    def _lost(self) -> None:
        self.gone = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _completed(self) -> None:
        self.phase = DONE
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._resolve()

    def _close_body(self) -> None:
        it = self.body_iter
        if it is not None:
            self.body_iter = None
            try:
                it.aclose().send(None)  # suspended at a yield: closing it does not wait for anything
            except (StopIteration, RuntimeError):
                pass

    # -- receive --------------------------------------------------------------------------------------
    async def receive(self) -> dict:
        if self.phase == DONE or self.gone or self.error is not None:
            return _disconnect()
        if not self.body_done:
            return await self._read_body()
        return await self._wait_disconnect()

    async def _read_body(self) -> dict:
        req = self.req
        it = self.body_iter
        if it is None:
            it = self.body_iter = req.stream_body()
        try:
            chunk = await it.__anext__()
            self.received += len(chunk)
            more = req.content_length is None or self.received < req.content_length
            if not more:
                try:  # all of it is here: take the end now, so this message can say more_body False
                    await it.__anext__()
                except StopAsyncIteration:
                    pass
        except StopAsyncIteration:
            chunk, more = b"", False
        except HTTPError as e:  # too large, bad framing, too slow: the app is told the client left
            self.error = e
            self.body_done = True
            return _disconnect()
        except OSError:  # the connection failed the wait: the client is gone
            self.gone = True
            return _disconnect()
        if not more:
            self.body_done = True
            self.body_iter = None
        return {"type": "http.request", "body": chunk, "more_body": more}

    async def _wait_disconnect(self) -> dict:
        """The body is all read: wait until the response is complete or the client goes away
        (a client closing its side now ends the exchange, as with other ASGI servers)."""
        abort_on_eof = getattr(self.stream, "abort_on_eof", None)
        if abort_on_eof is not None:
            abort_on_eof()
        waiter = self.waiter
        if waiter is None or waiter.done():
            waiter = self.waiter = self.handlet.loop.create_future()
        await waiter
        return _disconnect()

    # -- send -----------------------------------------------------------------------------------------
    async def send(self, message: dict) -> None:
        kind = message["type"]
        phase = self.phase
        if kind == "http.response.body":
            if phase == HEAD:
                if not message.get("more_body", False) and not self.trailers:
                    await self._send_whole(message.get("body", b""))
                    return
                await self._stream(message.get("body", b""), message.get("more_body", False))
            elif phase == BODY:
                await self._stream(message.get("body", b""), message.get("more_body", False))
            elif phase == DONE or phase == TRAILERS:
                if self._client_gone():
                    raise ClientDisconnected("client went away")
                if phase == TRAILERS:
                    raise RuntimeError("ASGI app sent http.response.body after the last body message")
            else:
                raise RuntimeError("ASGI app sent http.response.body before http.response.start")
        elif kind == "http.response.start":
            if phase != START:
                raise RuntimeError("ASGI app sent http.response.start twice")
            self._start(message)
        elif kind == "http.response.trailers":
            await self._send_trailers(message)
        elif kind == "http.response.pathsend":
            await self._pathsend(message)
        else:
            raise RuntimeError(f"ASGI app sent {kind!r} in the http scope")

    def _start(self, message: dict) -> None:
        resp = self.resp
        status = message["status"]
        if type(status) is not int or not 100 <= status <= 999:
            raise RuntimeError(f"ASGI app sent an invalid status {status!r}")
        resp.status = status
        out = resp.headers
        for raw, value in message.get("headers", ()):
            name = _NAMES.get(raw) or _header_name(raw)
            if _VALUE_BAD(value):
                raise RuntimeError(f"ASGI app sent an invalid value for header {raw!r}")
            if name == "content-type":
                resp.content_type = value.decode("latin-1")
            elif name == "content-length":
                try:
                    self.length = int(value)
                except ValueError:
                    raise RuntimeError(f"ASGI app sent an invalid content-length {value!r}") from None
            elif name in _DROPPED:
                continue
            else:
                out.append((name, value.decode("latin-1")))
        if message.get("trailers", False):
            # The body ends with the trailers message. Only a client that said "TE: trailers"
            # gets them (in a chunked body); for others they are accepted and dropped.
            self.trailers = True
            te = self.req.header("te")
            self.keep_trailers = te is not None and "trailers" in te.lower()
        self.phase = HEAD

    async def _send_whole(self, body: bytes) -> None:
        """Start + one body message: the whole response in one write."""
        resp = self.resp
        length = self.length
        if resp.head_only:
            # The app's Content-Length describes the body a GET would get: keep it.
            if length is not None:
                resp.set_length(length)
            try:
                await resp.echo(b"")
                await resp.end()
            except OSError:
                self._on_write_error()
            self._completed()
            return
        if length is not None and length != len(body) and resp.status not in (204, 304) and resp.status >= 200:
            raise RuntimeError(f"ASGI app declared content-length {length} but sent {len(body)} bytes")
        if self._client_gone():
            raise ClientDisconnected("client went away")
        resp.send(body)
        self._completed()

    async def _stream(self, body: bytes, more: bool) -> None:
        resp = self.resp
        try:
            if self.phase == HEAD:
                if self.length is not None and not self.keep_trailers:
                    resp.set_length(self.length)
                self.phase = BODY
                await resp.echo(body)
            elif body:
                await resp.echo(body)
        except OSError:
            self._on_write_error()
        length = self.length
        if length is not None and not resp.head_only:
            self.sent += len(body)
            if self.sent > length:
                raise RuntimeError(f"ASGI app sent more than its content-length of {length} bytes")
            if not more and self.sent < length:
                raise RuntimeError(f"ASGI app sent {self.sent} of its content-length of {length} bytes")
        if not more:
            if self.trailers:
                self.phase = TRAILERS
                return
            await self._end()

    async def _end(self) -> None:
        try:
            await self.resp.end()
        except OSError:
            self._on_write_error()
        self._completed()

    def _on_write_error(self) -> None:
        self.gone = True
        raise ClientDisconnected("client went away")

    async def _send_trailers(self, message: dict) -> None:
        if self.phase != TRAILERS:
            if self.phase == DONE and self._client_gone():
                raise ClientDisconnected("client went away")
            raise RuntimeError("ASGI app sent http.response.trailers without trailers: true, or before the body ended")
        if self.keep_trailers:
            resp = self.resp
            for raw, value in message.get("headers", ()):
                name = _NAMES.get(raw) or _header_name(raw)
                if _VALUE_BAD(value):
                    raise RuntimeError(f"ASGI app sent an invalid value for trailer {raw!r}")
                resp.add_trailer(name, value.decode("latin-1"))
        if not message.get("more_trailers", False):
            await self._end()

    async def _pathsend(self, message: dict) -> None:
        if self.phase != HEAD:
            if self.phase == DONE and self._client_gone():
                raise ClientDisconnected("client went away")
            raise RuntimeError("ASGI app sent http.response.pathsend before http.response.start or after a body")
        path = message["path"]
        fd = os.open(path, _OPEN_FLAGS)   # a missing file is the app's error: 500, nothing is sent yet
        try:
            size = os.fstat(fd).st_size
            self.phase = BODY
            try:
                await self.resp.send_fd(fd, 0, size)
            except OSError:  # the client is gone, or reads nothing (writeTimeout)
                self._on_write_error()
        finally:
            os.close(fd)
        self._completed()
