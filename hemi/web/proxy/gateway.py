"""What the CGI-style gateway proxies (``fcgiProxy``, ``uwsgiProxy``) share.

Both take a connection from a stream backend (``tcpsBackend``: TCP, TLS or a unix socket), send
the request's CGI meta-variables (:mod:`.cgivars`) and its body in their protocol's framing, read
back a CGI/HTTP response head and a body, and relay that to the client. They differ only in the
framing, which a subclass supplies as three small pieces: :meth:`GatewayProxy.encode_head`
(bytes that start the request), :meth:`GatewayProxy.frame_body` / :attr:`GatewayProxy.body_end`
(how body bytes travel), and a sans-IO :class:`ResponseReader` (bytes in, head and body pieces
out). Everything else — buffering, limits, timeouts, retries, the status mapping — is here once.

Failures map as nginx maps them: no connection or a broken/malformed exchange is 502, a timeout
504; once the response head is on its way to the client, the only honest signal left is to cut
the client's connection. A client that goes away aborts the backend connection (it is in an
unknown state); a request is retried on a new connection only when a *reused* connection died
before any response byte arrived and the body can be replayed (none, or buffered).

Timeouts cost no timer per request: the backend connection's own lazily re-armed timer enforces
the backend's ``.readTimeout``/``.writeTimeout``, and the proxy's ``.recvTimeout`` /
``.sendTimeout`` (the longest wait for the next response bytes / for the backend to take more
request bytes) are enforced by one sweeper per proxy over its in-flight waits.

A body-less request (most of them) takes the hot path, :class:`_Exchange`: no task at all. It
is sent over an idle pooled connection, or queued for the node's next free slot as a
:class:`~hemi.net.backend.SlotCall` that the releasing exchange calls; the backend connection's
``data_received`` feeds the protocol's reader, and a response complete within what arrived is
relayed from there. Everything else — a body to send, a dial, a response to stream, any failure
— runs the coroutine code (:meth:`GatewayProxy._serve`, and :meth:`GatewayProxy._resume` from
where the hot path stopped), where the response is first awaited as a whole by a
:class:`_Gather` receiver: one task switch per request however many reads the answer takes.

A gateway that keeps connections (``.keepConn``) caps each node of its backend at its
``keepConns`` connections in use (see :meth:`~hemi.net.backend.Backend.cap_nodes_at_keep_conns`):
requests past it wait in the node's queue.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, ClassVar, Final, Protocol

from ...net.backend import Backend, BackendConn, BackendError, BackendTimeout, Node, SlotCall, bind_backend
from ..cgihead import ResponseHead
from ..errors import HTTPError
from ..exchange import BodyContent
from ..handlet import Handlet
from . import HOP_BY_HOP, configure_buffering_and_storer, connection_options
from .settle import CallbackExchange

if TYPE_CHECKING:
    from ..exchange import Request, Response

__all__ = ["GatewayProxy", "GatewayError", "ResponseReader", "BACKEND_SIGNS"]

BACKEND_SIGNS: Final = ("tcpsBackend", "tudsBackend")

# Response headers the gateway never relays: framing and hop-by-hop headers (we frame the
# response ourselves), the CGI Status pseudo-header, and what our connection writes itself.
_DROPPED: Final = HOP_BY_HOP | {"content-length", "status", "server", "date"}
_FILE_PIECE: Final = 256 << 10   # a buffered request body is sent from its temp file in pieces this big
_MAX_ATTEMPTS: Final = 4         # a dead pooled connection is retried, a few times at most
_GATHER_LIMIT: Final = 64 << 10  # a response is gathered whole up to this, then streamed


class GatewayError(Exception):
    """The backend's answer cannot be relayed (bad framing, too large, cut short): 502."""


