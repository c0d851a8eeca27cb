"""One WebSocket connection after its 101: an asyncio protocol around wsproto's frame codec.

:func:`accept` writes the 101, takes the transport over from the HTTP/1 connection
(``Http1Conn.take_over``) and starts a :class:`WebSocketSession`. The session owns:

- messages: fragments are joined; a message is delivered either inline to ``on_message`` (a
  plain callback, no task and no future per message: what ``echoSocklet`` and other plain
  socklets use) or queued for ``await receive()`` (async socklets, ASGI). While more than
  ``QUEUE_HIGH`` bytes wait in the queue, reading stops: a slow consumer slows its client down.
- sending: ``send`` writes a frame at once and returns an awaitable that is done when the
  transport has room again, so plain code may ignore it and async code gets back-pressure.
  While the transport is paused (the client does not read), reading stops too, so an echo
  cannot buffer without bound.
- limits: a message beyond ``.maxMessageSize`` (declared frame lengths, or bytes inflated by
  permessage-deflate) fails the connection with 1009; wsproto fails bad frames with 1002 and
  bad UTF-8 with 1007.
- liveness: one timer per connection, ticking at a quarter of the shortest period. After
  ``.pingInterval`` without a byte from the client a ping goes out; no pong within another
  interval closes with 1011. No message either way for ``.idleTimeout`` closes with 1001.
- the close handshake: a client's close is answered and the TCP connection closed (the
  server closes first, RFC 6455 §7.1.1); our close waits ``CLOSE_TIMEOUT`` for the answer. A
  protocol error sends the close frame, half-closes, and drops what arrives until the client
  closes too. Every way out ends in ``connection_lost``, which is passed on to the HTTP/1
  connection (so it leaves its gate and cancels the exchange's task, if one still runs).

``on_closed(code, reason)`` is called once: with the client's close code (1005 if its frame had
none), with ours when we failed the connection, or 1006 when the connection just ended.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable

from wsproto import ConnectionType
from wsproto.connection import Connection, ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.utilities import LocalProtocolError

from ..errors import HTTPError
from .handshake import Agreement, Offer, response_fields, response_head

if TYPE_CHECKING:
    from ...core.component import Component
    from ..exchange import Request, Response

log = logging.getLogger("hemi.web.websocket")

CLOSE_TIMEOUT = 5.0        # seconds we wait for the client's close frame (or EOF) after ours
QUEUE_HIGH = 1 << 20       # queued message bytes above which reading pauses...
QUEUE_LOW = 256 << 10      # ...until the app has taken the queue below this
QUEUE_MAX_MESSAGES = 4096  # (many tiny messages count too)
SMALL_FRAME = 16 << 10     # frames up to this size are written as one joined bytes object
FAST_FRAME = 64 << 10      # whole frames up to this size are parsed here, the rest by wsproto

OPEN, CLOSING, CLOSED = 0, 1, 2
_QUEUE_FULL, _WRITE_PAUSED, _NOT_READY = 1, 2, 4   # why reading is paused (bits)

# Close codes (RFC 6455 §7.4.1).
NORMAL, GOING_AWAY, PROTOCOL_ERROR, NO_STATUS, ABNORMAL = 1000, 1001, 1002, 1005, 1006
INVALID_DATA, INTERNAL_ERROR = 1007, 1011


@dataclass(frozen=True)
class Limits:
    """The properties every WebSocket endpoint (socklet, asgi handlet) reads through its parents."""

    max_message_size: int = 1 << 20
    idle_timeout: float = 60.0
    ping_interval: float = 20.0
    compression: bool = True


def configure_limits(comp: "Component") -> Limits:
    """Read ``.maxMessageSize .idleTimeout .pingInterval .compression`` (an app- or stage-level
    value is the default; 0 turns a timer off)."""
    return Limits(comp.configure_size("maxMessageSize", 1 << 20, min=1, max=1 << 31),
                  comp.configure_duration("idleTimeout", 60.0, min=0.0),
                  comp.configure_duration("pingInterval", 20.0, min=0.0),
                  comp.configure_bool("compression", True))


class ConnectionClosed(ConnectionResetError):
    """Sending on a WebSocket that is closed or closing (an ``OSError``, as ASGI asks)."""

    def __init__(self, code: int | None = None, reason: str = "") -> None:
        super().__init__(f"WebSocket closed ({code})" if code else "WebSocket closed")
        self.code = code
        self.reason = reason


def unmask(data: bytes, mask: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated: one big-integer XOR instead of a loop."""
    n = len(data)
    if not n:
        return b""
    key = int.from_bytes(mask * (n >> 2) + mask[:n & 3], "little")
    return (int.from_bytes(data, "little") ^ key).to_bytes(n, "little")


