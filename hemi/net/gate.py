"""Gates: the listening sockets of a server or mesher, shared by every protocol.

A gate is one listening socket and the count of connections accepted through it. ``numGates``
sockets are bound to one address with SO_REUSEPORT so the kernel spreads connections over them
(and over several worker processes, and over an old and a new stage during a reload).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
from typing import Callable

from .address import Address

log = logging.getLogger("hemi.gate")


def open_listener(addr: Address, *, backlog: int = 4096, reuse_port: bool = True,
                  kind: int = socket.SOCK_STREAM) -> socket.socket:
    """Bind and listen (or just bind, for datagrams). Raises OSError with the address in it."""
    if addr.path is not None:
        sock = socket.socket(socket.AF_UNIX, kind)
        path = addr.path
        if not path.startswith("@"):
            try:
                if stat.S_ISSOCK(os.stat(path).st_mode):
                    os.unlink(path)  # a stale socket file from an earlier run
            except FileNotFoundError:
                pass
        else:
            path = "\0" + path[1:]
        try:
            sock.bind(path)
        except OSError as e:
            sock.close()
            raise OSError(e.errno, f"cannot listen on {addr}: {e.strerror}") from None
    else:
        host = addr.host or "0.0.0.0"
        infos = socket.getaddrinfo(host, addr.port, type=kind, flags=socket.AI_PASSIVE)
        family, _, _, _, sockaddr = infos[0]
        sock = socket.socket(family, kind)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port and hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
        except OSError as e:
            sock.close()
            raise OSError(e.errno, f"cannot listen on {addr}: {e.strerror}") from None
    if kind == socket.SOCK_STREAM:
        sock.listen(backlog)
    sock.setblocking(False)
    return sock


Key = tuple[str, int]  # (str(address), gate index): one listening socket


class ListenerPool:
    """Listening sockets kept across stages of one process.

    A reload starts a new stage while the old one drains. If each stage bound its own socket,
    connections waiting in the old socket's accept queue would be reset when it closes. Instead
    both stages accept from duplicates of one socket, which closes only when no stage uses it.

    Under the process manager the leader binds every socket once and hands them to its workers
    (``adopt``): such sockets are *pinned*, they stay open while no stage uses them, until
    ``keep_only`` says the config no longer names them. Workers then never bind anything
    themselves, so a worker that exits resets no connection: the others accept its queue.
    """

    def __init__(self) -> None:
        # key -> [master socket, stages using it, pinned]
        self._masters: dict[Key, list] = {}

    def acquire(self, addr: Address, index: int) -> socket.socket:
        key = (str(addr), index)
        entry = self._masters.get(key)
        if entry is None:
            entry = self._masters[key] = [open_listener(addr), 0, False]
        entry[1] += 1
        dup = entry[0].dup()
        dup.setblocking(False)
        return dup

    def release(self, addr: Address, index: int) -> None:
        key = (str(addr), index)
        entry = self._masters.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0 and not entry[2]:
            del self._masters[key]
            entry[0].close()

    def pin(self, addr: Address, index: int) -> socket.socket:
        """Bind the socket for ``(addr, index)`` now if it is not open yet, and keep it open
        even while no stage uses it. Returns the master socket (not a duplicate)."""
        key = (str(addr), index)
        entry = self._masters.get(key)
        if entry is None:
            entry = self._masters[key] = [open_listener(addr), 0, True]
        entry[2] = True
        return entry[0]

    def adopt(self, key: Key, sock: socket.socket) -> None:
        """Take a socket bound by another process (the leader) as the pinned master for ``key``.
        If this process has one for ``key`` already, that one is kept and ``sock`` is closed:
        both are the same socket (the leader sends its whole set on every reload)."""
        entry = self._masters.get(key)
        if entry is not None:
            entry[2] = True
            sock.close()
            return
        sock.setblocking(False)
        self._masters[key] = [sock, 0, True]

    def keep_only(self, keys: "set[Key] | frozenset[Key]") -> None:
        """Unpin every socket not in ``keys``; those no stage uses are closed now, the others
        when their last stage releases them."""
        for key, entry in list(self._masters.items()):
            if key in keys:
                continue
            entry[2] = False
            if entry[1] <= 0:
                del self._masters[key]
                entry[0].close()

    def pinned(self) -> dict[Key, socket.socket]:
        return {key: entry[0] for key, entry in self._masters.items() if entry[2]}

    def close_all(self) -> None:
        for entry in self._masters.values():
            entry[0].close()
        self._masters.clear()


listeners = ListenerPool()


class Gate:
    """One listening socket feeding connections to ``protocol_factory``.

    ``max_conns`` bounds the connections open at once through this gate; a connection beyond it
    is closed at once (the kernel's backlog absorbs short bursts before that)."""

    def __init__(self, addr: Address, protocol_factory: Callable[["Gate"], asyncio.BaseProtocol], *,
                 max_conns: int, ssl: object | None = None, index: int = 0) -> None:
        self.addr = addr
        self.index = index
        self.max_conns = max_conns
        self.ssl = ssl
        self.conns: set = set()
        self.shut = False
        self._factory = protocol_factory
        self._sock: socket.socket | None = None
        self._server: asyncio.AbstractServer | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._drain: Callable[[object], None] | None = None

    async def open(self) -> None:
        self._sock = listeners.acquire(self.addr, self.index)
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(lambda: self._factory(self), sock=self._sock, ssl=self.ssl,
                                                    ssl_handshake_timeout=10.0 if self.ssl else None)
        except BaseException:
            self._sock.close()
            listeners.release(self.addr, self.index)
            raise

    @property
    def bound(self) -> Address:
        """The real address (useful when the config asked for port 0)."""
        if self._sock is None or self.addr.path is not None:
            return self.addr
        host, port = self._sock.getsockname()[:2]
        return Address(host, port)

    def on_open(self, conn: object) -> bool:
        """Register a new connection; False means over the limit: the caller closes it.

        A connection that arrives after ``close`` began was accepted by the kernel (and queued
        by the event loop) before the gate stopped listening: it is kept and drained like the
        others (once the caller's ``connection_made`` is done), so a reload or a quit never
        resets a client that was let in."""
        if len(self.conns) >= self.max_conns:
            return False
        self.conns.add(conn)
        self._idle.clear()
        if self.shut and self._drain is not None:
            asyncio.get_running_loop().call_soon(self._drain, conn)
        return True

    def on_close(self, conn: object) -> None:
        self.conns.discard(conn)
        if not self.conns:
            self._idle.set()

    async def close(self, drain: Callable[[object], None] | None = None) -> None:
        """Stop accepting; ask every connection to finish (``drain``) and wait until all are gone."""
        self.shut = True
        self._drain = drain
        if self._server is not None:
            self._server.close()
            self._server = None
            listeners.release(self.addr, self.index)
        for conn in list(self.conns):
            if drain is not None:
                drain(conn)
        await self._idle.wait()
