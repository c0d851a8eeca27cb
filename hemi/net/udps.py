"""``udpsMesher`` and ``udpsBackend``: layer 4 over UDP.

UDP has no connections, so the mesher makes *sessions*: the datagrams of one client address
(host, port) form one session, a :class:`UdpSession` (a :class:`~hemi.net.mesher.MeshConn`),
dispatched through the mesher's cases like a TCP connection when its first datagram arrives.
A session ends after ``.sessionTimeout`` (default: ``.readTimeout``) without a datagram either
way, or when its dealer closes it; its access log line is written then. Each datagram is one
``received`` call and each ``send`` one datagram: boundaries are kept.

Gates are UDP sockets bound to ``.address`` with SO_REUSEPORT (``.numGates`` of them, and one
set per worker process: the kernel keeps a client's datagrams on one socket, so a session stays
in one process). They are not handed over by the process manager's leader (``listen_keys`` is
empty): a UDP socket has no accept queue to lose on a reload.

``.maxConnsPerGate`` bounds the sessions of a gate; a datagram that would open one more is
dropped.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any, Callable

from ..core.registry import backend, mesher
from .backend import Backend, Node
from .gate import open_listener
from .mesher import MeshConn, Mesher

log = logging.getLogger("hemi.net.udps")

MAX_DATAGRAM = 65535


class UdpSession(MeshConn):
    """The datagrams of one client address on one gate."""

    __slots__ = ("gate", "addr", "last_active", "closers")

    def __init__(self, mesher: "UdpsMesher", gate: "UdpGate", addr: Any) -> None:
        MeshConn.__init__(self, mesher, "udp")
        self.gate = gate
        self.addr = addr
        self.src_host, self.src_port = str(addr[0]), str(addr[1])
        self.last_active = time.monotonic()
        self.closers: list[Callable[[], None]] = []

    def on_close(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` when the session ends (a dealer closes its upstream socket there)."""
        self.closers.append(fn)

    def send(self, data: bytes) -> None:
        if self.closed:
            return
        if self.editors:
            data = self.edit_output(data)
            if not data:
                return
        transport = self.gate.transport
        if transport is not None and not transport.is_closing():
            transport.sendto(data, self.addr)
            self.bytes_out += len(data)
            self.last_active = time.monotonic()

    def send_eof(self) -> None:
        pass  # a datagram session has no half-close

    def pause_reading(self) -> None:
        pass  # datagrams are not flow-controlled: what cannot be handled is dropped

    def resume_reading(self) -> None:
        pass

    def close(self, reason: str = "") -> None:
        if self.closed:
            return
        if reason and not self.reason:
            self.reason = reason
        self.gate.sessions.pop(self.addr, None)
        closers, self.closers = self.closers, []
        for fn in closers:
            try:
                fn()
            except Exception:
                log.exception("closing %r", self)
        self.finish()


class UdpGate(asyncio.DatagramProtocol):
    """One UDP socket of a mesher, and the sessions of the clients that write to it."""

    def __init__(self, mesher: "UdpsMesher", index: int) -> None:
        self.mesher = mesher
        self.index = index
        self.transport: Any = None
        self.sessions: dict[Any, UdpSession] = {}
        self.dropped = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        key = addr[:2] if len(addr) > 2 else addr
        session = self.sessions.get(key)
        if session is None:
            m = self.mesher
            if m.shut or len(self.sessions) >= m.max_conns_per_gate:
                self.dropped += 1
                return
            session = UdpSession(m, self, key)
            self.sessions[key] = session
            if not m.dispatch(session) or session.closed:
                return  # closed and logged by dispatch; the datagram goes nowhere
        session.last_active = time.monotonic()
        session.bytes_in += len(data)
        session.received(data)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors for datagrams we sent: a client that went away; its session times out

    def close(self) -> None:
        for session in list(self.sessions.values()):
            session.close("ok: shutdown")
        if self.transport is not None:
            self.transport.close()


@mesher("udpsMesher")
class UdpsMesher(Mesher):
    """Cases over UDP sessions; ``$transport`` is "udp"."""

    transports = ("udp",)
    socket_kind = "datagram"

    def on_configure(self) -> None:
        super().on_configure()
        if self.tls_mode:
            self.error("has .tlsMode = true, but DTLS is not supported on udpsMesher")
        if self.address is not None and self.address.path is not None:
            self.error(".address is a unix socket path; udpsMesher listens on host:port")
        self.session_timeout = self.configure_duration("sessionTimeout", self.read_timeout, min=0.001)
        self.shut = False

    def listen_keys(self) -> list:
        """Nothing for the process manager's leader to bind (see the module docstring)."""
        return []

    async def on_start(self) -> None:
        assert self.address is not None
        loop = asyncio.get_running_loop()
        for i in range(self.num_gates):
            sock = open_listener(self.address, kind=socket.SOCK_DGRAM)
            gate = UdpGate(self, i)
            try:
                await loop.create_datagram_endpoint(lambda g=gate: g, sock=sock)  # type: ignore[misc]
            except BaseException:
                sock.close()
                raise
            self.gates.append(gate)
        self.start_sweeper()
        log.info('udpsMesher "%s" listening on %s (udp)', self.name, self.address)

    def sweep_period(self) -> float:
        return min(0.5, max(0.02, self.session_timeout / 4))

    def sweep(self, now: float) -> None:
        """End the sessions idle for ``.sessionTimeout``."""
        limit = time.monotonic() - self.session_timeout
        for gate in self.gates:
            for session in [s for s in gate.sessions.values() if s.last_active < limit]:
                session.close("ok: idle")

    async def on_shutdown(self) -> None:
        self.shut = True
        for gate in self.gates:
            gate.close()
        self.gates.clear()
        await super().on_shutdown()  # (no gate left to drain) the sweeper and the access log

    @property
    def bound_addresses(self) -> list:
        out = []
        for g in self.gates:
            if g.transport is not None:
                host, port = g.transport.get_extra_info("sockname")[:2]
                out.append((host, port))
        return out


@backend("udpsBackend")
class UdpsBackend(Backend):
    """UDP nodes (host:port) for ``udpsProxy``: the balancer picks one per session. Health is
    passive only (``.healthCheck`` would need a protocol; there is none for bare UDP)."""

    def on_configure(self) -> None:
        super().on_configure()
        for node in self.nodes:
            if node.address.path is not None:
                self.error(f'.nodes has "{node.name}", a unix socket path; udpsBackend nodes are host:port')
        if self.tls_mode:
            self.error(".tlsMode is not supported on udpsBackend (no DTLS)")
        if self.health_check:
            self.error(".healthCheck is not supported on udpsBackend: bare UDP has no probe")

    def pick(self, client_ip: str = "") -> Node | None:
        node = self.balancer.pick(self.candidates(), client_ip)
        if node is not None:
            node.picks += 1
        return node

    async def check_node(self, node: Node) -> bool:
        return True


__all__ = ["UdpsMesher", "UdpSession", "UdpGate", "UdpsBackend", "MAX_DATAGRAM"]
