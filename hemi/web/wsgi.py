"""The ``wsgi`` handlet: runs a PEP 3333 application (Flask, Django, ...) in a bounded thread pool.

WSGI applications block, so each request runs in one of ``.threads`` threads of the handlet's
:class:`ThreadPool` while the event loop keeps serving connections (``.maxQueue`` bounds how many
requests may wait for a thread; beyond it they get 503). Thread and loop meet in one place,
:class:`_Exchange`:

* the thread *posts* to the loop with ``call_soon_threadsafe`` and, when it needs an answer
  (a piece of the request body, or "your chunk is written"), waits on a lock the loop releases;
  the loop side is one coroutine per request (the connection's handler task), with no task or
  future per chunk;
* a small response — a list, or an iterable whose first chunk is its whole declared
  ``Content-Length`` (Flask, Django) — crosses **once**: the thread posts the complete response
  and goes on to ``close()`` the iterable while the loop writes it;
* a streamed response crosses once per chunk and the thread waits until the chunk is written
  (back-pressure: a slow client slows the app down, nothing piles up in memory);
* ``wsgi.input`` pulls body pieces from the connection as the app reads, bounded by the
  request's framing; nothing is read up front;
* ``wsgi.file_wrapper`` over a real file is sent with sendfile on the loop.

A client that goes away makes the app's next write (or read) raise :class:`ClientGone`; the
iterable's ``close()`` is called on every path. An app that fails before its response starts
gets a 500 and its traceback in the error log (logger ``hemi.web.wsgi``); after it starts, the
connection is cut, the only honest signal left.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import queue
import re
import stat
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable, Final, Iterable

from ..config.errors import ConfigError
from ..core.registry import handlet
from .appload import AppLoadError, load_app, parse_spec
from .errors import HTTPError
from .handlet import Handlet
from .proxy import connection_options
from .proxy.cgivars import http_var_name, server_address

if TYPE_CHECKING:
    from .exchange import Request, Response

__all__ = ["WsgiHandlet", "FileWrapper", "ClientGone", "build_environ"]

log = logging.getLogger("hemi.web.wsgi")

# Response headers the app may not set: the connection frames the body and writes these itself
# (PEP 3333 forbids hop-by-hop headers in applications).
_DROPPED: Final = frozenset(("connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
                             "upgrade", "date", "server"))
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_BAD_VALUE: Final = re.compile(r"[\r\n\x00]")
_STATUS: Final = re.compile(r"[1-9][0-9][0-9] ")

# Messages from the thread to the loop. READ, PUSH and FILE wait for an answer; SEND, END and
# FAIL end the exchange.
_READ, _PUSH, _FILE, _SEND, _END, _FAIL = range(6)
_CALLS: Final = (_READ, _PUSH, _FILE)
_POLL: Final = 1.0          # how often a waiting thread checks that its loop still runs (seconds)
_JOIN_MAX: Final = 1 << 20   # a list response up to this size is joined and sent in one piece
SHUTDOWN_WAIT: Final = 10.0  # how long a shutdown waits for app threads to finish (seconds)


class ClientGone(ConnectionResetError):
    """Raised in the app's thread by ``write``, by the response iteration and by ``wsgi.input``
    when the exchange is over: the client went away, or its request body was refused."""


class FileWrapper:
    """``wsgi.file_wrapper``: an iterable over a file-like object, in ``blksize`` pieces.

    Returned by the app over a real file, it is served with sendfile from the file's current
    position instead of being iterated; ``close()`` closes the file."""

    __slots__ = ("filelike", "blksize")

    def __init__(self, filelike: Any, blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self) -> "FileWrapper":
        return self

    def __next__(self) -> bytes:
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()

    def region(self) -> tuple[int, int, int] | None:
        """(fd, offset, bytes to the end) when the file can be sent with sendfile, else None."""
        try:
            fd = self.filelike.fileno()
            offset = self.filelike.tell()
            st = os.fstat(fd)
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            return None
        if not stat.S_ISREG(st.st_mode) or offset < 0:
            return None
        return fd, offset, max(0, st.st_size - offset)


class _ErrorStream:
    """``wsgi.errors``: what an app writes goes to the error log, a record per line (one
    buffer per thread, so lines of concurrent requests do not mix)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def write(self, text: str) -> int:
        pending = getattr(self._local, "pending", "") + text
        *lines, pending = pending.split("\n")
        for line in lines:
            log.error("%s", line)
        self._local.pending = pending
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pending = getattr(self._local, "pending", "")
        if pending:
            self._local.pending = ""
            log.error("%s", pending)


