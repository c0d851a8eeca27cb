"""Writes held to the end of the event-loop iteration, then sent one connection after another.

Why: every ``send`` on a loopback (or LAN) socket wakes the reader on the other side, and when
that reader's CPU is idle the wake-up costs an inter-processor interrupt, several microseconds
on a virtual machine, billed to the writer. A server that writes as it goes interleaves those
wake-ups with its Python work, so the peers are woken one at a time, each from idle, and the
caches the Python code needs are cold every time it resumes. Holding the complete responses
(and upstream requests) of one loop iteration and sending them together, after the callbacks
that produced them, pays the first wake-up only: by the next write the peer is already running.
Measured on the 2-CPU bench machine: ASGI hello 43k -> 60k requests/s, http1Proxy 17k -> 26k,
with the kernel time per request halved (``bench/RESULTS.md``). This is what Netty's
write/flush split and Seastar's output batching do; the cost is one loop callback per
iteration that wrote anything.

The contract for a :class:`Holder` connection: ``hold(data)`` holds bytes; everything else
that touches the transport (a direct write, ``close``, ``write_eof``, a drain, a handover to
another protocol, sendfile) calls ``flush()`` first, so bytes never overtake each other and
nothing held is lost on a graceful close. An abort drops what is held, as it drops the
transport's own buffer.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

log = logging.getLogger("hemi.net")


class Batched(Protocol):
    def flush(self) -> None: ...


HOLD_LIMIT = 64 << 10  # bytes held beyond which they go out at once


class Holder:
    """The holding side of a :class:`Batched` connection (the HTTP/1 server's, an upstream's).
    A mixin: the class declares the slots ``transport``, ``held`` (None while nothing is held),
    ``held_bytes`` and ``batch`` and calls :meth:`hold` instead of ``transport.write``."""

    __slots__ = ()
    transport: Any
    held: list[bytes] | None
    held_bytes: int
    batch: "WriteBatch"

    def hold(self, data: bytes) -> None:
        """Write ``data`` at the end of the iteration, after what is held already."""
        held = self.held
        if held is None:
            self.held = [data]
            self.held_bytes = len(data)
            # Flushed once this iteration's callbacks ran (the batch's own work, done here: this
            # runs for every response and every upstream request).
            batch = self.batch
            batch.pending.append(self)
            if not batch.scheduled:
                batch.scheduled = True
                batch.loop.call_soon(batch.run)
        else:  # e.g. a pipelined request answered in the same iteration
            held.append(data)
            self.held_bytes += len(data)
        if self.held_bytes > HOLD_LIMIT:
            # Out now: the transport's high-water mark (pause_writing) is what stops a
            # connection from answering more pipelined requests than its client reads.
            self.flush()

    def write_through(self, data: bytes) -> None:
        """Write ``data`` now, after what is held (a streamed body, an interim response)."""
        self.flush()
        self.transport.write(data)

    def flush(self) -> None:
        """Send what is held (the batch calls this at the end of the iteration)."""
        held = self.held
        if held is None:
            return
        self.held = None
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(held[0] if len(held) == 1 else b"".join(held))


class WriteBatch:
    """The connections of one loop holding bytes until the iteration's callbacks are done."""

    __slots__ = ("loop", "pending", "scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: list[Batched] = []
        self.scheduled = False

    def run(self) -> None:
        self.scheduled = False
        pending = self.pending
        if not pending:
            return
        self.pending = []
        for conn in pending:
            try:
                conn.flush()
            except Exception:  # one broken connection must not keep the others' bytes back
                log.exception("flushing %r failed", conn)


_batches: dict[int, WriteBatch] = {}


def batch_for(loop: asyncio.AbstractEventLoop) -> WriteBatch:
    """The loop's batch (one per loop; a worker has one loop, tests make many)."""
    batch = _batches.get(id(loop))
    if batch is None or batch.loop is not loop:
        if len(_batches) > 32:  # forget loops that are gone
            for key, old in list(_batches.items()):
                if old.loop.is_closed():
                    del _batches[key]
        batch = _batches[id(loop)] = WriteBatch(loop)
    return batch
