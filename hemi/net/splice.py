"""Splice: copy bytes both ways between two asyncio transports until both sides are done.

The layer-4 relays (socksServer's CONNECT, httpxServer's CONNECT tunnel) all end the same way:
two connections, bytes from one written to the other. What makes that correct is shared here:

- back-pressure: when one side's write buffer is above its high-water mark (the transport calls
  ``pause_writing`` on our protocol), reading from the *other* side stops until it drains;
- half-close: an EOF from one side is passed on as ``write_eof`` to the other (TLS cannot
  half-close: that side is closed once its buffer is flushed), and the splice ends when both
  directions have ended, or at once when either connection is lost;
- an idle timeout: nothing moved either way for ``idle_timeout`` seconds closes both sides
  (one timer per splice, re-armed only when it fires), and with ``write_timeout`` a side whose
  writes have been stuck (its peer not reading) that long closes both too;
- optional editing: an end's ``edit`` (bytes in, bytes out; b"" holds them back) sees what that
  side sends before the other side gets it (a mesher's editors, its byte accounting);
- nothing is forwarded before ``start()``: the caller may still owe its client a reply (the
  SOCKS or ``200 Connection Established``) when the upstream connection is already up.

Every way out calls ``on_close(splice)`` exactly once, after both transports are gone.

Users: socksServer's CONNECT, httpxServer's CONNECT tunnel, and ``tcpsProxy`` (a tcpsMesher
connection and its upstream, with the mesher's editors and timeouts).
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

# Reading from a side that is not started yet stops when this much of it is held back.
PENDING_LIMIT = 256 << 10


class SpliceEnd(asyncio.Protocol):
    """One connection of a splice. Its ``transport`` is what the *other* end writes to."""

    __slots__ = ("splice", "role", "transport", "peer", "pending", "pending_size", "eof", "lost", "bytes_in",
                 "edit", "stalled_at", "_peer_full", "_reading_paused", "_write_eof_sent")

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
        self.edit: Callable[[bytes], bytes] | None = None  # what this side sends, before the other gets it
        self.stalled_at = 0.0       # when our writes began to back up (with a write_timeout)
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
        edit = self.edit
        if edit is not None:
            data = edit(data)
            if not data:
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
        splice = self.splice
        if splice.write_timeout > 0:
            self.stalled_at = splice.loop.time()
            splice._stalled(self.stalled_at + splice.write_timeout)
        self.peer._peer_full = True
        self.peer._update_reading()

    def resume_writing(self) -> None:
        self.stalled_at = 0.0
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
        edit = self.edit
        if edit is not None:
            pending = [edited for edited in map(edit, pending) if edited]
        if pending and not self.peer.lost:
            self.peer.transport.writelines(pending)
        self._update_reading()
        if self.eof and not self.lost:
            self.peer._send_eof()


class Splice:
    """Two connections joined: ``a`` (usually the client) and ``b`` (usually the upstream).

    Create it, give each end a transport (``attach`` an existing one, or use ``b`` as the
    protocol factory of ``loop.create_connection``), then ``start(early=...)``. ``early`` is
    what the client sent past its handshake; it goes to ``b`` first.

    ``idle_reason`` and ``stall_reason`` are the ``close_reason`` of the two timeouts; a subclass
    may word ``lost_reason`` (a connection reset) its own way."""

    __slots__ = ("a", "b", "loop", "idle_timeout", "write_timeout", "on_close", "started", "last_active", "closed",
                 "_timer", "close_reason", "idle_reason", "stall_reason", "__weakref__")

    def __init__(self, *, idle_timeout: float = 0.0, write_timeout: float = 0.0,
                 on_close: Callable[["Splice"], None] | None = None, idle_reason: str = "idle timeout",
                 stall_reason: str = "writes stuck") -> None:
        self.loop = asyncio.get_running_loop()
        self.a = SpliceEnd(self, "a")
        self.b = SpliceEnd(self, "b")
        self.a.peer, self.b.peer = self.b, self.a
        self.idle_timeout, self.write_timeout = idle_timeout, write_timeout
        self.idle_reason, self.stall_reason = idle_reason, stall_reason
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
        self._arm()

    # -- timeouts and closing -----------------------------------------------------------------------------
    def _arm(self) -> None:
        """Schedule the timer at the nearest deadline: idle, or a stuck write."""
        when = self.last_active + self.idle_timeout if self.idle_timeout > 0 else 0.0
        for end in (self.a, self.b):
            if end.stalled_at:
                stuck = end.stalled_at + self.write_timeout
                when = min(when, stuck) if when else stuck
        if when:
            self._timer = self.loop.call_at(when, self._on_timer)

    def _stalled(self, when: float) -> None:
        """An end's writes began to back up: make sure the timer fires by ``when``."""
        timer = self._timer
        if self.started and not self.closed and (timer is None or timer.when() > when):
            self._cancel_timer()
            self._timer = self.loop.call_at(when, self._on_timer)

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _on_timer(self) -> None:
        self._timer = None
        if self.closed:
            return
        now = self.loop.time()
        if self.idle_timeout > 0 and now >= self.last_active + self.idle_timeout:
            self.abort(self.idle_reason)
        elif any(end.stalled_at and now >= end.stalled_at + self.write_timeout for end in (self.a, self.b)):
            self.abort(self.stall_reason)
        else:
            self._arm()

    def set_idle_timeout(self, seconds: float) -> None:
        """Shorten (or set) the idle timeout, e.g. to the stage's grace period at shutdown."""
        if self.closed:
            return
        self.idle_timeout = seconds
        self._cancel_timer()
        self._arm()

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
                self.close_reason = self.lost_reason(end, exc)
            peer.transport.close()  # what it still has to write goes first
        if peer.lost or peer.transport is None:
            self._finish()

    def lost_reason(self, end: SpliceEnd, exc: Exception) -> str:
        """The ``close_reason`` when ``end``'s connection was reset."""
        return f"{'client' if end.role == 'a' else 'upstream'} connection lost: {exc}"

    def _finish(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._cancel_timer()
        if self.on_close is not None:
            self.on_close(self)


__all__ = ["Splice", "SpliceEnd", "PENDING_LIMIT"]