class _Input:
    """``wsgi.input``: the request body as a file, read from the connection as the app asks.

    ``read(n)`` returns ``n`` bytes unless the body ends first (as a buffered file does); the
    body ends where the request's framing says (Content-Length or the last chunk)."""

    __slots__ = ("_x", "_buf", "_pos", "_eof")

    def __init__(self, exchange: "_Exchange") -> None:
        self._x = exchange
        self._buf = b""
        self._pos = 0
        self._eof = False

    def _fill(self) -> bool:
        """Pull the next piece of the body into the buffer; False at the end of the body."""
        if self._eof:
            return False
        chunk = self._x.call(_READ, None)
        if chunk is None:
            self._eof = True
            return False
        if self._pos >= len(self._buf):
            self._buf = chunk
        else:
            self._buf = self._buf[self._pos:] + chunk
        self._pos = 0
        return True

    def _take(self, end: int) -> bytes:
        data = self._buf[self._pos:end]
        self._pos = end
        return data

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            parts = [self._take(len(self._buf))]
            while not self._eof:
                chunk = self._x.call(_READ, None)
                if chunk is None:
                    self._eof = True
                else:
                    parts.append(chunk)
            self._buf, self._pos = b"", 0
            return b"".join(parts)
        while len(self._buf) - self._pos < size and self._fill():
            pass
        return self._take(min(self._pos + size, len(self._buf)))

    def readline(self, size: int | None = -1) -> bytes:
        limit = -1 if size is None else size
        scanned = 0  # bytes past _pos known to hold no newline
        while True:
            nl = self._buf.find(b"\n", self._pos + scanned)
            if nl >= 0:
                end = nl + 1
                break
            scanned = len(self._buf) - self._pos
            if 0 <= limit <= scanned or not self._fill():
                end = len(self._buf)
                break
        if limit >= 0:
            end = min(end, self._pos + limit)
        return self._take(end)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self) -> "_Input":
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def close(self) -> None:
        pass


