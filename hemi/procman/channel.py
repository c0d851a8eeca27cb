"""The leader <-> worker channel: one SOCK_SEQPACKET unix socket pair per worker.

Each record is one msgx message, so there is no stream reassembly; a record may carry file
descriptors (SCM_RIGHTS), which is how the leader hands its listening sockets to a worker at
start and on every reload. Calls carry an ``id`` argument and their reply (a non-call message)
carries it back, so both sides may have several calls in flight (the leader polls a worker's
counters while that worker reloads).
"""

from __future__ import annotations

import array
import asyncio
import itertools
import logging
import socket
from typing import Callable, Iterable

from . import msgx
from .msgx import Message

log = logging.getLogger("hemi.procman")

MAX_RECORD = 1 << 20   # a record is at most ~200 KiB anyway: the kernel's socket buffer
MAX_FDS = 200          # per record; the kernel allows 253 (SCM_MAX_FD)

# Received descriptors are close-on-exec: a program a worker runs must not inherit a listening socket.
CLOEXEC = getattr(socket, "MSG_CMSG_CLOEXEC", 0)

RequestHandler = Callable[[Message, list[socket.socket]], None]


def pair() -> tuple[socket.socket, socket.socket]:
    """(leader end, worker end). The worker end is made inheritable by the spawner."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


class Channel:
    """An asyncio-driven end of the pair. ``on_request(msg, socks)`` gets every call and tell
    that is not a reply; ``on_close()`` is called once when the peer is gone."""

    def __init__(self, sock: socket.socket, on_request: RequestHandler, on_close: Callable[[], None]) -> None:
        self.sock = sock
        self.on_request = on_request
        self.on_close = on_close
        self.closed = False
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[Message]] = {}
        self._loop = asyncio.get_running_loop()
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._readable)

    # -- receiving --------------------------------------------------------------------------------------
    def _readable(self) -> None:
        while not self.closed:
            try:
                data, anc, flags, _ = self.sock.recvmsg(MAX_RECORD, socket.CMSG_SPACE(MAX_FDS * 4), CLOEXEC)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.debug("channel receive failed: %s", e)
                self.close()
                return
            socks = _fds(anc)
            if not data:
                for s in socks:
                    s.close()
                self.close()
                return
            if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                for s in socks:
                    s.close()
                log.error("channel: a truncated record was dropped")
                continue
            try:
                msg = msgx.decode(data, MAX_RECORD)
            except msgx.MsgxError as e:
                for s in socks:
                    s.close()
                log.error("channel: malformed record dropped: %s", e)
                continue
            if not msg.call:
                waiter = self._pending.pop(msg.args.get("id", ""), None)
                if waiter is not None:
                    if not waiter.done():
                        waiter.set_result(msg)
                    continue
            try:
                self.on_request(msg, socks)
            except Exception:
                log.exception("channel: handling command %d failed", msg.comd)

    # -- sending ----------------------------------------------------------------------------------------
    async def send(self, msg: Message, socks: Iterable[socket.socket] = ()) -> None:
        data = msgx.encode(msg)
        fds = [s.fileno() for s in socks]
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())] if fds else []
        while True:
            if self.closed:
                raise ConnectionError("channel closed")
            try:
                self.sock.sendmsg([data], anc)
                return
            except (BlockingIOError, InterruptedError):
                ready = self._loop.create_future()
                self._loop.add_writer(self.sock.fileno(), lambda: ready.done() or ready.set_result(None))
                try:
                    await ready
                finally:
                    self._loop.remove_writer(self.sock.fileno())
            except OSError as e:
                self.close()
                raise ConnectionError(f"channel send failed: {e}") from None

    async def call(self, msg: Message, socks: Iterable[socket.socket] = (), timeout: float | None = None) -> Message:
        """Send a call and wait for its reply (ConnectionError if the peer goes away first)."""
        ident = str(next(self._ids))
        msg.args["id"] = ident
        msg.call = True
        waiter: asyncio.Future[Message] = self._loop.create_future()
        self._pending[ident] = waiter
        try:
            await self.send(msg, socks)
            return await asyncio.wait_for(waiter, timeout)
        finally:
            self._pending.pop(ident, None)

    async def tell(self, msg: Message, socks: Iterable[socket.socket] = ()) -> None:
        msg.call = False
        msg.args.pop("id", None)
        await self.send(msg, socks)

    async def reply(self, request: Message, flag: int = 0, args: dict[str, str] | None = None) -> None:
        out = Message(request.comd, flag, dict(args or {}), call=False)
        out.args["id"] = request.args.get("id", "")
        try:
            await self.send(out)
        except ConnectionError:
            pass  # the caller is gone: nobody to tell

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._loop.remove_reader(self.sock.fileno())
        except (ValueError, OSError):
            pass
        self.sock.close()
        for waiter in self._pending.values():
            if not waiter.done():
                waiter.set_exception(ConnectionError("channel closed"))
        self._pending.clear()
        self.on_close()


def _fds(anc: list[tuple[int, int, bytes]]) -> list[socket.socket]:
    out: list[socket.socket] = []
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
            for fd in fds:
                sock = socket.socket(fileno=fd)
                sock.set_inheritable(False)
                out.append(sock)
    return out
