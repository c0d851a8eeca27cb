"""HTTP/1.x connections: the asyncio protocol around the sans-IO codec.

Requests on one connection are answered in order. A handler that completes synchronously is
answered inline from ``data_received`` (no task, no future): that is the fast path that keeps a
fixed-text or cached-file response cheap. A handler that awaits runs in one task per exchange,
and reading is paused while its body is not being consumed (back-pressure). Every way out —
timeout, bad bytes, client gone, shutdown — goes through ``_close`` once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from ...core.memo import Memo
from ...net.batch import Holder, batch_for
from ..deferred import Deferred
from ..errors import HTTPError, error_page, reason_of
from ..exchange import Request, Response, TEXT_HTML, split_authority
from ..paths import origin_form
from .codec import (NEED_DATA, PAUSED, CLOSED, Body, EndOfMessage, ProtocolError, RequestHead, RequestParser,
                    encode_chunk, encode_last_chunk)

if TYPE_CHECKING:
    from ...net.gate import Gate
    from ..server import WebServer

log = logging.getLogger("hemi.web.http1")

HIGH_WATER = 1 << 20          # pause reading when this much is buffered and unread
DISCARD_LIMIT = 256 << 10     # unread request body we are willing to read and drop to keep the connection
LINGER = 1.0                  # seconds to keep dropping input after an error reply before closing
_STATUS_LINES: dict[int, bytes] = {}
# "content-type: <value>\r\n" for the few values responses use, and "content-length: <n>\r\n"
# for the lengths sent before (a site's pages and files repeat theirs): rendered once each.
_ctype_line = Memo(lambda ctype: f"content-type: {ctype}\r\n".encode("latin-1", "replace"), 256).__getitem__
_length_line = Memo(lambda n: b"content-length: %d\r\n" % n, 4096).__getitem__


def status_line(status: int) -> bytes:
    """The status line we send (always HTTP/1.1, whatever the request's version: RFC 9110 §2.5)."""
    line = _STATUS_LINES.get(status)
    if line is None:
        line = f"HTTP/1.1 {status} {reason_of(status)}\r\n".encode("latin-1")
        _STATUS_LINES[status] = line
    return line


class Http1Conn(Holder, asyncio.Protocol):
    __slots__ = ("loop", "server", "gate", "transport", "parser", "peer", "tls", "req", "resp", "task", "deadline",
                 "closing", "draining", "body_done", "trailers_in", "continue_sent", "out_chunked", "out_close",
                 "write_paused", "read_paused", "_drain_waiter", "_body_waiter", "requests", "clock",
                 "discarding", "timeout_kind", "send_started", "eof", "expect_pending", "discarded", "out_linger", "processing",
                 "eof_aborts", "upgraded", "scheme", "authority", "host_port", "host_app", "held", "held_bytes", "batch",
                 "_on_answer")

    def __init__(self, server: "WebServer", gate: "Gate") -> None:
        self.server = server
        self.gate = gate
        self.transport: Any = None
        self.parser = RequestParser(max_head_size=server.max_head_size, max_headers=server.max_headers,
                                    max_uri_size=server.max_uri_size)
        self.peer: tuple[str, int] = ("", 0)
        self.tls = gate.ssl is not None
        self.req: Request | None = None
        self.resp: Response | None = None
        self.task: asyncio.Task | None = None
        self.deadline = 0.0
        self.timeout_kind = ""
        self.closing = False
        self.draining = False
        self.body_done = True
        self.trailers_in: list[tuple[str, str]] = []
        self.continue_sent = False
        self.out_chunked = False
        self.out_close = False
        self.out_linger = False
        self.write_paused = False
        self.read_paused = False
        self._drain_waiter: asyncio.Future | None = None
        self._body_waiter: asyncio.Future | None = None
        self.requests = 0
        self.clock = server.stage.clock
        # Cached: asyncio.get_running_loop() costs a getpid() syscall per call on Python 3.11.
        self.loop = asyncio.get_running_loop()
        # Responses are held to the end of the loop iteration (see hemi.net.batch): anything
        # else that touches the transport calls flush() first.
        self.held: list[bytes] | None = None
        self.held_bytes = 0
        self.batch = batch_for(self.loop)
        self.discarding = False
        self.discarded = 0
        self.send_started = 0.0
        self.eof = False
        self.expect_pending = False  # the client waits for "100 Continue" before sending its body
        self.processing = False      # _process is on the stack: exchanges that end inline loop, not recurse
        self.eof_aborts = False      # the client's EOF gives the exchange up (abort_on_eof)
        self.upgraded: asyncio.BaseProtocol | None = None  # the protocol that took the connection over
        self._on_answer = self._answered  # bound once: a proxied exchange listens with it
        # Per-connection caches of what every request on it would compute the same way.
        self.scheme = server.scheme_for(self.tls)
        self.authority: str | None = None
        self.host_port: tuple[str, str] = ("", "")
        self.host_app: Any = self._NO_APP

    # -- asyncio.Protocol --------------------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if not self.gate.on_open(self):
            transport.abort()
            self.closing = True
            return
        self.server.connections_total += 1
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer = (peer[0], peer[1])
        else:
            self.peer = ("unix", 0)
        self._wait_head()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.parser.feed(data)
        if self.req is None:
            self._process()
        elif self.discarding:
            self._discard()
        else:
            waiter = self._body_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            if self.parser.buffered > HIGH_WATER and not self.read_paused:
                self.read_paused = True
                self.transport.pause_reading()

    def eof_received(self) -> bool:
        if self.closing:
            return False  # a lingering close ends as soon as the client is done sending
        if self.eof_aborts and self.req is not None:
            self._close(abort=True)
            return False
        self.eof = True
        self.data_received(b"")
        # Keep the socket open for writing: a pipelining client may half-close after its last request.
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.held = None
        self.gate.on_close(self)
        for waiter in (self._body_waiter, self._drain_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_exception(ConnectionResetError("client went away"))
                waiter.exception()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.req is not None:
            self.req.cleanup()

    def pause_writing(self) -> None:
        self.write_paused = True
        self._set_deadline(self.server.write_timeout, "write")

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.timeout_kind == "write":
            self.deadline = 0.0
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self.req is None and not self.closing:
            self._next()  # pipelined requests held back while the client was not reading

    # -- timeouts and closing ----------------------------------------------------------------------------
    def _set_deadline(self, seconds: float, kind: str) -> None:
        self.deadline = self.loop.time() + seconds
        self.timeout_kind = kind

    def _wait_head(self) -> None:
        self._set_deadline(self.server.read_timeout, "head")

    def on_timeout(self) -> None:
        """Called by the server's sweeper when the deadline has passed."""
        kind = self.timeout_kind
        self.deadline = 0.0
        self.flush()
        if self.closing:  # lingering, or flushing a last reply the client does not read: time is up
            transport = self.transport
            if transport.get_write_buffer_size():
                transport.abort()
            else:
                transport.close()
            return
        if kind == "head":
            if self.parser.buffered and self.req is None:
                self._reject(408, "request head not received in time")
            else:
                self._close(abort=self.transport.get_write_buffer_size() > 0)
        elif kind == "discard":  # the client stalls in a body nobody reads
            self._close(abort=True)
        elif kind == "body":
            waiter = self._body_waiter
            if waiter is not None and not waiter.done():
                waiter.set_exception(HTTPError(408, "request content not received in time", close=True))
            else:
                self._close(abort=True)
        else:  # write: the client does not read what we send
            self._close(abort=True)

    def drain(self, idle_grace: float = 0.0) -> None:
        """Graceful shutdown: finish the exchange in progress, then close. An idle connection
        is closed now, or, when its stage retires for a reload, once it has been idle for
        ``idle_grace`` seconds: its client may be sending a request at this very moment, and a
        close would fail it; that request is answered (with ``connection: close``) instead."""
        self.draining = True
        upgraded_drain = getattr(self.upgraded, "drain", None)
        if upgraded_drain is not None and not self.closing:
            upgraded_drain()  # e.g. a WebSocket says "going away" and closes when its client answers
            return
        if self.req is None and not self.closing:
            if idle_grace > 0:
                self._set_deadline(idle_grace, "head")
            else:
                self._close()

    def _close(self, abort: bool = False) -> None:
        if self.closing:
            return
        self.deadline = 0.0
        if abort:
            self.held = None
        else:
            self.flush()
        self.closing = True
        transport = self.transport
        if transport is not None:
            if abort:
                transport.abort()
            else:
                transport.close()  # sends what is buffered first...
                if transport.get_write_buffer_size():
                    self._set_deadline(self.server.write_timeout, "write")  # ...if the client reads it

    def _linger(self) -> None:
        """Close after a reply while the client may still be sending: shut our side down, drop
        what arrives for up to LINGER seconds (or until the client's EOF), then close. Closing
        with unread input at once makes the kernel send a RST, which can destroy the reply
        before the client has read it."""
        if self.closing:
            return
        transport = self.transport
        if self.eof or not transport.can_write_eof():  # TLS cannot half-close; its close_notify ends the reply
            self._close()
            return
        self.flush()
        self.closing = True
        transport.write_eof()
        if self.read_paused:
            self.read_paused = False
            transport.resume_reading()
        self._set_deadline(LINGER, "linger")

    def _close_after_reply(self) -> None:
        """Close once the reply is written; linger when input is still unread."""
        if self.body_done and not self.out_linger and not self.parser.buffered:
            self._close()
        else:
            self._linger()

    def _reject(self, status: int, reason: str) -> None:
        """Answer a request we cannot parse or accept, and close: nothing after it can be trusted."""
        body = error_page(status, reason)
        head = [status_line(status), self.clock.date_line, b"content-type: text/html; charset=utf-8\r\n",
                b"content-length: %d\r\nconnection: close\r\n" % len(body), self._server_line(), b"\r\n", body]
        if status == 405:
            head.insert(1, b"allow: GET\r\n")
        self.write_through(b"".join(head))
        self.out_close = True
        self._linger()

    def _server_line(self) -> bytes:
        return self.server.server_line

    # -- reading requests ---------------------------------------------------------------------------------
    def _process(self) -> None:
        """Parse and answer requests from the buffer until one needs to wait.

        Exchanges answered inline end here and the loop takes the next pipelined request (no
        recursion, however many are buffered). It stops while the client does not read our
        replies, so pipelining cannot make us buffer unbounded output."""
        parser = self.parser
        self.processing = True
        try:
            while not self.closing and self.req is None:
                if self.write_paused:
                    self._hold_reading()
                    return
                if not parser.buffered and not self.eof:
                    return  # the usual end: nothing more in the buffer
                try:
                    event = parser.next_event()
                except ProtocolError as e:
                    self._reject(e.status, e.reason)
                    return
                if event is NEED_DATA:
                    return
                if event is PAUSED:
                    parser.start_next()
                    continue
                if event is CLOSED:
                    self._close()
                    return
                if type(event) is RequestHead:
                    self._start_exchange(event)
                    if self.upgraded is not None:
                        return  # the exchange took the connection over (an accepted Upgrade)
                else:  # pragma: no cover - the codec never yields body events while idle
                    self._reject(400, "unexpected data")
                    return
        finally:
            self.processing = False

    def _hold_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def _start_exchange(self, head: RequestHead) -> None:
        server = self.server
        self.requests += 1
        server.requests_total += 1
        try:
            req = self._make_request(head)
        except HTTPError as e:
            self._reject(e.status, e.reason)
            return
        resp = Response(req, self)
        self.req, self.resp = req, resp
        self.continue_sent = False
        self.out_chunked = False
        self.expect_pending = head.expect_continue
        self.out_close = not head.keep_alive or self.draining or (
            server.max_streams_per_conn > 0 and self.requests >= server.max_streams_per_conn) or (
            head.method == "CONNECT")  # unless a tunnel takes the connection, nothing HTTP follows a CONNECT
        if self.trailers_in:  # the last request's (an empty list stays: nobody adds to it)
            self.trailers_in = []
        if head.chunked or head.content_length:
            self.body_done = False
            self.discarded = 0
            if head.content_length is not None and head.content_length > server.max_content_size:
                self._finish_with_error(HTTPError(417 if head.expect_continue else 413, "request content too large",
                                                  close=True))
                return
        else:
            self.body_done = True
            self.parser.end_bodyless()  # only resets its state: nothing is parsed while self.req is set
        self.deadline = 0.0
        app = self.host_app
        if app is self._NO_APP:  # a Host not seen before on this connection
            app = self._find_host_app()
        if app is None:
            resp.send_error(404, "no app serves this hostname")
            self._end_exchange()
            return
        req.app = app
        try:
            result = app.dispatch(req, resp)
        except Exception as e:
            self._handler_failed(e, req)
            return
        if result is True:
            self._end_exchange()
        else:
            self._wait_for(result)

    def _handler_failed(self, e: Exception, req: Request) -> None:
        """A handler raised before answering (called from its ``except``, so the traceback is
        still there to log)."""
        if isinstance(e, HTTPError):
            self._finish_with_error(e)
        else:
            log.exception("handler failed on %s %s", req.method, req.target)
            self._finish_with_error(HTTPError(500))

    def _wait_for(self, result: Any) -> None:
        """The handler answers later: a Deferred or a future settles (no task needed), anything
        else awaitable runs in the exchange's task. A Deferred tells us within the callback
        that settles it (deferred.py); a future's callback runs one loop pass later."""
        if isinstance(result, Deferred):
            self.task = result  # type: ignore[assignment]  # cancelled as a task is when the client leaves
            if result.eof_cancels:
                if self.eof:  # self.abort_on_eof(), inlined: every proxied request passes here
                    self._close(abort=True)
                else:
                    self.eof_aborts = True
            result.listen(self._on_answer)
        elif isinstance(result, asyncio.Future):
            self.task = result  # type: ignore[assignment]  # cancelled as a task is when the client leaves
            result.add_done_callback(self._settled)
        else:
            self.task = self.loop.create_task(self._run(result))

    def _dispatch(self, app: Any, req: Request, resp: Response) -> None:
        """Run the rules after the one whose future did not answer (``_start_exchange`` runs the
        first ones inline) and finish the exchange as it does."""
        try:
            result = app.fall_through(req, resp)
        except Exception as e:
            self._handler_failed(e, req)
            return
        if result is True:
            self._end_exchange()
        else:
            self._wait_for(result)

    def _answered(self, answer: Deferred) -> None:
        """A Deferred's outcome, as soon as it is set: the common one (answered, all of the
        response on its way) ends the exchange here; anything else is read as a future's."""
        if answer.value is True and self.task is answer and answer.error is None:
            resp = self.resp
            if resp is not None and resp.finished:
                self.task = None
                self._end_exchange()
                return
        self._settled(answer)

    def _settled(self, fut: "asyncio.Future[Any]") -> None:
        """The handler's future is done: end the exchange here when it answered cleanly; a
        result that did not answer lets the later rules try; anything else (errors, a
        streamed response to end) goes to :meth:`_run`, which handles it as for a task."""
        if self.task is not fut:
            return
        self.task = None
        if fut.cancelled():
            if not self.closing:  # as _run: a cancel not caused by the client leaving ends nothing
                self.task = self.loop.create_task(self._run(fut))
            return
        if fut.exception() is None:
            result = fut.result()
            req, resp = self.req, self.resp
            if req is not None and resp is not None:
                if result is True or (result is None and resp.sent):
                    if not resp.sent or resp.finished:
                        self._end_exchange()
                        return
                else:
                    self._dispatch(req.app, req, resp)
                    return
        self.task = self.loop.create_task(self._run(fut))

    def _make_request(self, head: RequestHead) -> Request:
        target = head.target
        server = self.server
        if target[0] == "/":
            encoded, query, path = origin_form(target)
            authority = head.host or ""
            scheme = self.scheme
            absolute = False
        elif target == "*":
            if head.method != "OPTIONS":
                raise HTTPError(400, "'*' is only for OPTIONS")
            encoded, query, path, absolute = "/", "", "/", False
            authority, scheme = head.host or "", server.scheme_for(self.tls)
        elif head.method == "CONNECT":
            # authority-form "host:port" (RFC 9110 §9.3.6): a tunnel, opened by a forward
            # http1Proxy with .allowConnect; any other handler refuses it (405).
            host, sep, port = target.rpartition(":")
            if not sep or not host or not port.isdigit() or "/" in target or "@" in target:
                raise HTTPError(400, "bad CONNECT target, expected host:port")
            encoded, query, path, absolute = "/", "", "/", False
            authority, scheme = target, server.scheme_for(self.tls)
        else:
            scheme_part, sep, rest = target.partition("://")
            scheme_part = scheme_part.lower()
            if not sep or scheme_part not in ("http", "https"):
                raise HTTPError(400, "bad request target")
            slash = rest.find("/")
            qmark = rest.find("?")
            end = min(i for i in (slash, qmark, len(rest)) if i >= 0)
            authority = rest[:end]
            if not authority or "@" in authority:
                raise HTTPError(400, "bad authority in request target")
            path_part = rest[end:]
            if not path_part.startswith("/"):
                path_part = "/" + path_part
            encoded, query, path = origin_form(path_part)
            scheme = server.scheme_for(self.tls, scheme_part)
            absolute = True
        if authority != self.authority:
            # Keep-alive clients repeat their Host: split it (and find its app) once per connection.
            self.authority = authority
            self.host_port = split_authority(authority)
            self.host_app = self._NO_APP
        hostname, colon_port = self.host_port
        req = Request(head.method, target, head.version, scheme, head.headers, authority, encoded, path, query,
                      self.peer, self, hostname, colon_port, server, head.content_length, head.chunked,
                      head.keep_alive, time.time())
        if head.expect_continue:
            req.expect_continue = True
        if head.upgrade is not None:
            req.upgrade = head.upgrade
        if absolute or target == "*":
            req.is_asterisk = target == "*" or (head.method == "OPTIONS" and encoded == "/" and
                                                target.rstrip("/").count("/") == 2)
            req.is_absolute = absolute
        return req

    _NO_APP: Any = object()

    def _find_host_app(self) -> "Any":
        """Look up the app for the current request's Host and keep it for the connection
        (``_make_request`` keeps ``host_port`` and resets ``host_app`` to _NO_APP when the Host
        changes, so this runs once per Host on a connection)."""
        app = self.host_app = self.server.find_app(self.host_port[0])
        return app

    async def _run(self, pending: Any) -> None:
        try:
            await pending
        except asyncio.CancelledError:
            if self.closing:
                return
            raise
        except HTTPError as e:
            self._finish_with_error(e)
            return
        except (ConnectionError, OSError) as e:
            if not self.closing:
                log.info("exchange with %s broke: %s", self.peer[0], e)
                self._close(abort=True)
            return
        except Exception:
            log.exception("handler failed on %s %s", self.req.method if self.req else "?",
                          self.req.target if self.req else "?")
            self._finish_with_error(HTTPError(500))
            return
        finally:
            self.task = None
        resp = self.resp
        if resp is not None and resp.sent and not resp.finished:
            try:
                await resp.end()
            except (ConnectionError, OSError):
                self._close(abort=True)
                return
        self._end_exchange()

    def _finish_with_error(self, e: HTTPError) -> None:
        resp = self.resp
        if resp is None or resp.sent:
            # The head is gone: the only honest signal left is to cut the connection.
            self._close(abort=True)
            return
        if e.close:
            self.out_close = True
            self.out_linger = True  # the client may still be sending: drop it, then close
        resp.status = e.status
        resp.revisers = []
        resp.headers = list(e.headers)
        resp.raw_head = b""
        resp.content_type = TEXT_HTML
        resp.send(error_page(e.status, e.reason))
        self._end_exchange()

    def _end_exchange(self) -> None:
        req, resp = self.req, self.resp
        if req is None or resp is None:
            return
        if not resp.sent:
            resp.send(b"")  # a handler that said "handled" but sent nothing: an empty 200, never a hang
        app = req.app
        if app is not None and app.access_log is not None:
            app.log_request(req, resp, time.time())
        if req.spool_path is not None or req._uploads:
            req.cleanup()
        self.req = self.resp = None
        self.eof_aborts = False
        if self.closing:
            return
        if self.out_close:
            self._close_after_reply()
            return
        if not self.body_done:
            self.req = req  # keep the slot busy until the unread body is dropped
            self.discarding = True
            self._set_deadline(self.server.read_timeout, "discard")
            self._discard()
            return
        self._next()

    def _next(self) -> None:
        """The connection is free for the next request."""
        if self.write_paused:
            # The client does not read what we send: read no more of its requests until it does
            # (resume_writing comes back here); the write deadline stays armed meanwhile.
            self._hold_reading()
            return
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        # _wait_head(), inlined: this runs once per request.
        self.deadline = self.loop.time() + self.server.read_timeout
        self.timeout_kind = "head"
        if not self.processing and (self.parser.buffered or self.eof):
            self._process()

    def _discard(self) -> None:
        """Read and drop the rest of a body the handler did not read, to reuse the connection."""
        parser = self.parser
        while True:
            try:
                event = parser.next_event()
            except ProtocolError:
                self._linger()  # the reply is out; a broken body ends the connection, unparsed
                return
            if event is NEED_DATA:
                if self.read_paused:
                    self.read_paused = False
                    self.transport.resume_reading()
                return
            if type(event) is Body:
                self.trailers_in = []
                self.discarded += len(event.data)
                if self.discarded > DISCARD_LIMIT or self.req is None:
                    self._linger()  # too much to drop: the client learns from the close
                    return
                continue
            # EndOfMessage
            self.discarding = False
            self.body_done = True
            self.req = None
            self._next()
            return

    # -- Stream: what Request and Response call -------------------------------------------------------
    @property
    def version(self) -> str:
        return self.req.version if self.req is not None else "1.1"

    def trailers(self) -> list[tuple[str, str]]:
        return self.trailers_in

    async def read_body(self) -> bytes | None:
        if self.body_done:
            return None
        loop = self.loop
        started = False
        while True:
            try:
                event = self.parser.next_event()
            except ProtocolError as e:
                self.body_done = True
                raise HTTPError(e.status, e.reason, close=True) from None
            if type(event) is Body:
                if self.read_paused and self.parser.buffered < HIGH_WATER // 2:
                    self.read_paused = False
                    self.transport.resume_reading()
                return event.data
            if type(event) is EndOfMessage:
                self.body_done = True
                self.trailers_in = event.trailers
                if self.timeout_kind == "body":
                    self.deadline = 0.0
                return None
            # NEED_DATA: wait for the client.
            if self.closing:
                raise ConnectionResetError("client went away")
            if self.expect_pending:
                self.expect_pending = False
                if not self.resp.sent:  # type: ignore[union-attr]
                    self.continue_sent = True
                    self.write_through(b"HTTP/1.1 100 Continue\r\n\r\n")
            if not started:
                started = True
                if self.timeout_kind != "body":
                    self._set_deadline(self.server.recv_timeout, "body")
            if self.read_paused:
                self.read_paused = False
                self.transport.resume_reading()
            waiter = self._body_waiter = loop.create_future()
            try:
                await waiter
            finally:
                self._body_waiter = None

    raw_heads = True  # send_head takes pre-rendered field lines (Response.raw_head)

    def send_head(self, status: int, headers: list[tuple[str, str]], length: int | None, *, body: bytes = b"",
                  end: bool = False, raw: bytes = b"") -> None:
        req = self.req
        version = req.version if req is not None else "1.1"
        # The head is joined from a fixed set of pieces, absent ones empty (no list to grow).
        line = _STATUS_LINES.get(status) or status_line(status)
        if not headers:
            fields = b""
        elif len(headers) == 1 and headers[0][0] == "content-type":  # the commonest: a content type alone
            fields = _ctype_line(headers[0][1])
        else:
            fields = "".join([f"{name}: {value}\r\n" for name, value in headers]).encode("latin-1", "replace")
        framing = b""
        if status >= 200 and status != 204 and status != 304:
            if length is not None:
                framing = _length_line(length)
            elif not end:
                if version == "1.1":
                    framing = b"transfer-encoding: chunked\r\n"
                    # A HEAD response has no body at all, not even the last chunk.
                    self.out_chunked = req is None or req.method != "HEAD"
                elif req is None or req.method != "HEAD":
                    self.out_close = True  # HTTP/1.0 without a length: the close ends the body
        if self.expect_pending and not self.body_done:
            # The client still waits for "100 Continue" and may never send the body: we cannot
            # tell its next request from body bytes, so this connection ends with this reply.
            self.expect_pending = False
            self.out_close = True
        if self.draining:
            self.out_close = True
        connection = b"connection: close\r\n" if self.out_close else (
            b"connection: keep-alive\r\n" if version == "1.0" else b"")
        self.hold(b"".join((line, fields, raw, self.clock.date_line, framing, connection, self.server.server_line_end,
                            body)))
        if not end:
            self.send_started = self.loop.time()

    async def _drain(self) -> None:
        self.flush()
        if self.closing:
            raise ConnectionResetError("client went away")
        if self.write_paused:
            waiter = self._drain_waiter = self.loop.create_future()
            try:
                await waiter
            finally:
                self._drain_waiter = None
        if self.loop.time() - self.send_started > self.server.send_timeout:
            self._close(abort=True)
            raise TimeoutError("response not sent within sendTimeout")

    async def write(self, data: bytes) -> None:
        if self.closing:
            raise ConnectionResetError("client went away")
        self.write_through(encode_chunk(data) if self.out_chunked else data)
        if self.write_paused:
            await self._drain()

    async def end(self, trailers: list[tuple[str, str]]) -> None:
        if self.out_chunked:
            self.out_chunked = False
            if not self.closing:
                self.write_through(encode_last_chunk(trailers))

    async def sendfile(self, fd: int, offset: int, count: int) -> None:
        from ...net.sendfile import send_file
        await self._drain()
        await send_file(self.transport, fd, offset, count, self._drain, self.server.write_timeout)

    def abort_on_eof(self) -> None:
        """Give this exchange up if the client closes its side before it ends: the connection
        is closed and the handler's task cancelled. What a proxy wants (nginx's default): the
        upstream work stops when nobody waits for it. Other handlers answer a half-closed client."""
        if self.eof:
            self._close(abort=True)
        else:
            self.eof_aborts = True

    def take_over(self, protocol: asyncio.BaseProtocol) -> tuple[Any, bytes]:
        """End HTTP on this connection (an accepted Upgrade): ``protocol`` receives the
        transport's events from now on and must pass its ``connection_lost`` on to this
        connection (which then leaves its gate and cancels the handler's task). Returns the
        transport and the bytes the client sent past the request; the caller writes the 101."""
        rest = self.parser.take_buffer()
        self.upgraded = protocol
        self.req = self.resp = None  # no exchange any more: a shutdown's drain() closes the tunnel
        self.deadline = 0.0
        self.flush()
        self.transport.set_protocol(protocol)
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        return self.transport, rest