class _Exchange:
    """One request between its pool thread and the event loop (see the module docstring).

    The thread side is :meth:`run` (the app call, ``start_response``, ``write``, the response
    iteration) and :meth:`call`/:meth:`post`; the loop side is :meth:`serve`, fed by
    :meth:`deliver`. The thread has at most one message in flight (a call blocks until it is
    answered, and the terminal message is its last), so one slot carries it."""

    __slots__ = ("h", "loop", "req", "resp", "environ", "coro", "msg", "waiter", "calling", "gone", "lock", "reply",
                 "status", "headers", "ctype", "length", "left", "head_sent", "refusal", "body")

    def __init__(self, h: "WsgiHandlet", loop: "asyncio.AbstractEventLoop", req: "Request", resp: "Response") -> None:
        self.h = h
        self.loop = loop
        self.req = req
        self.resp = resp
        self.environ: dict[str, Any] = {}
        self.coro: Callable[[], Any] = _dead   # a weak reference to serve(): the connection owns it
        self.msg: tuple | None = None
        self.waiter: asyncio.Future | None = None
        self.calling = False                 # loop: a call is being served, its thread waits
        self.gone = False                    # the loop side has ended: calls fail, posts are dropped
        self.lock: threading.Lock | None = None
        self.reply: tuple[Any, BaseException | None] = (None, None)
        self.status = 0                      # from start_response (0: not called yet)
        self.headers: list[tuple[str, str]] = []
        self.ctype: str | None = None
        self.length: int | None = None       # the app's Content-Length
        self.left: int | None = None         # loop: declared bytes not yet written
        self.head_sent = False               # thread: the head is on its way (exc_info re-raises)
        self.refusal: HTTPError | None = None
        self.body: Any = None                # loop: the request body iterator

    # -- thread side ---------------------------------------------------------------------------------
    def run(self) -> None:
        """The pool thread's job: call the app, hand its response to the loop, close it."""
        h = self.h
        result: Any = None
        try:
            result = h.wsgi_app(self.environ, self.start_response)
            self._respond(result)
        except ClientGone:
            self.post((_FAIL,))  # ignored when the loop side is over; a refused body answers for itself
        except BaseException:
            req = self.req
            log.error("wsgi app %s failed on %s %s", h.app_spec, req.method, req.target, exc_info=True)
            self.post((_FAIL,))
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except BaseException:
                    log.error("close() of the response of wsgi app %s failed", h.app_spec, exc_info=True)
            if h.counted:
                h.finished()

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status:
            raise RuntimeError("start_response() called again without exc_info")
        if type(status) is not str or not _STATUS.match(status):
            raise ValueError(f"bad status {status!r}: expected a str like '200 OK'")
        out: list[tuple[str, str]] = []
        ctype = None
        length = None
        for name, value in headers:
            if type(name) is not str or type(value) is not str:
                raise TypeError(f"header {name!r}: {value!r}: names and values must be str")
            if not _TOKEN.match(name) or _BAD_VALUE.search(value):
                raise ValueError(f"bad header {name!r}: {value!r}")
            lname = name.lower()
            if lname == "content-type":
                ctype = value
            elif lname == "content-length":
                length = int(value)
                if length < 0:
                    raise ValueError(f"bad Content-Length {value!r}")
            elif lname not in _DROPPED:
                out.append((lname, value))
        self.status = int(status[:3])
        self.headers = out
        self.ctype = ctype
        self.length = length
        return self.write

    def write(self, data: bytes) -> None:
        """The ``write`` callable of ``start_response``: sends at once, waits until written."""
        if not self.status:
            raise RuntimeError("write() before start_response()")
        data = _as_bytes(data)
        if data:
            self.head_sent = True
            self.call(_PUSH, data)

    def _respond(self, result: Any) -> None:
        if type(result) is list or type(result) is tuple:
            # Every block is there already: one hand-off, unless that means copying a lot.
            if not self.head_sent:
                if len(result) == 1:
                    self._finish(_as_bytes(result[0]))
                    return
                chunks = [_as_bytes(c) for c in result]
                if sum(map(len, chunks)) <= _JOIN_MAX:
                    self._finish(b"".join(chunks))
                    return
                result = chunks
            for chunk in result:
                self.write(chunk)
            self._finish(None)
            return
        if type(result) is FileWrapper and not self.head_sent:
            region = result.region()
            if region is not None:
                self._sendfile(*region)
                return
        it = iter(result)
        for chunk in it:
            chunk = _as_bytes(chunk)
            if not chunk:
                continue
            length = self.length
            if not self.head_sent and length is not None and len(chunk) >= length:
                # The first piece is the whole declared body: one hand-off. The app still runs
                # to its end (PEP 3333); bytes beyond the declared length are not sent.
                self._finish(chunk)
                for _ in it:
                    pass
                return
            self.write(chunk)
        self._finish(None)

    def _finish(self, body: bytes | None) -> None:
        """End the response: ``body`` is all of it (one hand-off), None: what was written."""
        if not self.status:
            raise RuntimeError("the app returned without calling start_response()")
        self.head_sent = True
        self.post((_SEND, body) if body is not None else (_END,))

    def _sendfile(self, fd: int, offset: int, count: int) -> None:
        if not self.status:
            raise RuntimeError("the app returned without calling start_response()")
        if self.length is not None:
            count = min(count, self.length)
        self.head_sent = True
        self.call(_FILE, (fd, offset, count))

    def call(self, op: int, arg: Any) -> Any:
        """Ask the loop for ``op`` and wait for the answer (raises ClientGone when over)."""
        if self.gone:
            raise ClientGone("the client went away")
        lock = self.lock
        if lock is None:
            lock = self.lock = threading.Lock()
            lock.acquire()  # held: the loop's answer releases it
        try:
            self.loop.call_soon_threadsafe(self.deliver, (op, arg))
        except RuntimeError:  # the loop is closed
            self.gone = True
            raise ClientGone("the server stopped") from None
        while not lock.acquire(timeout=_POLL):
            # Answers never get lost, but a loop that stopped, or a handler dropped before it
            # ever ran (its task cancelled at once), cannot answer at all.
            if self.loop.is_closed() or not self.alive():
                self.gone = True
                raise ClientGone("the server stopped serving this request")
        value, exc = self.reply
        if exc is not None:
            raise exc
        return value

    def post(self, msg: tuple) -> None:
        """Tell the loop something that needs no answer."""
        if self.gone:
            return
        try:
            self.loop.call_soon_threadsafe(self.deliver, msg)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            self.gone = True

    # -- loop side -------------------------------------------------------------------------------------
    def alive(self) -> bool:
        """The loop side (:meth:`serve`) can still take messages: it exists and has not ended."""
        coro = self.coro()
        return coro is not None and coro.cr_frame is not None and not self.gone

    def deliver(self, msg: tuple) -> None:
        if not self.alive():
            self.gone = True
            if msg[0] in _CALLS:
                self.answer(None, ClientGone("the client went away"))
            return
        self.msg = msg
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def refuse(self) -> None:
        """Never run (the pool shut down before a thread took it): 503."""
        self.refusal = HTTPError(503, "the application is shutting down")
        self.deliver((_FAIL,))
        if self.h.counted:
            self.h.finished()

    def answer(self, value: Any, exc: BaseException | None = None) -> None:
        self.calling = False
        self.reply = (value, exc)
        self.lock.release()  # type: ignore[union-attr]

    async def serve(self) -> bool:
        """The connection's handler: do what the thread asks until its response is complete."""
        try:
            while True:
                while self.msg is None:
                    waiter = self.waiter = self.loop.create_future()
                    await waiter
                msg, self.msg = self.msg, None
                op = msg[0]
                if op == _SEND:
                    await self._send(msg[1])
                    return True
                if op == _PUSH:
                    self.calling = True
                    await self._push(msg[1])
                    self.answer(None)
                elif op == _READ:
                    self.calling = True
                    if self.refusal is not None:
                        self.answer(None, ClientGone(f"request body refused: {self.refusal.reason}"))
                        continue
                    try:
                        chunk = await self._read()
                    except HTTPError as e:  # too large, too slow or malformed: the app is told to stop
                        self.refusal = e
                        self.answer(None, ClientGone(f"request body refused: {e.status} {e.reason}"))
                        continue
                    self.answer(chunk)
                elif op == _END:
                    await self._end()
                    return True
                elif op == _FILE:
                    self.calling = True
                    await self._file(*msg[1])
                    self.answer(None)
                    return True
                else:  # _FAIL: the traceback is in the error log already
                    raise self.refusal or HTTPError(500, "the application failed")
        finally:
            self.gone = True
            msg, self.msg = self.msg, None
            if self.calling or (msg is not None and msg[0] in _CALLS):
                self.answer(None, ClientGone("the client went away"))

    async def _read(self) -> bytes | None:
        body = self.body
        if body is None:
            body = self.body = self.req.stream_body().__aiter__()
        try:
            return await body.__anext__()
        except StopAsyncIteration:
            return None

    def _head(self) -> None:
        """Put the app's status and headers on the response (the loop writes them)."""
        if self.refusal is not None:
            raise self.refusal
        resp = self.resp
        resp.status = self.status
        if resp.headers:
            resp.headers.extend(self.headers)
        else:
            resp.headers = self.headers
        if self.ctype is not None:
            resp.content_type = self.ctype
        self.left = self.length

    async def _send(self, body: bytes) -> None:
        resp = self.resp
        self._head()
        length = self.length
        if length is not None and length != len(body):
            if len(body) > length:
                body = body[:length]
            elif resp.head_only and not body:  # HEAD: the app's length, no body
                resp.set_length(length)
                await resp.echo(b"")
                await resp.end()
                return
            else:
                raise self._short(len(body))
        resp.send(body)

    async def _push(self, data: bytes) -> None:
        resp = self.resp
        if not resp.sent:
            self._head()
            if self.length is not None:
                resp.set_length(self.length)
        left = self.left
        if left is not None:
            if len(data) > left:
                data = data[:left]
            self.left = left - len(data)
            if not data:
                return
        await resp.echo(data)

    async def _end(self) -> None:
        resp = self.resp
        if not resp.sent:
            await self._send(b"")
            return
        if self.left and not resp.head_only:
            raise self._short(self.length - self.left)  # type: ignore[operator]
        await resp.end()

    async def _file(self, fd: int, offset: int, count: int) -> None:
        self._head()
        await self.resp.send_fd(fd, offset, count)

    def _short(self, sent: int) -> HTTPError:
        log.error("wsgi app %s declared Content-Length %s but sent %d bytes (%s %s)", self.h.app_spec, self.length,
                  sent, self.req.method, self.req.target)
        return HTTPError(500, "the application sent less than its Content-Length")