class ResponseReader(Protocol):
    """The sans-IO response side of one exchange.

    ``feed`` takes bytes from the backend; ``head`` becomes the parsed head once complete;
    after :meth:`start_body` (called once, when the head is there) body pieces collect in
    ``body`` (the caller empties it) and ``done`` turns True when the response is complete.
    ``eof`` is called when the backend closed: it completes a response delimited by the close
    or raises. ``reusable`` says whether the connection may serve another request. Codec
    errors are raised as the protocol's own error type (the proxy's ``codec_error``).
    ``ends_itself``: ``done`` turns True without ``start_body`` (FastCGI's END_REQUEST); a
    reader that needs the head's length first is woken up for as soon as its head is in.
    """

    ends_itself: bool
    head: ResponseHead | None
    body: list[bytes]
    done: bool
    reusable: bool
    started: bool     # some response bytes arrived (a request that got any answer is not retried)

    def feed(self, data: bytes) -> None: ...

    def start_body(self, expect_body: bool, length: int | None) -> None: ...

    def eof(self) -> None: ...


class _Retry(Exception):
    """A reused backend connection died before answering: try again on another."""


class GatewayProxy(Handlet):
    """The base of ``fcgiProxy`` and ``uwsgiProxy`` (see the module docstring)."""

    is_proxy = True
    protocol: ClassVar[str] = ""                                  # "fcgi", "uwsgi": temp dir and logs
    codec_error: ClassVar[type[Exception]] = Exception            # the codec's error type (-> 502)
    log: ClassVar[logging.Logger] = logging.getLogger("hemi.web.proxy")
    body_end: ClassVar[bytes] = b""                               # sent after the body (fcgi: empty STDIN)

    # -- configuration ----------------------------------------------------------------------------------
    def on_configure(self) -> None:
        self.backend_name = self.configure_string("toBackend", None, required=True)
        configure_buffering_and_storer(self)
        self.send_timeout = self.configure_duration("sendTimeout", 60.0, min=0.001)
        self.recv_timeout = self.configure_duration("recvTimeout", 60.0, min=0.001)
        self.max_content_size = self.configure_size("maxContentSize", 1 << 40, min=0)
        self.save_dir = self.configure_string("saveContentFilesDir",
                                              os.path.join(self.stage.dirs.temp, "web", self.protocol, self.name))
        self.reuse_conns = False   # a cleanly finished connection goes back to the pool (fcgi's .keepConn)
        self.backend: Backend | None = None
        # A task (or a hot-path exchange) -> the deadline of its current backend wait; the
        # sweeper cancels what outlives its deadline.
        self._waits: dict[asyncio.Task | _Exchange, float] = {}
        self._expired: set[asyncio.Task | _Exchange] = set()
        self._sweeper: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by on_start

    def on_bind(self) -> None:
        """Resolve ``.toBackend`` now that every component is configured: a missing or wrong
        kind of backend is a config error, not a crash on the first request."""
        if not self.backend_name:
            return
        self.backend = bind_backend(self, self.backend_name, "a " + " or ".join(BACKEND_SIGNS),
                                    lambda c: isinstance(c, Backend) and c.sign in BACKEND_SIGNS,
                                    self.block.prop_locs.get("toBackend"))

    async def on_start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.reuse_conns and self.backend is not None:
            self.backend.cap_nodes_at_keep_conns()
        self._sweeper = self._loop.create_task(self._sweep())

    async def on_shutdown(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    async def _sweep(self) -> None:
        """Cancel the tasks whose backend wait outlived ``.sendTimeout``/``.recvTimeout``."""
        tick = max(0.05, min(0.5, self.send_timeout / 4, self.recv_timeout / 4))
        loop = self._loop
        waits = self._waits
        while True:
            await asyncio.sleep(tick)
            if waits:
                now = loop.time()
                for task, deadline in list(waits.items()):
                    if now >= deadline:
                        del waits[task]
                        self._expired.add(task)
                        if type(task) is _Exchange:
                            task.expire()  # (cancel() is the client leaving)
                        else:
                            task.cancel()

    # -- protocol hooks (subclasses) ------------------------------------------------------------------
    def encode_head(self, req: "Request", content_length: int | None) -> bytes:
        """The bytes that start the request (params/vars), for a body of ``content_length``
        bytes (None: no body); when there is no body it also ends the request."""
        raise NotImplementedError

    def frame_body(self, data: bytes) -> bytes:
        """A piece of the request body as it goes on the wire."""
        return data

    def new_reader(self, req: "Request") -> ResponseReader:
        raise NotImplementedError

    # -- serving ------------------------------------------------------------------------------------------
    def handle(self, req: "Request", resp: "Response") -> "Awaitable[bool]":
        """The hot path: a body-less request is answered from the backend connection's
        callbacks (:class:`_Exchange`), over an idle pooled connection or the first one freed
        for it; this returns the answer it settles. Anything else (a body, HEAD, a dial) is
        the coroutine :meth:`_serve`."""
        backend = self.backend
        assert backend is not None, "on_bind resolves the backend before anything is served"
        if req.has_body or resp.head_only:
            return self._serve(req, resp)
        try:
            node = backend.pick(req.client_ip)
        except BackendError:
            return self._serve(req, resp)  # it picks again, and answers the error
        conn = backend.take(node)
        if conn is None and not node.must_wait:
            return self._serve(req, resp, node)  # no idle connection, but room for a new one: dial
        return _Exchange(self, backend, req, resp, self.encode_head(req, None)).start(node, conn)

    async def _serve(self, req: "Request", resp: "Response", first: "Node | None" = None) -> bool:
        """Every exchange the hot path does not take, and the retry of one whose pooled
        connection was found dead. ``first``: the node the hot path picked."""
        backend = self.backend
        assert backend is not None
        body: BodyContent | None = None
        length: int | None = None
        if req.has_body:
            if self.buffer_client_content or req.content_length is None:
                # A chunked body has no length to announce: spool it first (CONTENT_LENGTH is required).
                body = await req.save()
                length = body.size
            else:
                length = req.content_length
        head = self.encode_head(req, length)
        task = asyncio.current_task(self._loop)  # with the loop: no getpid() per call (3.11)
        assert task is not None
        attempt = 0
        while True:
            attempt += 1
            try:
                node = first if first is not None else backend.pick(req.client_ip)
                first = None
                conn = backend.take(node)  # an idle connection now, or wait for one / dial
                if conn is None:
                    conn = await backend.acquire(client_ip=req.client_ip, node=node)
            except BackendTimeout as e:
                raise self._fail(req, 504, f"cannot connect: {e}") from None
            except BackendError as e:
                raise self._fail(req, 502, f"cannot connect: {e}") from None
            try:
                return await self._exchange(conn, task, req, resp, head, body, length)
            except _Retry:
                if attempt >= _MAX_ATTEMPTS:
                    raise self._fail(req, 502, "the backend closed every reused connection") from None

    async def _resume(self, conn: BackendConn, req: "Request", resp: "Response",
                      gathered: "tuple[ResponseReader, bool, BaseException | None]") -> bool:
        """Go on, in a task, with an exchange the hot path started: the request is sent and
        ``gathered`` says what came back (the reader, the backend closed, an error)."""
        task = asyncio.current_task(self._loop)
        assert task is not None
        try:
            return await self._exchange(conn, task, req, resp, b"", None, None, gathered)
        except _Retry:
            return await self._serve(req, resp)

    def _fail(self, req: "Request", status: int, reason: str) -> HTTPError:
        self.log.warning('%s "%s" %s %s: %s', self.sign, self.name, req.method, req.target, reason)
        return HTTPError(status)

    def _free(self, conn: BackendConn, reusable: bool) -> None:
        """Give the connection back to the backend (pooled when ``reusable`` and clean)."""
        conn.unlisten()
        self.backend.release(conn, reusable=reusable)  # type: ignore[union-attr]

    async def _exchange(self, conn: BackendConn, task: asyncio.Task, req: "Request", resp: "Response", head: bytes,
                        body: BodyContent | None, length: int | None,
                        gathered: "tuple[ResponseReader, bool, BaseException | None] | None" = None) -> bool:
        """One attempt on ``conn``; the connection is always released (pooled only when clean).
        ``gathered``: the request was sent and its response gathered already (see _resume)."""
        replayable = body is not None or length is None
        reader: ResponseReader | None = None
        released = False
        try:
            try:
                if gathered is None:
                    if length is None:
                        conn.write(head)  # no body: the whole request in one write
                    else:
                        await self._send(conn, task, req, head, body, length)
                    reader = self.new_reader(req)
                    gather = _Gather(conn, reader)
                    waits = self._waits
                    waits[task] = self._loop.time() + self.recv_timeout
                    await gather.wait()
                    del waits[task]
                    eof = gather.eof
                else:
                    reader, eof, error = gathered
                    if error is not None:
                        raise error
                if eof and reader.head is None:
                    if conn.requests > 1 and replayable and not reader.started:
                        raise _Retry()
                    reader.eof()
                    raise GatewayError("connection closed before the response head")
                content_length = self._start_response(req, resp, reader)
                if eof and not reader.done:
                    reader.eof()  # a response delimited by the close ends here, others are cut short
                if reader.done and not resp.head_only:
                    released = True
                    self._release(conn, reader)
                    self._send_whole(resp, reader.body, content_length)
                    return True
                if self.buffer_server_content or resp.head_only:
                    buffered = await self._collect(conn, task, resp, reader, content_length)
                    released = True
                    self._release(conn, reader)
                    await self._send_buffered(resp, buffered, content_length)
                    return True
                await self._relay(conn, task, resp, reader, content_length)
                released = True
                self._release(conn, reader)
                await resp.end()
                return True
            except self.codec_error as e:
                raise GatewayError(getattr(e, "reason", str(e))) from None
            except BackendError as e:
                if isinstance(e, BackendTimeout):
                    raise self._fail(req, 504, str(e)) from None
                if conn.requests > 1 and replayable and (reader is None or not reader.started):
                    raise _Retry() from None
                raise GatewayError(str(e)) from None
        except GatewayError as e:
            if not resp.sent:
                raise self._fail(req, 502, str(e)) from None
            raise self._fail(req, 502, f"{e} (after the response head: the client connection is cut)") from None
        except asyncio.CancelledError:
            if task in self._expired:
                self._expired.discard(task)
                task.uncancel()
                raise self._fail(req, 504, "the backend did not answer within the proxy's timeout") from None
            raise  # the client went away: the finally below aborts the backend connection
        finally:
            self._waits.pop(task, None)
            if not released:
                conn.abort()  # in an unknown state: mid-request, mid-response, or broken
                self._free(conn, False)

    def _release(self, conn: BackendConn, reader: ResponseReader) -> None:
        """The response is complete: pool the connection if the protocol allows, else close it."""
        if conn.node.fails:
            self.backend.report(conn.node, True)  # type: ignore[union-attr]
        self._free(conn, self.reuse_conns and reader.reusable)

    # -- sending --------------------------------------------------------------------------------------------
    async def _drain(self, conn: BackendConn, task: asyncio.Task) -> None:
        self._waits[task] = self._loop.time() + self.send_timeout
        await conn.drain()
        del self._waits[task]

    async def _send(self, conn: BackendConn, task: asyncio.Task, req: "Request", head: bytes,
                    body: BodyContent | None, length: int) -> None:
        """The request head and its body (in memory, in a spooled file, or streamed as it arrives)."""
        if body is not None:
            if body.data is not None:
                conn.writelines([head, self.frame_body(body.data), self.body_end])
                return
            conn.write(head)
            with open(body.path, "rb") as f:  # type: ignore[arg-type]
                while True:
                    piece = f.read(_FILE_PIECE)
                    if not piece:
                        break
                    conn.write(self.frame_body(piece))
                    await self._drain(conn, task)
            conn.write(self.body_end)
            return
        # Streamed as it arrives; the HTTP codec holds the client to the length it announced.
        conn.write(head)
        async for piece in req.stream_body():
            conn.write(self.frame_body(piece))
            await self._drain(conn, task)
        conn.write(self.body_end)

    # -- receiving --------------------------------------------------------------------------------------------
    async def _recv(self, conn: BackendConn, task: asyncio.Task) -> bytes:
        if conn.buffered:
            return await conn.read()
        self._waits[task] = self._loop.time() + self.recv_timeout
        data = await conn.read()
        del self._waits[task]
        return data

    def _start_response(self, req: "Request", resp: "Response", reader: ResponseReader) -> int | None:
        """Copy the backend's status and headers to ``resp``; return its Content-Length."""
        head = reader.head
        assert head is not None
        status = head.status
        if status < 200:
            raise GatewayError(f"the application answered with the informational status {status}")
        resp.status = status
        length: int | None = None
        drop: frozenset[str] = frozenset()
        out = resp.headers
        for name, value in head.headers:
            if name in _DROPPED:
                if name == "content-length":
                    if not value.isdigit() or (length is not None and int(value) != length):
                        raise GatewayError(f"bad Content-Length {value!r} in the response")
                    length = int(value)
                elif name == "connection":
                    drop |= connection_options(value)
                elif name == "transfer-encoding" and value.lower() != "identity":
                    raise GatewayError(f"the application sent Transfer-Encoding: {value}, which it may not")
                continue
            if name == "content-type":
                resp.content_type = value
            else:
                out.append((name, value))
        if drop:
            resp.headers = [(k, v) for k, v in out if k not in drop]
        if length is not None and length > self.max_content_size:
            raise GatewayError(f"response content of {length} bytes exceeds .maxContentSize")
        expect_body = status not in (204, 304) and not resp.head_only
        reader.start_body(expect_body, length if expect_body else None)
        return length

    def _send_whole(self, resp: "Response", pieces: list[bytes], length: int | None) -> None:
        """The whole response is already here: one write, with Content-Length."""
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        if length is not None and len(data) != length:
            if len(data) < length:
                raise GatewayError(f"response content of {len(data)} bytes, {length} announced")
            data = data[:length]
        if len(data) > self.max_content_size:
            raise GatewayError(f"response content exceeds .maxContentSize ({self.max_content_size} bytes)")
        resp.send(data)

    async def _relay(self, conn: BackendConn, task: asyncio.Task, resp: "Response", reader: ResponseReader,
                     length: int | None) -> None:
        """Stream the body as it arrives: with the application's Content-Length, else chunked
        (the caller ends the response once the backend connection is released)."""
        if length is not None:
            resp.set_length(length)
        await resp.echo(b"")  # the head goes out now, even if the body is slow to come
        async with aclosing(self._body(conn, task, reader, length, whole=True)) as body:
            async for piece in body:
                await resp.echo(piece)

    async def _body(self, conn: BackendConn, task: asyncio.Task, reader: ResponseReader, length: int | None, *,
                    whole: bool) -> AsyncIterator[bytes]:
        """The body's pieces as they arrive, up to the application's Content-Length (more is
        dropped) or ``.maxContentSize`` (more is an error); ``whole``: a body cut short of its
        Content-Length is an error too."""
        limit = self.max_content_size if length is None else length
        total = 0
        pieces = reader.body
        while True:
            if pieces:
                for piece in pieces:
                    total += len(piece)
                    if total > limit:
                        if length is None:
                            raise GatewayError("response content exceeds .maxContentSize")
                        piece = piece[:len(piece) - (total - limit)]
                        total = limit
                    if piece:
                        yield piece
                pieces.clear()
            if reader.done:
                break
            data = await self._recv(conn, task)
            if data:
                reader.feed(data)
            else:
                reader.eof()
        if whole and length is not None and total < length:
            raise GatewayError(f"response content of {total} bytes, {length} announced")

    async def _collect(self, conn: BackendConn, task: asyncio.Task, resp: "Response", reader: ResponseReader,
                       length: int | None) -> "_Buffered":
        """Read the whole body: in memory up to the app's ``.maxMemoryContentSize``, in a temp
        file past it. For ``.bufferServerContent``, and for HEAD (the body is only drained)."""
        app = resp.request.app
        buffered = _Buffered(app.max_memory_content_size if app is not None else 16 << 20, self.save_dir,
                             keep=not resp.head_only)
        try:
            async with aclosing(self._body(conn, task, reader, length, whole=not resp.head_only)) as body:
                async for piece in body:
                    buffered.add(piece)
        except BaseException:
            buffered.close()
            raise
        return buffered

    async def _send_buffered(self, resp: "Response", buffered: "_Buffered", length: int | None) -> None:
        try:
            if resp.head_only:  # the head a GET would get: the application's length, or chunked
                if length is not None:
                    resp.set_length(length)
                await resp.echo(b"")
                await resp.end()
            elif buffered.spool is None:
                resp.send(b"".join(buffered.parts))
            else:
                buffered.spool.flush()
                if resp.content_type is None:
                    resp.content_type = "application/octet-stream"
                await resp.send_fd(buffered.spool.fileno(), 0, buffered.size)
        finally:
            buffered.close()


class _Exchange(CallbackExchange):
    """The hot path of one body-less exchange, driven by callbacks: a free slot of the node
    (:class:`~hemi.net.backend.SlotCall`) starts it, and the backend connection's
    ``data_received`` feeds the reader (it is the connection's Receiver). A response complete
    within what arrived is relayed from there, the connection pooled first: no task at all.

    Everything else goes on in :meth:`GatewayProxy._resume`, which runs the coroutine code of
    every other exchange from where this one is: a response to stream, a backend that closed
    or broke, a reader error, the backend's readTimeout (one mapping of failures to 502/504, in
    ``_exchange``). The proxy's ``.recvTimeout`` sweeper calls :meth:`expire` (a 504); a client
    that goes away cancels the exchange (it is its own answer), and the backend connection is aborted.
    """

    __slots__ = ("proxy", "backend", "req", "resp", "head", "conn", "reader", "received", "waiter")

    def __init__(self, proxy: GatewayProxy, backend: Backend, req: "Request", resp: "Response", head: bytes) -> None:
        CallbackExchange.__init__(self, proxy._loop)  # type: ignore[arg-type]
        self.proxy = proxy
        self.backend = backend
        self.req = req
        self.resp = resp
        self.head = head
        self.conn: BackendConn | None = None
        self.reader: ResponseReader | None = None
        self.received = 0
        self.waiter: SlotCall | None = None

    def start(self, node: "Node", conn: BackendConn | None) -> "_Exchange":
        """Send on ``conn`` (taken with its slot), or queue for ``node``'s next free slot."""
        if conn is not None:
            self._send(conn)
            return self
        waiter = self.waiter = SlotCall(lambda: self._slot(node), self._no_slot)
        try:
            node.queue(waiter, self.backend.queue_timeout)
        except BackendError as e:
            self.waiter = None
            self.set_exception(self.proxy._fail(self.req, 502, f"cannot connect: {e}"))
        return self

    def _slot(self, node: "Node") -> None:
        """A slot of ``node`` is ours (called inside ``free_slot``): its pooled connection, if
        the one freed was pooled; else the slot goes on and ``_serve`` queues or dials anew."""
        self.waiter = None
        conn = node.take_idle(self.backend.alive_timeout)
        if conn is None:
            node.free_slot()
            self.spawn(self.proxy._serve(self.req, self.resp))
            return
        conn.requests += 1
        self._send(conn)

    def _no_slot(self, exc: BaseException) -> None:
        self.waiter = None
        status = 504 if isinstance(exc, BackendTimeout) else 502
        self.set_exception(self.proxy._fail(self.req, status, f"cannot connect: {exc}"))

    def _send(self, conn: BackendConn) -> None:
        proxy = self.proxy
        self.conn = conn
        self.reader = proxy.new_reader(self.req)
        try:
            conn.write(self.head)
        except BackendError as e:
            self._hand_over(True, e)  # a dead pooled connection: _exchange retries it
            return
        proxy._waits[self] = proxy._loop.time() + proxy.recv_timeout  # type: ignore[index]
        conn.listen(self)

    # -- Receiver ---------------------------------------------------------------------------------------
    def data(self, data: bytes) -> None:
        reader = self.reader
        assert reader is not None
        try:
            reader.feed(data)
        except Exception as e:
            self._hand_over(False, e)
            return
        if reader.done:
            self._complete()
        elif reader.head is not None:
            self.received += len(data)
            if self.received > _GATHER_LIMIT or not reader.ends_itself:
                self._hand_over(False, None)

    def closed(self, exc: BaseException | None) -> None:
        reader = self.reader
        conn = self.conn
        if exc is not None and conn is not None and reader is not None and reader.head is not None and not reader.done:
            self._hand_over(True, BackendError(f"connection to {conn.node.name} lost: {exc}", conn.node))
        else:
            self._hand_over(True, None)

    def timed_out(self) -> None:
        conn = self.conn
        if conn is not None:
            node = conn.node
            self._hand_over(False, BackendTimeout(f"no data from {node.name} within readTimeout", node))

    def expire(self) -> None:
        """``.recvTimeout`` passed (the proxy's sweeper): a 504, the connection aborted."""
        self.proxy._expired.discard(self)  # type: ignore[arg-type]
        self.abandon()
        self.set_exception(self.proxy._fail(self.req, 504, "the backend did not answer within the proxy's timeout"))

    # -- endings ----------------------------------------------------------------------------------------
    def _release_conn(self) -> BackendConn:
        conn = self.conn
        assert conn is not None
        self.conn = None
        conn.unlisten()
        self.proxy._waits.pop(self, None)  # type: ignore[call-overload]
        return conn

    def _complete(self) -> None:
        """The whole response is here: pool the connection, send the response."""
        conn = self._release_conn()
        proxy, req, resp, reader = self.proxy, self.req, self.resp, self.reader
        assert reader is not None
        try:
            length = proxy._start_response(req, resp, reader)
        except GatewayError as e:
            conn.abort()
            proxy._free(conn, False)
            self.set_exception(proxy._fail(req, 502, str(e)))
            return
        proxy._release(conn, reader)
        try:
            proxy._send_whole(resp, reader.body, length)
        except GatewayError as e:
            self.set_exception(proxy._fail(req, 502, str(e)))
            return
        except Exception as e:  # the client's connection broke as we answered
            self.set_exception(e)
            return
        self.set_result(True)

    def _hand_over(self, eof: bool, error: BaseException | None) -> None:
        """Go on in ``_resume``: it owns the connection from now on."""
        conn = self._release_conn()
        reader = self.reader
        assert reader is not None
        self.spawn(self.proxy._resume(conn, self.req, self.resp, (reader, eof, error)))

    def abandon(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            waiter.cancel()  # free_slot skips it
        if self.conn is not None:
            conn = self._release_conn()
            conn.abort()
            self.proxy._free(conn, False)


class _Gather:
    """Collects a response in the connection's callbacks (it is the connection's
    :class:`~hemi.net.backend.Receiver`) and wakes the exchange once: when the response is
    complete, when the backend closed or broke, or when more than _GATHER_LIMIT bytes came
    after the head (then the exchange streams the rest with reads) — or at the head, for a
    reader that cannot tell the end before ``start_body``. Reader errors and the backend's
    ``readTimeout`` wake it with the exception."""

    __slots__ = ("conn", "reader", "future", "eof", "received")

    def __init__(self, conn: BackendConn, reader: ResponseReader) -> None:
        self.conn = conn
        self.reader = reader
        self.future: asyncio.Future[None] = conn.loop.create_future()
        self.eof = False        # the backend closed (or the connection broke)
        self.received = 0

    async def wait(self) -> None:
        self.conn.listen(self)
        try:
            await self.future
        finally:
            self.conn.unlisten()

    def data(self, data: bytes) -> None:
        reader = self.reader
        try:
            reader.feed(data)
        except Exception as e:
            self._wake(e)
            return
        if reader.done:
            self._wake(None)
        elif reader.head is not None:
            self.received += len(data)
            if self.received > _GATHER_LIMIT or not reader.ends_itself:
                self._wake(None)

    def closed(self, exc: BaseException | None) -> None:
        self.eof = True
        if exc is not None and self.reader.head is not None and not self.reader.done:
            self._wake(BackendError(f"connection to {self.conn.node.name} lost: {exc}", self.conn.node))
        else:
            self._wake(None)

    def timed_out(self) -> None:
        node = self.conn.node
        self._wake(BackendTimeout(f"no data from {node.name} within readTimeout", node))

    def _wake(self, exc: BaseException | None) -> None:
        self.conn.unlisten()
        fut = self.future
        if not fut.done():
            if exc is None:
                fut.set_result(None)
            else:
                fut.set_exception(exc)


class _Buffered:
    """A response body being collected: a list of pieces, then a temp file once it is big."""

    __slots__ = ("memory", "directory", "keep", "parts", "size", "spool")

    def __init__(self, memory: int, directory: str, *, keep: bool) -> None:
        self.memory = memory
        self.directory = directory
        self.keep = keep          # False: count the bytes, keep none (HEAD)
        self.parts: list[bytes] = []
        self.size = 0
        self.spool: Any = None

    def add(self, piece: bytes) -> None:
        self.size += len(piece)
        if not self.keep:
            return
        if self.spool is None:
            if self.size <= self.memory:
                self.parts.append(piece)
                return
            os.makedirs(self.directory, exist_ok=True)
            self.spool = tempfile.TemporaryFile(prefix="resp-", dir=self.directory)
            self.spool.writelines(self.parts)
            self.parts = []
        self.spool.write(piece)

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()
            self.spool = None
