"""Splice: copy bytes both ways between two asyncio transports until both sides are done.

The layer-4 relays (socksServer's CONNECT, httpxServer's CONNECT tunnel) all end the same way:
two connections, bytes from one written to the other. What makes that correct is shared here:

- back-pressure: when one side's write buffer is above its high-water mark (the transport calls
  ``pause_writing`` on our protocol), reading from the *other* side stops until it drains;
- half-close: an EOF from one side is passed on as ``write_eof`` to the other (TLS cannot
  half-close: that side is closed once its buffer is flushed), and the splice ends when both
  directions have ended, or at once when either connection is lost;
- an idle timeout: nothing moved either way for ``idle_timeout`` seconds closes both sides
  (one timer per splice, re-armed only when it fires);
- nothing is forwarded before ``start()``: the caller may still owe its client a reply (the
  SOCKS or ``200 Connection Established``) when the upstream connection is already up.

Every way out calls ``on_close(splice)`` exactly once, after both transports are gone.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

# Reading from a side that is not started yet stops when this much of it is held back.
PENDING_LIMIT = 256 << 10


class SpliceEnd(asyncio.Protocol):
    """One connection of a splice. Its ``transport`` is what the *other* end writes to."""

    __slots__ = ("splice", "role", "transport", "peer", "pending", "pending_size", "eof", "lost", "bytes_in",
                 "_peer_full", "_reading_paused", "_write_eof_sent")

    def __init__(self, splice: "Splice", role: str) -> None:
        self.splice = splice
        self.role = role
        self.transport: Any = None
        self.peer: SpliceEnd = self  # set by Splice
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.eof = False            # this side sent its EOF (it has nothing more to say)
        self.lost = False
        self.bytes_in = 0           # bytes received from this side
        self._peer_full = False     # the other side's write buffer is above its high-water mark
        self._reading_paused = False
        self._write_eof_sent = False

    # -- asyncio.Protocol -------------------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if self.splice.closed:  # e.g. the upstream connected after the client had gone
            self.lost = True
            transport.abort()

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        splice = self.splice
        splice.last_active = splice.loop.time()
        if not splice.started:
            self.pending.append(data)
            self.pending_size += len(data)
            self._update_reading()
            return
        peer = self.peer
        if not peer.lost:
            peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        if self.splice.started:
            self.peer._send_eof()
        # Keep our side open for writing: the other direction may still be busy.
        return self.transport is not None and self.transport.can_write_eof() and not self.peer.eof_done()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.eof = True
        self.splice._end_lost(self, exc)

    def pause_writing(self) -> None:
        self.peer._peer_full = True
        self.peer._update_reading()

    def resume_writing(self) -> None:
        self.peer._peer_full = False
        self.peer._update_reading()

    # -- internals ----------------------------------------------------------------------------------------
    def eof_done(self) -> bool:
        """This side has both sent its EOF and been sent ours: nothing is left to carry."""
        return self.eof and self._write_eof_sent

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or self.lost:
            return
        pause = self._peer_full or (not self.splice.started and self.pending_size > PENDING_LIMIT)
        if pause != self._reading_paused:
            self._reading_paused = pause
            if transport.is_closing():
                return
            if pause:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def _send_eof(self) -> None:
        """The other side said EOF: pass it on (or close, where half-close is impossible)."""
        if self._write_eof_sent or self.lost:
            return
        self._write_eof_sent = True
        transport = self.transport
        if self.eof or not transport.can_write_eof():
            transport.close()  # both directions done (or TLS): close once the buffer is flushed
            return
        try:
            transport.write_eof()
        except (OSError, RuntimeError):
            transport.close()

    def _flush_pending(self) -> None:
        pending, self.pending, self.pending_size = self.pending, [], 0
        if pending and not self.peer.lost:
            self.peer.transport.writelines(pending)
        self._update_reading()
        if self.eof and not self.lost:
            self.peer._send_eof()


class Splice:
    """Two connections joined: ``a`` (usually the client) and ``b`` (usually the upstream).

    Create it, give each end a transport (``attach`` an existing one, or use ``b`` as the
    protocol factory of ``loop.create_connection``), then ``start(early=...)``. ``early`` is
    what the client sent past its handshake; it goes to ``b`` first."""

    __slots__ = ("a", "b", "loop", "idle_timeout", "on_close", "started", "last_active", "closed", "_timer",
                 "close_reason", "__weakref__")

    def __init__(self, *, idle_timeout: float = 0.0, on_close: Callable[["Splice"], None] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.a = SpliceEnd(self, "a")
        self.b = SpliceEnd(self, "b")
        self.a.peer, self.b.peer = self.b, self.a
        self.idle_timeout = idle_timeout
        self.on_close = on_close
        self.started = False
        self.closed = False
        self.last_active = self.loop.time()
        self.close_reason = ""
        self._timer: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"<Splice a->b {self.a.bytes_in} b->a {self.b.bytes_in}{' closed' if self.closed else ''}>"

    def attach(self, end: SpliceEnd, transport: Any) -> None:
        """Make ``end`` the protocol of an already open transport (e.g. the client's, after its
        handshake was read by another protocol)."""
        transport.set_protocol(end)
        end.connection_made(transport)
        if transport.is_closing():
            end.lost = True
            end.eof = True

    def start(self, early: bytes = b"") -> None:
        """Begin forwarding: ``early`` to ``b``, then whatever each side sent meanwhile."""
        if self.started:
            return
        if self.closed:
            self.abort("closed before start")
            return
        self.started = True
        a, b = self.a, self.b
        if a.lost or b.lost:
            self._end_lost(a if a.lost else b, None)
            return
        if early:
            a.bytes_in += len(early)
            b.transport.write(early)
        a._flush_pending()
        b._flush_pending()
        if self.idle_timeout > 0:
            self._arm(self.last_active + self.idle_timeout)

    # -- timeouts and closing -----------------------------------------------------------------------------
    def _arm(self, when: float) -> None:
        self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.closed:
            return
        deadline = self.last_active + self.idle_timeout
        if self.loop.time() >= deadline:
            self.abort("idle timeout")
        else:
            self._arm(deadline)

    def set_idle_timeout(self, seconds: float) -> None:
        """Shorten (or set) the idle timeout, e.g. to the stage's grace period at shutdown."""
        if self.closed:
            return
        self.idle_timeout = seconds
        if self._timer is not None:
            self._timer.cancel()
        self._arm(self.last_active + seconds)

    def close(self, reason: str = "closed") -> None:
        """Close both sides once their buffered bytes are written."""
        self.close_reason = self.close_reason or reason
        for end in (self.a, self.b):
            if end.transport is not None and not end.lost:
                end.transport.close()

    def abort(self, reason: str = "aborted") -> None:
        self.close_reason = self.close_reason or reason
        for end in (self.a, self.b):
            if end.transport is not None and not end.lost:
                end.transport.abort()

    def _end_lost(self, end: SpliceEnd, exc: Exception | None) -> None:
        peer = end.peer
        if not peer.lost and peer.transport is not None:
            if exc is not None and not self.close_reason:
                self.close_reason = f"{'client' if end.role == 'a' else 'upstream'} connection lost: {exc}"
            peer.transport.close()  # what it still has to write goes first
        if peer.lost or peer.transport is None:
            self._finish()

    def _finish(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.on_close is not None:
            self.on_close(self)


__all__ = ["Splice", "SpliceEnd", "PENDING_LIMIT"]