def _dead() -> None:
    return None


def _as_bytes(data: Any) -> bytes:
    if type(data) is bytes:
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"a WSGI app must send bytes, not {type(data).__name__}")


# -- the environ ------------------------------------------------------------------------------------------
_FIXED_KEYS: Final = {"content-type": "CONTENT_TYPE", "content-length": "CONTENT_LENGTH"}
_KEYS: dict[str, str | None] = dict(_FIXED_KEYS)
_KEYS_MAX: Final = 2048
_MISSING: Final = "\x00"


def _env_key(name: str) -> str | None:
    """The environ key of a request header (``HTTP_*``), or None for one the app never sees
    (hop-by-hop, ``Proxy``, names with ``_``: the policy of :mod:`.proxy.cgivars`)."""
    var = http_var_name(name)
    key = var.decode("latin-1") if var is not None else None
    if len(_KEYS) >= _KEYS_MAX:  # bounds the cache against clients that invent header names
        _KEYS.clear()
        _KEYS.update(_FIXED_KEYS)
    _KEYS[name] = key
    return key


def _wsgi_str(text: str) -> str:
    """PEP 3333's "bytes as str": the UTF-8 bytes of a decoded path, one char per byte."""
    return text if text.isascii() else text.encode("utf-8").decode("latin-1")