def encode_frame(opcode: int, payload: bytes) -> tuple[bytes, bytes | None]:
    """An unmasked, unfragmented server frame: (head, payload) — joined when small."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload, None
    head = struct.pack("!BBH", 0x80 | opcode, 126, n) if n < 65536 else struct.pack("!BBQ", 0x80 | opcode, 127, n)
    if n <= SMALL_FRAME:
        return head + payload, None
    return head, payload


class WebSocketSession(asyncio.Protocol):
    """The server side of one WebSocket connection (see the module docstring)."""

    def __init__(self, http_conn: Any, limits: Limits, extensions: Iterable[Extension],
                 req: "Request | None" = None, resp: "Response | None" = None) -> None:
        self.http_conn = http_conn
        self.loop: asyncio.AbstractEventLoop = getattr(http_conn, "loop", None) or asyncio.get_running_loop()
        self.limits = limits
        exts = list(extensions)
        self.codec = Connection(ConnectionType.SERVER, exts)
        self.compressed = any(isinstance(e, PerMessageDeflate) and e.enabled() for e in exts)
        self.req = req
        self.resp = resp
        self.transport: Any = None
        self.state = OPEN
        self.failed = False            # we failed the connection: the codec is dead, input is dropped
        self.lost = False              # connection_lost has run
        self.close_code: int | None = None
        self.close_reason = ""
        self.notified = False          # on_closed has been called
        self.on_message: Callable[[str | bytes], None] | None = None
        self.on_closed: Callable[[int, str], None] | None = None
        self.on_lost: Callable[[], None] | None = None   # the connection ended without a close handshake
        self.queue: deque[str | bytes] = deque()
        self.queued = 0
        self._parts: list[Any] = []
        self._recv_waiter: asyncio.Future | None = None
        self._drain_waiter: asyncio.Future | None = None
        self._closed_waiter: asyncio.Future | None = None
        self._ready: asyncio.Future | None = None
        self.write_paused = False
        self._blocks = 0
        # Counters (cheap on the hot path; the timer turns them into times).
        self.msgs = 0
        self.reads = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self._seen_msgs = self._seen_reads = 0
        now = self.loop.time()
        self.last_active = self.last_read = now
        self.ping_pending = False
        self.ping_sent = 0.0
        self.close_deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._early = b""
        self._early_eof = False
        self._buf = b""                # the start of a frame header
        self._out: list[bytes | bytearray] | None = None   # the write batch, while a read is handled
        self._slow_remaining = 0       # bytes of the current frame still to pass to wsproto
        self._fragmented = False       # wsproto holds a fragmented message: its frames all go there
        periods = [p for p in (limits.idle_timeout, limits.ping_interval) if p > 0]
        self.tick = min(5.0, max(0.05, min(periods) / 4)) if periods else 0.0

    # -- start ---------------------------------------------------------------------------------------
    def start(self, transport: Any, early: bytes = b"", eof: bool = False) -> None:
        """Begin: ``transport`` is the taken-over connection; ``early`` the bytes the client
        sent past its request (frames it did not wait to send), processed by :meth:`resume`
        once the app is ready for them; ``eof``: the client already half-closed."""
        self.transport = transport
        self._early = early
        self._early_eof = eof
        self._block(_NOT_READY)  # nothing is read before resume()
        if self.tick:
            self._arm(self.loop.time() + self.tick)

    def resume(self) -> None:
        """The app is ready (``on_message`` set, or it will ``receive``): take in what the
        client sent before the handshake was answered."""
        early, self._early = self._early, b""
        if early:
            self.data_received(early)
        self._unblock(_NOT_READY)
        if self._early_eof and self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    @property
    def open(self) -> bool:
        return self.state == OPEN

    # -- asyncio.Protocol ----------------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:  # pragma: no cover - set_protocol does not call it
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        """Split the input into frames. The common frame — a whole, unfragmented, uncompressed
        text or binary message of up to ``FAST_FRAME`` bytes, all of it received — is unmasked
        and delivered here; every other frame (control frames, fragments, compressed or large
        messages, frames split across reads, anything malformed) is streamed through wsproto,
        in order, and wsproto's events are handled before the next frame is looked at."""
        if self.state == CLOSED or self.failed:
            return  # closing: what arrives is dropped
        self.reads += 1
        self.bytes_in += len(data)
        self._out = []  # what handlers send now goes out in one write (pipelined messages)
        try:
            self._receive(data)
        finally:
            self._flush()

    def _receive(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        self._buf = b""
        size = len(buf)
        pos = 0
        limit = min(FAST_FRAME, self.limits.max_message_size)
        while pos < size:
            remaining = self._slow_remaining
            if remaining:
                end = pos + remaining if remaining < size - pos else size
                self._slow_remaining = remaining - (end - pos)
                self.codec.receive_data(buf[pos:end])
                pos = end
                self._process_events()
                if self.state == CLOSED or self.failed:
                    return
                continue
            if size - pos < 2:
                break
            b0, b1 = buf[pos], buf[pos + 1]
            n = b1 & 0x7F
            head = 2
            if n == 126:
                if size - pos < 4:
                    break
                n, head = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            elif n == 127:
                if size - pos < 10:
                    break
                n, head = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
            opcode = b0 & 0x0F
            if ((b0 & 0xF0) == 0x80 and (opcode == 1 or opcode == 2) and b1 & 0x80 and n <= limit
                    and not self._fragmented and self.state == OPEN):
                start = pos + head + 4
                end = start + n
                if end > size:
                    # Not all here: stream it through wsproto, which checks UTF-8 as it comes.
                    self._slow_remaining = end - pos
                    continue
                payload = unmask(buf[start:end], buf[start - 4:start])
                pos = end
                if opcode == 1:
                    try:
                        text = payload.decode("utf-8")
                    except UnicodeDecodeError:
                        self._fail(INVALID_DATA, "")
                        return
                    self._deliver(text)
                else:
                    self._deliver(payload)
                if self.state == CLOSED or self.failed:
                    return
                continue
            # Any other frame goes to wsproto whole, from its first byte to its last.
            if opcode < 8:
                self._fragmented = not b0 & 0x80
            self._slow_remaining = head + (4 if b1 & 0x80 else 0) + n
        if pos < size:
            self._buf = buf[pos:]  # the start of a frame header (at most 13 bytes)

    def _process_events(self) -> None:
        codec = self.codec
        for event in codec.events():
            kind = type(event)
            if kind is TextMessage or kind is BytesMessage:
                if self.state != OPEN:
                    continue  # after our close frame, data is dropped (RFC 6455 §1.4)
                if event.message_finished and not self._parts:
                    self._deliver(event.data)
                else:
                    self._parts.append(event.data)
                    if event.message_finished:
                        parts, self._parts = self._parts, []
                        self._deliver("".join(parts) if kind is TextMessage else b"".join(parts))
            elif kind is Ping:
                if self.state == OPEN:
                    self._write(codec.send(event.response()))
            elif kind is Pong:
                self.ping_pending = False
            elif kind is CloseConnection:
                self._on_close_frame(event)
            if self.state == CLOSED or self.failed:
                break

    def eof_received(self) -> bool:
        # The client half-closed: without its close frame first that is an abnormal end (1006);
        # after we failed the connection it is the end we wait for. Either way we close too.
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.state = CLOSED
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.notified:  # gone without a close handshake
            self._closed(ABNORMAL, "")
            on_lost, self.on_lost = self.on_lost, None
            if on_lost is not None:
                on_lost()
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._drain_waiter = None
        self.http_conn.connection_lost(exc)  # leaves the gate; cancels the exchange's task if it still runs

    def pause_writing(self) -> None:
        self.write_paused = True
        self._block(_WRITE_PAUSED)

    def resume_writing(self) -> None:
        self.write_paused = False
        waiter = self._drain_waiter
        if waiter is not None:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)
        self._unblock(_WRITE_PAUSED)

    # -- reading back-pressure -----------------------------------------------------------------------
    def _block(self, why: int) -> None:
        if not self._blocks and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        self._blocks |= why

    def _unblock(self, why: int) -> None:
        if self._blocks & why:
            self._blocks &= ~why
            if not self._blocks and self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    # -- incoming messages ---------------------------------------------------------------------------
    def _deliver(self, data: str | bytes) -> None:
        self.msgs += 1
        handler = self.on_message
        if handler is not None:
            try:
                handler(data)
            except Exception:
                log.exception("websocket message handler failed")
                self.close(INTERNAL_ERROR, "internal error")
            return
        self.queue.append(data)
        self.queued += len(data)
        if self.queued > QUEUE_HIGH or len(self.queue) > QUEUE_MAX_MESSAGES:
            self._block(_QUEUE_FULL)
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive(self) -> str | bytes | None:
        """The next message; None once the connection is closed (``close_code`` says how).
        Messages that arrived before the close are delivered first."""
        while True:
            queue = self.queue
            if queue:
                data = queue.popleft()
                self.queued -= len(data)
                if self._blocks & _QUEUE_FULL and self.queued < QUEUE_LOW and len(queue) < QUEUE_MAX_MESSAGES // 2:
                    self._unblock(_QUEUE_FULL)
                return data
            if self.notified:
                return None
            waiter = self._recv_waiter = self.loop.create_future()
            try:
                await waiter
            finally:
                self._recv_waiter = None

    # -- outgoing ------------------------------------------------------------------------------------
    def _write(self, data: bytes | bytearray, more: bytes | None = None) -> None:
        """Write ``data`` (and ``more``): at once, or, while a read is being handled, into
        the batch that goes out in one write when it is done."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self.bytes_out += len(data) if more is None else len(data) + len(more)
        out = self._out
        if out is not None:
            out.append(data)
            if more is not None:
                out.append(more)
        elif more is None:
            transport.write(data)
        else:
            transport.writelines((data, more))

    def _flush(self) -> None:
        out = self._out
        self._out = None
        if out:
            transport = self.transport
            if not transport.is_closing():
                transport.write(out[0]) if len(out) == 1 else transport.writelines(out)

    def send(self, data: str | bytes) -> Awaitable[None]:
        """Send one message (str: text, bytes: binary). Returns an awaitable that is done when
        the client has taken enough for more: ``await ws.send(...)`` paces a producer."""
        if self.state != OPEN:
            raise ConnectionClosed(self.close_code, self.close_reason)
        self.msgs += 1
        if self.compressed:
            self._write(self.codec.send(TextMessage(data=data) if isinstance(data, str) else BytesMessage(data=data)))
        elif isinstance(data, str):
            self._write(*encode_frame(0x1, data.encode("utf-8")))
        else:
            self._write(*encode_frame(0x2, data if isinstance(data, bytes) else bytes(data)))
        return self.drained()

    def drained(self) -> Awaitable[None]:
        """Done when the transport is not paused (or the connection is gone)."""
        if not self.write_paused:
            ready = self._ready
            if ready is None:
                ready = self._ready = self.loop.create_future()
                ready.set_result(None)
            return ready
        waiter = self._drain_waiter
        if waiter is None:
            waiter = self._drain_waiter = self.loop.create_future()
        return waiter

    def ping(self, payload: bytes = b"") -> None:
        if self.state == OPEN:
            self._write(self.codec.send(Ping(payload=payload)))

    def close(self, code: int = NORMAL, reason: str = "") -> None:
        """Start the close handshake (a no-op once closing). The client's answer, or
        ``CLOSE_TIMEOUT``, ends the connection."""
        if self.state != OPEN:
            return
        self.state = CLOSING
        try:
            self._write(self.codec.send(CloseConnection(code=code, reason=reason or None)))
        except LocalProtocolError:  # pragma: no cover - the codec is open while we are
            pass
        self._unblock(_QUEUE_FULL)  # read on: the answer is coming, and data is dropped now
        self._closing_deadline()

    async def wait_closed(self) -> tuple[int, str]:
        """Wait until the connection is over (the app was told); (code, reason)."""
        if not self.notified:
            waiter = self._closed_waiter
            if waiter is None:
                waiter = self._closed_waiter = self.loop.create_future()
            await asyncio.shield(waiter)
        return self.close_code or ABNORMAL, self.close_reason

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- closing -------------------------------------------------------------------------------------
    def _on_close_frame(self, event: CloseConnection) -> None:
        state = self.codec.state
        if state is ConnectionState.REMOTE_CLOSING:
            # The client closes: answer with its code (wsproto echoes it), then close the TCP
            # connection ourselves, as a server should.
            self._write(self.codec.send(event.response()))
            self._finish(int(event.code), event.reason or "")
        elif state is ConnectionState.CLOSED:
            self._finish(int(event.code), event.reason or "")  # the answer to our close
        else:
            # The codec found a protocol error (1002), bad UTF-8 (1007), a message too big (1009).
            self._fail(int(event.code), "")

    def _finish(self, code: int, reason: str) -> None:
        """The close handshake is complete: close the TCP connection."""
        self.state = CLOSED
        self._closed(code, reason)
        transport = self.transport
        if transport is not None:
            self._flush()
            transport.close()
            if transport.get_write_buffer_size():
                self._closing_deadline()  # the client does not read our close: give up after a while

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 §7.1.7): our close frame, then our EOF; the client's
        answer is not parsed (the codec stopped at the error) and its EOF ends it."""
        if self.failed or self.state == CLOSED:
            return
        if self.state == OPEN and self.codec.state is ConnectionState.OPEN:
            try:
                self._write(self.codec.send(CloseConnection(code=code, reason=reason or None)))
            except LocalProtocolError:  # pragma: no cover
                pass
        self.failed = True
        self.state = CLOSING
        self._closed(code, reason)
        self._unblock(_QUEUE_FULL)
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self._flush()
        if transport.can_write_eof():
            transport.write_eof()
            self._closing_deadline()
        else:
            transport.close()

    def _closing_deadline(self) -> None:
        self.close_deadline = self.loop.time() + CLOSE_TIMEOUT
        self._arm(self.close_deadline)

    def _closed(self, code: int, reason: str) -> None:
        """Tell the app, once."""
        if self.notified:
            return
        self.notified = True
        self.close_code = code
        self.close_reason = reason
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        waiter = self._closed_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        req, resp = self.req, self.resp
        if req is not None and resp is not None and req.app is not None:
            resp.bytes_sent = self.bytes_out
            req.app.log_request(req, resp, time.time())
        callback = self.on_closed
        if callback is not None:
            self.on_closed = None
            try:
                callback(code, reason)
            except Exception:
                log.exception("websocket close handler failed")

    # -- the timer -----------------------------------------------------------------------------------
    def _arm(self, when: float) -> None:
        timer = self._timer
        if timer is not None:
            if timer.when() <= when:
                return
            timer.cancel()
        self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.lost:
            return
        now = self.loop.time()
        if self.state != OPEN:
            if now >= self.close_deadline:
                self.abort()  # no answer to our close (or our close is not read): give up
            else:
                self._arm(self.close_deadline)
            return
        if self.msgs != self._seen_msgs:
            self._seen_msgs = self.msgs
            self.last_active = now
        if self.reads != self._seen_reads:
            self._seen_reads = self.reads
            self.last_read = now
        limits = self.limits
        idle = limits.idle_timeout
        if idle and now - self.last_active >= idle:
            self.close(GOING_AWAY, "idle timeout")
            return
        interval = limits.ping_interval
        if interval:
            if self.ping_pending:
                if now - self.ping_sent >= interval:
                    self.close(INTERNAL_ERROR, "keepalive ping timeout")
                    # A client that does not answer pings will not answer our close either.
                    self.close_deadline = min(self.close_deadline, now + min(CLOSE_TIMEOUT, interval))
                    self._arm(self.close_deadline)
                    return
            elif now - self.last_read >= interval:
                self.ping_pending = True
                self.ping_sent = now
                self.ping(os.urandom(4))
        self._arm(now + self.tick)

    def drain(self) -> None:
        """The server shuts down: say so (1001) and let the close handshake end the connection."""
        if self.state == OPEN:
            self.close(GOING_AWAY, "server shutting down")
        elif self.transport is not None and not self.transport.is_closing() and self.failed:
            self.transport.close()

    def swallow_cancel(self) -> bool:
        """The HTTP connection cancelled the exchange's task because the client went away:
        take the cancellation back (the app learns of the close from ``receive``). False if
        the cancellation has another cause (the caller re-raises it)."""
        if not self.lost:
            return False
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            task.uncancel()
        return True


def accept(req: "Request", resp: "Response", offer: Offer, agreement: Agreement, limits: Limits,
           extra_headers: Iterable[tuple[str, str]] = ()) -> WebSocketSession:
    """Answer the upgrade with 101, take the connection over and start the session (call its
    ``resume`` when ready for messages). Nothing may be sent on ``resp`` afterwards: the
    exchange is over for the HTTP connection."""
    stream = req.stream
    take_over = getattr(stream, "take_over", None)
    if take_over is None:
        raise HTTPError(501, "WebSocket is not supported on this connection")
    fields = response_fields(offer, agreement, extra_headers)  # may raise ValueError: before anything is sent
    server = req.server
    server_line = b"server: " + (server.server_name if server is not None else "gorox").encode("latin-1") + b"\r\n"
    session = WebSocketSession(stream, limits, agreement.extensions, req, resp)
    resp.status = 101
    resp.sent = resp.finished = True
    transport, early = take_over(session)
    head = response_head(fields, stream.clock.date_line, server_line)
    transport.write(head)
    session.start(transport, early, getattr(stream, "eof", False))
    return session


__all__ = ["CLOSE_TIMEOUT", "ConnectionClosed", "Limits", "WebSocketSession", "accept", "configure_limits",
           "encode_frame"]
