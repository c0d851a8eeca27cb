"""The ASGI ``http`` scope: one request served by calling the app with ``receive`` and ``send``.

The app is started by the handlet's :class:`~hemi.web.asgi.runner.AppRunner`: its first step
runs at once, and most apps answer within it, so the exchange ends without a task. An app
that waits for something goes on in a host task, and the connection's task waits for the
response to be complete (not for the app to return: work after the response, such as
background tasks, does not hold the connection).

No queues: ``receive`` reads the request body from the connection when the app asks for it
(that is the back-pressure on uploads), and ``send`` writes to the response, waiting while
the client is slow. Responses map onto :class:`~hemi.web.exchange.Response`:

- start + one final body message (the common case): one ``resp.send``, head and body in one
  write, Content-Length from the body;
- start + several body messages: ``resp.echo`` per message, with the app's Content-Length
  when it gave one (``resp.set_length``), else chunked;
- ``http.response.pathsend``: ``resp.send_fd`` (sendfile);
- ``http.response.trailers``: they end a chunked body, for a client that said
  ``TE: trailers`` (as the extension asks); for others they are accepted and dropped.

The client going away: the connection fails the waits it owns and gives the exchange up; the
app (not cancelled) gets ``http.disconnect`` from ``receive`` and :class:`ClientDisconnected`
(an ``OSError``, spec 2.4) from ``send``.

What the connection must do when the app does not end the response properly is decided once,
in :meth:`HttpExchange._app_ended`: a 500 if nothing was sent yet (with a log line and the
traceback), else the connection is closed, as nothing else can tell the client the response
is broken.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Any, Awaitable

from ..errors import HTTPError
from .headers import response_head, response_name, response_value
from .runner import SUSPENDED

if TYPE_CHECKING:
    from ..exchange import Request, Response
    from .handlet import AsgiHandlet

log = logging.getLogger("hemi.web.asgi")

# Response phases: nothing yet, head given (not written), body streaming, waiting for the
# trailers, complete.
START, HEAD, BODY, TRAILERS, DONE = range(5)

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)


class ClientDisconnected(ConnectionResetError):
    """``send`` after the client has gone away (ASGI HTTP spec 2.4: an ``OSError``)."""


async def raise_later(error: BaseException) -> bool:
    raise error


async def wait_answer(exchange: Any, answered: "asyncio.Future[None]") -> bool:
    """The connection's side of an exchange whose app answers later (the HTTP and WebSocket
    scopes alike): True once ``answered`` resolves, or the failure the exchange recorded. A
    cancel means the client left: the app runs on and learns it from receive() and send()."""
    try:
        await answered
    except asyncio.CancelledError:
        exchange.gone = True
        exchange._wake()
        raise
    if exchange.failure is not None:
        raise exchange.failure
    return True


def _disconnect() -> dict:
    return {"type": "http.disconnect"}


class HttpExchange:
    """One request/response cycle between a connection and the app."""

    # Hot attributes in slots; the rest are class defaults that only an exchange needing them
    # overrides (in its instance dict): the common request sets five attributes, not sixteen.
    __slots__ = ("handlet", "req", "resp", "phase", "waiter", "done", "__dict__")

    length: int | None = None             # the app's Content-Length
    sent = 0                              # body bytes streamed (checked against length)
    trailers = False                      # the app announced trailers: they end the body
    keep_trailers = False                 # ...and the client takes them
    body_done = False                     # the last http.request message has been delivered
    body_iter: Any = None
    received = 0
    error: HTTPError | None = None        # the request body broke (limit, framing, timeout)
    gone = False                          # the client went away
    failure: BaseException | None = None  # what the connection must do instead of ending normally

    def __init__(self, handlet: "AsgiHandlet", req: "Request", resp: "Response") -> None:
        self.handlet = handlet
        self.req = req
        self.resp = resp
        self.phase = START
        self.waiter: asyncio.Future | None = None  # receive() waiting for the end
        self.done: asyncio.Future | None = None    # the connection's task waits on it (slow path)

    @property
    def stream(self) -> Any:
        return self.req.stream

    # -- running the app ------------------------------------------------------------------------------
    def start(self, scope: dict) -> "bool | Awaitable[bool]":
        """Call the app. True when the response is complete already (no task at all);
        otherwise an awaitable for the connection's task, done when the response is."""
        h = self.handlet
        error = h.runner.start(h.asgi_app(scope, self.receive, self.send), self._app_ended)  # type: ignore[union-attr]
        if error is SUSPENDED:
            if self.phase != DONE:
                done = self.done = h.loop.create_future()  # type: ignore[union-attr]
                return wait_answer(self, done)
        elif error is not None or self.phase != DONE or self.body_iter is not None:
            self._app_ended(error)
        failure = self.failure
        if failure is None:
            return True
        if isinstance(failure, HTTPError):
            raise failure
        return raise_later(failure)  # an abort: the connection's exchange task handles it quietly

    def _app_ended(self, error: BaseException | None) -> None:
        """The app's coroutine has ended (``error``: what it raised). Decide what the
        connection must do if the response is not complete, and log what went wrong."""
        if self.body_iter is not None:
            self._close_body()
        if error is None and self.phase == DONE:
            return
        req = self.req
        name = self.handlet.name
        if error is not None and not isinstance(error, Exception) and not isinstance(error, asyncio.CancelledError):
            raise error  # KeyboardInterrupt, SystemExit: not ours to swallow
        if self.phase == DONE:
            if not self._quiet(error):  # type: ignore[arg-type]
                log.error("asgi %s: the app raised after its response to %s %s was complete", name, req.method,
                          req.target, exc_info=error)
            return
        if self.error is not None and self.phase <= HEAD:
            self.failure = self.error  # the request body broke: the connection answers 4xx and closes
        elif self._client_gone() or (error is not None and self._quiet(error)):
            self.failure = ConnectionResetError("client went away")
        elif self.phase <= HEAD:
            if error is not None:
                log.error("asgi %s: the app raised on %s %s", name, req.method, req.target, exc_info=error)
            else:
                log.error("asgi %s: the app returned without sending a response to %s %s", name, req.method,
                          req.target)
            self.failure = HTTPError(500)
        else:
            if error is not None:
                log.error("asgi %s: the app raised after its response started on %s %s; closing the connection",
                          name, req.method, req.target, exc_info=error)
            else:
                log.error("asgi %s: the app returned before finishing its response to %s %s; closing the "
                          "connection", name, req.method, req.target)
            self.failure = ConnectionAbortedError("the app did not finish its response")
        self._resolve()

    def _quiet(self, error: BaseException) -> bool:
        """Errors that only say the client went away (our ClientDisconnected let through, or a
        cancellation): not the app's fault, not worth a log line (spec 2.4)."""
        return isinstance(error, (ClientDisconnected, asyncio.CancelledError)) or (
            isinstance(error, OSError) and self._client_gone())

    def _client_gone(self) -> bool:
        if not self.gone and getattr(self.stream, "closing", False):
            self.gone = True
        return self.gone

    def _resolve(self) -> None:
        done = self.done
        if done is not None and not done.done():
            done.set_result(None)

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _completed(self) -> None:
        self.phase = DONE
        if self.waiter is not None:
            self._wake()
        if self.done is not None:
            self._resolve()

    def _close_body(self) -> None:
        it, self.body_iter = self.body_iter, None
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
        return await self._wait_end()

    async def _read_body(self) -> dict:
        req = self.req
        if not (req.chunked or req.content_length):
            self.body_done = True
            return {"type": "http.request", "body": b"", "more_body": False}
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

    async def _wait_end(self) -> dict:
        """The body is all read: wait until the response is complete or the client goes away
        (a client closing its side now ends the exchange, as with other ASGI servers)."""
        abort_on_eof = getattr(self.stream, "abort_on_eof", None)
        if abort_on_eof is not None:
            abort_on_eof()
        waiter = self.waiter
        if waiter is None or waiter.done():
            waiter = self.waiter = self.handlet.loop.create_future()  # type: ignore[union-attr]
        await waiter
        return _disconnect()

    # -- send -----------------------------------------------------------------------------------------
    async def send(self, message: dict) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            if (self.phase == HEAD and not message.get("more_body", False) and not self.trailers
                    and not self.resp.head_only):
                # Start + one body message: the whole response in one write.
                body = message.get("body", b"")
                length = self.length
                if length is not None and length != len(body) and self.resp.status >= 200 \
                        and self.resp.status not in (204, 304):
                    raise RuntimeError(f"ASGI app declared content-length {length} but sent {len(body)} bytes")
                if self.gone:
                    raise ClientDisconnected("client went away")
                self.resp.send(body)
                self.phase = DONE
                if self.waiter is not None or self.done is not None:
                    self._completed()
                return
            await self._body(message)
        elif kind == "http.response.start":
            if self.phase != START:
                raise RuntimeError("ASGI app sent http.response.start twice")
            resp = self.resp
            status = message["status"]
            if type(status) is not int or not 100 <= status <= 999:
                raise RuntimeError(f"ASGI app sent an invalid status {status!r}")
            headers = message.get("headers")
            if headers:
                fields, ctype, length = response_head(headers)
                if fields:
                    resp.headers.extend(fields)
                if ctype is not None:
                    resp.content_type = ctype
                if length is not None:
                    self.length = length
            resp.status = status
            if message.get("trailers", False):
                self._expect_trailers()
            self.phase = HEAD
        elif kind == "http.response.trailers":
            await self._trailers(message)
        elif kind == "http.response.pathsend":
            await self._pathsend(message)
        else:
            raise RuntimeError(f"ASGI app sent {kind!r} in the http scope")

    def _expect_trailers(self) -> None:
        """The body ends with the trailers message. Only a client that said "TE: trailers"
        gets them (in a chunked body); for others they are accepted and dropped."""
        self.trailers = True
        te = self.req.header("te")
        self.keep_trailers = te is not None and "trailers" in te.lower()

    async def _body(self, message: dict) -> None:
        """Any body message but the one-message response: stream it."""
        phase = self.phase
        if phase != HEAD and phase != BODY:
            if self._client_gone():
                raise ClientDisconnected("client went away")
            if phase == START:
                raise RuntimeError("ASGI app sent http.response.body before http.response.start")
            if phase == TRAILERS:
                raise RuntimeError("ASGI app sent http.response.body after its last body message")
            return  # after the response is complete: ignored, as the spec says
        body = message.get("body", b"")
        more = message.get("more_body", False)
        resp = self.resp
        if self.gone:
            raise ClientDisconnected("client went away")
        try:
            if phase == HEAD:
                if self.length is not None and not self.keep_trailers:
                    resp.set_length(self.length)
                self.phase = BODY
                await resp.echo(body)  # sends the head
            elif body:
                await resp.echo(body)
        except OSError:
            self._write_failed()
        length = self.length
        if length is not None and not resp.head_only:
            self.sent += len(body)
            if self.sent > length:
                raise RuntimeError(f"ASGI app sent more than its content-length of {length} bytes")
            if not more and self.sent < length:
                raise RuntimeError(f"ASGI app sent {self.sent} bytes of its content-length of {length}")
        if not more:
            if self.trailers:
                self.phase = TRAILERS
            else:
                await self._end()

    async def _end(self) -> None:
        try:
            await self.resp.end()
        except OSError:
            self._write_failed()
        self._completed()

    def _write_failed(self) -> None:
        self.gone = True
        raise ClientDisconnected("client went away")

    async def _trailers(self, message: dict) -> None:
        if self.phase != TRAILERS:
            if self._client_gone():
                raise ClientDisconnected("client went away")
            if self.phase == DONE:
                return
            raise RuntimeError("ASGI app sent http.response.trailers before its last body message, "
                               "or without trailers: true in http.response.start")
        if self.keep_trailers:
            resp = self.resp
            for raw, value in message.get("headers", ()):
                resp.add_trailer(response_name(raw)[0], response_value(value))
        if not message.get("more_trailers", False):
            await self._end()

    async def _pathsend(self, message: dict) -> None:
        if self.phase != HEAD:
            if self._client_gone():
                raise ClientDisconnected("client went away")
            raise RuntimeError("ASGI app sent http.response.pathsend before http.response.start or after a body")
        if self.gone:
            raise ClientDisconnected("client went away")
        fd = os.open(message["path"], _OPEN_FLAGS)  # a missing file is the app's error: 500, nothing sent yet
        try:
            size = os.fstat(fd).st_size
            self.phase = BODY
            try:
                await self.resp.send_fd(fd, 0, size)
            except OSError:  # the client is gone, or reads nothing (writeTimeout)
                self._write_failed()
        finally:
            os.close(fd)
        self._completed()