def build_environ(req: "Request", base: dict[str, Any], root_path: str) -> dict[str, Any]:
    """The PEP 3333 environ of ``req``, on top of ``base`` (the keys that never change).

    ``PATH_INFO`` is the normalised path the rules matched, less ``root_path`` (``SCRIPT_NAME``)
    when it starts with it. ``wsgi.input`` is set by the caller."""
    env = base.copy()
    path = req.path
    if not path.isascii():
        path = _wsgi_str(path)
    if root_path and path.startswith(root_path) and (len(path) == len(root_path) or path[len(root_path)] == "/"):
        path = path[len(root_path):]
    query = req.query_string
    peer = req.peer
    addr, port = server_address(req)
    if type(port) is bytes:  # the gateways' helper speaks bytes
        addr, port = addr.decode("latin-1"), port.decode("latin-1")
    env["REQUEST_METHOD"] = req.method
    env["PATH_INFO"] = path
    env["QUERY_STRING"] = query[1:] if query else ""
    env["SERVER_NAME"] = req.hostname or addr
    env["SERVER_PORT"] = port
    env["SERVER_PROTOCOL"] = "HTTP/" + req.version
    env["REMOTE_ADDR"] = peer[0]
    env["REMOTE_PORT"] = str(peer[1])
    env["wsgi.url_scheme"] = req.scheme
    if req.server is not None:
        env["SERVER_SOFTWARE"] = req.server.server_name
    keys = _KEYS
    drop: frozenset[str] | None = None
    for name, value in req.headers:
        key = keys.get(name, _MISSING)
        if key is _MISSING:
            key = _env_key(name)
        if key is None:
            if name == "connection":  # the headers it lists are hop-by-hop too
                drop = connection_options(value) | (drop or frozenset())
            continue
        if key in env:
            env[key] += ("; " if name == "cookie" else ", ") + value
        else:
            env[key] = value
    if drop:
        for name in drop:
            key = keys.get(name) or _env_key(name)
            if key is not None and key.startswith("HTTP_"):
                env.pop(key, None)
    return env


class ThreadPool:
    """``size`` threads taking exchanges from one queue: the cheapest hand-off there is.

    ``concurrent.futures.ThreadPoolExecutor`` makes a Future (a Condition and its locks) per job
    and checks its thread count under a semaphore; on a Flask hello that was 14% of gorox's CPU
    per request (84 -> 72 us). An exchange reports its own outcome to the loop, so a job here is
    nothing but its queue entry. The threads start with the pool (an idle one costs its stack)
    and are daemons: an app that never returns cannot hold the process at exit."""

    def __init__(self, size: int, name: str) -> None:
        self._queue: queue.SimpleQueue[_Exchange | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(size)]
        self.closed = False
        for t in self._threads:
            t.start()

    def submit(self, x: "_Exchange") -> None:
        if self.closed:
            raise RuntimeError("the pool is shut down")
        self._queue.put(x)

    def _work(self) -> None:
        get = self._queue.get
        while True:
            x = get()
            if x is None:
                return
            x.run()  # never raises

    def close(self) -> None:
        """Take no more work; refuse what waits for a thread (503). On the loop thread, so no
        submit can slip in behind the threads' stop signals."""
        self.closed = True
        while True:
            try:
                x = self._queue.get_nowait()
            except queue.Empty:
                break
            if x is not None:
                x.refuse()
        for _ in self._threads:
            self._queue.put(None)

    def join(self, timeout: float) -> bool:
        """Wait (blocking) for the threads to finish their requests; False if some still run."""
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)


@handlet("wsgi")
class WsgiHandlet(Handlet):
    """``wsgi { .app = "module:attr" .appDir = "dir" .rootPath = "/prefix" .threads = 16 .maxQueue = N }``

    ``.app`` is "module:attr", "module:factory()" or "module" (see :mod:`.appload`), imported at
    prepare time from ``.appDir`` (relative to the base directory), so a broken import stops the
    start with the app's error. ``.rootPath`` is the ``SCRIPT_NAME`` the app is mounted at: a
    request path under it loses that prefix in ``PATH_INFO``."""

    def on_configure(self) -> None:
        self.app_spec = self.configure_string("app", required=True, check=_check_spec)
        self.app_dir = self.configure_string("appDir", "")
        self.root_path = self.configure_string(
            "rootPath", "", check=lambda v: None if v == "" or (v.startswith("/") and not v.endswith("/"))
            else 'must be "" or a path like "/prefix" (no trailing slash)')
        self.threads = self.configure_int("threads", 16, min=1, max=1024)
        # Requests waiting for a thread beyond this get 503; -1: no bound (they queue).
        self.max_queue = self.configure_int("maxQueue", -1, min=-1)
        self.wsgi_app: Callable[..., Any] = _not_loaded
        self.pool: ThreadPool | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.counted = self.max_queue >= 0
        self._count_lock = threading.Lock()
        self._busy = 0  # requests submitted and not finished by their thread (with .maxQueue only)
        self._base: dict[str, Any] = {}

    def on_check(self) -> None:
        self._load()

    def on_prepare(self) -> None:
        self.wsgi_app = self._load()
        workers = int(os.environ.get("_GOROX_WORKERS_", "1") or 1)
        self._base = {
            "SCRIPT_NAME": _wsgi_str(self.root_path),
            "wsgi.version": (1, 0),
            "wsgi.errors": _ErrorStream(),
            "wsgi.multithread": True,
            "wsgi.multiprocess": workers > 1,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,
        }

    def _load(self) -> Any:
        """Import ``.app``; ConfigError (at the property) when it fails or is not callable."""
        value = self.find("app")[0]
        loc = value.loc if value is not None else self.block.loc
        try:
            app = load_app(self.app_spec, self.app_dir or None, base=self.stage.dirs.base)
        except AppLoadError as e:
            raise ConfigError(f"cannot load the app: {e.message} (in {self.describe()})", loc) from None
        if not callable(app):
            raise ConfigError(f'cannot load the app: "{self.app_spec}" is not callable, so it is not a WSGI app '
                              f"(in {self.describe()})", loc)
        return app

    async def on_start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.pool = ThreadPool(self.threads, f"wsgi-{self.name}")

    async def on_shutdown(self) -> None:
        """Stop taking work; wait for the threads still running an app (their clients are gone
        by now, so their next write fails), but not for ever."""
        pool, self.pool = self.pool, None
        if pool is None:
            return
        pool.close()
        if not await asyncio.get_running_loop().run_in_executor(None, pool.join, SHUTDOWN_WAIT):
            log.warning('wsgi "%s": app threads still busy %.0f s after shutdown; leaving them', self.name,
                        SHUTDOWN_WAIT)

    # -- serving -------------------------------------------------------------------------------------------
    def handle(self, req: "Request", resp: "Response") -> Any:
        pool = self.pool
        if pool is None:
            raise HTTPError(503, "the application is not running")
        if self.counted:
            with self._count_lock:
                if self._busy >= self.threads + self.max_queue:
                    resp.status = 503
                    resp.add_header("retry-after", "1")
                    resp.send_error(503, "all application threads are busy")
                    return True
                self._busy += 1
        x = _Exchange(self, self.loop, req, resp)
        env = x.environ = build_environ(req, self._base, self.root_path)
        env["wsgi.input"] = _Input(x) if req.chunked or req.content_length else io.BytesIO()
        coro = x.serve()
        x.coro = weakref.ref(coro)
        pool.submit(x)
        return coro

    def finished(self) -> None:
        """A thread is done with a request (counted only with ``.maxQueue``)."""
        with self._count_lock:
            self._busy -= 1


def _check_spec(spec: str) -> str | None:
    try:
        parse_spec(spec)
    except AppLoadError as e:
        return f"is wrong: {e.message}"
    return None


def _not_loaded(environ: dict[str, Any], start_response: Any) -> Any:  # pragma: no cover - before on_prepare
    raise RuntimeError("the WSGI application is not loaded")

